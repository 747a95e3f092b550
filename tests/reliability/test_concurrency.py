"""One instance shared by 16 threads and by 200 asyncio tasks, on local weights (the tiny
model) and on the HTTP backend (the loopback server): results equal the sequential ones, no
deadlock (every wait has a timeout), memory stays bounded, one async HTTP client per loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from servers import RerankServer, Score, deterministic_score

from memreranker import MemReranker, RerankResult
from memreranker.http.async_transport import AsyncTransport

pytestmark = pytest.mark.timeout(120)

DOCS = [
    "The user drinks green tea every morning.",
    "The user's sister Anna lives in Berlin.",
    "Coffee after lunch, never tea.",
    "Flight to Berlin booked for 2026-05-14.",
    "用户喜欢打羽毛球",
    "Meeting with Bob moved to Friday 🎉",
]
QUERIES = [
    "What does the user drink?",
    "Who lives in Berlin?",
    "When is the flight?",
    "What sport does the user play?",
]
WAIT = 60  # seconds any single future may take before the test calls it a deadlock


def key(results: list[RerankResult]) -> list[tuple[int, float, bool]]:
    return [(r.index, r.score, r.is_fallback) for r in results]


def expected_http(query: str) -> list[tuple[int, float, bool]]:
    scored = sorted(
        ((i, deterministic_score(query, d)) for i, d in enumerate(DOCS)),
        key=lambda p: (-p[1], p[0]),
    )
    return [(i, s, False) for i, s in scored]


def hosted(server: RerankServer, **options: Any) -> MemReranker:
    return MemReranker("vllm", base_url=server.url, on_error="raise", timeout=10.0, **options)


def async_clients(rr: MemReranker) -> dict[int, Any]:
    transport = rr.backend._async  # type: ignore[attr-defined]
    assert isinstance(transport, AsyncTransport)
    return transport._clients


def in_threads(rr: MemReranker, calls: list[str], threads: int = 16) -> list[list[RerankResult]]:
    barrier = threading.Barrier(threads)

    def work(query: str, first: bool) -> list[RerankResult]:
        if first:
            barrier.wait(timeout=WAIT)  # all threads start together
        return rr.rerank(query, DOCS)

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(work, q, i < threads) for i, q in enumerate(calls)]
        return [f.result(timeout=WAIT) for f in futures]


def in_tasks(rr: MemReranker, calls: list[str]) -> list[list[RerankResult]]:
    async def main() -> list[list[RerankResult]]:
        return await asyncio.wait_for(
            asyncio.gather(*(rr.arerank(q, DOCS) for q in calls)), timeout=WAIT
        )

    return asyncio.run(main())


# --- Local weights --------------------------------------------------------------------------


def test_local_shared_by_16_threads(tiny_reranker: MemReranker) -> None:
    sequential = {q: key(tiny_reranker.rerank(q, DOCS)) for q in QUERIES}
    calls = [QUERIES[i % len(QUERIES)] for i in range(48)]
    for query, results in zip(calls, in_threads(tiny_reranker, calls), strict=True):
        assert key(results) == sequential[query]


def test_local_shared_by_200_tasks(tiny_reranker: MemReranker) -> None:
    sequential = {q: key(tiny_reranker.rerank(q, DOCS)) for q in QUERIES}
    calls = [QUERIES[i % len(QUERIES)] for i in range(200)]
    for query, results in zip(calls, in_tasks(tiny_reranker, calls), strict=True):
        assert key(results) == sequential[query]


def test_local_first_load_raced_by_16_threads(
    tiny_model: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Nobody loaded it yet: the 16 threads race for the lazy load, which must happen once.
    rr = MemReranker(model=str(tiny_model), max_length=256, on_error="raise")
    caplog.set_level(logging.INFO, logger="memreranker")
    caplog.clear()
    results = in_threads(rr, [QUERIES[0]] * 16)
    assert all(key(r) == key(results[0]) for r in results)
    loads = [r for r in caplog.records if r.getMessage().startswith("loaded ")]
    assert len(loads) == 1, f"the weights were loaded {len(loads)} times"
    assert rr.backend._engine is not None  # type: ignore[attr-defined]
    rr.close()


def test_local_forward_passes_never_overlap(tiny_reranker: MemReranker) -> None:
    # One forward at a time: it already uses every core (or the GPU), and the tokenizer is
    # not thread-safe. Hooks on the real model count the forwards in flight; the short sleep
    # in each keeps a forward open long enough for a second one to show if it could start.
    engine = tiny_reranker.backend.load()  # type: ignore[attr-defined]
    decoder = engine.loaded.decoder
    lock = threading.Lock()
    state = {"in_flight": 0, "peak": 0, "forwards": 0}

    def enter(module: Any, args: Any, kwargs: Any) -> None:
        with lock:
            state["in_flight"] += 1
            state["forwards"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
        time.sleep(0.002)

    def leave(module: Any, args: Any, kwargs: Any, output: Any) -> None:
        with lock:
            state["in_flight"] -= 1

    hooks = [
        decoder.register_forward_pre_hook(enter, with_kwargs=True),
        decoder.register_forward_hook(leave, with_kwargs=True),
    ]
    try:
        calls = [f"{QUERIES[i % 4]} ({i})" for i in range(32)]
        in_threads(tiny_reranker, calls)
        in_tasks(tiny_reranker, calls[:16])
    finally:
        for hook in hooks:
            hook.remove()
    assert state["forwards"] >= 48
    assert state["peak"] == 1, f"{state['peak']} forward passes ran at once"


def test_local_arerank_leaves_the_event_loop_free(tiny_reranker: MemReranker) -> None:
    # The README promises local inference runs off the event loop: a ticker task keeps
    # ticking while a long local arerank runs. Run on the loop, it could not tick at all.
    docs = [
        f"memory {i}: the user drinks {('tea', 'coffee')[i % 2]} at {i % 24}h" for i in range(400)
    ]

    async def main() -> tuple[int, float]:
        ticks: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.005)

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        start = time.monotonic()
        results = await tiny_reranker.arerank("What does the user drink, and when?", docs)
        end = time.monotonic()
        done.set()
        await task
        assert len(results) == len(docs) and not any(r.is_fallback for r in results)
        return sum(start < t < end for t in ticks), end - start

    ticks, elapsed = asyncio.run(main())
    assert ticks >= 3, f"the loop ticked {ticks} times during a {elapsed:.2f}s local arerank"


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_local_memory_bounded(tiny_reranker: MemReranker) -> None:
    for q in QUERIES * 5:  # warm-up: allocator pools, tokenizer caches
        tiny_reranker.rerank(q, DOCS)
    gc.collect()
    before = rss_bytes()
    for i in range(150):
        tiny_reranker.rerank(f"{QUERIES[i % 4]} {i}", DOCS)
    asyncio.run(_many_async(tiny_reranker, 50))
    gc.collect()
    growth = rss_bytes() - before
    assert growth < 32 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 200 calls"


async def _many_async(rr: MemReranker, n: int) -> None:
    for i in range(n):
        await rr.arerank(f"{QUERIES[i % 4]} {i}", DOCS)


# --- HTTP -----------------------------------------------------------------------------------


def test_http_shared_by_16_threads(rerank_server: RerankServer) -> None:
    rerank_server.default = Score(shuffle=True, delay=0.005)
    rr = hosted(rerank_server)
    calls = [QUERIES[i % len(QUERIES)] for i in range(128)]
    for query, results in zip(calls, in_threads(rr, calls), strict=True):
        assert key(results) == expected_http(query)
    assert rerank_server.peak_in_flight > 1  # really concurrent
    assert len(rerank_server.requests) == 128
    rr.close()


def test_http_shared_by_200_tasks_one_client(rerank_server: RerankServer) -> None:
    rerank_server.default = Score(shuffle=True, delay=0.005)
    rr = hosted(rerank_server)
    calls = [QUERIES[i % len(QUERIES)] for i in range(200)]

    async def main() -> list[list[RerankResult]]:
        results = await asyncio.wait_for(
            asyncio.gather(*(rr.arerank(q, DOCS) for q in calls)), timeout=WAIT
        )
        assert len(async_clients(rr)) == 1  # one pooled client for the loop, not 200
        await rr.aclose()
        return results

    for query, results in zip(calls, asyncio.run(main()), strict=True):
        assert key(results) == expected_http(query)
    assert rerank_server.peak_in_flight > 1
    assert async_clients(rr) == {}


def test_http_threads_with_their_own_loops_and_sync_callers_at_once(
    rerank_server: RerankServer,
) -> None:
    # 8 threads call rerank, 8 others each run their own event loop with 25 tasks: sync pool,
    # async clients per loop, retries and the circuit breaker all shared by one instance.
    rerank_server.default = Score(delay=0.002)
    rr = hosted(rerank_server)

    def sync_worker(i: int) -> list[list[RerankResult]]:
        return [rr.rerank(QUERIES[(i + j) % 4], DOCS) for j in range(10)]

    def loop_worker(i: int) -> list[list[RerankResult]]:
        return in_tasks(rr, [QUERIES[(i + j) % 4] for j in range(25)])

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(sync_worker, i) for i in range(8)]
        futures += [pool.submit(loop_worker, i) for i in range(8)]
        batches = [f.result(timeout=WAIT) for f in futures]
    flat = [r for batch in batches for r in batch]
    assert len(flat) == 8 * 10 + 8 * 25
    assert all(key(r) in [expected_http(q) for q in QUERIES] for r in flat)
    assert rr.circuit_state == "closed"
    # Loops that asyncio.run closed are dropped on the next use: at most the live one is kept.
    asyncio.run(rr.arerank(QUERIES[0], DOCS))
    assert len(async_clients(rr)) <= 1
    rr.close()


def test_http_memory_bounded(rerank_server: RerankServer) -> None:
    rr = hosted(rerank_server)
    for q in QUERIES * 5:
        rr.rerank(q, DOCS)
    asyncio.run(_many_async(rr, 10))
    rerank_server.requests.clear()
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(200):
            rr.rerank(f"{QUERIES[i % 4]} {i}", DOCS)

        async def many() -> None:
            calls = [f"{q} {i}" for i, q in enumerate(QUERIES * 25)]
            await asyncio.gather(*(rr.arerank(query, DOCS) for query in calls))

        asyncio.run(many())
        rerank_server.requests.clear()  # the server's own record of what it received
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 2 * 2**20, f"grew {(after - before) / 2**10:.0f} KiB over 300 calls"
    assert peak - before < 32 * 2**20
    rr.close()
