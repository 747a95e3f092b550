"""An instruction is never cut: one that leaves no room for the text fails like any failure.

The instruction is the task the model judges; a prefix of it can ask something else, so
``truncate=True`` cuts queries and documents (with a warning) but never the instruction. A
per-call instruction that leaves no room within the limits raises
``InstructionTooLongError`` (a ``MemRerankerError`` and a ``ValueError``): with
``on_error="fallback"`` the call returns the input order with one warning, and a fallback
chain hands over to the next reranker. A configured one fails at construction.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from servers import RerankServer
from servers.clients import FAST, MODES, rerank

from memreranker import InstructionTooLongError, MemReranker, MemRerankerError
from memreranker.http.batching import estimate_tokens

QUERY = "What does the user drink in the morning?"
DOCS = ["The user drinks green tea every morning.", "Coffee after lunch.", ""]
LONG_INSTRUCTION = "Judge whether the memory answers the agent's question. " * 120  # 6,720 chars


def served(server: RerankServer, **options: Any) -> MemReranker:
    return MemReranker("vllm", base_url=server.base_url("vllm"), **{**FAST, **options})


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "memreranker" and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize("mode", MODES)
def test_long_instruction_falls_back_with_truncate_on(
    rerank_server: RerankServer, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    assert estimate_tokens(LONG_INSTRUCTION) > 2000  # the default max_query_tokens
    caplog.set_level(logging.WARNING, logger="memreranker")
    with served(rerank_server, truncate=True, on_error="fallback") as rr:
        results = rerank(rr, mode, QUERY, DOCS, instruction=LONG_INSTRUCTION)
    assert [r.index for r in results] == list(range(len(DOCS)))
    assert all(r.is_fallback and r.score == 0.0 for r in results)
    ours = warnings_of(caplog)
    assert len(ours) == 1 and "InstructionTooLongError" in ours[0]
    assert rerank_server.requests == []  # nothing sent with a cut instruction


@pytest.mark.parametrize("truncate", [True, False])
def test_long_instruction_raises_typed_with_on_error_raise(
    rerank_server: RerankServer, truncate: bool
) -> None:
    with served(rerank_server, truncate=truncate, on_error="raise") as rr:
        with pytest.raises(InstructionTooLongError, match="shorten the instruction") as caught:
            rr.rerank(QUERY, DOCS, instruction=LONG_INSTRUCTION)
    assert isinstance(caught.value, MemRerankerError) and isinstance(caught.value, ValueError)
    assert rerank_server.requests == []


def test_fallback_chain_hands_a_long_instruction_over(rerank_server: RerankServer) -> None:
    roomy = served(rerank_server, max_query_tokens=4000, on_error="raise")
    with served(rerank_server, on_error="raise", fallback=roomy) as rr:
        results = rr.rerank(QUERY, DOCS, instruction=LONG_INSTRUCTION)
    assert not any(r.is_fallback for r in results)
    assert sorted(r.index for r in results) == list(range(len(DOCS)))
    (request,) = rerank_server.requests
    assert f"<Instruct>: {LONG_INSTRUCTION}\n" in request.sent_query  # whole


def test_the_query_is_cut_not_the_instruction(
    rerank_server: RerankServer, caplog: pytest.LogCaptureFixture
) -> None:
    instruction = LONG_INSTRUCTION[:5000]  # fits, with a little room for the query
    query = "tea " * 300
    caplog.set_level(logging.WARNING, logger="memreranker")
    with served(rerank_server, on_error="raise") as rr:
        rr.rerank(query, DOCS, instruction=instruction)
    request = rerank_server.last
    assert f"<Instruct>: {instruction}\n" in request.sent_query  # whole
    assert query.startswith(request.query) and len(request.query) < len(query)
    assert estimate_tokens(request.sent_query) <= 2000
    assert any("truncated" in m for m in warnings_of(caplog))


def test_configured_long_instruction_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="shorten the instruction"):
        MemReranker("vllm", base_url="http://127.0.0.1:9", instruction=LONG_INSTRUCTION)


def test_local_long_instruction_falls_back(
    tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Locally the instruction that fills ``max_length`` would leave every prompt without
    its query and document (every score alike): refused, never cut."""
    options = {"model": str(tiny_model), "max_length": 256}
    with pytest.raises(InstructionTooLongError, match="max_length=256"):
        MemReranker(**options, on_error="raise").rerank(QUERY, DOCS, instruction=LONG_INSTRUCTION)
    caplog.set_level(logging.WARNING, logger="memreranker")
    reranker = MemReranker(**options)
    results = reranker.rerank(QUERY, DOCS, instruction=LONG_INSTRUCTION)
    assert [r.index for r in results] == list(range(len(DOCS)))
    assert all(r.is_fallback for r in results)
    ours = warnings_of(caplog)
    assert len(ours) == 1 and "InstructionTooLongError" in ours[0]
    # The same reranker scores a call whose instruction fits.
    assert not any(r.is_fallback for r in reranker.rerank(QUERY, DOCS, instruction="Judge it"))
