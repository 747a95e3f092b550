"""Small helpers for tests that drive a client against :class:`RerankServer`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from servers.rerank_server import RecordedRequest

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
