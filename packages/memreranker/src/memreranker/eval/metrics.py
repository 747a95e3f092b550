"""The paper's metrics, computed by ranx (MAP, MRR, NDCG, recall and paired tests) plus the
F1 of the thresholded relevance decision.

Rankings reach ranx as strictly decreasing scores by rank (``n, n-1, ..., 1``), never as
the rerankers' own scores: the ranking a system returned (ties already in input order,
fallbacks in first-stage order) is exactly the one measured, whatever tie-breaking the
metrics library would apply to equal scores.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

from memreranker.eval.dataset import Dataset, EvalQuery
from memreranker.eval.runner import RunResult

StatTest = Literal["student", "fisher"]

RANKING_METRICS: dict[str, str] = {
    "MAP": "map",
    "MRR": "mrr",
    "NDCG@1": "ndcg@1",
    "NDCG@3": "ndcg@3",
    "NDCG@10": "ndcg@10",
    "NDCG": "ndcg",
    "R@3": "recall@3",
    "R@5": "recall@5",
    "R@20": "recall@20",
}
"""Report name -> ranx metric. NDCG is ranx's ``ndcg``: linear gain (Järvelin and
Kekäläinen), the graded label over log2(rank + 1); all metrics are over every relevant
document of the query, retrieved or not."""

METRICS: tuple[str, ...] = (*RANKING_METRICS, "F1")

STAT_TESTS: dict[str, str] = {
    "student": "two-sided paired Student's t-test",
    "fisher": "Fisher's randomization test (paired, 1000 permutations, seed 42)",
}


def ranking_metrics(
    dataset: Dataset, runs: Sequence[RunResult], *, stat_test: StatTest = "student"
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float | None]]]:
    """Mean of every ranking metric per run, and the p-value of each run against the first
    (the baseline), per metric (``None`` where undefined: two identical rankings)."""
    if stat_test not in STAT_TESTS:
        raise ValueError(f"stat_test must be one of {sorted(STAT_TESTS)}, got {stat_test!r}")
    from numba.core.errors import NumbaWarning
    from ranx import Qrels, Run, compare, evaluate

    ids = [_fixed_width_ids(q) for q in dataset.queries]
    qrels = Qrels(
        {
            q.id: {key[doc]: grade for doc, grade in q.relevance.items()}
            for q, key in zip(dataset.queries, ids, strict=True)
        }
    )
    ranx_runs = [Run(_ranx_run(dataset, ids, run), name=run.name) for run in runs]
    names = list(RANKING_METRICS.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaWarning)  # ranx's internal integer casts
        if len(ranx_runs) == 1:
            scores = evaluate(qrels, ranx_runs[0], names)
            means = {runs[0].name: {m: float(scores[m]) for m in names}}
            comparisons: Any = None
        else:
            report = compare(qrels, ranx_runs, names, stat_test=stat_test)
            means = {n: {m: float(v) for m, v in r.items()} for n, r in report.results.items()}
            comparisons = report.comparisons
    by_name = {n: k for k, n in RANKING_METRICS.items()}
    metrics = {run: {by_name[m]: v for m, v in values.items()} for run, values in means.items()}
    p_values: dict[str, dict[str, float | None]] = {}
    baseline = runs[0].name
    for run in runs[1:]:
        tests = comparisons[baseline, run.name]
        p_values[run.name] = {by_name[m]: _finite(tests[m]["p_value"]) for m in names}
    return metrics, p_values


def _fixed_width_ids(query: EvalQuery) -> dict[str, str]:
    """Document ids as ranx sees them: ``"0000000000"``, ``"0000000001"``... ranx stores ids
    in numpy arrays whose string width is the longest id, and numba compiles its metric
    kernels anew for every width (tens of seconds each, on first use). One width for every
    dataset means one compilation, cached across runs."""
    ids = dict.fromkeys([*query.doc_ids, *query.relevance])
    return {doc: f"{n:010d}" for n, doc in enumerate(ids)}


def _ranx_run(
    dataset: Dataset, ids: list[dict[str, str]], run: RunResult
) -> dict[str, dict[str, float]]:
    ranked: dict[str, dict[str, float]] = {}
    for q, key, ranking in zip(dataset.queries, ids, run.rankings, strict=True):
        n = len(ranking.order)
        ranked[q.id] = {
            key[q.doc_ids[pos]]: float(n - rank) for rank, pos in enumerate(ranking.order)
        }
    return ranked


def threshold_f1(dataset: Dataset, run: RunResult, threshold: float) -> float | None:
    """F1 of the decision ``score >= threshold`` over every (query, candidate) pair, against
    the relevance labels (micro-averaged: pairs, not queries, count equally). A query that
    fell back judged nothing: none of its pairs is predicted relevant, whatever the
    threshold (its 0.0 scores are unknown, not low). ``None`` for a run without
    probabilities (the first stage)."""
    tp = fp = fn = 0
    for q, ranking in zip(dataset.queries, run.rankings, strict=True):
        if ranking.scores is None:
            return None
        judged = ranking.fallback_reason is None
        for doc_id, score in zip(q.doc_ids, ranking.scores, strict=True):
            relevant = doc_id in q.relevance
            predicted = judged and score >= threshold
            tp += relevant and predicted
            fp += predicted and not relevant
            fn += relevant and not predicted
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
