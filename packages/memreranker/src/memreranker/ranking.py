"""From backend scores to the results a caller sees: sort, cut, or fall back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from memreranker.types import RerankResult

Scored = tuple[int, float]
"""(index into the input documents, P(yes))."""


def rank(
    documents: Sequence[str],
    scored: Iterable[Scored],
    *,
    top_n: int | None,
    score_threshold: float | None,
) -> list[RerankResult]:
    """Sort by score descending; ties keep input order. Then threshold, then ``top_n``."""
    ordered = sorted(scored, key=lambda pair: (-pair[1], pair[0]))
    if score_threshold is not None:
        ordered = [pair for pair in ordered if pair[1] >= score_threshold]
    if top_n is not None:
        ordered = ordered[:top_n]
    return [RerankResult(index=i, document=documents[i], score=s) for i, s in ordered]


def fallback(documents: Sequence[str], *, top_n: int | None, reason: str) -> list[RerankResult]:
    """mem0's fallback: the input order, score 0.0, cut to ``top_n``.

    No score threshold here: the scores are unknown, not low, and dropping every document
    would turn a reranker outage into an empty context.
    """
    kept = documents if top_n is None else documents[:top_n]
    return [
        RerankResult(index=i, document=doc, score=0.0, is_fallback=True, fallback_reason=reason)
        for i, doc in enumerate(kept)
    ]
