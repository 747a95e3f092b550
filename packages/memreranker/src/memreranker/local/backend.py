"""The local backend: lazy, thread-safe loading and scoring of local weights."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memreranker.errors import InferenceError, InputTooLongError, MemRerankerError, ModelLoadError
from memreranker.progress import Advance
from memreranker.ranking import Scored
from memreranker.settings import RerankerSettings

if TYPE_CHECKING:
    from memreranker.local.engines import ScoringEngine
    from memreranker.local.loading import LoadedModel

logger = logging.getLogger("memreranker")


class LocalBackend:
    """Scores with local weights.

    The model loads on the first call (or on :meth:`load`), once; a failed load is retried on
    the next call. Calls from several threads are serialised around the forward pass: one
    forward already uses every core (or the whole GPU), and tokenizers are not thread-safe.
    """

    def __init__(self, settings: RerankerSettings) -> None:
        model = settings.resolved_model()
        assert model is not None
        self.model_name = model
        self._settings = settings
        self._engine: ScoringEngine | None = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"local:{self.model_name}"

    def load(self) -> ScoringEngine:
        engine = self._engine
        if engine is not None:
            return engine
        with self._load_lock:
            if self._engine is None:
                s = self._settings
                try:
                    # torch is imported here, on first use, not when the backend is built.
                    from memreranker.local.loading import load_model

                    loaded = load_model(self.model_name, device=s.device, dtype=s.dtype)
                    self._engine = _make_engine(loaded, s)
                except MemRerankerError:
                    raise
                except ImportError as exc:
                    raise ModelLoadError(
                        f"the local backend needs torch and transformers ({exc}): "
                        'pip install "memreranker[local]"'
                    ) from exc
                except Exception as exc:
                    raise ModelLoadError(f"cannot load {self.model_name!r}: {exc}") from exc
            return self._engine

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        engine = self.load()
        with self._run_lock:
            try:
                scores = engine.score(query, documents, instruction, progress=progress)
            except InputTooLongError:  # a caller mistake (truncate=False), not an outage
                raise
            except Exception as exc:
                raise InferenceError(f"{type(exc).__name__}: {exc}") from exc
        return list(enumerate(scores))

    async def ascore(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        return await asyncio.to_thread(
            self.score, query, documents, instruction=instruction, top_n=top_n, progress=progress
        )

    def close(self) -> None:
        with self._load_lock:
            self._engine = None


def _make_engine(loaded: LoadedModel, settings: RerankerSettings) -> ScoringEngine:
    """The engine named by ``settings.engine`` ("prefix" needs plain causal attention)."""
    from memreranker.local.engines import PaddedBatchEngine
    from memreranker.local.prefix_engine import (
        PrefixCacheEngine,
        PrefixEngineMismatch,
        supports_prefix_cache,
    )

    if settings.engine == "prefix":
        if not supports_prefix_cache(loaded):
            logger.warning(
                "%s has sliding-window attention layers: using the batched engine", loaded.name
            )
        else:
            engine = PrefixCacheEngine(loaded, **_engine_options(settings))
            try:
                engine.self_check()
            except PrefixEngineMismatch as exc:
                logger.warning("%s; using the batched engine", exc)
            except Exception as exc:
                # The model cannot compute at all: any engine fails, and the failure surfaces
                # (as one fallback warning, or an InferenceError) when scoring.
                logger.debug("%s: prefix engine self-check could not run: %s", loaded.name, exc)
                return engine
            else:
                return engine
    return PaddedBatchEngine(loaded, **_engine_options(settings))


def _engine_options(settings: RerankerSettings) -> dict[str, Any]:
    return {
        "batch_size": settings.batch_size,
        "max_length": settings.max_length,
        "max_query_tokens": settings.max_query_tokens,
        "truncate": settings.truncate,
    }
