"""Backend factory: one place maps ``settings.backend`` to an implementation.

Implementations are imported here lazily so that choosing the hosted API never imports torch.
"""

from __future__ import annotations

from memreranker.backends.base import Backend
from memreranker.settings import RerankerSettings

__all__ = ["Backend", "create_backend"]


def create_backend(settings: RerankerSettings) -> Backend:
    backend = _create(settings)
    if settings.score_cache_size:
        from memreranker.score_cache import CachedBackend, ScoreCache

        return CachedBackend(backend, ScoreCache(settings.score_cache_size))
    return backend


def _create(settings: RerankerSettings) -> Backend:
    if settings.backend == "local":
        from memreranker.local.backend import LocalBackend

        return LocalBackend(settings)
    if settings.backend in ("memos", "vllm", "tei"):
        from memreranker.http.backend import HTTPBackend

        return HTTPBackend(settings)
    raise ValueError(f"backend {settings.backend!r} is not available yet")
