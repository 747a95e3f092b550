"""``prompt_format``: what vllm and tei servers are sent, and why a served MemReranker then
scores like the model card.

A server in Qwen3-Reranker mode scores the query string followed by each document string, so
with ``prompt_format="qwen3"`` (vllm's default) the concatenation the server sees must be the
local backend's prompt, ``PREFIX + format_body(instruction, query, document) + SUFFIX``, for
every pair, with the configured or per-call instruction. ``"plain"`` (tei's default) sends the
texts untouched. Limits and batches apply to the texts as sent, template included.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import RecordedRequest, RerankServer, Score, deterministic_score
from servers.clients import FAST, MODES, rerank

from memreranker import InputTooLongError, MemReranker, RerankerSettings
from memreranker.http.batching import estimate_tokens
from memreranker.prompt import DEFAULT_INSTRUCTION, PREFIX, SUFFIX, format_body

QUERY = "What does the user drink in the morning?"
DOCS = [
    "The user drinks green tea every morning.",
    "用户每天早上喝绿茶 🍵",
    "Coffee after lunch,\nnever tea.",
    "",  # an empty memory is still a document
    "A memory quoting the template: <Document>: and <Query>: inside.",
]
INSTRUCTION = "Given an agent's question, find the memory that answers it"


def served(server: RerankServer, dialect: str, **options: Any) -> MemReranker:
    return MemReranker(
        dialect, base_url=server.base_url(dialect), on_error="raise", **{**FAST, **options}
    )


def card_prompt(instruction: str | None, query: str, document: str) -> str:
    """The local backend's prompt text for one pair (what its engines tokenize)."""
    return PREFIX + format_body(instruction, query, document) + SUFFIX


def assert_templated(request: RecordedRequest, instruction: str | None, docs: list[str]) -> None:
    """Every (query string + document string) sent is the local prompt of its pair."""
    sent_query, sent_docs = request.sent_query, request.sent_documents
    assert len(sent_docs) == len(docs)
    for sent_doc, doc in zip(sent_docs, docs, strict=True):
        assert sent_query + sent_doc == card_prompt(instruction, QUERY, doc)


# --- What is sent -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("dialect", "options"), [("vllm", {}), ("tei", {"prompt_format": "qwen3"})]
)
def test_sent_texts_concatenate_to_the_local_prompt(
    rerank_server: RerankServer,
    caplog: pytest.LogCaptureFixture,
    dialect: str,
    options: dict[str, Any],
    mode: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="memreranker")
    with served(rerank_server, dialect, **options) as rr:
        default = rerank(rr, mode, QUERY, DOCS)
        assert_templated(rerank_server.last, None, DOCS)  # the model card's instruction
        assert rerank_server.last.pair.instruction == DEFAULT_INSTRUCTION
        rerank(rr, mode, QUERY, DOCS, instruction=INSTRUCTION)  # per call
        assert_templated(rerank_server.last, INSTRUCTION, DOCS)
        assert f"<Instruct>: {INSTRUCTION}\n" in rerank_server.last.sent_query
    with served(rerank_server, dialect, instruction=INSTRUCTION, **options) as rr:
        rerank(rr, mode, QUERY, DOCS)  # configured
        assert_templated(rerank_server.last, INSTRUCTION, DOCS)
        rerank(rr, mode, QUERY, DOCS, instruction="Per call wins")
        assert_templated(rerank_server.last, "Per call wins", DOCS)
    assert "instruction is ignored" not in caplog.text  # the template uses it
    # The server scored the pairs inside the template: results map back to the caller's texts.
    assert [(r.index, r.document) for r in default] == sorted(
        ((i, d) for i, d in enumerate(DOCS)), key=lambda p: -deterministic_score(QUERY, p[1])
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("dialect", "options"), [("vllm", {"prompt_format": "plain"}), ("tei", {})]
)
def test_plain_sends_the_texts_untouched(
    rerank_server: RerankServer,
    caplog: pytest.LogCaptureFixture,
    dialect: str,
    options: dict[str, Any],
    mode: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="memreranker")
    with served(rerank_server, dialect, **options) as rr:
        rerank(rr, mode, QUERY, DOCS, instruction=INSTRUCTION)
        rerank(rr, mode, QUERY, DOCS, instruction=INSTRUCTION)
    for request in rerank_server.requests:
        assert (request.sent_query, request.sent_documents) == (QUERY, DOCS)
        assert INSTRUCTION not in request.raw.decode()
    # Said once per instance, not per call: the instruction cannot reach a plain server.
    assert caplog.text.count('prompt_format="plain" sends the texts as given') == 1


def test_memos_warns_that_the_instruction_is_ignored(
    rerank_server: RerankServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="memreranker")
    rr = served(rerank_server, "memos", api_key="sk-template-000000")
    rr.rerank(QUERY, DOCS, instruction=INSTRUCTION)
    assert caplog.text.count("the MemOS API takes no instruction") == 1
    assert rerank_server.last.sent_query == QUERY  # the hosted model formats its own prompt


@pytest.mark.parametrize("backend", ["local", "memos"])
def test_prompt_format_is_refused_where_it_has_no_meaning(backend: str) -> None:
    with pytest.raises(ValueError, match="prompt_format"):
        MemReranker(backend, prompt_format="qwen3", api_key="k", base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="prompt_format"):
        MemReranker("vllm", base_url="http://127.0.0.1:9", prompt_format="chatml")


def test_defaults_per_backend() -> None:
    vllm = RerankerSettings(backend="vllm")
    tei = RerankerSettings(backend="tei")
    assert (vllm.resolved_prompt_format(), tei.resolved_prompt_format()) == ("qwen3", "plain")
    assert RerankerSettings(backend="local").resolved_prompt_format() is None
    assert tei.resolved_max_documents_per_request() == 32  # TEI's --max-client-batch-size
    assert vllm.resolved_max_documents_per_request() == 100
    assert (
        RerankerSettings(
            backend="tei", max_documents_per_request=7
        ).resolved_max_documents_per_request()
        == 7
    )


# --- Limits and batches count the template ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_long_query_is_cut_inside_the_template(
    rerank_server: RerankServer, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    caplog.set_level(logging.WARNING, logger="memreranker")
    query = "tea " * 75  # 300 characters: about 100 tokens, the template about 96 more
    with served(rerank_server, "vllm", max_query_tokens=150) as rr:
        rerank(rr, mode, query, ["tea"])
    request = rerank_server.last
    assert estimate_tokens(request.sent_query) <= 150  # the limit holds for what is sent
    assert query.startswith(request.query) and 0 < len(request.query) < len(query)
    assert request.sent_query + request.sent_documents[0] == card_prompt(None, request.query, "tea")
    assert "with the prompt template" in caplog.text and "truncated" in caplog.text
    # The same query alone fits in 150 tokens: only the template makes it too long.
    assert estimate_tokens(query) <= 150


@pytest.mark.parametrize("mode", MODES)
def test_long_document_is_cut_inside_the_template(rerank_server: RerankServer, mode: str) -> None:
    doc = "memory " * 30  # 210 characters: 70 tokens, the template about 22 more
    with served(rerank_server, "vllm", max_document_tokens=80) as rr:
        got = rerank(rr, mode, QUERY, [doc, "short"])
    sent = rerank_server.last.sent_documents
    assert all(estimate_tokens(d) <= 80 and d.endswith(SUFFIX) for d in sent)
    assert (
        doc.startswith(rerank_server.last.documents[0]) and sent[1] == "<Document>: short" + SUFFIX
    )
    assert {r.index: r.document for r in got}[0] == doc  # the caller's text, uncut


@pytest.mark.parametrize("mode", MODES)
def test_without_truncation_the_template_counts_towards_the_limit(
    rerank_server: RerankServer, mode: str
) -> None:
    query = "tea " * 75
    with served(rerank_server, "vllm", max_query_tokens=150, truncate=False) as rr:
        with pytest.raises(InputTooLongError, match="with the prompt template"):
            rerank(rr, mode, query, ["tea"])
    with served(
        rerank_server, "vllm", max_query_tokens=150, truncate=False, prompt_format="plain"
    ) as rr:
        rerank(rr, mode, query, ["tea"])  # plain: the same query fits
    assert len(rerank_server.requests) == 1


def test_limits_without_room_for_the_text_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="prompt_format='plain'"):
        MemReranker("vllm", base_url="http://127.0.0.1:9", max_query_tokens=50)
    with pytest.raises(ValueError, match="max_document_tokens"):
        MemReranker("vllm", base_url="http://127.0.0.1:9", max_document_tokens=10)
    MemReranker("vllm", base_url="http://127.0.0.1:9", max_query_tokens=50, prompt_format="plain")


@pytest.mark.parametrize("mode", MODES)
def test_batches_are_planned_on_the_templated_documents(
    rerank_server: RerankServer, mode: str
) -> None:
    docs = [f"memory {i}: the user likes tea" for i in range(40)]  # about 10 tokens each
    budget = 600  # all 40 plain (about 400 tokens); templated (about 32 each) they are not
    with served(rerank_server, "vllm", max_tokens_per_request=budget, prompt_format="plain") as rr:
        rerank(rr, mode, QUERY, docs)
    assert len(rerank_server.requests) == 1
    rerank_server.requests.clear()
    with served(rerank_server, "vllm", max_tokens_per_request=budget) as rr:
        got = rerank(rr, mode, QUERY, docs)
    requests = rerank_server.requests
    assert len(requests) >= 2
    for request in requests:
        assert sum(estimate_tokens(d) for d in request.sent_documents) <= budget
    assert sorted(d for r in requests for d in r.documents) == sorted(docs)
    assert sorted(r.index for r in got) == list(range(40))


# --- A served model scores like local weights only with the template ------------------------------


@pytest.fixture(scope="module")
def served_qwen3(tiny_model: Path) -> Callable[[str, str], float]:
    """What vLLM computes for an original Qwen3-Reranker checkpoint served with
    ``is_original_qwen3_reranker``: the query string's tokens followed by the document
    string's, P(yes) = sigmoid(logit_yes - logit_no) at the last position. Written from the
    model card with plain transformers, not from the package."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    lock = threading.Lock()  # the server answers from several threads

    def score(query: str, document: str) -> float:
        ids = tokenizer.encode(query, add_special_tokens=False) + tokenizer.encode(
            document, add_special_tokens=False
        )
        with lock, torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        return torch.sigmoid(logits[yes] - logits[no]).item()

    return score


@pytest.fixture(scope="module")
def local_tiny(tiny_model: Path) -> Iterator[MemReranker]:
    rr = MemReranker(model=str(tiny_model), on_error="raise")
    yield rr
    rr.close()


def scores(results: list[Any]) -> list[float]:
    return [r.score for r in sorted(results, key=lambda r: r.index)]


@pytest.mark.parametrize("dialect", ["vllm", "tei"])
def test_served_model_scores_like_local_weights_with_the_template(
    rerank_server: RerankServer,
    served_qwen3: Callable[[str, str], float],
    local_tiny: MemReranker,
    dialect: str,
) -> None:
    rerank_server.default = Score(model=served_qwen3, shuffle=True)
    docs = DOCS[:3]
    with served(rerank_server, dialect, prompt_format="qwen3") as rr:
        for instruction in (None, INSTRUCTION):
            want = scores(local_tiny.rerank(QUERY, docs, instruction=instruction))
            for got in (
                rr.rerank(QUERY, docs, instruction=instruction),
                asyncio.run(rr.arerank(QUERY, docs, instruction=instruction)),
            ):
                assert scores(got) == pytest.approx(want, abs=1e-5)
    # The raw texts are a prompt the model was never trained on: other scores, no error.
    with served(rerank_server, dialect, prompt_format="plain") as rr:
        plain = scores(rr.rerank(QUERY, docs))
    local = scores(local_tiny.rerank(QUERY, docs))
    assert max(abs(a - b) for a, b in zip(plain, local, strict=True)) > 1e-3
