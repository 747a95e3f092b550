"""``memreranker rerank``: rank documents from a file or stdin against a query."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from memreranker.eval import cli as eval_cli
from memreranker.ranking import rank
from memreranker.reranker import MemReranker
from memreranker.types import RerankResult

CHUNK = 64


def read_documents(stream: TextIO) -> list[str]:
    """A JSON list of strings, or one document per non-empty line."""
    text = stream.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, list):
            if not all(isinstance(d, str) for d in data):
                raise ValueError("a JSON documents file must be a list of strings")
            return data
    return [line for line in text.splitlines() if line.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memreranker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("rerank", help="rank documents by relevance to a query")
    p.add_argument("--query", required=True, help="the query text")
    p.add_argument(
        "--documents", default="-", help="file with one document per line or a JSON list; - = stdin"
    )
    p.add_argument("--top-n", type=int, default=None, help="keep the best N (default: all)")
    p.add_argument("--backend", choices=["local", "memos", "vllm"], default="local")
    p.add_argument("--model", default=None, help="Hub id / directory, or the served model name")
    p.add_argument("--base-url", default=None, help="service URL (memos, vllm)")
    p.add_argument("--instruction", default=None, help="custom <Instruct> line (local)")
    p.add_argument("--device", default=None, help="torch device for local weights")
    p.add_argument("--on-error", choices=["fallback", "raise"], default="fallback")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    eval_cli.add_parser(sub)
    return parser


def _rerank_with_progress(
    reranker: MemReranker, query: str, docs: list[str], top_n: int | None, show: bool
) -> list[RerankResult]:
    """Score in chunks so that a bar can move; scores do not depend on the chunking."""
    if len(docs) <= CHUNK:
        return reranker.rerank(query, docs, top_n=top_n)
    from tqdm import tqdm

    merged: list[RerankResult] = []
    with tqdm(total=len(docs), unit="doc", disable=not show, file=sys.stderr) as bar:
        for start in range(0, len(docs), CHUNK):
            part = reranker.rerank(query, docs[start : start + CHUNK])
            merged.extend(
                RerankResult(r.index + start, r.document, r.score, r.is_fallback, r.fallback_reason)
                for r in part
            )
            bar.update(len(part))
    scored = {r.index: r for r in merged}
    order = rank(docs, ((r.index, r.score) for r in merged), top_n=top_n, score_threshold=None)
    return [scored[r.index] for r in order]


def _print_table(results: Sequence[RerankResult], out: TextIO) -> None:
    out.write(f"{'rank':>4}  {'score':>7}  {'index':>5}  document\n")
    for rank_no, r in enumerate(results, 1):
        text = " ".join(r.document.split())
        text = text if len(text) <= 70 else text[:67] + "..."
        flag = "*" if r.is_fallback else " "
        out.write(f"{rank_no:>4}  {r.score:>7.4f}{flag} {r.index:>5}  {text}\n")
    if any(r.is_fallback for r in results):
        out.write("* not scored (fallback, input order): see the warning above\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "eval":
        return eval_cli.run(args)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.documents == "-":
        docs = read_documents(sys.stdin)
    else:
        with open(args.documents, encoding="utf-8") as handle:
            docs = read_documents(handle)

    options: dict[str, Any] = {"on_error": args.on_error}
    for name in ("base_url", "instruction", "device"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    try:
        reranker = MemReranker(args.backend, args.model, **options)
        with reranker:
            results = _rerank_with_progress(
                reranker, args.query, docs, args.top_n, not args.no_progress
            )
    except (TypeError, ValueError) as exc:
        sys.stderr.write(f"memreranker: error: {exc}\n")
        return 2
    except Exception as exc:  # on_error="raise": a scoring failure, reported without a trace
        sys.stderr.write(f"memreranker: {type(exc).__name__}: {exc}\n")
        return 1

    if args.json:
        json.dump(
            [
                {
                    "rank": n,
                    "index": r.index,
                    "score": r.score,
                    "document": r.document,
                    "is_fallback": r.is_fallback,
                    "fallback_reason": r.fallback_reason,
                }
                for n, r in enumerate(results, 1)
            ],
            sys.stdout,
            ensure_ascii=False,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        _print_table(results, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
