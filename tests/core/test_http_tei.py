"""``backend="tei"`` end to end against the loopback TEI route: the request TEI expects, the
reply it gives (a bare list, any order), its batch cap, and its errors through the circuit
breaker. The fault and bad-input suites (tests/reliability) run for TEI as for MemOS and vLLM.
"""

from __future__ import annotations

from typing import Any

import pytest
from servers import RerankServer, Score, deterministic_score, tei_error
from servers.clients import FAST, MODES, rerank

from memreranker import (
    CircuitOpenError,
    MemReranker,
    RequestTooLargeError,
    ServedModelError,
)

QUERY = "What does the user drink in the morning?"
DOCS = [
    "The user drinks green tea every morning.",
    "用户每天早上喝绿茶 🍵",
    "Coffee after lunch,\nnever tea.",
    "",
    "The user's sister lives in Berlin.",
]


def served(server: RerankServer, **options: Any) -> MemReranker:
    return MemReranker("tei", base_url=server.tei_base_url, on_error="raise", **{**FAST, **options})


@pytest.mark.parametrize("mode", MODES)
def test_tei_request_shape(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.api_key = "tei-key-0123456789"
    rerank_server.default = Score(shuffle=True)  # TEI replies in any order: map by index
    with served(rerank_server, api_key="tei-key-0123456789", model="bge") as rr:
        got = rerank(rr, mode, QUERY, DOCS, top_n=2)
    request = rerank_server.last
    assert request.path == "/tei/rerank"
    assert request.headers["authorization"] == "Bearer tei-key-0123456789"
    assert request.body == {"query": QUERY, "texts": DOCS, "truncate": True, "raw_scores": False}
    want = sorted(enumerate(DOCS), key=lambda p: (-deterministic_score(QUERY, p[1]), p[0]))
    assert [(r.index, r.document) for r in got] == want[:2]
    with served(rerank_server, truncate=False, api_key="tei-key-0123456789") as rr:
        rerank(rr, mode, QUERY, DOCS)
    # truncate=False: the server refuses over-long input too, as our own limits then do.
    assert rerank_server.last.body["truncate"] is False


@pytest.mark.parametrize("mode", MODES)
def test_tei_batches_of_32_by_default(rerank_server: RerankServer, mode: str) -> None:
    docs = [f"memory {i} about tea" for i in range(70)]
    with served(rerank_server) as rr:
        got = rerank(rr, mode, QUERY, docs)
    assert sorted(len(r.sent_documents) for r in rerank_server.requests) == [6, 32, 32]
    assert sorted(r.index for r in got) == list(range(70))


def test_tei_needs_base_url() -> None:
    with pytest.raises(ValueError, match="backend='tei' needs base_url"):
        MemReranker("tei")


@pytest.mark.parametrize("mode", MODES)
def test_circuit_counts_model_failures_not_oversized_requests(
    rerank_server: RerankServer, mode: str
) -> None:
    # 413: the request was too large (a caller matter: lower the limits), never a sick server.
    rerank_server.default = tei_error(
        413, "batch size 40 > maximum allowed batch size 32", "validation"
    )
    with served(rerank_server, max_retries=0, circuit_failure_threshold=2) as rr:
        for _ in range(3):
            with pytest.raises(RequestTooLargeError):
                rerank(rr, mode, QUERY, DOCS)
        assert rr.circuit_state == "closed"
        # 424: the server's model fails; twice in a row opens the circuit, which then fails fast.
        rerank_server.default = tei_error(424, "Inference failed", "backend")
        for _ in range(2):
            with pytest.raises(ServedModelError):
                rerank(rr, mode, QUERY, DOCS)
        assert rr.circuit_state == "open"
        sent = len(rerank_server.requests)
        with pytest.raises(CircuitOpenError):
            rerank(rr, mode, QUERY, DOCS)
        assert len(rerank_server.requests) == sent
