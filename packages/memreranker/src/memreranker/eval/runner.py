"""Running rerankers over a dataset: one ``rerank`` call per query, timed, fallbacks counted."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from memreranker.errors import MemRerankerError
from memreranker.eval.dataset import Dataset
from memreranker.reranker import MemReranker

EvalProgress = Callable[[str, int, int], None]
"""``progress(name, done, total)``: pairs scored so far by reranker ``name``, out of the
dataset's pairs. ``done`` goes back when the core restarts a call (a fallback reranker of
the chain takes over)."""


@dataclass
class Ranking:
    """What one system made of one query."""

    order: list[int]
    """Positions in the query's candidates, best first."""
    scores: list[float] | None
    """P(yes) per candidate position (None for the first stage, which has no probability)."""
    fallback_reason: str | None = None


@dataclass
class RunResult:
    """One system over the whole dataset."""

    name: str
    rankings: list[Ranking]
    latencies: list[float] = field(default_factory=list)
    """Seconds per rerank call (empty for the first stage)."""

    @property
    def fallbacks(self) -> int:
        return sum(1 for r in self.rankings if r.fallback_reason is not None)

    @property
    def fallback_reasons(self) -> dict[str, int]:
        return dict(Counter(r.fallback_reason for r in self.rankings if r.fallback_reason))


def first_stage_run(dataset: Dataset, name: str) -> RunResult:
    """The candidates in the order the first stage gave them."""
    return RunResult(
        name, [Ranking(list(range(len(q.documents))), None) for q in dataset.queries]
    )


def run_reranker(
    name: str,
    reranker: MemReranker,
    dataset: Dataset,
    *,
    instruction: str | None = None,
    progress: EvalProgress | None = None,
) -> RunResult:
    """Rerank every query once. Each query is one ``rerank`` call (all or nothing: a call
    that falls back ranks its candidates in first-stage order, flagged), given the
    candidates' fields as ``metadata=`` (the reranker's ``document_template`` decides what
    is scored). With ``on_error="raise"`` the first failure propagates."""
    try:
        reranker.load()  # loading weights is not a query's latency
    except MemRerankerError:
        if reranker.settings.on_error == "raise":
            raise
        # Otherwise every call retries the load and falls back, reported per query.
    total = dataset.pairs
    finished = 0
    result = RunResult(name, [])
    for q in dataset.queries:
        callback = None
        if progress is not None:
            base = finished

            def callback(done: int, _total: int, base: int = base) -> None:
                progress(name, base + done, total)

        start = time.perf_counter()
        results = reranker.rerank(
            q.query,
            list(q.documents),
            instruction=instruction,
            progress=callback,
            metadata=None if q.metadata is None else list(q.metadata),
        )
        result.latencies.append(time.perf_counter() - start)
        scores = [0.0] * len(q.documents)
        for r in results:
            scores[r.index] = r.score
        reason = next((r.fallback_reason or "fallback" for r in results if r.is_fallback), None)
        result.rankings.append(Ranking([r.index for r in results], scores, reason))
        finished += len(q.documents)
        if progress is not None:
            progress(name, finished, total)
    return result
