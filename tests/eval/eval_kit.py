"""Metrics written out by hand, the textbook way, to check what ranx computes for us.

Nothing here imports ranx or memreranker.eval: a ranking is a list of document ids, best
first; ``grades`` maps every relevant document id (retrieved or not) to its label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

DATA = Path(__file__).with_name("data")
LOCOMO_SAMPLE = DATA / "locomo_sample.json"

Ranking = Sequence[str]
Grades = Mapping[str, int]


def average_precision(ranking: Ranking, grades: Grades) -> float:
    hits, total = 0, 0.0
    for rank, doc in enumerate(ranking, 1):
        if grades.get(doc, 0) > 0:
            hits += 1
            total += hits / rank
    return total / len(grades)


def reciprocal_rank(ranking: Ranking, grades: Grades) -> float:
    for rank, doc in enumerate(ranking, 1):
        if grades.get(doc, 0) > 0:
            return 1 / rank
    return 0.0


def ndcg(ranking: Ranking, grades: Grades, k: int | None = None) -> float:
    """Linear gain: grade / log2(rank + 1); the ideal ranking sorts every relevant
    document by grade."""
    k = k or max(len(ranking), len(grades))
    dcg = sum(grades.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranking[:k], 1))
    ideal = sorted(grades.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, 1))
    return dcg / idcg


def recall(ranking: Ranking, grades: Grades, k: int) -> float:
    return sum(1 for doc in ranking[:k] if grades.get(doc, 0) > 0) / len(grades)


def per_query(rankings: Sequence[Ranking], qrels: Sequence[Grades]) -> dict[str, list[float]]:
    """Each ranking metric of the report, query by query."""
    pairs = list(zip(rankings, qrels, strict=True))
    return {
        "MAP": [average_precision(r, g) for r, g in pairs],
        "MRR": [reciprocal_rank(r, g) for r, g in pairs],
        "NDCG@1": [ndcg(r, g, 1) for r, g in pairs],
        "NDCG@3": [ndcg(r, g, 3) for r, g in pairs],
        "NDCG@10": [ndcg(r, g, 10) for r, g in pairs],
        "NDCG": [ndcg(r, g) for r, g in pairs],
        "R@3": [recall(r, g, 3) for r, g in pairs],
        "R@5": [recall(r, g, 5) for r, g in pairs],
        "R@20": [recall(r, g, 20) for r, g in pairs],
    }


def paper_metrics(rankings: Sequence[Ranking], qrels: Sequence[Grades]) -> dict[str, float]:
    """The report's ranking metrics, averaged over queries."""
    return {name: sum(v) / len(v) for name, v in per_query(rankings, qrels).items()}


def pair_f1(
    scores: Sequence[Mapping[str, float]], qrels: Sequence[Grades], threshold: float
) -> float:
    """F1 of ``score >= threshold`` over every (query, candidate) pair."""
    tp = fp = fn = 0
    for by_doc, grades in zip(scores, qrels, strict=True):
        for doc, score in by_doc.items():
            relevant, predicted = grades.get(doc, 0) > 0, score >= threshold
            tp += relevant and predicted
            fp += predicted and not relevant
            fn += relevant and not predicted
    return 2 * tp / (2 * tp + fp + fn)
