"""The evaluation report: one row per system, as a Markdown table or JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from memreranker.eval.calibration import Calibration
from memreranker.eval.metrics import METRICS, STAT_TESTS

SIGNIFICANCE = 0.05
"""p-value under which the Markdown table marks a metric as different from the baseline."""

NONE = "-"
"""A cell without a value (the baseline's F1, speed and fallbacks)."""


@dataclass(frozen=True)
class SystemResult:
    """One row of the report.

    Attributes:
        name: ``first-stage`` or the reranker's name.
        spec: How the reranker was built (its backend label), ``None`` for the baseline.
        metrics: Metric name (:data:`memreranker.eval.METRICS`) -> value; ``F1`` is ``None``
            for the baseline, which has no probabilities.
        p_values: Metric -> p-value of the paired test against the baseline (``None`` where
            undefined: identical rankings); empty for the baseline. F1 is pooled over pairs,
            so it has none.
        pairs_per_second: Pairs scored per second of rerank calls, fallbacks included.
        median_latency_ms: Median duration of one query's rerank call.
        fallback_queries: Queries whose call fell back (ranked in first-stage order, score
            0.0): they count in the metrics as such.
        fallback_reasons: Fallback reason -> number of queries.
        calibration: The F1-best threshold found by ``calibrate=True`` (``None`` without
            it, and for the baseline).
        document_template: The reranker's ``document_template`` (``None``: plain texts).
    """

    name: str
    metrics: dict[str, float | None]
    spec: str | None = None
    p_values: dict[str, float | None] = field(default_factory=dict)
    pairs_per_second: float | None = None
    median_latency_ms: float | None = None
    fallback_queries: int = 0
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    calibration: Calibration | None = None
    document_template: str | None = None


@dataclass(frozen=True)
class Report:
    """What :func:`memreranker.eval.evaluate` returns.

    ``report.results[name][metric]`` is a value; ``report.systems[name]`` the whole row.
    """

    dataset: str
    first_stage: str
    queries: int
    pairs: int
    threshold: float
    stat_test: str
    systems: dict[str, SystemResult]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def calibrations(self) -> dict[str, Calibration]:
        """Reranker name -> its calibration (empty unless ``calibrate=True``)."""
        return {n: s.calibration for n, s in self.systems.items() if s.calibration is not None}

    @property
    def results(self) -> dict[str, dict[str, float | None]]:
        return {name: dict(s.metrics) for name, s in self.systems.items()}

    @property
    def fallbacks(self) -> dict[str, int]:
        """Reranker name -> queries that fell back (only those with any)."""
        return {n: s.fallback_queries for n, s in self.systems.items() if s.fallback_queries}

    def best(self, metric: str) -> list[str]:
        """The systems with the highest value of ``metric`` (several on a tie)."""
        values = {n: s.metrics[metric] for n, s in self.systems.items()}
        known = [v for v in values.values() if v is not None]
        if not known:
            return []
        top = max(known)
        return [n for n, v in values.items() if v is not None and v == top]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"results": {name: {metric: value}}, "queries": n, ...}``; with
        calibration, ``"calibration": {name: {"threshold", "f1", "precision", "recall",
        "empty_queries", ...}}``."""
        out: dict[str, Any] = {
            "results": self.results,
            "p_values": {n: dict(s.p_values) for n, s in self.systems.items() if s.p_values},
            "rerankers": {
                n: {
                    "spec": s.spec,
                    "pairs_per_second": s.pairs_per_second,
                    "median_latency_ms": s.median_latency_ms,
                    "fallback_queries": s.fallback_queries,
                    "fallback_reasons": dict(s.fallback_reasons),
                    "document_template": s.document_template,
                }
                for n, s in self.systems.items()
                if s.spec is not None
            },
            "metrics": list(METRICS),
            "queries": self.queries,
            "pairs": self.pairs,
            "dataset": self.dataset,
            "first_stage": self.first_stage,
            "threshold": self.threshold,
            "stat_test": self.stat_test,
            "skipped": dict(self.skipped),
        }
        if self.calibrations:
            out["calibration"] = {n: c.to_dict() for n, c in self.calibrations.items()}
        return out

    def to_markdown(self) -> str:
        """Systems as rows, metrics as columns, the best of each column in bold; a † marks
        a paired-test difference from the baseline at p < 0.05."""
        best = {m: set(self.best(m)) for m in METRICS}
        calibrated = bool(self.calibrations)
        extra = ["best F1", "at >="] if calibrated else []
        head = ["system", *METRICS, *extra, "pairs/s", "ms/query", "fallbacks"]
        lines = [
            "| " + " | ".join(head) + " |",
            "|---|" + "---:|" * (len(head) - 1),
        ]
        for name, s in self.systems.items():
            cells = [name]
            for m in METRICS:
                value = s.metrics[m]
                if value is None:
                    cells.append(NONE)
                    continue
                cell = f"{value:.3f}"
                if name in best[m] and len(self.systems) > 1:
                    cell = f"**{cell}**"
                p = s.p_values.get(m)
                if p is not None and p < SIGNIFICANCE:
                    cell += "†"
                cells.append(cell)
            if calibrated:
                cal = s.calibration
                cells.append(NONE if cal is None else f"{cal.f1:.3f}")
                cells.append(NONE if cal is None else _threshold_cell(cal.threshold))
            cells.append(NONE if s.pairs_per_second is None else f"{s.pairs_per_second:,.1f}")
            cells.append(NONE if s.median_latency_ms is None else f"{s.median_latency_ms:,.1f}")
            cells.append(NONE if s.spec is None else f"{s.fallback_queries}/{self.queries}")
            lines.append("| " + " | ".join(cells) + " |")
        notes = [
            f"{self.queries} queries, {self.pairs} pairs ({self.dataset}; candidates: "
            f"{self.first_stage}).",
            f"Bold: best in column. †: differs from first-stage at p < {SIGNIFICANCE} "
            f"({STAT_TESTS.get(self.stat_test, self.stat_test)}). "
            f"F1: score >= {self.threshold:g} as the relevance decision, over all pairs.",
        ]
        if any(s.fallback_queries for s in self.systems.values()):
            notes.append(
                "A query that fell back counts in the metrics in first-stage order, score 0.0."
            )
        if self.skipped:
            notes.append(
                "Skipped: " + ", ".join(f"{n} {why}" for why, n in self.skipped.items()) + "."
            )
        templates = {n: s.document_template for n, s in self.systems.items() if s.document_template}
        if templates:
            notes.append(
                "Documents scored as: "
                + ", ".join(f"{n}: {t!r}" for n, t in templates.items())
                + " (the others: their plain text)."
            )
        if calibrated:
            notes.append(
                "best F1: the F1 of the best threshold, swept over every score the reranker "
                "gave (at >=: that threshold, rounded down, for score_threshold)."
            )
        out = "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"
        if calibrated:
            out += "\n" + self._calibration_markdown()
        return out

    def _calibration_markdown(self) -> str:
        """Each reranker's calibration, with a row per LOCOMO category below it."""
        lines = [
            "| calibration | threshold | precision | recall | F1 | queries left empty |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, cal in self.calibrations.items():
            rows = [(name, cal), *((f"{name}, category {c}", v) for c, v in cal.categories.items())]
            for label, c in rows:
                lines.append(
                    f"| {label} | {_threshold_cell(c.threshold)} | {c.precision:.3f} | "
                    f"{c.recall:.3f} | {c.f1:.3f} | {c.empty_queries:.1%} |"
                )
        return (
            "\n".join(lines)
            + "\n\nPooled over all pairs, as F1; each category is swept on its own. Queries "
            "left empty: the share with no memory at or above the threshold.\n"
        )


def _threshold_cell(threshold: float | None) -> str:
    # Rounded down so that score_threshold=<the cell> still keeps the pair scored exactly
    # at the threshold (the decision is >=); the JSON report has the exact value.
    if threshold is None:
        return NONE
    return f"{math.floor(threshold * 10_000) / 10_000:.4f}"
