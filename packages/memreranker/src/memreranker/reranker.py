"""``MemReranker``: validated input in, sorted :class:`RerankResult` out, whatever the backend."""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from memreranker import ranking
from memreranker.backends import Backend, create_backend
from memreranker.document_template import DocumentTemplate, recency, render_documents
from memreranker.errors import InferenceError, InputTooLongError, MemRerankerError
from memreranker.progress import Progress, ProgressOption, check_progress
from memreranker.ranking import Scored
from memreranker.settings import RerankerSettings
from memreranker.types import RerankResult
from memreranker.validation import (
    check_documents,
    check_instruction,
    check_metadata,
    check_now,
    check_query,
    check_score_threshold,
    check_top_n,
)

logger = logging.getLogger("memreranker")

Failure = tuple[str, MemRerankerError]
"""A reranker of a fallback chain that failed during a call: its name and its error."""


class MemReranker:
    """Rerank documents (an agent's memories, RAG chunks) by how well they answer a query.

    Args:
        backend: ``"local"`` (weights on this machine, needs ``memreranker[local]``),
            ``"memos"`` (the hosted MemOS rerank API), ``"vllm"`` (a vLLM/Cohere-style
            rerank server) or ``"tei"`` (text-embeddings-inference).
        model: A Hub id or directory for ``"local"`` (default
            ``IAAR-Shanghai/MemReranker-4B``); the served model name otherwise.
        fallback: Another ``MemReranker`` tried when this one fails (hosted first, local
            second, say) before falling back to the input order.
        **options: Any field of :class:`memreranker.settings.RerankerSettings`, e.g.
            ``instruction``, ``on_error`` (``"fallback"`` or ``"raise"``); local:
            ``device``, ``dtype``, ``batch_size``, ``max_length``, ``engine``; HTTP:
            ``api_key``, ``base_url``, ``prompt_format``, ``timeout``, ``max_retries``,
            ``deadline``, batching and circuit-breaker limits; any backend:
            ``score_cache_size``. Each field's description says what it does. Unknown or
            invalid options raise ``ValueError``.

    The local model loads on the first call (or on :meth:`load`), not at construction, so
    that a missing model becomes a fallback at call time like any other outage.

    ``copy.deepcopy`` and ``pickle`` give an independent reranker rebuilt from the same
    settings and fallback chain: nothing is shared with the original (weights load again on
    first use; caches, circuit state and connection pools start empty), and the API key
    travels sealed, never in clear (see :class:`~memreranker.settings.RerankerSettings`).
    """

    def __init__(
        self,
        backend: str = "local",
        model: str | None = None,
        *,
        fallback: MemReranker | None = None,
        **options: Any,
    ) -> None:
        settings = RerankerSettings.model_validate({"backend": backend, "model": model, **options})
        self._init(settings, fallback)

    @classmethod
    def from_settings(
        cls, settings: RerankerSettings, *, fallback: MemReranker | None = None
    ) -> MemReranker:
        """Build from a settings object (integrations pass their own fields through here)."""
        self = cls.__new__(cls)
        self._init(settings.core_settings(), fallback)
        return self

    def _init(self, settings: RerankerSettings, fallback: MemReranker | None) -> None:
        if fallback is not None and not isinstance(fallback, MemReranker):
            raise TypeError(
                f"fallback must be a MemReranker or None, got {type(fallback).__name__}"
            )
        self.settings = settings
        self.fallback = fallback
        self._backend: Backend = create_backend(settings)
        self._template = (
            None
            if settings.document_template is None
            else DocumentTemplate(settings.document_template, settings.date_fields)
        )

    def __reduce__(self) -> tuple[Any, tuple[RerankerSettings, MemReranker | None]]:
        # Settings, not state: the backend holds locks, pools and weights.
        return (_rebuild, (self.settings, self.fallback))

    @property
    def name(self) -> str:
        """The backend's label, e.g. ``local:IAAR-Shanghai/MemReranker-4B``."""
        return self._backend.name

    @property
    def circuit_state(self) -> str | None:
        """The hosted backend's circuit breaker: ``"closed"``, ``"open"`` or ``"half_open"``
        (``None`` for a backend without one: local weights)."""
        circuit = getattr(self._backend, "circuit", None)
        return None if circuit is None else circuit.state

    def __repr__(self) -> str:
        chain = f", fallback={self.fallback!r}" if self.fallback is not None else ""
        return (
            f"MemReranker(backend={self.settings.backend!r}, "
            f"model={self.settings.resolved_model()!r}, on_error={self.settings.on_error!r}{chain})"
        )

    def load(self) -> None:
        """Load local weights now instead of on the first call (no-op for HTTP backends)."""
        load = getattr(self._backend, "load", None)
        if load is not None:
            load()

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        instruction: str | None = None,
        score_threshold: float | None = None,
        progress: ProgressOption = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        now: datetime | None = None,
    ) -> list[RerankResult]:
        """Score ``documents`` against ``query`` and return them best first.

        Args:
            query: The question the documents should answer.
            documents: Texts to score; empty returns ``[]`` without touching the backend.
            top_n: Keep at most this many results (``None``: all; larger than the list: all).
            instruction: Overrides the configured instruction for this call.
            score_threshold: Drop scored results below this P(yes). Not applied to fallback
                results, whose scores are unknown rather than low.
            progress: ``True`` shows a progress bar (tqdm, on stderr; none if tqdm is not
                installed); a callable is called as ``progress(done, total)`` (documents)
                after every scored batch. The call stays one call: all or nothing.
            metadata: ``None``, or one dict (or ``None``) per document, aligned by index: that
                memory's fields, for ``document_template`` (``{date}``, ``{source}``...) and
                recency (its date, read from ``date_fields``).
            now: The time recency is measured from (default: the current UTC time); a naive
                datetime, like a naive memory date, is taken as UTC.

        Returns:
            Results sorted by score descending (by ``rank_score`` with ``recency_weight``),
            ties in input order. On failure with ``on_error="fallback"``: the input order,
            score 0.0, ``is_fallback=True`` (no recency reordering).
        """
        query, docs, top_n, threshold = _check(
            query, documents, top_n, instruction, score_threshold
        )
        fields = check_metadata(metadata, len(docs))
        now = check_now(now)
        progress = check_progress(progress)
        if not docs:
            return []
        texts = render_documents(self._template, docs, fields, where=self.name)
        # With recency the best by P(yes) alone are not the best: the backend scores them all.
        wanted = None if self.settings.recency_weight else top_n
        reporter = Progress.create(progress, len(docs), desc=self.name)
        failures: list[Failure] = []
        try:
            scored = self._score_chain(query, texts, wanted, instruction, reporter, failures)
        except MemRerankerError as exc:
            return self._recover(exc, docs, top_n, failures)
        else:
            if reporter is not None:
                reporter.finish()
        finally:
            if reporter is not None:
                reporter.close()
        self._log_rescue(failures)
        return self._rank(docs, scored, top_n, threshold, fields, now)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        instruction: str | None = None,
        score_threshold: float | None = None,
        progress: ProgressOption = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        now: datetime | None = None,
    ) -> list[RerankResult]:
        """Async :meth:`rerank`: same results; local inference runs off the event loop."""
        query, docs, top_n, threshold = _check(
            query, documents, top_n, instruction, score_threshold
        )
        fields = check_metadata(metadata, len(docs))
        now = check_now(now)
        progress = check_progress(progress)
        if not docs:
            return []
        texts = render_documents(self._template, docs, fields, where=self.name)
        # With recency the best by P(yes) alone are not the best: the backend scores them all.
        wanted = None if self.settings.recency_weight else top_n
        reporter = Progress.create(progress, len(docs), desc=self.name)
        failures: list[Failure] = []
        try:
            scored = await self._ascore_chain(query, texts, wanted, instruction, reporter, failures)
        except MemRerankerError as exc:
            return self._recover(exc, docs, top_n, failures)
        else:
            if reporter is not None:
                reporter.finish()
        finally:
            if reporter is not None:
                reporter.close()
        self._log_rescue(failures)
        return self._rank(docs, scored, top_n, threshold, fields, now)

    def _score_chain(
        self,
        query: str,
        docs: list[str],
        top_n: int | None,
        instruction: str | None,
        reporter: Progress | None,
        failures: list[Failure],
    ) -> list[Scored]:
        """Score with this reranker, else hand over down the fallback chain; every failure
        is appended to ``failures`` (the last one is also raised)."""
        try:
            scored = self._backend.score(
                query,
                docs,
                instruction=self._instruction(instruction),
                top_n=top_n,
                progress=None if reporter is None else reporter.advance,
            )
            return self._checked(scored, len(docs))
        except InputTooLongError:
            raise
        except Exception as exc:
            error = self._typed(exc)
            failures.append((self.name, error))
            if self.fallback is None:
                raise error from exc
            self._log_handover(error)
        if reporter is not None:
            reporter.restart()
        return self.fallback._score_chain(query, docs, top_n, instruction, reporter, failures)

    async def _ascore_chain(
        self,
        query: str,
        docs: list[str],
        top_n: int | None,
        instruction: str | None,
        reporter: Progress | None,
        failures: list[Failure],
    ) -> list[Scored]:
        """Score with this reranker, else hand over down the fallback chain; every failure
        is appended to ``failures`` (the last one is also raised)."""
        try:
            scored = await self._backend.ascore(
                query,
                docs,
                instruction=self._instruction(instruction),
                top_n=top_n,
                progress=None if reporter is None else reporter.advance,
            )
            return self._checked(scored, len(docs))
        except InputTooLongError:
            raise
        except Exception as exc:
            error = self._typed(exc)
            failures.append((self.name, error))
            if self.fallback is None:
                raise error from exc
            self._log_handover(error)
        if reporter is not None:
            reporter.restart()
        return await self.fallback._ascore_chain(
            query, docs, top_n, instruction, reporter, failures
        )

    def _rank(
        self,
        docs: list[str],
        scored: list[Scored],
        top_n: int | None,
        threshold: float | None,
        fields: list[Mapping[str, Any] | None] | None,
        now: datetime | None,
    ) -> list[RerankResult]:
        settings = self.settings
        weight = settings.recency_weight
        if not weight:  # off: exactly the P(yes) order of before
            return ranking.rank(docs, scored, top_n=top_n, score_threshold=threshold)
        moment = datetime.now(timezone.utc) if now is None else now
        ages = [
            recency(
                None if fields is None else fields[i],
                now=moment,
                half_life=settings.recency_half_life,
                date_fields=settings.date_fields,
            )
            for i in range(len(docs))
        ]
        return ranking.rank(
            docs,
            scored,
            top_n=top_n,
            score_threshold=threshold,
            recency=ages,
            recency_weight=weight,
        )

    def _instruction(self, instruction: str | None) -> str | None:
        return instruction if instruction is not None else self.settings.instruction

    def _checked(self, scored: list[Scored], n_docs: int) -> list[Scored]:
        """The backend's scores, if the ranking can trust them: known indices, each once,
        scores in [0, 1]. A NaN (weights corrupted, say) is a failure to score, not a rank."""
        seen: set[int] = set()
        for index, score in scored:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_docs:
                raise InferenceError(f"{self.name}: returned an unknown index {index!r}")
            if index in seen:
                raise InferenceError(f"{self.name}: scored document {index} twice")
            seen.add(index)
            if (
                isinstance(score, bool)
                or not isinstance(score, numbers.Real)
                or not 0.0 <= score <= 1.0  # False for NaN too
            ):
                raise InferenceError(
                    f"{self.name}: score {score!r} of document {index} is not a "
                    "probability in [0, 1]"
                )
        return scored

    def _typed(self, exc: Exception) -> MemRerankerError:
        if isinstance(exc, MemRerankerError):
            return exc
        return InferenceError(f"{self.name}: {type(exc).__name__}: {exc}")

    # One WARNING per call that met a failure, for its outcome: rescued by a fallback
    # reranker, or the original order. Each handover along the chain is logged at INFO.

    def _log_handover(self, error: MemRerankerError) -> None:
        assert self.fallback is not None
        logger.info(
            "MemReranker %s failed, handing over to fallback %s: %s: %s",
            self.name,
            self.fallback.name,
            type(error).__name__,
            error,
        )

    def _log_rescue(self, failures: list[Failure]) -> None:
        if not failures:
            return
        scorer: MemReranker = self
        for _ in failures:
            assert scorer.fallback is not None
            scorer = scorer.fallback
        logger.warning(
            "MemReranker %s failed, scored by fallback %s: %s",
            self.name,
            scorer.name,
            _describe(failures),
        )

    def _recover(
        self,
        error: MemRerankerError,
        docs: list[str],
        top_n: int | None,
        failures: list[Failure],
    ) -> list[RerankResult]:
        if self.settings.on_error == "raise":
            raise error
        if len(failures) > 1:  # a chain: name each reranker with its error
            reason = _describe(failures)
        else:
            reason = f"{type(error).__name__}: {error}"
        logger.warning(
            "MemReranker %s reranking failed, falling back to original order: %s", self.name, reason
        )
        return ranking.fallback(docs, top_n=top_n, reason=reason)

    def close(self) -> None:
        """Release connections and weights (also of the fallback chain)."""
        self._backend.close()
        if self.fallback is not None:
            self.fallback.close()

    async def aclose(self) -> None:
        """Async :meth:`close`: also closes the async HTTP client of the running loop."""
        aclose = getattr(self._backend, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            self._backend.close()
        if self.fallback is not None:
            await self.fallback.aclose()

    async def __aenter__(self) -> MemReranker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> MemReranker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _describe(failures: list[Failure]) -> str:
    return "; ".join(f"{name}: {type(error).__name__}: {error}" for name, error in failures)


def _rebuild(settings: RerankerSettings, fallback: MemReranker | None) -> MemReranker:
    """Unpickle (or deep-copy) a :class:`MemReranker`."""
    return MemReranker.from_settings(settings, fallback=fallback)


def _check(
    query: Any, documents: Any, top_n: Any, instruction: Any, score_threshold: Any
) -> tuple[str, list[str], int | None, float | None]:
    check_instruction(instruction)
    return (
        check_query(query),
        check_documents(documents),
        check_top_n(top_n),
        check_score_threshold(score_threshold),
    )
