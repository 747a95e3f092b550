"""Backend factory: one place maps ``settings.backend`` to an implementation.

A ``Backend`` instance is used as given; a name is looked up in
:data:`memreranker.backend_table.BUILTIN_BACKENDS`, whose factory is imported here lazily so
that choosing a hosted API never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from memreranker.backends.base import Backend

if TYPE_CHECKING:
    from memreranker.settings import RerankerSettings

__all__ = ["Backend", "create_backend"]


def create_backend(settings: RerankerSettings) -> Backend:
    backend = _create(settings)
    if settings.score_cache_size:
        from memreranker.score_cache import CachedBackend, ScoreCache

        return CachedBackend(backend, ScoreCache(settings.score_cache_size))
    return backend


def _create(settings: RerankerSettings) -> Backend:
    if isinstance(settings.backend, Backend):
        return settings.backend
    from memreranker.backend_table import backend_spec

    module, _, attribute = backend_spec(settings.backend).factory.partition(":")
    factory = getattr(importlib.import_module(module), attribute)
    return factory(settings)
