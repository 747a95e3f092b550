"""The one result type every backend and integration speaks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RerankResult:
    """One document of a rerank call.

    Attributes:
        index: Position of the document in the caller's input list. Integrations map
            results back to their own objects through it, never through order.
        document: The document text that was scored.
        score: P(yes) in [0, 1]: the probability that the document meets the query.
            0.0 on fallback results.
        is_fallback: True when scoring failed and this result only keeps the input order.
        fallback_reason: Why scoring failed (``None`` unless ``is_fallback``).
    """

    index: int
    document: str
    score: float
    is_fallback: bool = False
    fallback_reason: str | None = None
