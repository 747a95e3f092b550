"""The interface between ``MemReranker`` and whatever produces scores: a public base class.

Every built-in backend (local weights, the HTTP services, the score cache around either)
subclasses :class:`Backend`, and so can a user's own scorer (another rerank API, an LLM
judge, an in-house service): ``MemReranker(backend=MyBackend())`` then gives it the same
input checks, score checks, fallback chains, progress, score cache, framework shells, mem0
provider and evaluation as the built-in ones (README, "Writing a backend").
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

from memreranker.progress import Advance
from memreranker.ranking import Scored


class Circuit(Protocol):
    """What ``MemReranker`` reads of a backend's circuit breaker (the hosted backends'
    :class:`~memreranker.http.circuit.CircuitBreaker`)."""

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        ...


class Backend(ABC):
    """Scores documents against a query.

    A subclass defines :attr:`name` and :meth:`score`; everything else has a working
    default: :meth:`ascore` runs :meth:`score` in a worker thread (off the event loop),
    :meth:`load`, :meth:`close` and :meth:`aclose` do nothing, and there is no circuit
    breaker (:attr:`circuit` is ``None``).

    ``MemReranker`` validates the input before a backend sees it (a non-empty list of
    strings), checks what it returns (each index known and scored once, scores in [0, 1]),
    and turns any exception it raises into a fallback (``on_error="fallback"``) or a
    :class:`~memreranker.errors.MemRerankerError` (``on_error="raise"``); raising a
    ``MemRerankerError`` subclass (``ServiceError``, ``InferenceError``...) keeps its type.
    """

    name: str
    """Short label for logs and results, e.g. ``local:IAAR-Shanghai/MemReranker-4B``
    (a class attribute, an instance attribute or a property)."""

    circuit: Circuit | None = None
    """The circuit breaker that fails calls fast while a service keeps failing, if any
    (``MemReranker.circuit_state`` reads it)."""

    @abstractmethod
    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        """Return ``(index, P(yes))`` pairs: every document, or at least the best ``top_n``.

        ``instruction`` is the call's instruction (``None``: the backend's default).
        ``progress(n)``, when given, may be called after each batch with the number of
        documents it scored; ``MemReranker`` completes the bar when the call succeeds.
        """

    async def ascore(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        """Async twin of :meth:`score`; must not block the event loop. By default
        :meth:`score` runs in a worker thread (``asyncio.to_thread``)."""
        return await asyncio.to_thread(
            self.score, query, documents, instruction=instruction, top_n=top_n, progress=progress
        )

    def load(self) -> None:  # noqa: B027 (a default, not an abstract method)
        """Prepare now what the first call would (load weights); by default nothing."""

    def close(self) -> None:  # noqa: B027
        """Release connections or weights; safe to call twice. By default nothing."""

    async def aclose(self) -> None:
        """Async :meth:`close` (closes what belongs to the running loop); by default
        :meth:`close`."""
        self.close()
