"""``memreranker rerank``: rank the documents of a file (or stdin) against a query."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from memreranker.cli import (
    ExitStatus,
    Subparsers,
    UsageError,
    add_command,
    add_reranker_options,
    build_reranker,
    positive_int,
    probability,
    write_output,
)
from memreranker.types import RerankResult

DESCRIPTION = """\
Score documents against a query and print them best first: a table, or JSON with --json.

Documents come from --documents FILE (or stdin, "-"): a JSON list of strings, or one
document per line (blank lines are skipped). --format auto (the default) reads a file
whose first character is "[" as JSON; use --format lines for lines that start with "[".

"index" counts documents from 0, in input order: with one document per line it is not the
line number, which the table's "line" column and the JSON's "line" field give (1-based;
null for JSON input).

One call scores all documents: if any part of the scoring fails, nothing is scored and
the output is the fallback (input order, score 0, flagged, exit status 3), never a
partial ranking. The progress bar (on a terminal, or with --progress) needs tqdm
(pip install "memreranker[progress]"); without it there is no bar."""


@dataclass(frozen=True)
class Documents:
    """The documents of the input, and for one-per-line input their 1-based line numbers."""

    texts: list[str]
    lines: list[int] | None


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "rerank",
        help="rank documents by how well they answer a query",
        description=DESCRIPTION,
    )
    parser.add_argument("-q", "--query", required=True, help="the query text")
    parser.add_argument(
        "-d",
        "--documents",
        default="-",
        metavar="FILE",
        help='documents file: a JSON list of strings or one per line; "-" = stdin (default)',
    )
    parser.add_argument(
        "--format",
        choices=["auto", "json", "lines"],
        default="auto",
        help="how to read the documents (default: auto, see above)",
    )
    parser.add_argument(
        "--top-n",
        type=positive_int,
        default=None,
        metavar="N",
        help="keep the best N (default: all)",
    )
    parser.add_argument(
        "--score-threshold",
        type=probability,
        default=None,
        metavar="P",
        help="drop documents scoring below P, in [0, 1] (never applied to a fallback)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )
    shown.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show a progress bar"
    )
    add_reranker_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from memreranker.errors import MemRerankerError
    from memreranker.hub import check_hub, one_line

    if not args.query.strip():
        raise UsageError("--query must not be empty")
    documents = read_documents(args.documents, args.format)
    reranker = build_reranker(args)
    progress = args.progress if args.progress is not None else _is_terminal(sys.stderr)
    if args.progress and importlib.util.find_spec("tqdm") is None:
        sys.stderr.write(
            "memreranker: no progress bar: tqdm is not installed "
            '(pip install "memreranker[progress]")\n'
        )
    with reranker:
        model = reranker.settings.resolved_model()
        if reranker.settings.backend == "local" and documents.texts and model is not None:
            notice = check_hub(model)
            if notice is not None:
                sys.stderr.write(f"memreranker: {notice}\n")
        try:
            results = reranker.rerank(
                args.query,
                documents.texts,
                top_n=args.top_n,
                score_threshold=args.score_threshold,
                progress=progress,
            )
        except MemRerankerError as exc:  # --on-error raise
            sys.stderr.write(f"memreranker: {type(exc).__name__}: {one_line(exc, 1000)}\n")
            return ExitStatus.SCORING_FAILED
        except (TypeError, ValueError) as exc:  # caller mistakes, InputTooLongError included
            raise UsageError(one_line(exc, 1000)) from None
    write = write_json if args.json else write_table
    write_output(lambda out: write(results, documents, out))
    # All or nothing: one fallback result means the whole call fell back.
    return ExitStatus.FALLBACK if any(r.is_fallback for r in results) else ExitStatus.OK


def read_documents(source: str, fmt: str = "auto") -> Documents:
    """Read ``source`` (a path, or ``"-"`` for stdin); :class:`UsageError` when it cannot be."""
    if source == "-":
        if sys.stdin is None or _is_terminal(sys.stdin):
            raise UsageError("no documents: give --documents FILE, or pipe them into stdin")
        raw: bytes | str = (
            sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
        )
        name = "stdin"
    else:
        path = Path(source)
        name = source
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"--documents {source}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"--documents {source}: is a directory, not a file") from None
        except OSError as exc:
            raise UsageError(f"--documents {source}: cannot be read ({exc.strerror})") from None
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise UsageError(f"{name}: not UTF-8 text (line {line})") from None
    else:
        text = raw.removeprefix("\ufeff")
    return parse_documents(text, fmt, name=name)


def parse_documents(text: str, fmt: str = "auto", *, name: str = "input") -> Documents:
    """A JSON list of strings (``fmt="json"``, or ``"auto"`` with a leading ``[``), else one
    document per non-blank line, with its line number."""
    if fmt == "json" or (fmt == "auto" and text.lstrip().startswith("[")):
        return Documents(_json_list(text, name), None)
    texts: list[str] = []
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if line.strip():
            texts.append(line)
            lines.append(number)
    return Documents(texts, lines)


def _json_list(text: str, name: str) -> list[str]:
    hint = "for one document per line, use --format lines"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{name}: not a valid JSON list (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            f"{hint}"
        ) from None
    except RecursionError:  # CPython's parser gives up on very deep nesting
        raise UsageError(f"{name}: JSON nested too deeply (expected a list of strings)") from None
    if not isinstance(data, list):
        raise UsageError(f"{name}: JSON documents must be a list of strings, got {_kind(data)}")
    for i, item in enumerate(data):
        if not isinstance(item, str):
            raise UsageError(f"{name}: item {i} of the JSON list is {_kind(item)}, not a string")
    return data


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else "a value")


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def rows(results: Sequence[RerankResult], documents: Documents) -> list[dict[str, Any]]:
    """The JSON rows: rank, index, line, score, document, is_fallback, fallback_reason."""
    return [
        {
            "rank": rank,
            "index": r.index,
            "line": None if documents.lines is None else documents.lines[r.index],
            "score": r.score,
            "document": r.document,
            "is_fallback": r.is_fallback,
            "fallback_reason": r.fallback_reason,
        }
        for rank, r in enumerate(results, 1)
    ]


def write_json(results: Sequence[RerankResult], documents: Documents, out: TextIO) -> None:
    json.dump(rows(results, documents), out, ensure_ascii=False, indent=2)
    out.write("\n")


def write_table(results: Sequence[RerankResult], documents: Documents, out: TextIO) -> None:
    with_lines = documents.lines is not None
    out.write(f"{'rank':>4}  {'score':>7}  {'index':>5}  " + ("line  " if with_lines else ""))
    out.write("document\n")
    for row in rows(results, documents):
        text = " ".join(row["document"].split())
        text = text if len(text) <= 70 else text[:67] + "..."
        flag = "*" if row["is_fallback"] else " "
        line = f"{row['line']:>4}  " if with_lines else ""
        out.write(f"{row['rank']:>4}  {row['score']:>7.4f}{flag} {row['index']:>5}  {line}{text}\n")
    if any(r.is_fallback for r in results):
        out.write(
            "* not scored: the input order (fallback, exit status 3); the reason is on stderr\n"
        )
