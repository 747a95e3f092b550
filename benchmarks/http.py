#!/usr/bin/env python
"""HTTP client overhead and async fan-out against a loopback vLLM-style rerank server.

The server (stdlib ``ThreadingHTTPServer``, in this script) speaks vLLM's ``/v1/rerank``
protocol and answers every request after a fixed delay (50 ms by default), so what is measured
is the client: per-call overhead of ``MemReranker(backend="vllm")`` against plain
``requests.post``, and ``asyncio.gather`` of 64 ``arerank`` calls against awaiting them one
by one.

Usage::

    python benchmarks/http.py [--delay-ms 50] [--calls 40] [--fanout 64] [--docs 20]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name shadows the
# standard library's ``http`` package (which requests and httpx import): drop that entry.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from typing import Any  # noqa: E402

ROOT = HERE.parent
MODEL = "memreranker-bench"


# The server -----------------------------------------------------------------------------


def score_of(query: str, document: str) -> float:
    digest = hashlib.blake2b(f"{query}\x00{document}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class RerankHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as vLLM (uvicorn) does
    # TCP_NODELAY, as uvicorn sets: otherwise a reused connection waits ~40 ms for the
    # client's delayed ACK before the body follows the headers (Nagle).
    disable_nagle_algorithm = True
    delay = 0.05

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        if self.path not in ("/rerank", "/v1/rerank", "/v2/rerank"):
            self._send(404, {"error": {"message": "not found", "type": "NotFound"}})
            return
        time.sleep(self.delay)
        docs = body["documents"]
        top_n = body.get("top_n") or len(docs)
        results = sorted(
            (
                {"index": i, "document": {"text": d}, "relevance_score": score_of(body["query"], d)}
                for i, d in enumerate(docs)
            ),
            key=lambda r: -r["relevance_score"],
        )[:top_n]
        tokens = sum(len(d.split()) for d in docs)
        self._send(
            200,
            {
                "id": "rerank-bench",
                "model": body.get("model") or MODEL,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "results": results,
            },
        )

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 64 concurrent connects must not overflow the listen backlog


def _serve(delay: float, ports: Any) -> None:
    RerankHandler.delay = delay
    server = Server(("127.0.0.1", 0), RerankHandler)
    ports.put(server.server_address[1])
    server.serve_forever()


def start_server(delay: float) -> tuple[multiprocessing.Process, str]:
    """The server in its own process, as a real one is: its work does not compete with the
    client's for this interpreter's GIL."""
    ports: Any = multiprocessing.Queue()
    process = multiprocessing.Process(target=_serve, args=(delay, ports), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{ports.get(timeout=30)}"


# Measurements ---------------------------------------------------------------------------


def timed(fn: Callable[[], object], calls: int) -> list[float]:
    fn()  # warm-up: connection, imports
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def plain_requests(url: str, query: str, docs: list[str]) -> Callable[[], object]:
    import requests

    def call() -> object:
        reply = requests.post(
            f"{url}/v1/rerank",
            json={"model": MODEL, "query": query, "documents": docs, "top_n": 0},
            timeout=30,
        )
        reply.raise_for_status()
        results = reply.json()["results"]
        return sorted(results, key=lambda r: -r["relevance_score"])

    return call


def session_requests(url: str, query: str, docs: list[str]) -> Callable[[], object]:
    import requests

    session = requests.Session()

    def call() -> object:
        reply = session.post(
            f"{url}/v1/rerank",
            json={"model": MODEL, "query": query, "documents": docs, "top_n": 0},
            timeout=30,
        )
        reply.raise_for_status()
        return sorted(reply.json()["results"], key=lambda r: -r["relevance_score"])

    return call


async def fan_out(reranker: Any, queries: list[str], docs: list[str]) -> float:
    start = time.perf_counter()
    results = await asyncio.gather(*(reranker.arerank(q, docs) for q in queries))
    elapsed = time.perf_counter() - start
    assert all(r and not r[0].is_fallback for r in results), "fallback results"
    return elapsed


async def raw_httpx(
    url: str, queries: list[str], docs: list[str], connections: int, rounds: int
) -> float:
    """The floor of the async stack: httpx alone, no client logic."""
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(q: str) -> object:
            payload = {"model": MODEL, "query": q, "documents": docs, "top_n": 0}
            reply = await client.post(f"{url}/v1/rerank", json=payload)
            reply.raise_for_status()
            return reply.json()["results"]

        await one(queries[0])
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            await asyncio.gather(*(one(q) for q in queries))
            times.append(time.perf_counter() - start)
    return statistics.median(times)


async def one_by_one(reranker: Any, queries: list[str], docs: list[str]) -> float:
    start = time.perf_counter()
    for q in queries:
        r = await reranker.arerank(q, docs)
        assert r and not r[0].is_fallback, "fallback results"
    return time.perf_counter() - start


def median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delay-ms", type=float, default=50)
    parser.add_argument("--calls", type=int, default=40, help="sequential calls per client")
    parser.add_argument("--fanout", type=int, default=64, help="queries in the async fan-out")
    parser.add_argument("--docs", type=int, default=20, help="documents per call")
    parser.add_argument("--rounds", type=int, default=5, help="fan-out rounds (median)")
    parser.add_argument(
        "--concurrency", default="default,16,32,64", help="max_concurrency values to try"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from tqdm import tqdm

    server, url = start_server(args.delay_ms / 1000)
    query = "What did the user tell me about their sister's trip to Berlin?"
    docs = [
        f"Memory {i}: the user mentioned item {i} while talking about Berlin."
        for i in range(args.docs)
    ]
    queries = [f"{query} (variant {i})" for i in range(args.fanout)]

    rows: list[tuple[str, float, str]] = []
    fan_rows: list[tuple[str, float]] = []
    progress = tqdm(total=6, desc="benchmark", unit="step")
    plain = median_ms(timed(plain_requests(url, query, docs), args.calls))
    progress.update()
    session = median_ms(timed(session_requests(url, query, docs), args.calls))
    progress.update()
    rows.append(("requests.post (new connection per call)", plain, "1.00x"))
    rows.append(("requests.Session().post (keep-alive)", session, f"{session / plain:.2f}x"))

    try:
        sys.path.insert(0, str(ROOT / "packages" / "memreranker" / "src"))
        from memreranker import MemReranker

        # The same bytes as the plain requests.post rows: measure the client, not the template.
        same = {"prompt_format": "plain"}
        reranker = MemReranker(backend="vllm", model=MODEL, base_url=url, on_error="raise", **same)
        ours = median_ms(timed(lambda: reranker.rerank(query, docs), args.calls))
        progress.update()

        async def async_single() -> list[float]:
            await reranker.arerank(query, docs)
            times = []
            for _ in range(args.calls):
                start = time.perf_counter()
                await reranker.arerank(query, docs)
                times.append(time.perf_counter() - start)
            return times

        ours_async = median_ms(asyncio.run(async_single()))
        progress.update()
        rows.append(("MemReranker(backend='vllm').rerank", ours, f"{ours / plain:.2f}x"))
        rows.append(
            ("MemReranker(backend='vllm').arerank", ours_async, f"{ours_async / plain:.2f}x")
        )

        async def sequential() -> float:
            await reranker.arerank(query, docs)  # warm the loop's connection pool
            return statistics.median(
                [await one_by_one(reranker, queries, docs) for _ in range(max(1, args.rounds // 2))]
            )

        async def gathered(client: Any) -> float:
            await client.arerank(query, docs)
            return statistics.median(
                [await fan_out(client, queries, docs) for _ in range(args.rounds)]
            )

        seq = asyncio.run(sequential())
        progress.update()
        for concurrency in args.concurrency.split(","):
            options: dict[str, Any] = dict(same)
            if concurrency != "default":
                options["max_concurrency"] = int(concurrency)
            client = MemReranker(
                backend="vllm", model=MODEL, base_url=url, on_error="raise", **options
            )
            label = "default settings" if len(options) == 1 else f"max_concurrency={concurrency}"
            fan_rows.append((label, asyncio.run(gathered(client))))
        fan_rows.append(
            (
                f"raw httpx.AsyncClient, {args.fanout} connections",
                asyncio.run(raw_httpx(url, queries, docs, args.fanout, args.rounds)),
            )
        )
        progress.update()
        error = None
    except Exception as exc:  # the client may not be finished yet
        error = f"{type(exc).__name__}: {exc}"
    progress.close()
    server.terminate()

    print(
        f"\nLoopback vLLM-style server, fixed {args.delay_ms:.0f} ms per request; "
        f"{args.docs} documents per call; medians of {args.calls} calls.\n"
    )
    print(
        "| client (sequential calls) | median ms/call | overhead over the delay "
        "| vs requests.post |"
    )
    print("|---|---:|---:|---:|")
    for name, ms, ratio in rows:
        print(f"| {name} | {ms:.1f} | {ms - args.delay_ms:.1f} | {ratio} |")
    if error is not None:
        print(f"\nMemReranker(backend='vllm') not measured: {error}")
        return
    print(f"\n{args.fanout} queries through arerank ({args.rounds} rounds, median):\n")
    print(f"One by one (await in a loop, default settings): {seq:.2f} s.\n")
    print("| asyncio.gather of arerank | seconds | speed-up vs one by one |")
    print("|---|---:|---:|")
    for label, seconds in fan_rows:
        print(f"| {label} | {seconds:.3f} | {seq / seconds:.1f}x |")


if __name__ == "__main__":
    main()
