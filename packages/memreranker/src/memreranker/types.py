"""The one result type every backend and integration speaks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RerankResult:
    """One document of a rerank call.

    Attributes:
        index: Position of the document in the caller's input list. Integrations map
            results back to their own objects through it, never through order.
        document: The caller's document text (before any ``document_template``).
        score: P(yes) in [0, 1]: the probability that the document meets the query.
            0.0 on fallback results.
        is_fallback: True when scoring failed and this result only keeps the input order.
        fallback_reason: Why scoring failed (``None`` unless ``is_fallback``).
        rank_score: The value results are sorted by: ``score`` itself unless
            ``recency_weight`` is set, then ``(1 - w) * score + w * recency``
            (see :class:`~memreranker.settings.RerankerSettings`). 0.0 on fallback results.
    """

    index: int
    document: str
    score: float
    is_fallback: bool = False
    fallback_reason: str | None = None
    rank_score: float | None = None

    def __post_init__(self) -> None:
        if self.rank_score is None:  # recency off: the order is P(yes) itself
            object.__setattr__(self, "rank_score", self.score)
