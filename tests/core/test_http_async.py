"""The async path: native event-loop tests, one client per loop, closing."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings

import pytest
from servers import RerankServer, Score, deterministic_score
from servers.clients import FAST

from memreranker import MemReranker
from memreranker.http.async_transport import AsyncTransport

DOCS = ["hiking in the alps", "chess club", "tea", "hiking and chess"]


def expected(query: str) -> list[tuple[int, float]]:
    return sorted(
        ((i, deterministic_score(query, d)) for i, d in enumerate(DOCS)),
        key=lambda p: (-p[1], p[0]),
    )


def vllm(server: RerankServer, **options: object) -> MemReranker:
    return MemReranker("vllm", **{"base_url": server.url, "on_error": "raise", **FAST, **options})


def clients(rr: MemReranker) -> dict[int, object]:
    transport = rr.backend._async  # type: ignore[attr-defined]
    assert isinstance(transport, AsyncTransport)
    return transport._clients


async def test_native_async_call(rerank_server: RerankServer) -> None:
    rerank_server.default = Score(shuffle=True)
    rr = vllm(rerank_server)
    got = await rr.arerank("hiking chess", DOCS, top_n=2)
    assert [(r.index, r.score) for r in got] == expected("hiking chess")[:2]
    await rr.backend.aclose()  # type: ignore[attr-defined]
    assert clients(rr) == {}


async def test_concurrent_calls_share_one_pooled_client(rerank_server: RerankServer) -> None:
    rerank_server.default = Score(delay=0.05)
    rr = vllm(rerank_server)
    results = await asyncio.gather(*(rr.arerank("hiking", DOCS) for _ in range(8)))
    assert all([(r.index, r.score) for r in got] == expected("hiking") for got in results)
    assert len(clients(rr)) == 1
    assert rerank_server.peak_in_flight > 1
    await rr.backend.aclose()  # type: ignore[attr-defined]


def test_two_asyncio_runs_on_one_instance(rerank_server: RerankServer) -> None:
    rr = vllm(rerank_server)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        first = asyncio.run(rr.arerank("chess", DOCS))
        second = asyncio.run(rr.arerank("chess", DOCS))
        gc.collect()
    assert first == second
    assert [(r.index, r.score) for r in first] == expected("chess")
    assert len(rerank_server.requests) == 2
    assert len(clients(rr)) <= 1  # the first loop's client was closed at its shutdown
    rr.close()


def test_sync_and_async_interleaved(rerank_server: RerankServer) -> None:
    rr = vllm(rerank_server)
    a = asyncio.run(rr.arerank("tea", DOCS))
    b = rr.rerank("tea", DOCS)
    c = asyncio.run(rr.arerank("tea", DOCS))
    assert a == b == c
    rr.close()


# Nothing can close a connection once its loop is closed: asyncio warns when it collects it.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_loop_closed_without_shutdown(rerank_server: RerankServer) -> None:
    rr = vllm(rerank_server)
    loop = asyncio.new_event_loop()
    first = loop.run_until_complete(rr.arerank("tea", DOCS))
    loop.close()  # no shutdown_asyncgens: the client is left bound to a dead loop
    second = asyncio.run(rr.arerank("tea", DOCS))
    assert first == second
    assert all(not r.is_fallback for r in second)
    assert len(clients(rr)) <= 1
    del loop
    gc.collect()
    rr.close()


def test_loops_in_several_threads(rerank_server: RerankServer) -> None:
    rr = vllm(rerank_server)
    outcomes: list[object] = []

    def worker() -> None:
        outcomes.append(asyncio.run(rr.arerank("hiking chess", DOCS)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(outcomes) == 4
    assert all(
        [(r.index, r.score) for r in got] == expected("hiking chess")  # type: ignore[attr-defined]
        for got in outcomes
    )
    rr.close()


def test_close_is_idempotent_and_reopens(rerank_server: RerankServer) -> None:
    rr = vllm(rerank_server)
    rr.rerank("tea", DOCS)
    asyncio.run(rr.arerank("tea", DOCS))
    rr.close()
    rr.close()
    assert rr.rerank("tea", DOCS)[0].is_fallback is False
    assert asyncio.run(rr.arerank("tea", DOCS))[0].is_fallback is False
    rr.close()


async def test_close_from_inside_a_running_loop(rerank_server: RerankServer) -> None:
    rr = vllm(rerank_server)
    await rr.arerank("tea", DOCS)
    rr.close()  # sync close while the loop runs: the client closes in a task
    await asyncio.sleep(0.01)
    assert clients(rr) == {}
    got = await rr.arerank("tea", DOCS)
    assert not got[0].is_fallback
    await rr.backend.aclose()  # type: ignore[attr-defined]


async def test_cancellation_propagates(rerank_server: RerankServer) -> None:
    rerank_server.default = Score(delay=5)
    rr = vllm(rerank_server, timeout=10)
    task = asyncio.ensure_future(rr.arerank("tea", DOCS))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await rr.backend.aclose()  # type: ignore[attr-defined]
