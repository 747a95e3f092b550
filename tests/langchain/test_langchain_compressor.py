"""Unit tests of MemRerank, the LangChain document compressor.

The real core scores through its real vLLM HTTP backend against the loopback rerank server
(tests/servers), which is scripted to give each document a known score by its index.
"""

from __future__ import annotations

import copy
import logging

import pytest
from langchain_core.documents import BaseDocumentCompressor, Document
from lc_testkit import Hosted, memory_documents, scores_by_index
from pydantic import ValidationError
from servers import RerankServer, malformed_json, vllm_error
from servers.clients import FAST, client_ports, user_agents

from langchain_memreranker import FALLBACK_KEY, RELEVANCE_SCORE_KEY, MemRerank
from memreranker import MemReranker, MemRerankerError, RerankerSettings

QUERY = "What does the user like to drink?"
# Scores by position: the expected order is 2, 0, 3, 1 (index 4 scores lowest).
BY_INDEX = [0.7, 0.2, 0.9, 0.4, 0.1]
FAILURE = "scripted failure"


def five_docs() -> list[Document]:
    return memory_documents()[:5]


@pytest.fixture
def by_index(rerank_server: RerankServer) -> RerankServer:
    """The server scores document i of every request BY_INDEX[i] (results worst first)."""
    rerank_server.default = scores_by_index(BY_INDEX)
    return rerank_server


@pytest.fixture
def failing(rerank_server: RerankServer) -> RerankServer:
    """The server answers every request with HTTP 503 (retried, then a failure)."""
    rerank_server.default = vllm_error(503, FAILURE)
    return rerank_server


# -- construction -----------------------------------------------------------------------


def test_is_a_compressor_and_inherits_the_core_settings() -> None:
    compressor = MemRerank(model="some-model")  # local weights load on first use: none here
    assert isinstance(compressor, BaseDocumentCompressor)
    assert isinstance(compressor, RerankerSettings)
    assert compressor.top_n == 3
    assert compressor.score_threshold is None
    assert compressor.backend == "local"
    assert compressor.on_error == "fallback"
    assert compressor.owns_reranker


def test_core_settings_pass_through_to_the_core() -> None:
    compressor = MemRerank(
        backend="local",
        model="some-model",
        instruction="Find the user's preferences",
        on_error="raise",
        batch_size=2,
    )
    # HTTP settings configure a hosted backend (the local one refuses them).
    hosted = MemRerank(backend="vllm", base_url="http://127.0.0.1:9", timeout=4.5, max_retries=7)
    assert (hosted.reranker.settings.timeout, hosted.reranker.settings.max_retries) == (4.5, 7)
    settings = compressor.reranker.settings
    assert type(settings) is RerankerSettings
    assert settings.model == "some-model"
    assert settings.instruction == "Find the user's preferences"
    assert settings.on_error == "raise"
    assert settings.batch_size == 2
    assert compressor.reranker.name == "local:some-model"


async def test_the_core_is_built_once(hosted: Hosted, by_index: RerankServer) -> None:
    compressor = hosted()
    core = compressor.reranker
    assert compressor.owns_reranker
    compressor.compress_documents(five_docs(), QUERY)
    compressor.compress_documents(five_docs(), QUERY)
    compressor.rerank(["a", "b"], QUERY)
    await compressor.acompress_documents(five_docs(), QUERY)
    await compressor.arerank(["a", "b"], QUERY)
    assert compressor.reranker is core
    requests = by_index.requests
    assert user_agents(requests) == ["requests"] * 3 + ["httpx"] * 2
    # One core, so one connection pool per transport: every call reused its connection.
    assert len(set(client_ports(requests[:3]))) == 1
    assert len(set(client_ports(requests[3:]))) == 1


def test_a_bad_setting_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    # The core is built by the constructor, not on first use.
    monkeypatch.delenv("MEMOS_API_KEY", raising=False)
    with pytest.raises(ValueError, match="MEMOS_API_KEY"):
        MemRerank(backend="memos")
    with pytest.raises(ValueError, match="base_url"):
        MemRerank(backend="vllm")


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValidationError, match="bogus"):
        MemRerank(bogus=1)
    with pytest.raises(ValidationError, match="on_error"):
        MemRerank(on_error="ignore")
    with pytest.raises(ValidationError, match="timeout"):
        MemRerank(timeout=0)


def test_top_n_and_threshold_use_the_core_checks() -> None:
    with pytest.raises(TypeError, match="top_n"):
        MemRerank(top_n="3")
    with pytest.raises(TypeError, match="top_n"):
        MemRerank(top_n=True)
    with pytest.raises(ValueError, match="top_n"):
        MemRerank(top_n=-1)
    with pytest.raises(ValueError, match="score_threshold"):
        MemRerank(score_threshold=1.5)
    with pytest.raises(TypeError, match="score_threshold"):
        MemRerank(score_threshold="0.5")
    compressor = MemRerank(top_n=None, score_threshold=0)
    assert compressor.top_n is None
    assert compressor.score_threshold == 0.0
    compressor.top_n = 10  # per-call options stay assignable, and validated
    assert compressor.top_n == 10
    with pytest.raises(ValueError, match="top_n"):
        compressor.top_n = -2


@pytest.mark.parametrize(("name", "value"), [("model", "other"), ("on_error", "raise")])
def test_core_settings_are_fixed_after_construction(name: str, value: str) -> None:
    compressor = MemRerank(model="some-model")
    with pytest.raises(AttributeError, match=f"MemRerank.{name} is fixed"):
        setattr(compressor, name, value)
    assert compressor.reranker.settings.model == "some-model"
    with pytest.raises(AttributeError):
        compressor.reranker = MemReranker(model="x")


# -- a ready reranker -------------------------------------------------------------------


def test_a_ready_reranker_is_used_as_is(by_index: RerankServer) -> None:
    core = MemReranker(
        "vllm", model="shared-model", base_url=by_index.url, on_error="raise", **FAST
    )
    compressor = MemRerank(reranker=core, top_n=2, score_threshold=0.1)
    assert compressor.reranker is core
    assert not compressor.owns_reranker  # nothing built by MemRerank
    # The core fields tell what is in use.
    assert compressor.model == "shared-model"
    assert compressor.on_error == "raise"
    out = compressor.compress_documents(five_docs(), QUERY)
    assert [d.id for d in out] == ["m3", "m1"]
    compressor.top_n = 1  # the compressor's own options stay assignable
    assert [d.id for d in compressor.compress_documents(five_docs(), QUERY)] == ["m3"]
    assert [r.body["model"] for r in by_index.requests] == ["shared-model"] * 2
    assert compressor.reranker is core
    core.close()


@pytest.mark.parametrize(
    "setting",
    [
        {"model": "other"},
        {"api_key": "sk-conflict"},
        {"on_error": "raise"},
        {"instruction": "x"},
        {"timeout": 3.0},
        {"max_retries": 0},
    ],
)
def test_a_ready_reranker_and_core_settings_conflict(setting: dict[str, object]) -> None:
    # A hosted core: every one of these settings configures it.
    core = MemReranker("vllm", base_url="http://127.0.0.1:9", model="shared-model")
    with pytest.raises(ValueError, match="contradict") as info:
        MemRerank(reranker=core, **setting)
    assert next(iter(setting)) in str(info.value)
    assert "sk-conflict" not in str(info.value)


def test_a_ready_reranker_with_agreeing_settings() -> None:
    core = MemReranker(model="shared-model")
    compressor = MemRerank(reranker=core, backend="local", model="shared-model")
    assert compressor.reranker is core
    assert not compressor.owns_reranker


def test_close_releases_only_an_owned_core(hosted: Hosted, rerank_server: RerankServer) -> None:
    owned = hosted(top_n=None)
    assert owned.owns_reranker
    owned.rerank(["a"], QUERY)
    owned.close()  # the pool is closed: the next call opens a new connection, and works
    out = owned.rerank(["a"], QUERY)
    assert FALLBACK_KEY not in out[0]
    first, second = client_ports(rerank_server.requests)
    assert first != second

    rerank_server.reset()
    core = MemReranker("vllm", base_url=rerank_server.url, **FAST)
    theirs = MemRerank(reranker=core)
    assert not theirs.owns_reranker
    theirs.rerank(["a"], QUERY)
    theirs.close()  # the caller's reranker is the caller's to close: its pool stays open
    theirs.rerank(["a"], QUERY)
    first, second = client_ports(rerank_server.requests)
    assert first == second
    core.close()


# -- compress_documents -----------------------------------------------------------------


def test_results_are_sorted_and_mapped_back_by_index(
    hosted: Hosted, by_index: RerankServer
) -> None:
    docs = five_docs()
    out = hosted(top_n=None).compress_documents(docs, QUERY)
    assert [d.id for d in out] == ["m3", "m1", "m4", "m2", "m5"]
    for doc in out:
        source = next(d for d in docs if d.id == doc.id)
        assert doc.page_content == source.page_content
        assert doc.metadata["created"] == source.metadata["created"]
        assert doc.metadata[RELEVANCE_SCORE_KEY] == BY_INDEX[docs.index(source)]
        assert type(doc.metadata[RELEVANCE_SCORE_KEY]) is float
        assert FALLBACK_KEY not in doc.metadata
    (request,) = by_index.requests
    assert request.query == QUERY
    assert request.documents == [d.page_content for d in docs]
    assert "top_n" not in request.body


def test_identical_texts_keep_their_own_ids_and_metadata(
    hosted: Hosted, rerank_server: RerankServer
) -> None:
    """Identical texts are sent once and share its score, but each comes back as itself."""
    rerank_server.default = scores_by_index([0.1, 0.9])
    docs = [
        Document(id="a", page_content="same text", metadata={"n": 0}),
        Document(id="b", page_content="same text", metadata={"n": 1}),
        Document(id="c", page_content="other", metadata={"n": 2}),
    ]
    out = hosted(top_n=None).compress_documents(docs, QUERY)
    (request,) = rerank_server.requests
    assert request.documents == ["same text", "other"]
    assert [(d.id, d.metadata["n"], d.metadata[RELEVANCE_SCORE_KEY]) for d in out] == [
        ("c", 2, 0.9),
        ("a", 0, 0.1),
        ("b", 1, 0.1),
    ]


def test_the_callers_documents_are_never_mutated(hosted: Hosted, by_index: RerankServer) -> None:
    docs = five_docs()
    docs[0].metadata[RELEVANCE_SCORE_KEY] = 0.123  # from an earlier stage
    before = copy.deepcopy(docs)
    out = hosted(top_n=None).compress_documents(docs, QUERY)
    assert docs == before
    assert [d.metadata for d in docs] == [d.metadata for d in before]
    assert [d.id for d in docs] == [d.id for d in before]
    for doc in out:
        assert all(doc is not d and doc.metadata is not d.metadata for d in docs)
    out[0].metadata["added"] = True
    assert all("added" not in d.metadata for d in docs)
    assert docs == before


async def test_async_results_equal_sync_and_never_mutate(
    hosted: Hosted, by_index: RerankServer
) -> None:
    docs = five_docs()
    before = copy.deepcopy(docs)
    compressor = hosted(top_n=4)
    sync_out = compressor.compress_documents(docs, QUERY)
    async_out = await compressor.acompress_documents(docs, QUERY)
    assert async_out == sync_out
    assert [d.id for d in sync_out] == ["m3", "m1", "m4", "m2"]
    assert docs == before
    assert [r.body["top_n"] for r in by_index.requests] == [4, 4]


def test_document_subclasses_and_extra_fields_survive(
    hosted: Hosted, rerank_server: RerankServer
) -> None:
    class MyDocument(Document):
        source_system: str = "crm"

    rerank_server.default = scores_by_index([0.3, 0.6])
    docs = [MyDocument(page_content="x", id="1"), MyDocument(page_content="y", id="2")]
    out = hosted().compress_documents(docs, QUERY)
    assert [type(d) for d in out] == [MyDocument, MyDocument]
    assert [d.id for d in out] == ["2", "1"]
    assert out[0].source_system == "crm"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("top_n", "expected"),
    [(3, ["m3", "m1", "m4"]), (1, ["m3"]), (0, []), (None, ["m3", "m1", "m4", "m2", "m5"])],
)
def test_top_n(
    hosted: Hosted, by_index: RerankServer, top_n: int | None, expected: list[str]
) -> None:
    out = hosted(top_n=top_n).compress_documents(five_docs(), QUERY)
    assert [d.id for d in out] == expected


def test_top_n_larger_than_the_list(hosted: Hosted, by_index: RerankServer) -> None:
    out = hosted(top_n=50).compress_documents(five_docs()[:2], QUERY)
    assert [d.id for d in out] == ["m1", "m2"]


def test_score_threshold(hosted: Hosted, by_index: RerankServer) -> None:
    out = hosted(top_n=None, score_threshold=0.4).compress_documents(five_docs(), QUERY)
    assert [d.id for d in out] == ["m3", "m1", "m4"]
    assert all(d.metadata[RELEVANCE_SCORE_KEY] >= 0.4 for d in out)


def test_default_top_n_is_three(hosted: Hosted, by_index: RerankServer) -> None:
    assert len(hosted().compress_documents(five_docs(), QUERY)) == 3


async def test_empty_input_never_calls_the_backend(
    hosted: Hosted, rerank_server: RerankServer
) -> None:
    compressor = hosted()
    assert compressor.compress_documents([], QUERY) == []
    assert await compressor.acompress_documents([], QUERY) == []
    assert compressor.rerank([], QUERY) == []
    assert await compressor.arerank([], QUERY) == []
    assert rerank_server.requests == []


def test_caller_mistakes_raise(hosted: Hosted, rerank_server: RerankServer) -> None:
    compressor = hosted()
    with pytest.raises(ValueError, match="query"):
        compressor.compress_documents(five_docs(), "   ")
    with pytest.raises(TypeError, match="query"):
        compressor.compress_documents(five_docs(), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"documents\[1\] must be a Document"):
        compressor.compress_documents([five_docs()[0], "text"], QUERY)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="documents must be a sequence"):
        compressor.compress_documents(five_docs()[0], QUERY)  # type: ignore[arg-type]
    assert rerank_server.requests == []


# -- fallback ---------------------------------------------------------------------------


async def test_fallback_keeps_the_order_and_flags_it(
    hosted: Hosted, failing: RerankServer, caplog: pytest.LogCaptureFixture
) -> None:
    docs = five_docs()
    before = copy.deepcopy(docs)
    compressor = hosted(top_n=3, score_threshold=0.9)  # no threshold on fallback results
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        out = compressor.compress_documents(docs, QUERY)
    assert [d.id for d in out] == ["m1", "m2", "m3"]
    assert all(d.metadata[RELEVANCE_SCORE_KEY] == 0.0 for d in out)
    assert all(d.metadata[FALLBACK_KEY] is True for d in out)
    assert all(d.metadata["created"] for d in out)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "falling back to original order" in warnings[0].getMessage()
    assert FAILURE in warnings[0].getMessage()
    assert docs == before
    assert len(failing.requests) == 1 + FAST["max_retries"]  # a 503 is retried, then given up

    async_out = await compressor.acompress_documents(docs, QUERY)
    assert async_out == out


@pytest.mark.parametrize("reply", ["malformed", "503"])
async def test_a_failed_reply_falls_back(
    hosted: Hosted, rerank_server: RerankServer, reply: str
) -> None:
    rerank_server.default = malformed_json() if reply == "malformed" else vllm_error(503)
    compressor = hosted(top_n=2)
    for out in (
        compressor.compress_documents(five_docs(), QUERY),
        await compressor.acompress_documents(five_docs(), QUERY),
    ):
        assert [(d.id, d.metadata[RELEVANCE_SCORE_KEY], d.metadata[FALLBACK_KEY]) for d in out] == [
            ("m1", 0.0, True),
            ("m2", 0.0, True),
        ]


def test_fallback_of_a_real_outage(missing_model: str) -> None:
    out = MemRerank(model=missing_model, top_n=2).compress_documents(five_docs(), QUERY)
    assert [(d.id, d.metadata[RELEVANCE_SCORE_KEY], d.metadata[FALLBACK_KEY]) for d in out] == [
        ("m1", 0.0, True),
        ("m2", 0.0, True),
    ]


def test_a_stale_fallback_flag_is_removed_on_success(
    hosted: Hosted, rerank_server: RerankServer
) -> None:
    rerank_server.default = scores_by_index([0.8])
    docs = [Document(page_content="x", metadata={FALLBACK_KEY: True, RELEVANCE_SCORE_KEY: 0.0})]
    out = hosted().compress_documents(docs, QUERY)
    assert out[0].metadata == {RELEVANCE_SCORE_KEY: 0.8}
    assert docs[0].metadata[FALLBACK_KEY] is True


async def test_on_error_raise_propagates(hosted: Hosted, failing: RerankServer) -> None:
    compressor = hosted(on_error="raise")
    with pytest.raises(MemRerankerError, match=FAILURE):
        compressor.compress_documents(five_docs(), QUERY)
    with pytest.raises(MemRerankerError, match=FAILURE):
        await compressor.acompress_documents(five_docs(), QUERY)


async def test_on_error_raise_on_a_malformed_reply(
    hosted: Hosted, rerank_server: RerankServer
) -> None:
    rerank_server.default = malformed_json()
    compressor = hosted(on_error="raise")
    with pytest.raises(MemRerankerError, match="not valid JSON"):
        compressor.compress_documents(five_docs(), QUERY)
    with pytest.raises(MemRerankerError, match="not valid JSON"):
        await compressor.acompress_documents(five_docs(), QUERY)


# -- native async -----------------------------------------------------------------------
# The core's sync transport is requests, its async one httpx: the User-Agent the server
# sees tells which path a call took (the sync path in a thread would send requests').


async def test_acompress_is_native_async(hosted: Hosted, by_index: RerankServer) -> None:
    compressor = hosted()
    out = await compressor.acompress_documents(five_docs(), QUERY)
    assert [d.id for d in out] == ["m3", "m1", "m4"]
    assert user_agents(by_index.requests) == ["httpx"]
    compressor.compress_documents(five_docs(), QUERY)
    assert user_agents(by_index.requests) == ["httpx", "requests"]


async def test_arerank_is_native_async(hosted: Hosted, rerank_server: RerankServer) -> None:
    rerank_server.default = scores_by_index(BY_INDEX)
    out = await hosted().arerank(["a", "b", "c"], QUERY)
    assert [r["index"] for r in out] == [2, 0, 1]
    assert user_agents(rerank_server.requests) == ["httpx"]


# -- rerank(): the dict API -------------------------------------------------------------


def test_rerank_returns_index_and_relevance_score(hosted: Hosted, by_index: RerankServer) -> None:
    out = hosted(top_n=None).rerank(["a", "b", "c", "d", "e"], QUERY)
    assert out == [
        {"index": 2, RELEVANCE_SCORE_KEY: 0.9},
        {"index": 0, RELEVANCE_SCORE_KEY: 0.7},
        {"index": 3, RELEVANCE_SCORE_KEY: 0.4},
        {"index": 1, RELEVANCE_SCORE_KEY: 0.2},
        {"index": 4, RELEVANCE_SCORE_KEY: 0.1},
    ]
    assert user_agents(by_index.requests) == ["requests"]


def test_rerank_reads_strings_dicts_and_documents(
    hosted: Hosted, rerank_server: RerankServer
) -> None:
    documents = [
        "plain",
        Document(page_content="from a document"),
        {"memory": "the memory", "text": "not this", "content": "nor this"},
        {"text": "the text", "content": "not this"},
        {"content": "the content"},
        {"memory": None, "text": "text when memory is not a string"},
        {"id": 7},
    ]
    hosted().rerank(documents, QUERY)
    (request,) = rerank_server.requests
    assert request.documents == [
        "plain",
        "from a document",
        "the memory",
        "the text",
        "the content",
        "text when memory is not a string",
        str({"id": 7}),
    ]


def test_rerank_top_n_and_threshold_overrides(hosted: Hosted, by_index: RerankServer) -> None:
    compressor = hosted(top_n=2, score_threshold=0.5)
    texts = ["a", "b", "c", "d", "e"]
    assert [r["index"] for r in compressor.rerank(texts, QUERY)] == [2, 0]
    assert [r["index"] for r in compressor.rerank(texts, QUERY, top_n=None)] == [2, 0]
    assert len(compressor.rerank(texts, QUERY, top_n=None, score_threshold=None)) == 5
    assert [r["index"] for r in compressor.rerank(texts, QUERY, top_n=1)] == [2]
    with pytest.raises(ValueError, match="top_n"):
        compressor.rerank(texts, QUERY, top_n=-1)
    assert [r.body.get("top_n") for r in by_index.requests] == [2, None, None, 1]


def test_rerank_fallback_is_flagged(hosted: Hosted, failing: RerankServer) -> None:
    out = hosted(top_n=2).rerank(["a", "b", "c"], QUERY)
    assert out == [
        {"index": 0, RELEVANCE_SCORE_KEY: 0.0, FALLBACK_KEY: True},
        {"index": 1, RELEVANCE_SCORE_KEY: 0.0, FALLBACK_KEY: True},
    ]


def test_rerank_rejects_other_inputs(hosted: Hosted, rerank_server: RerankServer) -> None:
    compressor = hosted()
    with pytest.raises(TypeError, match=r"documents\[1\] must be a str, a dict or a Document"):
        compressor.rerank(["a", 3], QUERY)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="documents must be a sequence"):
        compressor.rerank("abc", QUERY)  # type: ignore[arg-type]
    assert rerank_server.requests == []
