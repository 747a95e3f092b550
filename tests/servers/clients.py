"""Small helpers for tests that drive a client against :class:`RerankServer`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from servers.rerank_server import RecordedRequest, Score, untemplate

MODES = ("sync", "async")
"""Parametrise a test over both paths: ``@pytest.mark.parametrize("mode", MODES)``."""

FAST: dict[str, Any] = {
    "timeout": 2.0,
    "max_retries": 2,
    "retry_backoff": 0.001,
    "retry_backoff_max": 0.005,
}
"""Settings that keep retrying tests fast (tiny backoff, a short but safe timeout)."""


def rerank(reranker: Any, mode: str, query: str, documents: list[str], **kwargs: Any) -> Any:
    """``reranker.rerank(...)``, or ``asyncio.run(reranker.arerank(...))`` for ``"async"``
    (a fresh event loop per call: also exercises clients bound to a closed loop)."""
    if mode == "sync":
        return reranker.rerank(query, documents, **kwargs)
    if mode == "async":
        return asyncio.run(reranker.arerank(query, documents, **kwargs))
    raise ValueError(f"mode must be 'sync' or 'async', got {mode!r}")


def user_agents(requests: Sequence[RecordedRequest]) -> list[str]:
    """The HTTP client library of each request: ``"requests"`` (the core's sync transport)
    or ``"httpx"`` (its async one), from the ``User-Agent`` header."""
    return [r.headers["user-agent"].split("/", 1)[0].removeprefix("python-") for r in requests]


def client_ports(requests: Sequence[RecordedRequest]) -> list[int]:
    """The client port of each request: one port for several requests is one kept-alive
    connection of one connection pool."""
    ports = []
    for request in requests:
        assert request.client_address is not None, "the server did not record the client"
        ports.append(request.client_address[1])
    return ports


def scores_by_text(scores: Mapping[str, float], *, other: float = 0.01) -> Score:
    """A server behaviour: each document scores ``scores[its text]`` (``other`` for a text
    not listed), the results worst first (cut to the request's ``top_n``), so that a client
    trusting their order, or the input order, gets it wrong."""

    def mutate(body: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        docs = untemplate(request["query"], request["documents"]).documents
        worst_first = sorted(range(len(docs)), key=lambda i: (scores.get(docs[i], other), -i))
        top_n = request.get("top_n")
        if isinstance(top_n, int) and top_n > 0:
            worst_first = worst_first[-top_n:]
        body["results"] = [
            {"index": i, "relevance_score": scores.get(docs[i], other)} for i in worst_first
        ]
        return body

    return Score(mutate=mutate)
