"""``--calibrate``: the P(yes) threshold that fits your data, found by sweeping every score.

The relevance decision is ``score >= threshold``, the rule of every surface's
``score_threshold`` and of the report's F1. Precision, recall and F1 are pooled over all
(query, candidate) pairs exactly as :func:`memreranker.eval.metrics.threshold_f1` pools
them: a query whose call fell back judged nothing (none of its pairs is predicted relevant,
its relevant pairs are misses), whatever the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from memreranker.eval.dataset import Dataset
from memreranker.eval.runner import RunResult

CurvePoint = tuple[float, float, float, float]
"""``(threshold, precision, recall, f1)`` of one threshold of the sweep."""


@dataclass(frozen=True)
class Calibration:
    """The F1-best threshold of one reranker on one dataset (or one LOCOMO category).

    Attributes:
        threshold: The judged score at or above which pairs count as relevant that gives the
            best F1 (of equal F1s, the highest such score); ``None`` when no pair was judged
            (every call fell back).
        f1: Pooled F1 at ``threshold``.
        precision: Pooled precision at ``threshold``.
        recall: Pooled recall at ``threshold`` (over the relevant candidates).
        empty_queries: The share of queries with no candidate at or above ``threshold``:
            what a ``score_threshold`` of that value leaves your agent with no memory for
            (a query that fell back has none).
        queries: How many queries were calibrated on.
        categories: LOCOMO: the same, swept anew for each question category.
        curve: Every threshold of the sweep, highest first (for the plot; not in JSON).
    """

    threshold: float | None
    f1: float
    precision: float
    recall: float
    empty_queries: float
    queries: int
    categories: dict[int, Calibration] = field(default_factory=dict)
    curve: tuple[CurvePoint, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "threshold": self.threshold,
            "f1": self.f1,
            "precision": self.precision,
            "recall": self.recall,
            "empty_queries": self.empty_queries,
            "queries": self.queries,
        }
        if self.categories:
            out["categories"] = {str(c): cal.to_dict() for c, cal in self.categories.items()}
        return out


def calibrate(dataset: Dataset, run: RunResult) -> Calibration | None:
    """Sweep the threshold over every distinct judged score of ``run``; ``None`` for a run
    without probabilities (the first stage). LOCOMO categories are calibrated each alone."""
    if any(r.scores is None for r in run.rankings):
        return None
    overall = _sweep(dataset, run)
    categories = sorted({q.category for q in dataset.queries if q.category is not None})
    if not categories:
        return overall
    by_category: dict[int, Calibration] = {}
    for category in categories:
        keep = [i for i, q in enumerate(dataset.queries) if q.category == category]
        sub_data = replace(dataset, queries=tuple(dataset.queries[i] for i in keep))
        sub_run = replace(run, rankings=[run.rankings[i] for i in keep], latencies=[])
        by_category[category] = _sweep(sub_data, sub_run)
    return replace(overall, categories=by_category)


def _sweep(dataset: Dataset, run: RunResult) -> Calibration:
    judged: list[tuple[float, bool]] = []
    relevant_total = 0
    for q, ranking in zip(dataset.queries, run.rankings, strict=True):
        assert ranking.scores is not None
        for doc_id, score in zip(q.doc_ids, ranking.scores, strict=True):
            relevant = doc_id in q.relevance
            relevant_total += relevant
            if ranking.fallback_reason is None:
                judged.append((score, relevant))
    judged.sort(key=lambda pair: pair[0], reverse=True)
    curve: list[CurvePoint] = []
    tp = fp = 0
    best: CurvePoint | None = None
    for k, (score, relevant) in enumerate(judged):
        tp += relevant
        fp += not relevant
        if k + 1 < len(judged) and judged[k + 1][0] == score:
            continue  # the decision is >=: every pair of this score is predicted together
        point = (score, *_precision_recall_f1(tp, fp, relevant_total - tp))
        curve.append(point)
        if best is None or point[3] > best[3]:  # strict: of equal F1s, the highest score
            best = point
    if best is None:
        return Calibration(
            None, 0.0, 0.0, 0.0, 1.0 if dataset.queries else 0.0, len(dataset.queries), curve=()
        )
    threshold, precision, recall, f1 = best
    return Calibration(
        threshold=threshold,
        f1=f1,
        precision=precision,
        recall=recall,
        empty_queries=_empty_share(run, threshold),
        queries=len(dataset.queries),
        curve=tuple(curve),
    )


def _precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return precision, recall, f1


def _empty_share(run: RunResult, threshold: float) -> float:
    if not run.rankings:
        return 0.0
    empty = 0
    for ranking in run.rankings:
        assert ranking.scores is not None
        kept = ranking.fallback_reason is None and any(s >= threshold for s in ranking.scores)
        empty += not kept
    return empty / len(run.rankings)
