"""``memreranker eval``: the command line over :func:`memreranker.eval.evaluate`.

``add_parser(subparsers)`` registers the subcommand, ``run(args)`` runs it and returns the
exit status: 0 every query was scored; 1 a reranker failed with ``--on-error raise``; 2 a
user error (missing or malformed data, a bad spec or option), one line on stderr; 3 some
reranker fell back on some queries (the report is printed all the same, with the count in
its fallbacks column; one line per such reranker on stderr).

Only argparse is imported with this module: the evaluation's dependencies (ranx, bm25s,
matplotlib) load when the subcommand runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from typing import Any

HELP = "measure rerankers on your own memory data (MAP, MRR, NDCG, recall, F1)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an ``add_subparsers()`` object."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "eval",
        help=HELP,
        description=HELP + ". The first-stage order is always the baseline, 'first-stage'.",
    )
    p.add_argument(
        "data",
        nargs="?",
        help="a JSONL file (one query a line) or LOCOMO JSON (locomo10.json layout)",
    )
    p.add_argument(
        "--sample", action="store_true", help="use the bundled sample (a dozen memory questions)"
    )
    p.add_argument("--format", choices=["auto", "jsonl", "locomo"], default="auto")
    p.add_argument(
        "--reranker",
        action="append",
        default=[],
        metavar="SPEC",
        help="[NAME=]local:PATH_OR_HUB_ID, memos:MODEL, vllm:MODEL@URL or tei:URL; repeatable",
    )
    p.add_argument(
        "--first-stage",
        choices=["none", "bm25"],
        default="none",
        help="order of the candidates before reranking: the file's (none) or BM25's",
    )
    p.add_argument(
        "--candidates", type=int, metavar="K", help="keep each query's first K candidates"
    )
    p.add_argument(
        "--category",
        action="append",
        metavar="N[,N...]",
        help="LOCOMO: keep these question categories (repeatable; 5 = adversarial)",
    )
    p.add_argument(
        "--threshold", type=float, default=0.5, help="P(yes) judged relevant, for F1 (0.5)"
    )
    p.add_argument("--stat-test", choices=["student", "fisher"], default="student")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="also write a grouped bar chart")
    p.add_argument("--instruction", default=None, help="custom <Instruct> line")
    p.add_argument("--device", default=None, help="torch device of local rerankers")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per forward pass")
    p.add_argument("--timeout", type=float, default=None, help="seconds per HTTP attempt")
    p.add_argument("--max-retries", type=int, default=None, help="HTTP retries")
    p.add_argument("--on-error", choices=["fallback", "raise"], default="fallback")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO, every warning")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``memreranker eval`` for parsed ``args``; returns the exit status."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    repeats = _OncePerMessage()
    core_logger = logging.getLogger("memreranker")
    if not args.verbose:
        core_logger.addFilter(repeats)
    try:
        return _run(args)
    finally:
        core_logger.removeFilter(repeats)
        if repeats.hidden:
            _say(f"{repeats.hidden} repeated warnings not shown (-v shows them)")


def _run(args: argparse.Namespace) -> int:
    from memreranker.errors import MemRerankerError

    try:
        dataset, rerankers = _prepare(args)
    except (ValueError, TypeError) as exc:
        _say(f"error: {exc}")
        return 2
    try:
        from memreranker.eval.api import evaluate

        try:
            report = evaluate(
                dataset,
                rerankers,
                threshold=args.threshold,
                stat_test=args.stat_test,
                instruction=args.instruction,
                progress=not args.no_progress,
            )
        except MemRerankerError as exc:  # --on-error raise
            _say(f"{type(exc).__name__}: {exc}")
            return 1
        except (ValueError, TypeError) as exc:
            _say(f"error: {exc}")
            return 2
    finally:
        for reranker in rerankers.values():
            reranker.close()

    if args.json:
        json.dump(report.to_dict(), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report.to_markdown())
    sys.stdout.flush()
    if args.plot:
        from memreranker.eval.plot import plot_report

        try:
            plot_report(report, args.plot)
        except (OSError, ValueError) as exc:
            _say(f"error: cannot write the plot {args.plot}: {exc}")
            return 2
    for name, count in report.fallbacks.items():
        reasons = report.systems[name].fallback_reasons
        first = max(reasons, key=reasons.__getitem__)
        _say(f"{name} fell back on {count}/{report.queries} queries: {first}")
    return 3 if report.fallbacks else 0


def _prepare(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The dataset and the rerankers, or a ValueError that is the user's to fix."""
    from memreranker.eval.loading import SAMPLE_DATA, load_dataset
    from memreranker.eval.specs import parse_spec

    if args.sample == (args.data is not None):
        raise ValueError("give a data file or --sample (one of them)")
    categories = _categories(args.category)
    if args.threshold != args.threshold or not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.candidates is not None and args.candidates < 1:
        raise ValueError(f"--candidates must be at least 1, got {args.candidates}")
    specs = [parse_spec(s) for s in args.reranker]  # every spec checked before any work
    dataset = load_dataset(
        SAMPLE_DATA if args.sample else args.data,
        format=args.format,
        categories=categories,
        first_stage=args.first_stage,
        candidates=args.candidates,
    )
    if args.sample:  # not the path inside site-packages
        dataset = replace(dataset, name=f"bundled sample {SAMPLE_DATA.name}")
    options: dict[str, Any] = {"on_error": args.on_error}
    for name in ("device", "batch_size", "timeout", "max_retries"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    rerankers: dict[str, Any] = {}
    try:
        for spec in specs:
            if spec.name in rerankers:
                raise ValueError(f"two rerankers are named {spec.name!r} (name them NAME=SPEC)")
            rerankers[spec.name] = spec.build(**options)
    except BaseException:
        for reranker in rerankers.values():
            reranker.close()
        raise
    return dataset, rerankers


def _categories(values: list[str] | None) -> set[int] | None:
    if not values:
        return None
    out: set[int] = set()
    for value in values:
        for part in value.split(","):
            try:
                out.add(int(part))
            except ValueError:
                raise ValueError(f"--category takes integers, got {part!r}") from None
    return out


def _say(message: str) -> None:
    sys.stderr.write(f"memreranker eval: {message}\n")


class _OncePerMessage(logging.Filter):
    """Let each warning through once per message and subject: a dead server or a missing
    model would otherwise print the same fallback warning for every query. The report
    counts them all; ``-v`` shows every one."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = 0
        self._seen: set[tuple[object, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        subject = record.args[0] if isinstance(record.args, tuple) and record.args else None
        key = (record.msg, str(subject))
        if key in self._seen:
            self.hidden += 1
            return False
        self._seen.add(key)
        return True
