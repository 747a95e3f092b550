"""``memreranker eval``: the command line over :func:`memreranker.eval.evaluate`.

Registered in :data:`memreranker.cli.COMMANDS`. Exit statuses as for every ``memreranker``
command (:class:`memreranker.cli.ExitStatus`): 0 every query was scored; 1 a reranker failed
with ``--on-error raise``; 2 a user error (missing or malformed data, a bad spec or option),
one line on stderr; 3 some reranker fell back on some queries (the report is printed all the
same, with the count in its fallbacks column; one line per such reranker on stderr).

Only light modules are imported with this module: the evaluation's dependencies (ranx,
bm25s, matplotlib) load when the subcommand runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from typing import Any

from memreranker.cli import (
    ExitStatus,
    Subparsers,
    UsageError,
    add_command,
    api_key_from_env,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)

HELP = "measure rerankers on your own memory data (MAP, MRR, NDCG, recall, F1)"


def register(subparsers: Subparsers) -> None:
    """Add the ``eval`` subcommand."""
    p = add_command(
        subparsers,
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
        "--candidates",
        type=positive_int,
        metavar="K",
        help="keep each query's first K candidates",
    )
    p.add_argument(
        "--category",
        action="append",
        metavar="N[,N...]",
        help="LOCOMO: keep these question categories (repeatable; 5 = adversarial)",
    )
    p.add_argument(
        "--threshold",
        type=probability,
        default=0.5,
        help="P(yes) judged relevant, for F1 (default: 0.5)",
    )
    p.add_argument("--stat-test", choices=["student", "fisher"], default="student")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="also write a grouped bar chart")
    p.add_argument("--instruction", default=None, help="custom <Instruct> line")
    p.add_argument("--device", default=None, help="torch device of local rerankers")
    p.add_argument("--batch-size", type=positive_int, default=None, help="pairs per forward pass")
    p.add_argument("--timeout", type=positive_float, default=None, help="seconds per HTTP attempt")
    p.add_argument("--max-retries", type=non_negative_int, default=None, help="HTTP retries")
    p.add_argument(
        "--api-key-env",
        default=None,
        metavar="NAME",
        help="give the key in the environment variable NAME to every hosted reranker (vllm, "
        "tei, memos; memos reads $MEMOS_API_KEY without it); never on the command line",
    )
    p.add_argument("--on-error", choices=["fallback", "raise"], default="fallback")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``memreranker eval`` for parsed ``args``; returns the exit status."""
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
        raise UsageError(str(exc)) from None
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
            return ExitStatus.SCORING_FAILED
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
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
            raise UsageError(f"cannot write the plot {args.plot}: {exc}") from None
    for name, count in report.fallbacks.items():
        reasons = report.systems[name].fallback_reasons
        first = max(reasons, key=reasons.__getitem__)
        _say(f"{name} fell back on {count}/{report.queries} queries: {first}")
    return ExitStatus.FALLBACK if report.fallbacks else ExitStatus.OK


def _prepare(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The dataset and the rerankers, or a ValueError that is the user's to fix."""
    from memreranker.eval.loading import SAMPLE_DATA, load_dataset
    from memreranker.eval.specs import parse_spec

    if args.sample == (args.data is not None):
        raise ValueError("give a data file or --sample (one of them)")
    categories = _categories(args.category)
    specs = [parse_spec(s) for s in args.reranker]  # every spec checked before any work
    if args.plot:
        from memreranker.eval.plot import check_plot_path

        check_plot_path(args.plot)
    key = None if args.api_key_env is None else api_key_from_env(args.api_key_env)
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
            hosted = {} if key is None or spec.backend == "local" else {"api_key": key}
            rerankers[spec.name] = spec.build(**options, **hosted)
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
