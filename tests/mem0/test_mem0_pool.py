"""``memreranker.mem0.search`` / ``asearch``: a real ``mem0.Memory`` / ``AsyncMemory``
(local Qdrant, offline embedder) searched over a wider pool, reranked by the core's vLLM
backend against the loopback rerank server, whose scores the tests script per text."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from mem0_kit import QUERY, USER, MemoryFactory
from servers import RerankServer
from servers.clients import FAST, scores_by_text, user_agents

from memreranker import MemReranker

pytestmark = pytest.mark.timeout(120)

FILTERS = {"user_id": USER}
# The reranked order as ranks of the vector search's order (1 = its best): its 10th best
# first, so the pool must reach below top_k for the right answer.
PLANTED = [10, 1, 12, 2, 11, 3, 9, 4, 8, 5, 7, 6]


@pytest.fixture(scope="module")
def memory(make_memory: MemoryFactory) -> Any:
    return make_memory(None)


@pytest.fixture
def core(rerank_server: RerankServer) -> Any:
    reranker = MemReranker("vllm", base_url=rerank_server.url, **FAST)
    yield reranker
    reranker.close()


def vector_order(found: dict[str, Any]) -> list[dict[str, Any]]:
    results = found["results"]
    assert len(results) == 12
    return results


def plant(server: RerankServer, vector: list[dict[str, Any]]) -> None:
    server.default = scores_by_text(
        {vector[rank - 1]["memory"]: round(0.95 - 0.07 * i, 6) for i, rank in enumerate(PLANTED)}
    )


def expected(core: MemReranker, pool: list[dict[str, Any]], top_k: int) -> list[Any]:
    results = core.rerank(QUERY, [m["memory"] for m in pool], top_n=top_k)
    assert not any(r.is_fallback for r in results)
    return [(pool[r.index]["id"], r.score) for r in results]


def check(got: dict[str, Any], pool: list[dict[str, Any]], want: list[Any]) -> None:
    assert set(got) == {"results"}
    assert [(m["id"], m["rerank_score"]) for m in got["results"]] == want
    by_id = {m["id"]: m for m in pool}
    for item in got["results"]:  # mem0's dict, its vector score included, plus rerank_score
        original = by_id[item["id"]]
        rest = {k: v for k, v in item.items() if k != "rerank_score"}
        assert rest == {**original, "score": pytest.approx(original["score"], rel=1e-5)}


def test_pool_brings_up_a_memory_below_top_k(
    memory: Any, core: MemReranker, rerank_server: RerankServer
) -> None:
    from memreranker.mem0 import search

    pool = vector_order(memory.search(QUERY, top_k=12, filters=FILTERS, threshold=0.0))
    plant(rerank_server, pool)
    want = expected(core, pool, 3)
    assert want[0][0] == pool[9]["id"]  # the vector search's 10th
    rerank_server.requests.clear()
    got = search(memory, QUERY, top_k=3, candidates=12, reranker=core, filters=FILTERS, threshold=0)
    check(got, pool, want)
    assert len(rerank_server.requests) == 1  # one core call
    assert len(rerank_server.last.body["documents"]) == 12
    # mem0's own rerank=True could not have found it: its reranker sees the top 3 only.
    top3 = memory.search(QUERY, top_k=3, filters=FILTERS, threshold=0.0)["results"]
    assert pool[9]["id"] not in [m["id"] for m in top3]


async def test_asearch_gives_the_same(
    make_async_memory: MemoryFactory, core: MemReranker, rerank_server: RerankServer
) -> None:
    from memreranker.mem0 import asearch

    amemory = await make_async_memory(None)
    found = await amemory.search(QUERY, top_k=12, filters=FILTERS, threshold=0.0)
    pool = vector_order(found)
    plant(rerank_server, pool)
    want = expected(core, pool, 4)
    rerank_server.requests.clear()
    got = await asearch(
        amemory, QUERY, top_k=4, candidates=12, reranker=core, filters=FILTERS, threshold=0.0
    )
    check(got, pool, want)
    assert user_agents(rerank_server.requests) == ["httpx"]  # the core's arerank


def test_search_arguments_pass_through(
    memory: Any, core: MemReranker, rerank_server: RerankServer
) -> None:
    """filters and threshold reach mem0 (nothing found: no core call); the default pool is
    max(20, 3 * top_k), capped by the 12 memories mem0 holds."""
    from memreranker.mem0 import search

    assert search(memory, QUERY, reranker=core, filters={"user_id": "bob"}) == {"results": []}
    high = search(memory, QUERY, reranker=core, filters=FILTERS, threshold=0.999)
    assert high == {"results": []}
    assert rerank_server.requests == []
    got = search(memory, QUERY, top_k=2, reranker=core, filters=FILTERS, threshold=0.0)
    assert len(got["results"]) == 2
    assert len(rerank_server.last.body["documents"]) == 12


def test_outage_falls_back_to_the_vector_order(
    memory: Any, refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from memreranker.mem0 import search

    pool = vector_order(memory.search(QUERY, top_k=12, filters=FILTERS, threshold=0.0))
    broken = MemReranker("vllm", base_url=refused_url, **{**FAST, "max_retries": 0})
    caplog.set_level(logging.WARNING)
    got = search(memory, QUERY, top_k=3, candidates=12, reranker=broken, filters=FILTERS)
    assert [m["id"] for m in got["results"]] == [m["id"] for m in pool[:3]]
    assert all(m["rerank_score"] == 0.0 and m["rerank_fallback"] for m in got["results"])
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "falling back" in warnings[0].getMessage()


def test_bad_arguments(memory: Any, core: MemReranker) -> None:
    from memreranker.mem0 import asearch, search

    with pytest.raises(TypeError, match="reranker="):
        search(memory, QUERY, filters=FILTERS)  # this memory has no memreranker provider
    with pytest.raises(TypeError, match="rerank"):
        search(memory, QUERY, reranker=core, filters=FILTERS, rerank=True)
    with pytest.raises(ValueError, match="top_k"):
        search(memory, QUERY, top_k=0, reranker=core, filters=FILTERS)
    with pytest.raises(ValueError, match="candidates"):
        search(memory, QUERY, candidates=0, reranker=core, filters=FILTERS)
    with pytest.raises(TypeError, match=r"use memreranker\.mem0\.search"):
        asyncio.run(asearch(memory, QUERY, reranker=core, filters=FILTERS))
