"""``memreranker.eval``: measure rerankers on your own memory data, with the paper's metrics.

>>> from memreranker import MemReranker
>>> from memreranker.eval import SAMPLE_DATA, evaluate
>>> report = evaluate(SAMPLE_DATA, {"MemReranker-4B": MemReranker()})  # doctest: +SKIP
>>> print(report.to_markdown())  # doctest: +SKIP

Needs ``pip install "memreranker[eval]"`` (ranx, bm25s, matplotlib). Importing this package
is light: those load when an evaluation, a BM25 first stage or a plot runs. ``import
memreranker`` never imports this package.
"""

from __future__ import annotations

from memreranker.eval.api import evaluate
from memreranker.eval.calibration import Calibration
from memreranker.eval.dataset import Dataset, DatasetError, EvalQuery
from memreranker.eval.loading import SAMPLE_DATA, load_dataset, read_jsonl, read_locomo
from memreranker.eval.metrics import METRICS
from memreranker.eval.plot import plot_report
from memreranker.eval.report import Report, SystemResult
from memreranker.eval.specs import BASELINE, RerankerSpec, parse_spec

__all__ = [
    "BASELINE",
    "Calibration",
    "METRICS",
    "SAMPLE_DATA",
    "Dataset",
    "DatasetError",
    "EvalQuery",
    "RerankerSpec",
    "Report",
    "SystemResult",
    "evaluate",
    "load_dataset",
    "parse_spec",
    "plot_report",
    "read_jsonl",
    "read_locomo",
]
