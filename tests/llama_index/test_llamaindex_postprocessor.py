"""Unit tests of MemRerank, the LlamaIndex node postprocessor.

The real core scores through its real vLLM HTTP backend against the loopback rerank server
(tests/servers, the ``hosted_core`` fixture): scores are the server's
:func:`servers.deterministic_score`, sent in a shuffled order.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
from pathlib import Path

import pytest
from li_testkit import SERVED_MODEL, HostedCore
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from pydantic import ValidationError
from servers import RerankServer, Score, deterministic_score, malformed_json, vllm_error
from servers.clients import FAST, client_ports, user_agents

from llama_index.postprocessor.memreranker import MemRerank
from memreranker import MemReranker, MemRerankerError, RerankerSettings

PACKAGE = Path(__file__).resolve().parents[2] / "packages" / "llama-index-postprocessor-memreranker"
QUERY = "What does the user like to drink?"
SECRET = "sk-very-secret-4711"
CORE_NAME = f"vllm:{SERVED_MODEL}"
FAILURE = "boom"


def texts_of(nodes: list[NodeWithScore]) -> list[str]:
    """What the reranker is given: each node's EMBED view."""
    return [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]


def local_core(**options: object) -> MemReranker:
    """A real local-backend core; its weights would load on the first call (none is made)."""
    return MemReranker(model="never-loaded-model", **options)


@pytest.fixture
def failing(rerank_server: RerankServer, hosted_core: HostedCore) -> RerankServer:
    """The server answers every request with HTTP 503 (retried, then a failure). After
    ``hosted_core``, whose default (shuffled scores) it replaces."""
    rerank_server.default = vllm_error(503, FAILURE)
    return rerank_server


def snapshot(nodes: list[NodeWithScore]) -> list[NodeWithScore]:
    return copy.deepcopy(nodes)


def assert_untouched(nodes: list[NodeWithScore], before: list[NodeWithScore]) -> None:
    assert nodes == before  # pydantic deep equality: node, metadata, relationships, score
    for now, then in zip(nodes, before, strict=True):
        assert now.node.metadata == then.node.metadata
        assert now.score == then.score


# --- the class and the package ---------------------------------------------------------------


def test_class() -> None:
    names = [cls.__name__ for cls in MemRerank.__mro__]
    assert BaseNodePostprocessor.__name__ in names
    assert issubclass(MemRerank, BaseNodePostprocessor)
    assert issubclass(MemRerank, RerankerSettings)
    assert MemRerank.class_name() == "MemRerank"


def test_package_layout() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    root = PACKAGE / "llama_index"
    assert not (root / "__init__.py").exists()
    assert not (root / "postprocessor" / "__init__.py").exists()
    assert (root / "postprocessor" / "memreranker" / "__init__.py").is_file()
    assert (root / "postprocessor" / "memreranker" / "py.typed").is_file()

    meta = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert meta["build-system"]["build-backend"] == "hatchling.build"
    assert meta["tool"]["llamahub"]["import_path"] == "llama_index.postprocessor.memreranker"
    assert "MemRerank" in meta["tool"]["llamahub"]["class_authors"]
    deps = [
        d.split(">")[0].split("<")[0].split("=")[0].strip() for d in meta["project"]["dependencies"]
    ]
    assert sorted(deps) == ["llama-index-core", "memreranker"]
    assert "optional-dependencies" not in meta["project"]


# --- construction: settings or a ready reranker ----------------------------------------------


def test_settings_build_the_core() -> None:
    rerank = MemRerank(
        model="some/dir", instruction="Find memories", batch_size=4, on_error="raise"
    )
    assert rerank.owns_reranker
    core = rerank.reranker
    assert isinstance(core, MemReranker)
    assert rerank.reranker is core
    assert core.name == "local:some/dir"
    assert core.settings.model == "some/dir"
    assert core.settings.instruction == "Find memories"
    assert core.settings.batch_size == 4
    assert core.settings.on_error == "raise"
    assert type(core.settings) is RerankerSettings


def test_the_core_is_built_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    # A setting the core rejects fails here, not on the first call.
    monkeypatch.delenv("MEMOS_API_KEY", raising=False)
    with pytest.raises(ValueError, match="MEMOS_API_KEY"):
        MemRerank(backend="memos")
    with pytest.raises(ValueError, match="base_url"):
        MemRerank(backend="vllm")


async def test_core_built_once_not_per_call(
    rerank_server: RerankServer, hosted_core: HostedCore, nodes: list[NodeWithScore]
) -> None:
    core = hosted_core()
    given = MemRerank(reranker=core)
    owned = MemRerank(backend="vllm", base_url=rerank_server.url, **FAST)
    assert not given.owns_reranker and owned.owns_reranker
    for rerank, expected_core in ((given, core), (owned, owned.reranker)):
        rerank_server.reset()
        rerank_server.default = Score(shuffle=True)
        for _ in range(3):
            rerank.postprocess_nodes(nodes, query_str=QUERY)
        for _ in range(2):
            await rerank.apostprocess_nodes(nodes, query_str=QUERY)
        assert rerank.reranker is expected_core
        requests = rerank_server.requests
        assert user_agents(requests) == ["requests"] * 3 + ["httpx"] * 2
        # One core, so one pool per transport: each call reused the same connection.
        assert len(set(client_ports(requests[:3]))) == 1
        assert len(set(client_ports(requests[3:]))) == 1
    owned.close()


def test_ready_reranker_fields_mirror_it() -> None:
    core = local_core(instruction="Find memories", batch_size=3)
    rerank = MemRerank(reranker=core, top_n=2)
    assert rerank.reranker is core
    assert not rerank.owns_reranker
    assert rerank.model == core.settings.model
    assert rerank.instruction == "Find memories"
    assert rerank.batch_size == 3
    assert rerank.top_n == 2


def test_ready_reranker_with_agreeing_settings_is_fine() -> None:
    core = local_core(batch_size=3)
    rerank = MemRerank(reranker=core, model=core.settings.model, batch_size=3)
    assert rerank.reranker is core


def test_ready_reranker_with_conflicting_settings_raises() -> None:
    core = local_core(batch_size=3)
    with pytest.raises(ValueError, match=r"model='other/model'.*not both"):
        MemRerank(reranker=core, model="other/model")
    with pytest.raises(ValueError, match="batch_size"):
        MemRerank(reranker=core, batch_size=8)


def test_conflicting_api_key_never_shown() -> None:
    core = MemReranker("memos", model="m", api_key="sk-the-core-key")
    with pytest.raises(ValueError) as info:
        MemRerank(reranker=core, api_key=SECRET)
    assert "api_key differs" in str(info.value)
    assert SECRET not in str(info.value)
    assert "sk-the-core-key" not in str(info.value)


def test_reranker_must_be_a_memreranker() -> None:
    with pytest.raises(TypeError, match="MemReranker"):
        MemRerank(reranker=object())  # type: ignore[arg-type]


def test_invalid_options() -> None:
    with pytest.raises(ValueError):
        MemRerank(top_n=-1)
    with pytest.raises(TypeError):
        MemRerank(top_n="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MemRerank(score_threshold=1.5)
    with pytest.raises(ValidationError):
        MemRerank(backend="nope")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        MemRerank(not_an_option=1)  # type: ignore[call-arg]


def test_core_settings_fixed_after_construction() -> None:
    core = local_core()
    rerank = MemRerank(reranker=core)
    with pytest.raises(AttributeError, match="fixed"):
        rerank.model = "other"
    assert rerank.model == core.settings.model
    rerank.top_n = 3  # the shell's own options stay mutable, and validated
    assert rerank.top_n == 3
    with pytest.raises(ValueError):
        rerank.top_n = -2


# Closing is seen from the server: a closed pool makes the next call open a new connection
# (a new client port), and a pool left open is reused (the same port).


def test_close_only_an_owned_core(
    rerank_server: RerankServer, hosted_core: HostedCore, nodes: list[NodeWithScore]
) -> None:
    core = hosted_core()
    theirs = MemRerank(reranker=core)
    theirs.postprocess_nodes(nodes, query_str=QUERY)
    theirs.close()  # not its core: left open
    theirs.postprocess_nodes(nodes, query_str=QUERY)
    first, second = client_ports(rerank_server.requests)
    assert first == second

    rerank_server.reset()
    owned = MemRerank(backend="vllm", base_url=rerank_server.url, **FAST)
    owned.postprocess_nodes(nodes, query_str=QUERY)
    owned.close()  # its own core: closed, and usable again (a new pool)
    out = owned.postprocess_nodes(nodes, query_str=QUERY)
    assert all("rerank_fallback" not in n.node.metadata for n in out)
    first, second = client_ports(rerank_server.requests)
    assert first != second
    owned.close()


def test_copies_share_the_core(rerank_server: RerankServer, nodes: list[NodeWithScore]) -> None:
    rerank = MemRerank(backend="vllm", base_url=rerank_server.url, top_n=2, **FAST)
    clone = copy.deepcopy(rerank)
    assert clone.reranker is rerank.reranker  # weights and pools are not duplicated
    assert rerank.owns_reranker and not clone.owns_reranker
    assert clone.to_dict() == rerank.to_dict()
    assert len(clone.postprocess_nodes(nodes, query_str=QUERY)) == 2
    clone.close()  # a copy never closes the core it shares
    rerank.postprocess_nodes(nodes, query_str=QUERY)
    rerank.close()
    rerank.postprocess_nodes(nodes, query_str=QUERY)
    first, second, third = client_ports(rerank_server.requests)
    assert first == second != third
    rerank.close()


def test_pickle_rebuilds_the_core() -> None:
    rerank = MemRerank(model="some/dir", top_n=2, keep_retrieval_score=True)
    again = pickle.loads(pickle.dumps(rerank))
    assert again.to_dict() == rerank.to_dict()
    assert again.reranker is not rerank.reranker
    assert again.reranker.settings.model == "some/dir"


def test_defaults() -> None:
    rerank = MemRerank()
    assert rerank.top_n is None
    assert rerank.score_threshold is None
    assert rerank.keep_retrieval_score is False
    assert rerank.backend == "local"


def test_from_dict_round_trip() -> None:
    rerank = MemRerank(model="some/dir", top_n=4, score_threshold=0.25, keep_retrieval_score=True)
    again = MemRerank.from_dict(rerank.to_dict())
    assert again.to_dict() == rerank.to_dict()
    assert again.reranker.settings.model == "some/dir"


# --- secrets ---------------------------------------------------------------------------------


def test_api_key_never_serialised_or_shown() -> None:
    rerank = MemRerank(backend="memos", model="some/dir", api_key=SECRET)
    assert rerank.api_key is not None and rerank.api_key.get_secret_value() == SECRET
    for text in (
        repr(rerank),
        str(rerank),
        json.dumps(rerank.to_dict()),
        rerank.to_json(),
        rerank.model_dump_json(),
        repr(rerank.reranker),
    ):
        assert SECRET not in text
    assert "api_key" not in rerank.to_dict()


# --- reranking -------------------------------------------------------------------------------


def test_reranks_and_maps_by_index(
    rerank_server: RerankServer, hosted_core: HostedCore, nodes: list[NodeWithScore]
) -> None:
    rerank = MemRerank(reranker=hosted_core())
    out = rerank.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))

    texts = texts_of(nodes)
    (request,) = rerank_server.requests
    assert request.query == QUERY
    assert request.documents == texts
    assert "top_n" not in request.body
    assert len(out) == len(nodes)  # top_n=None keeps every node
    by_id = {n.node.node_id: n for n in nodes}
    scores = [n.score for n in out]
    assert scores == sorted(scores, reverse=True)
    assert [n.node.node_id for n in out] != [n.node.node_id for n in nodes]
    for item in out:
        original = by_id[item.node.node_id]
        assert item.node.get_content() == original.node.get_content()
        assert item.score == pytest.approx(deterministic_score(QUERY, texts[nodes.index(original)]))
        assert item is not original and item.node is not original.node


def test_text_is_the_embed_view(
    rerank_server: RerankServer, hosted_core: HostedCore, nodes: list[NodeWithScore]
) -> None:
    MemRerank(reranker=hosted_core()).postprocess_nodes(nodes[:1], query_str=QUERY)
    (sent,) = rerank_server.last.documents
    assert "source: chat-0" in sent  # metadata included, as for the embedding
    assert "not for the reranker" not in sent  # excluded_embed_metadata_keys respected
    assert nodes[0].node.get_content() in sent


def test_top_n_cuts(
    rerank_server: RerankServer, hosted_core: HostedCore, nodes: list[NodeWithScore]
) -> None:
    core = hosted_core()
    full = MemRerank(reranker=core).postprocess_nodes(nodes, query_str=QUERY)
    top = MemRerank(reranker=core, top_n=3).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in top] == [n.node.node_id for n in full[:3]]
    more = MemRerank(reranker=core, top_n=50).postprocess_nodes(nodes, query_str=QUERY)
    assert len(more) == len(nodes)
    assert MemRerank(reranker=core, top_n=0).postprocess_nodes(nodes, query_str=QUERY) == []
    # top_n goes to the service only when it cuts; top_n=0 needs no request at all.
    assert [r.body.get("top_n") for r in rerank_server.requests] == [None, 3, None]


def test_score_threshold(hosted_core: HostedCore, nodes: list[NodeWithScore]) -> None:
    core = hosted_core()
    full = MemRerank(reranker=core).postprocess_nodes(nodes, query_str=QUERY)
    cut = full[2].score
    kept = MemRerank(reranker=core, score_threshold=cut).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in kept] == [n.node.node_id for n in full if n.score >= cut]
    assert all(n.score >= cut for n in kept)


def test_keep_retrieval_score(hosted_core: HostedCore, nodes: list[NodeWithScore]) -> None:
    core = hosted_core()
    before = snapshot(nodes)
    out = MemRerank(reranker=core, keep_retrieval_score=True).postprocess_nodes(
        nodes, query_str=QUERY
    )
    retrieval = {n.node.node_id: n.score for n in before}
    for item in out:
        assert item.node.metadata["retrieval_score"] == retrieval[item.node.node_id]
        assert item.node.metadata["source"]  # the rest of the metadata is kept
    assert_untouched(nodes, before)

    plain = MemRerank(reranker=core).postprocess_nodes(nodes, query_str=QUERY)
    assert all("retrieval_score" not in n.node.metadata for n in plain)


def test_caller_nodes_never_mutated(hosted_core: HostedCore, nodes: list[NodeWithScore]) -> None:
    core = hosted_core()
    before = snapshot(nodes)
    ids = [id(n.node.metadata) for n in nodes]
    out = MemRerank(reranker=core, keep_retrieval_score=True, top_n=4).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert_untouched(nodes, before)
    assert [id(n.node.metadata) for n in nodes] == ids
    out[0].node.metadata["edited"] = True  # editing a result leaves the input alone
    assert "edited" not in {k for n in nodes for k in n.node.metadata}
    original = {n.node.node_id: n.node for n in nodes}
    for item in out:  # same identity and relationships, new objects
        assert item.node.node_id in original
        assert item.node.relationships == original[item.node.node_id].relationships
        assert item.node.metadata is not original[item.node.node_id].metadata


def test_query_bundle_required(
    rerank_server: RerankServer, hosted_core: HostedCore, nodes: list[NodeWithScore]
) -> None:
    with pytest.raises(ValueError, match="query"):
        MemRerank(reranker=hosted_core()).postprocess_nodes(nodes)
    assert rerank_server.requests == []


async def test_query_bundle_required_async(
    rerank_server: RerankServer, hosted_core: HostedCore, nodes: list[NodeWithScore]
) -> None:
    with pytest.raises(ValueError, match="query"):
        await MemRerank(reranker=hosted_core()).apostprocess_nodes(nodes)
    assert rerank_server.requests == []


def test_empty_nodes_never_call_the_backend(
    rerank_server: RerankServer, hosted_core: HostedCore, events
) -> None:
    core = hosted_core()
    debug = LlamaDebugHandler()
    rerank = MemRerank(reranker=core, callback_manager=CallbackManager([debug]))
    assert rerank.postprocess_nodes([], query_str=QUERY) == []
    assert rerank_server.requests == []
    starts = [e for e in events.of_type(ReRankStartEvent) if e.model_name == core.name]
    ends = events.of_type(ReRankEndEvent)
    assert len(starts) == 1 and starts[0].nodes == [] and starts[0].top_n == 0
    assert ends and ends[-1].nodes == []
    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 1
    assert pairs[0][1].payload[EventPayload.NODES] == []


async def test_empty_nodes_async(rerank_server: RerankServer, hosted_core: HostedCore) -> None:
    assert await MemRerank(reranker=hosted_core()).apostprocess_nodes([], query_str=QUERY) == []
    assert rerank_server.requests == []


# --- fallback and errors ---------------------------------------------------------------------


def test_fallback_keeps_order(
    failing: RerankServer,
    hosted_core: HostedCore,
    nodes: list[NodeWithScore],
    events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = hosted_core()
    debug = LlamaDebugHandler()
    rerank = MemRerank(
        reranker=core,
        top_n=3,
        score_threshold=0.9,  # not applied: fallback scores are unknown, not low
        keep_retrieval_score=True,
        callback_manager=CallbackManager([debug]),
    )
    before = snapshot(nodes)
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == [n.node.node_id for n in nodes[:3]]
    assert all(n.score == 0.0 for n in out)
    assert all(n.node.metadata["rerank_fallback"] is True for n in out)
    assert [n.node.metadata["retrieval_score"] for n in out] == [n.score for n in before[:3]]
    assert_untouched(nodes, before)
    assert sum("falling back" in r.getMessage() for r in caplog.records) == 1
    assert len(failing.requests) == 1 + FAST["max_retries"]  # a 503 is retried, then given up

    starts = [e for e in events.of_type(ReRankStartEvent) if e.model_name == core.name]
    assert len(starts) == 1
    assert [n.node.node_id for n in events.of_type(ReRankEndEvent)[-1].nodes] == [
        n.node.node_id for n in out
    ]
    ((_, end),) = debug.get_event_pairs(CBEventType.RERANKING)
    assert end.payload[EventPayload.NODES] == out


def test_fallback_when_the_model_is_missing(tmp_path: Path, nodes: list[NodeWithScore]) -> None:
    rerank = MemRerank(model=str(tmp_path / "no-such-model"), top_n=2)
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == ["memory-0", "memory-1"]
    assert [n.score for n in out] == [0.0, 0.0]
    assert all(n.node.metadata["rerank_fallback"] for n in out)


async def test_fallback_async(
    failing: RerankServer, hosted_core: HostedCore, nodes: list[NodeWithScore]
) -> None:
    out = await MemRerank(reranker=hosted_core()).apostprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == [n.node.node_id for n in nodes]
    assert all(n.score == 0.0 and n.node.metadata["rerank_fallback"] for n in out)
    assert set(user_agents(failing.requests)) == {"httpx"}


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_malformed_reply_falls_back_or_raises(
    rerank_server: RerankServer,
    hosted_core: HostedCore,
    nodes: list[NodeWithScore],
    use_async: bool,
) -> None:
    rerank_server.default = malformed_json()
    fallback = MemRerank(reranker=hosted_core(), top_n=2)
    strict = MemRerank(reranker=hosted_core(on_error="raise"), top_n=2)
    if use_async:
        out = await fallback.apostprocess_nodes(nodes, query_str=QUERY)
    else:
        out = fallback.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == ["memory-0", "memory-1"]
    assert all(n.score == 0.0 and n.node.metadata["rerank_fallback"] for n in out)
    with pytest.raises(MemRerankerError, match="not valid JSON"):
        if use_async:
            await strict.apostprocess_nodes(nodes, query_str=QUERY)
        else:
            strict.postprocess_nodes(nodes, query_str=QUERY)


def test_no_fallback_flag_on_success(hosted_core: HostedCore, nodes: list[NodeWithScore]) -> None:
    out = MemRerank(reranker=hosted_core()).postprocess_nodes(nodes, query_str=QUERY)
    assert all("rerank_fallback" not in n.node.metadata for n in out)


@pytest.mark.parametrize("use_async", [False, True])
async def test_on_error_raise_propagates(
    failing: RerankServer, hosted_core: HostedCore, nodes: list[NodeWithScore], use_async: bool
) -> None:
    rerank = MemRerank(reranker=hosted_core(on_error="raise"))
    before = snapshot(nodes)
    with pytest.raises(MemRerankerError, match=FAILURE):
        if use_async:
            await rerank.apostprocess_nodes(nodes, query_str=QUERY)
        else:
            rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert_untouched(nodes, before)


def test_caller_mistakes_raise(
    rerank_server: RerankServer, hosted_core: HostedCore, nodes: list[NodeWithScore]
) -> None:
    rerank = MemRerank(reranker=hosted_core())
    with pytest.raises(ValueError, match="query"):
        rerank.postprocess_nodes(nodes, query_str="   ")
    with pytest.raises(TypeError, match=r"nodes\[1\] must be a NodeWithScore"):
        rerank.postprocess_nodes([nodes[0], "text"], query_str=QUERY)  # type: ignore[list-item]
    assert rerank_server.requests == []


# --- async -----------------------------------------------------------------------------------
# The core's sync transport is requests, its async one httpx: the User-Agent the server sees
# tells which path a call took (the sync path run in a thread would send requests').


async def test_async_is_native(
    rerank_server: RerankServer, hosted_core: HostedCore, nodes: list[NodeWithScore]
) -> None:
    rerank = MemRerank(reranker=hosted_core(), top_n=3)
    out = await rerank.apostprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    assert len(out) == 3
    assert user_agents(rerank_server.requests) == ["httpx"]
    rerank.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    assert user_agents(rerank_server.requests) == ["httpx", "requests"]


async def test_async_equals_sync(hosted_core: HostedCore, nodes: list[NodeWithScore]) -> None:
    rerank = MemRerank(reranker=hosted_core(), top_n=5, keep_retrieval_score=True)
    sync = rerank.postprocess_nodes(nodes, query_str=QUERY)
    asynchronous = await rerank.apostprocess_nodes(nodes, query_str=QUERY)
    assert asynchronous == sync


async def test_tiny_model_sync_and_async_agree(
    tiny_model: Path, nodes: list[NodeWithScore]
) -> None:
    rerank = MemRerank(model=str(tiny_model), top_n=4)
    sync = rerank.postprocess_nodes(nodes, query_str=QUERY)
    asynchronous = await rerank.apostprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in asynchronous] == [n.node.node_id for n in sync]
    assert [n.score for n in asynchronous] == pytest.approx([n.score for n in sync], abs=1e-5)
    core = MemReranker(model=str(tiny_model))
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    want = core.rerank(QUERY, texts, top_n=4)
    assert [n.node.node_id for n in sync] == [nodes[r.index].node.node_id for r in want]
    assert [n.score for n in sync] == pytest.approx([r.score for r in want], abs=1e-5)
    assert all(0.0 <= n.score <= 1.0 for n in sync)


# --- events ----------------------------------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True])
async def test_events(
    hosted_core: HostedCore, nodes: list[NodeWithScore], events, use_async: bool
) -> None:
    core = hosted_core()
    debug = LlamaDebugHandler()
    rerank = MemRerank(reranker=core, top_n=3, callback_manager=CallbackManager([debug]))
    bundle = QueryBundle(QUERY)
    if use_async:
        out = await rerank.apostprocess_nodes(nodes, query_bundle=bundle)
    else:
        out = rerank.postprocess_nodes(nodes, query_bundle=bundle)

    (start,) = [e for e in events.of_type(ReRankStartEvent) if e.model_name == core.name]
    assert start.query == bundle
    assert start.nodes == nodes
    assert start.top_n == 3
    assert start.model_name == CORE_NAME
    assert events.of_type(ReRankEndEvent)[-1].nodes == out

    ((cb_start, cb_end),) = debug.get_event_pairs(CBEventType.RERANKING)
    assert cb_start.payload[EventPayload.NODES] == nodes
    assert cb_start.payload[EventPayload.MODEL_NAME] == CORE_NAME
    assert cb_start.payload[EventPayload.QUERY_STR] == QUERY
    assert cb_start.payload[EventPayload.TOP_K] == 3
    assert cb_end.payload[EventPayload.NODES] == out


def test_event_top_n_when_keeping_all(
    hosted_core: HostedCore, nodes: list[NodeWithScore], events
) -> None:
    core = hosted_core()
    MemRerank(reranker=core).postprocess_nodes(nodes, query_str=QUERY)
    (start,) = [e for e in events.of_type(ReRankStartEvent) if e.model_name == core.name]
    assert start.top_n == len(nodes)
