"""The local backend: lazy, thread-safe loading and scoring of local weights."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memreranker.backends.base import Backend
from memreranker.errors import (
    InferenceError,
    InputTooLongError,
    InstructionTooLongError,
    MemRerankerError,
    ModelLoadError,
    UnsupportedRuntimeError,
)
from memreranker.progress import Advance
from memreranker.ranking import Scored
from memreranker.settings import RerankerSettings

if TYPE_CHECKING:
    from memreranker.local.engines import ScoringEngine
    from memreranker.local.loading import LoadedModel

logger = logging.getLogger("memreranker")

YES_NO_BATCH_SIZE = 16
"""Default pairs per forward of the yes/no engines."""
CROSS_ENCODER_BATCH_SIZE = 32
"""Default pairs per forward through sentence-transformers: ``CrossEncoder.predict``'s own
default, which is also faster on CPU than 16 for small cross-encoders (benchmarks/local.py)."""


class LocalBackend(Backend):
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
    def name(self) -> str:  # type: ignore[override]
        return f"local:{self.model_name}"

    def load(self) -> ScoringEngine:  # type: ignore[override]
        """Load the weights now (once); returns the engine that scores them."""
        engine = self._engine
        if engine is not None:
            return engine
        with self._load_lock:
            if self._engine is None:
                try:
                    # torch is imported here, on first use, not when the backend is built.
                    self._engine = _load_engine(self.model_name, self._settings)
                except MemRerankerError:
                    raise
                except ImportError as exc:
                    raise ModelLoadError(
                        "the local backend needs torch, transformers and sentence-transformers "
                        f'({exc}): pip install "memreranker[local]"'
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
        # Identical documents were removed by MemReranker (dedup.py) before they got here.
        with self._run_lock:
            try:
                scores = engine.score(query, list(documents), instruction, progress=progress)
            except (InputTooLongError, InstructionTooLongError):  # the caller's text, typed
                raise
            except Exception as exc:
                raise InferenceError(f"{type(exc).__name__}: {exc}") from exc
        return list(enumerate(scores))

    def close(self) -> None:
        with self._load_lock:
            engine, self._engine = self._engine, None
        close = getattr(engine, "close", None)
        if close is not None:
            with self._run_lock:  # not while a call is scoring with it
                close()


def _load_engine(name: str, settings: RerankerSettings) -> ScoringEngine:
    """Inspect the checkpoint once, load it, and pick its engine.

    A yes/no reranker gets the exact engine ``settings.engine`` names, or the
    sentence-transformers path with ``engine="crossencoder"``. A cross-encoder always loads
    through sentence-transformers; a seq-cls conversion whose prompt is the model card's is
    then served by the exact engines too (unless ``engine="crossencoder"``).
    """
    from memreranker.local.checkpoint import inspect_checkpoint

    checkpoint = inspect_checkpoint(name)
    if settings.runtime != "torch" and checkpoint.kind == "yes_no":
        raise UnsupportedRuntimeError(
            f"runtime={settings.runtime!r} applies to cross-encoder checkpoints "
            f"(...ForSequenceClassification); {checkpoint.name!r} is a yes/no causal LM, whose "
            'engines run on torch: leave runtime="torch" (the default)'
        )
    if checkpoint.kind == "yes_no" and settings.engine != "crossencoder":
        from memreranker.local.loading import load_model

        loaded = load_model(checkpoint, device=settings.device, dtype=settings.dtype)
        return _make_engine(loaded, settings)

    from memreranker.local.crossencoder import CrossEncoderEngine, load_cross_encoder, yes_no_view

    onnx = settings.runtime != "torch"
    model = load_cross_encoder(
        checkpoint,
        # The ONNX export is traced on CPU in float32 (and is the torch path if it fails).
        device="cpu" if onnx else settings.device,
        dtype="float32" if onnx else settings.dtype,
        max_length=settings.max_length,
    )
    engine = CrossEncoderEngine(
        model,
        name=checkpoint.name,
        batch_size=settings.batch_size or CROSS_ENCODER_BATCH_SIZE,
        truncate=settings.truncate,
        forward=_onnx_forward(checkpoint, model, settings),
    )
    if settings.engine == "crossencoder" or settings.runtime != "torch":
        # runtime="onnx" serves a seq-cls conversion of a yes/no reranker through ONNX
        # Runtime too (the scores of CrossEncoder.predict), not through the torch engines.
        return engine
    view = yes_no_view(model, checkpoint)
    if view is None:
        logger.info("%s: a cross-encoder, scored with sentence-transformers", checkpoint.name)
        return engine
    exact = _exact_engine_for(view, engine, settings)
    if exact is None:
        return engine
    logger.info("%s: a seq-cls yes/no reranker, served by the %s engine", name, exact.name)
    return exact


def _onnx_forward(checkpoint: Any, model: Any, settings: RerankerSettings) -> Any:
    """The ONNX Runtime forward for ``runtime="onnx"``, or None (torch).

    A failed export, session or check is one WARNING, then the torch path (the same scores,
    torch's speed); a missing onnxruntime is a :class:`ModelLoadError`.
    """
    if settings.runtime == "torch":
        return None
    from memreranker.local.onnx_runtime import load_onnx_forward

    try:
        forward = load_onnx_forward(
            checkpoint, model, quantize=settings.quantize, threads=settings.threads
        )
    except ModelLoadError as exc:
        if "memreranker[onnx]" in str(exc):
            raise
        reason = str(exc)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    else:
        logger.info(
            "%s: scoring with ONNX Runtime (%s, %d threads): %s",
            checkpoint.name,
            settings.quantize or "fp32",
            forward.threads,
            forward.path,
        )
        # The torch weights are no longer needed: only the tokenizer (preprocess) is.
        model.model.to("meta")
        return forward
    logger.warning(
        'runtime="onnx" is unavailable for %s (%s): scoring with torch instead',
        checkpoint.name,
        reason,
    )
    return None


def _exact_engine_for(
    view: LoadedModel, reference: ScoringEngine, settings: RerankerSettings
) -> ScoringEngine | None:
    """The yes/no engine for a seq-cls conversion, if it gives ``reference``'s scores on probe
    pairs (a head that is not what it seems, or a model that is not causal, would not)."""
    from memreranker.local.agreement import (
        CandidateFailed,
        ReferenceUnusable,
        largest_difference,
        reference_scores,
        tolerance,
    )

    try:
        want = reference_scores(reference, finite=False)
    except ReferenceUnusable as exc:
        # The model cannot compute at all: no engine can, and the failure surfaces when
        # scoring (one fallback warning, or an InferenceError).
        logger.debug("%s: cannot compare the engines: %s", view.name, exc)
        return None
    try:
        exact = _make_engine(view, settings)
        worst = largest_difference(want, exact)
    except CandidateFailed as exc:
        reason = str(exc)
    except Exception as exc:  # building the exact engine failed
        reason = f"{type(exc).__name__}: {exc}"
    else:
        if worst <= tolerance(view.dtype):
            return exact
        reason = f"its scores differ from sentence-transformers' by {worst:.3g}"
    logger.warning(
        "%s renders the model card's prompt but the %s engine cannot serve it (%s): "
        "scoring with sentence-transformers",
        view.name,
        settings.engine,
        reason,
    )
    return None


def _make_engine(loaded: LoadedModel, settings: RerankerSettings) -> ScoringEngine:
    """The yes/no engine named by ``settings.engine`` ("prefix" needs plain causal attention)."""
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
        "batch_size": settings.batch_size or YES_NO_BATCH_SIZE,
        "max_length": settings.max_length,
        "max_query_tokens": settings.max_query_tokens,
        "truncate": settings.truncate,
    }
