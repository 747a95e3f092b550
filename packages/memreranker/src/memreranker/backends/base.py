"""The interface between ``MemReranker`` and whatever produces scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from memreranker.progress import Advance
from memreranker.ranking import Scored


@runtime_checkable
class Backend(Protocol):
    """Scores documents against a query.

    Implementations raise :class:`memreranker.errors.MemRerankerError` subclasses on failure;
    ``MemReranker`` turns those into fallbacks. Inputs arrive already validated and non-empty.
    """

    @property
    def name(self) -> str:
        """Short label for logs, e.g. ``local:IAAR-Shanghai/MemReranker-4B``."""
        ...

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        """Return ``(index, P(yes))`` pairs; all documents, or at least the best ``top_n``.

        ``progress(n)``, when given, is called after each batch with the documents it scored.
        """
        ...

    async def ascore(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        """Async twin of :meth:`score`; must not block the event loop."""
        ...

    def close(self) -> None:
        """Release connections or weights. Safe to call twice."""
        ...
