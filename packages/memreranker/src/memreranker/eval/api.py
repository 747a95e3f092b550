"""``evaluate``: the first-stage order and each reranker, measured on one dataset."""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

from memreranker.document_template import check_document_template
from memreranker.eval.calibration import calibrate as calibrate_run
from memreranker.eval.dataset import Dataset
from memreranker.eval.loading import load_dataset
from memreranker.eval.metrics import STAT_TESTS, StatTest, ranking_metrics, threshold_f1
from memreranker.eval.report import Report, SystemResult
from memreranker.eval.runner import EvalProgress, RunResult, first_stage_run, run_reranker
from memreranker.eval.specs import BASELINE, RerankerSpec, parse_spec
from memreranker.http.protocol import redact_urls
from memreranker.reranker import MemReranker

Rerankers = Mapping[str, MemReranker] | Sequence[MemReranker | str]


def evaluate(
    dataset: Dataset | str | os.PathLike[str],
    rerankers: Rerankers = (),
    *,
    threshold: float = 0.5,
    stat_test: StatTest = "student",
    instruction: str | None = None,
    progress: bool | EvalProgress = False,
    calibrate: bool = False,
    document_template: str | None = None,
) -> Report:
    """Measure rerankers against the first-stage order of ``dataset``.

    Args:
        dataset: A :class:`Dataset` (see :func:`load_dataset` for first stages, candidate
            counts and LOCOMO categories) or the path of a JSONL / LOCOMO file.
        rerankers: ``{name: MemReranker}``, or a sequence of ``MemReranker`` (named by
            their backend label) and spec strings (``"local:PATH"``, ``"memos:MODEL"``,
            ``"vllm:MODEL@URL"``, ``"tei:URL"``, optionally ``"NAME=..."``). Rerankers built
            from specs are closed at the end; yours are left open. The credentials of a URL
            in a name are shown as ``***`` (``http://***@host``) everywhere.
        threshold: The P(yes) at or above which a pair counts as judged relevant (F1).
        stat_test: The paired test of each reranker against the baseline, per query:
            ``"student"`` (t-test) or ``"fisher"`` (randomization), as ranx computes them.
        instruction: The ``<Instruct>`` line for every call (``None``: each reranker's own).
        progress: ``True``: a tqdm bar per reranker (on stderr); a callable gets
            ``(name, done, total)`` in pairs. Fed by the core during each call.
        calibrate: Also sweep each reranker's threshold over every score it gave and
            report the F1-best one (:class:`~memreranker.eval.calibration.Calibration`:
            precision, recall, F1 pooled as the F1 column, the share of queries left with no
            memory at or above it; per category for LOCOMO) in ``SystemResult.calibration``.
        document_template: The ``document_template`` of the rerankers built from spec
            strings (e.g. ``"[{date}] {text}"``: each candidate's fields, a LOCOMO turn's
            session date among them, rendered into the text scored). A ``MemReranker`` you
            pass uses its own setting; one with another template is a ``ValueError``.
            Every call gets the candidates' fields as ``metadata=`` either way.

    Returns:
        The :class:`Report`: ``first-stage`` first, then the rerankers in the given order.
        A query whose call fell back counts in the metrics in first-stage order (score 0.0)
        and in the reranker's ``fallback_queries``.

    Raises:
        ValueError: Bad arguments, a bad spec, two rerankers with one name.
        memreranker.MemRerankerError: A reranker with ``on_error="raise"`` failed.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not (
        0.0 <= threshold <= 1.0
    ):
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    if stat_test not in STAT_TESTS:
        raise ValueError(f"stat_test must be one of {sorted(STAT_TESTS)}, got {stat_test!r}")
    if not isinstance(calibrate, bool):
        raise TypeError(f"calibrate must be a bool, got {type(calibrate).__name__}")
    document_template = check_document_template(document_template)
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset)
    named = _named(rerankers)
    if document_template is not None:
        for name, item in named:
            if isinstance(item, RerankerSpec):
                continue
            own = item.settings.document_template
            if own != document_template:
                raise ValueError(
                    f"rerankers: {name!r} is a MemReranker with document_template={own!r}; "
                    "document_template= applies to rerankers given as spec strings (build "
                    "yours with MemReranker(..., document_template=...))"
                )
    template = {} if document_template is None else {"document_template": document_template}
    with ExitStack() as owned:
        systems: list[tuple[str, MemReranker]] = []
        for name, item in named:
            if isinstance(item, RerankerSpec):
                reranker = item.build(**template)
                owned.callback(reranker.close)
            else:
                reranker = item
            systems.append((name, reranker))
        callback = _progress(progress, [name for name, _ in systems])
        try:
            runs = [first_stage_run(dataset, BASELINE)]
            for name, reranker in systems:
                runs.append(
                    run_reranker(
                        name, reranker, dataset, instruction=instruction, progress=callback
                    )
                )
        finally:
            close = getattr(callback, "close", None)
            if close is not None:
                close()
    metrics, p_values = ranking_metrics(dataset, runs, stat_test=stat_test)
    specs = {BASELINE: None, **{name: r.name for name, r in systems}}
    templates = {name: r.settings.document_template for name, r in systems}
    rows = {
        run.name: _row(dataset, run, metrics[run.name], p_values.get(run.name, {}),
                       specs[run.name], threshold, calibrate, templates.get(run.name))
        for run in runs
    }
    return Report(
        dataset=dataset.name,
        first_stage=dataset.first_stage,
        queries=len(dataset.queries),
        pairs=dataset.pairs,
        threshold=float(threshold),
        stat_test=stat_test,
        systems=rows,
        skipped=dict(dataset.skipped),
    )


def _named(rerankers: Rerankers) -> list[tuple[str, MemReranker | RerankerSpec]]:
    if isinstance(rerankers, Mapping):
        given: list[tuple[str | None, Any]] = list(rerankers.items())
    elif isinstance(rerankers, str | bytes) or not isinstance(rerankers, Sequence):
        raise TypeError(
            "rerankers must be a mapping of name to MemReranker or a sequence of MemReranker "
            f"and spec strings, got {type(rerankers).__name__}"
        )
    else:
        given = [(None, item) for item in rerankers]
    items: list[tuple[str, MemReranker | RerankerSpec]] = []
    for name, item in given:
        if isinstance(item, str):
            spec = parse_spec(item)
            items.append((spec.name if name is None else name, spec))
        elif isinstance(item, MemReranker):
            items.append((item.name if name is None else name, item))
        else:
            raise TypeError(
                f"rerankers: expected a MemReranker or a spec string, got {type(item).__name__}"
            )
    for name, _ in items:
        if not isinstance(name, str) or not name:
            raise ValueError(f"rerankers: a name must be a non-empty string, got {name!r}")
    items = [(redact_urls(name), item) for name, item in items]
    names = [name for name, _ in items]
    for name in names:
        if name == BASELINE:
            raise ValueError(f"rerankers: the name {BASELINE!r} is the baseline's")
        if names.count(name) > 1:
            raise ValueError(f"rerankers: two rerankers are named {name!r} (name them NAME=SPEC)")
    return items


def _row(
    dataset: Dataset,
    run: RunResult,
    ranking: dict[str, float],
    p_values: dict[str, float | None],
    spec: str | None,
    threshold: float,
    calibrate: bool,
    document_template: str | None,
) -> SystemResult:
    metrics: dict[str, float | None] = {**ranking, "F1": threshold_f1(dataset, run, threshold)}
    if not run.latencies:
        return SystemResult(run.name, metrics)
    busy = sum(run.latencies)
    return SystemResult(
        run.name,
        metrics,
        spec=spec,
        p_values=p_values,
        pairs_per_second=dataset.pairs / busy if busy > 0 else None,
        median_latency_ms=1000 * statistics.median(run.latencies),
        fallback_queries=run.fallbacks,
        fallback_reasons=run.fallback_reasons,
        calibration=calibrate_run(dataset, run) if calibrate else None,
        document_template=document_template,
    )


class _Bars:
    """One tqdm bar per reranker, opened when it starts, moved by the core's callbacks."""

    def __init__(self) -> None:
        self._name: str | None = None
        self._bar: Any = None

    def __call__(self, name: str, done: int, total: int) -> None:
        if name != self._name:
            self.close()
            from tqdm.auto import tqdm

            self._name = name
            self._bar = tqdm(total=total, desc=name, unit="pair", leave=True)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._name = None, None


def _progress(progress: bool | EvalProgress, names: list[str]) -> EvalProgress | None:
    if progress is True:
        return _Bars() if names else None
    if progress is False or progress is None:
        return None
    if callable(progress):
        return progress
    raise TypeError(
        f"progress must be a bool or a callable(name, done, total), got {type(progress).__name__}"
    )
