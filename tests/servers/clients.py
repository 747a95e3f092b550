"""Small helpers for tests that drive a client against :class:`RerankServer`."""

from __future__ import annotations

import asyncio
from typing import Any

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
