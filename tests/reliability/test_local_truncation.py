"""Local truncation never hides the documents, and is never silent.

The model card cuts the whole body from the right: past about 44k characters of query every
document is cut away, all score the same, and the "ranking" is the input order. Here the
query gets a budget (``max_query_tokens``, at most half of what ``max_length`` leaves), an
over-long query or document is cut with one warning per call (or refused with
``truncate=False``), and inputs within the limits keep the card's exact token ids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_kit import MODES, SURFACES, Surface, is_probability, memreranker_warnings

from memreranker import InputTooLongError, MemReranker
from memreranker.local.engines import PaddedBatchEngine
from memreranker.local.truncation import query_budget
from memreranker.prompt import format_body

pytestmark = pytest.mark.timeout(120)

QUERY = "What does the user drink in the morning?"
DOCS = [
    "The user drinks green tea every morning.",
    "The user's sister Anna lives in Berlin.",
    "Coffee after lunch, never tea.",
    "Flight to Berlin booked for 2026-05-14.",
]
HUGE_QUERY = ("What does the user drink in the morning, and what else do they like? " * 3000)[
    :200_000
]


def engine_of(reranker: MemReranker) -> PaddedBatchEngine:
    engine = reranker.backend.load()  # type: ignore[attr-defined]
    return engine._recipe if hasattr(engine, "_recipe") else engine  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def untruncating(tiny_model: Path) -> Iterator[tuple[MemReranker, MemReranker]]:
    """``truncate=False``: a lenient and a strict core sharing one loaded backend."""
    lenient = MemReranker(model=str(tiny_model), max_length=256, truncate=False)
    strict = MemReranker(backend=lenient.backend, on_error="raise")  # the same loaded backend
    lenient.load()
    yield lenient, strict
    lenient.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_long_query_keeps_the_documents(
    tiny_reranker: MemReranker, caplog: pytest.LogCaptureFixture, surface: str, mode: str
) -> None:
    assert len(HUGE_QUERY) == 200_000
    caplog.set_level(logging.WARNING, logger="memreranker")
    caplog.clear()
    outs = Surface(surface, reranker=tiny_reranker).run(mode, HUGE_QUERY, DOCS)
    assert sorted(o.index for o in outs) == list(range(len(DOCS)))
    assert not any(o.fallback for o in outs)
    assert all(is_probability(o.score) for o in outs)
    # Different documents, different scores: each one was really in its prompt.
    assert len({o.score for o in outs}) == len(DOCS), outs
    warnings = memreranker_warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    assert "query" in warnings[0].getMessage() and "truncated" in warnings[0].getMessage()


def test_query_is_cut_to_its_budget(tiny_reranker: MemReranker) -> None:
    engine = engine_of(tiny_reranker)
    tok = engine.loaded.tokenizer
    fixed = len(tok(format_body(None, "", ""))["input_ids"])
    budget = query_budget(engine.body_budget - fixed, engine.max_query_tokens)
    assert 0 < budget < engine.max_query_tokens  # max_length=256: half the room binds
    prompts = engine.encode(HUGE_QUERY, DOCS, None)
    for prompt, doc in zip(prompts, DOCS, strict=True):
        assert len(prompt) <= engine.max_length
        # The whole document is there, after the cut query.
        assert tok.decode(prompt).endswith(
            f"<Document>: {doc}" + tok.decode(engine.loaded.suffix_ids)
        )
        body = tok.decode(prompt[len(engine.loaded.prefix_ids) :])
        query = body.split("<Query>: ", 1)[1].split("\n<Document>", 1)[0]
        assert HUGE_QUERY.startswith(query)
        assert budget - 2 <= len(tok(query, add_special_tokens=False)["input_ids"]) <= budget


def test_max_query_tokens_is_the_query_budget(
    tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rr = MemReranker(model=str(tiny_model), max_query_tokens=20, on_error="raise")
    caplog.set_level(logging.WARNING, logger="memreranker")
    rr.load()
    caplog.clear()
    results = rr.rerank(QUERY * 5, DOCS)  # about 45 tokens, max_length 8192: the setting binds
    assert not any(r.is_fallback for r in results)
    [warning] = memreranker_warnings(caplog)
    assert "budget of 20" in warning.getMessage() and "max_query_tokens=20" in warning.getMessage()
    caplog.clear()
    rr.rerank(QUERY, DOCS)  # 9 tokens: within the limit, nothing to say
    assert memreranker_warnings(caplog) == []
    rr.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_long_documents_one_warning_per_call(
    tiny_reranker: MemReranker, caplog: pytest.LogCaptureFixture, surface: str, mode: str
) -> None:
    docs = [DOCS[0], "tea and memories " * 15_000, DOCS[1], "coffee " * 400, DOCS[2]]
    caplog.set_level(logging.WARNING, logger="memreranker")
    caplog.clear()
    outs = Surface(surface, reranker=tiny_reranker).run(mode, QUERY, docs)
    assert sorted(o.index for o in outs) == list(range(len(docs)))
    assert all(is_probability(o.score) and not o.fallback for o in outs)
    warnings = memreranker_warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    message = warnings[0].getMessage()
    assert "2 of 5 document(s)" in message and "truncated" in message and "[1, 3]" in message


def test_inputs_within_the_limits_keep_the_card_tokens(
    tiny_reranker: MemReranker, caplog: pytest.LogCaptureFixture
) -> None:
    # Up to the budget exactly: the token ids are those of the card's own call, and no warning.
    engine = engine_of(tiny_reranker)
    tok = engine.loaded.tokenizer
    fixed = len(tok(format_body(None, "", ""))["input_ids"])
    budget = query_budget(engine.body_budget - fixed, engine.max_query_tokens)
    words = ("tea " * budget).split()
    query = " ".join(words)
    while len(tok(query, add_special_tokens=False)["input_ids"]) > budget:
        words.pop()
        query = " ".join(words)
    assert len(tok(query, add_special_tokens=False)["input_ids"]) == budget
    docs = [*DOCS, "memory " * 200]  # the last one is cut, as the card cuts it
    card = tok(
        [format_body(None, query, d) for d in docs],
        truncation="longest_first",
        max_length=engine.body_budget,
    )["input_ids"]
    caplog.set_level(logging.WARNING, logger="memreranker")
    caplog.clear()
    prompts = engine.encode(query, docs, None)
    loaded = engine.loaded
    assert prompts == [loaded.prefix_ids + ids + loaded.suffix_ids for ids in card]
    [warning] = memreranker_warnings(caplog)  # the document, not the query
    assert "1 of 5 document(s)" in warning.getMessage()


@pytest.mark.parametrize("on_error", ["fallback", "raise"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_without_truncation_long_input_is_a_caller_error(
    untruncating: tuple[MemReranker, MemReranker], surface: str, mode: str, on_error: str
) -> None:
    core = untruncating[0] if on_error == "fallback" else untruncating[1]
    s = Surface(surface, reranker=core)
    with pytest.raises(InputTooLongError, match="max_query_tokens"):
        s.run(mode, HUGE_QUERY, DOCS)
    with pytest.raises(InputTooLongError, match="max_length"):
        s.run(mode, QUERY, [DOCS[0], "tea and memories " * 100])
    assert sorted(o.index for o in s.run(mode, QUERY, DOCS)) == [0, 1, 2, 3]


def test_query_budget() -> None:
    assert query_budget(room=8000, max_query_tokens=2000) == 2000
    assert query_budget(room=200, max_query_tokens=2000) == 100  # half the room, at most
    assert query_budget(room=201, max_query_tokens=2000) == 100
    assert query_budget(room=0, max_query_tokens=2000) == 0
    assert query_budget(room=-5, max_query_tokens=2000) == 0
