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
    recency: Sequence[float] | None = None,
    recency_weight: float = 0.0,
) -> list[RerankResult]:
    """Sort by score descending; ties keep input order. Then threshold, then ``top_n``.

    With ``recency`` (one value in [0, 1] per document) and a ``recency_weight`` w > 0 the
    order key is ``(1 - w) * score + w * recency[index]`` (the results' ``rank_score``);
    ``score_threshold`` still applies to the score, P(yes).
    """
    if recency is None or not recency_weight:
        ordered = sorted(scored, key=lambda pair: (-pair[1], pair[0]))
        if score_threshold is not None:
            ordered = [pair for pair in ordered if pair[1] >= score_threshold]
        if top_n is not None:
            ordered = ordered[:top_n]
        return [RerankResult(index=i, document=documents[i], score=s) for i, s in ordered]
    w = recency_weight
    keyed = [(i, s, (1.0 - w) * s + w * recency[i]) for i, s in scored]
    keyed.sort(key=lambda item: (-item[2], item[0]))
    if score_threshold is not None:
        keyed = [item for item in keyed if item[1] >= score_threshold]
    if top_n is not None:
        keyed = keyed[:top_n]
    return [
        RerankResult(index=i, document=documents[i], score=s, rank_score=k) for i, s, k in keyed
    ]


def fallback(documents: Sequence[str], *, top_n: int | None, reason: str) -> list[RerankResult]:
    """mem0's fallback: the input order, score 0.0, cut to ``top_n``.

    No score threshold here: the scores are unknown, not low, and dropping every document
    would turn a reranker outage into an empty context. No recency either: the original
    order is kept as it came (``rank_score`` 0.0 like the score).
    """
    kept = documents if top_n is None else documents[:top_n]
    return [
        RerankResult(index=i, document=doc, score=0.0, is_fallback=True, fallback_reason=reason)
        for i, doc in enumerate(kept)
    ]
