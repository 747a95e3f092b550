"""``MemReranker``: validated input in, sorted :class:`RerankResult` out, whatever the backend."""

from __future__ import annotations

import contextlib
import logging
import numbers
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any

from memreranker import ranking
from memreranker.backends import Backend, create_backend
from memreranker.dedup import Distinct
from memreranker.document_template import DocumentTemplate, fixed_parts, recency, render_documents
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
            rerank server), ``"tei"`` (text-embeddings-inference), or an instance of a
            :class:`memreranker.Backend` subclass of your own (README, "Writing a
            backend"); options that configure only the built-in backends (``model``,
            ``device``, ``api_key``...) are then a ``ValueError``.
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
    A ``Backend`` instance of your own is part of the settings: it is deep-copied or
    pickled with them (so it must support that to copy the reranker).
    """

    def __init__(
        self,
        backend: str | Backend = "local",
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
    def backend(self) -> Backend:
        """The :class:`~memreranker.Backend` scoring for this reranker: the instance given as
        ``backend=``, or the built-in one made from the settings (wrapped in a
        ``CachedBackend`` when ``score_cache_size`` is set)."""
        return self._backend

    @property
    def circuit_state(self) -> str | None:
        """The hosted backend's circuit breaker: ``"closed"``, ``"open"`` or ``"half_open"``
        (``None`` for a backend without one: local weights)."""
        circuit = self._backend.circuit
        return None if circuit is None else circuit.state

    def __repr__(self) -> str:
        chain = f", fallback={self.fallback!r}" if self.fallback is not None else ""
        return (
            f"MemReranker(backend={_label(self.settings.backend)}, "
            f"model={self.settings.resolved_model()!r}, on_error={self.settings.on_error!r}{chain})"
        )

    def load(self) -> None:
        """Load local weights now instead of on the first call (no-op for HTTP backends)."""
        self._backend.load()

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
        call = _Call.start(
            self, query, documents, top_n, instruction, score_threshold, progress, metadata, now
        )
        if call is None:
            return []
        try:
            for reranker in call.chain():
                with call.attempt(reranker):
                    scored = reranker._backend.score(call.query, call.texts, **call.options())
                    call.accept(scored)
            return call.outcome()
        finally:
            call.close()

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
        call = _Call.start(
            self, query, documents, top_n, instruction, score_threshold, progress, metadata, now
        )
        if call is None:
            return []
        try:
            for reranker in call.chain():
                with call.attempt(reranker):
                    scored = await reranker._backend.ascore(
                        call.query, call.texts, **call.options()
                    )
                    call.accept(scored)
            return call.outcome()
        finally:
            call.close()

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
                half_life=timedelta(seconds=settings.recency_half_life),
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

    def close(self) -> None:
        """Release connections and weights (also of the fallback chain)."""
        self._backend.close()
        if self.fallback is not None:
            self.fallback.close()

    async def aclose(self) -> None:
        """Async :meth:`close`: also closes the async HTTP client of the running loop."""
        await self._backend.aclose()
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


class _Call:
    """One rerank call along the fallback chain ``[head, *fallbacks]``: the checked input,
    the progress bar, the failures met, and the one outcome. ``rerank`` and ``arerank`` drive
    it with the same loop (they differ only by ``await``)::

        for reranker in call.chain():
            with call.attempt(reranker):
                scored = reranker._backend.score(call.query, call.texts, **call.options())
                call.accept(scored)
        return call.outcome()
    """

    def __init__(
        self,
        head: MemReranker,
        query: str,
        docs: list[str],
        top_n: int | None,
        instruction: str | None,
        threshold: float | None,
        progress: ProgressOption,
        fields: list[Mapping[str, Any] | None] | None,
        now: datetime | None,
    ) -> None:
        self.head = head
        self.query = query
        self.docs = docs
        # What the backends score: each memory rendered by the head's document_template, and
        # each distinct text once (dedup.py). Texts are the same when their parts are, so a
        # rendered date is never merged with a plain text that happens to read alike.
        self.distinct = Distinct(
            render_documents(head._template, docs, fields, where=head.name), key=fixed_parts
        )
        self.fields = fields
        self.now = now
        self.top_n = top_n
        self.instruction = instruction
        self.threshold = threshold
        self.reporter = Progress.create(progress, len(docs), desc=head.name)
        self.failures: list[Failure] = []
        self.scorer: MemReranker | None = None  # the reranker being tried, then the winner
        self.scored: list[Scored] | None = None

    @classmethod
    def start(
        cls,
        head: MemReranker,
        query: Any,
        documents: Any,
        top_n: Any,
        instruction: Any,
        score_threshold: Any,
        progress: Any,
        metadata: Any,
        now: Any,
    ) -> _Call | None:
        """The call, or ``None`` for an empty list (the backends are never called)."""
        query, docs, top_n, threshold = _check(
            query, documents, top_n, instruction, score_threshold
        )
        fields = check_metadata(metadata, len(docs))
        now = check_now(now)
        progress = check_progress(progress)
        if not docs:
            return None
        return cls(head, query, docs, top_n, instruction, threshold, progress, fields, now)

    @property
    def texts(self) -> list[str]:
        """What each backend of the chain is given: the distinct rendered texts."""
        return self.distinct.items

    def chain(self) -> Iterator[MemReranker]:
        """The rerankers to try, in order, until one has scored; the progress restarts
        before each handover (a bar never counts a failed attempt's documents)."""
        reranker: MemReranker | None = self.head
        while reranker is not None and self.scored is None:
            if reranker is not self.head and self.reporter is not None:
                self.reporter.restart()
            self.scorer = reranker
            yield reranker
            reranker = reranker.fallback

    def options(self) -> dict[str, Any]:
        """Keyword arguments of the current reranker's ``score``/``ascore``."""
        assert self.scorer is not None
        return {
            "instruction": self.scorer._instruction(self.instruction),
            # With recency the best by P(yes) alone are not the best: the backend scores all.
            "top_n": None if self.head.settings.recency_weight else self.top_n,
            "progress": None if self.reporter is None else self.reporter.advance,
        }

    def accept(self, scored: list[Scored]) -> None:
        assert self.scorer is not None
        checked = _checked(self.scorer.name, scored, len(self.texts))
        self.scored = self.distinct.expand_scored(checked)

    @contextlib.contextmanager
    def attempt(self, reranker: MemReranker) -> Iterator[None]:
        """Any failure of ``reranker`` (an exception, or scores that cannot be trusted)
        becomes a typed failure and a handover; a caller mistake (an input over a limit
        with ``truncate=False``) propagates at once."""
        try:
            yield
        except InputTooLongError:
            raise
        except Exception as exc:
            error = _typed(reranker.name, exc)
            if error is not exc:
                error.__cause__ = exc
            self.failures.append((reranker.name, error))
            if reranker.fallback is not None:
                logger.info(
                    "MemReranker %s failed, handing over to fallback %s: %s: %s",
                    reranker.name,
                    reranker.fallback.name,
                    type(error).__name__,
                    error,
                )

    def outcome(self) -> list[RerankResult]:
        """The ranking, or the head's ``on_error`` applied to the last failure. One WARNING
        per call that met a failure: rescued by a fallback, or the original order."""
        head = self.head
        if self.scored is not None:
            if self.reporter is not None:
                self.reporter.finish()
            if self.failures:
                assert self.scorer is not None
                logger.warning(
                    "MemReranker %s failed, scored by fallback %s: %s",
                    head.name,
                    self.scorer.name,
                    _describe(self.failures),
                )
            return head._rank(
                self.docs, self.scored, self.top_n, self.threshold, self.fields, self.now
            )
        error = self.failures[-1][1]
        if head.settings.on_error == "raise":
            raise error
        if len(self.failures) > 1:  # a chain: name each reranker with its error
            reason = _describe(self.failures)
        else:
            reason = f"{type(error).__name__}: {error}"
        logger.warning(
            "MemReranker %s reranking failed, falling back to original order: %s",
            head.name,
            reason,
        )
        return ranking.fallback(self.docs, top_n=self.top_n, reason=reason)

    def close(self) -> None:
        if self.reporter is not None:
            self.reporter.close()


def _checked(name: str, scored: list[Scored], n_docs: int) -> list[Scored]:
    """A backend's scores, if the ranking can trust them: known indices, each once, scores
    in [0, 1]. A NaN (weights corrupted, say) is a failure to score, not a rank."""
    seen: set[int] = set()
    for index, score in scored:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_docs:
            raise InferenceError(f"{name}: returned an unknown index {index!r}")
        if index in seen:
            raise InferenceError(f"{name}: scored document {index} twice")
        seen.add(index)
        if (
            isinstance(score, bool)
            or not isinstance(score, numbers.Real)
            or not 0.0 <= score <= 1.0  # False for NaN too
        ):
            raise InferenceError(
                f"{name}: score {score!r} of document {index} is not a probability in [0, 1]"
            )
    return scored


def _typed(name: str, exc: Exception) -> MemRerankerError:
    if isinstance(exc, MemRerankerError):
        return exc
    return InferenceError(f"{name}: {type(exc).__name__}: {exc}")


def _label(backend: str | Backend) -> str:
    if isinstance(backend, str):
        return repr(backend)
    return f"<{type(backend).__name__} {backend.name!r}>"


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
