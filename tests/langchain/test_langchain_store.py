"""``MemRerankStore`` around real LangGraph stores (InMemoryStore with a vector index,
SqliteStore and AsyncSqliteStore on pytest's temp dir), scored by the core's vLLM backend
against the loopback rerank server, whose scores the tests script per text."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore
from langgraph.store.sqlite.aio import AsyncSqliteStore
from servers import RerankServer, Score, untemplate
from servers.clients import FAST, scores_by_text, user_agents

from langchain_memreranker import MemRerankStore, RerankedSearchItem
from memreranker import MemReranker, ModelLoadError

pytestmark = pytest.mark.timeout(60)

NS = ("memories", "alice")
QUERY = "What does the user like to drink?"
DIMS = 64
MEMORIES = [
    "User prefers Jiangxiang-flavoured baijiu, especially Moutai, on holidays.",
    "User said they stopped drinking alcohol in October for health reasons.",
    "User's sister Anna lives in Berlin; she works as a nurse.",
    "User booked a flight to Berlin for December 18.",
    "Anna asked the user to bring green tea from Hangzhou.",
    "User works as a backend developer in Hangzhou, in Go and Python.",
    "User's dog Biscuit stays with a neighbour during trips.",
    "User has a dentist appointment on November 25 at 9:00.",
    "User is allergic to peanuts.",
    "User plays badminton every Saturday morning.",
    "User moved from Shanghai to Hangzhou in March.",
    "User drinks oolong tea every afternoon at work.",
]
# The reranked order, as ranks of the wrapped store's order (1 = its best): its worst first,
# its best second, so that no mistake with the pool or the offset can give the right answer.
PLANTED = [12, 1, 11, 10, 2, 9, 3, 8, 4, 7, 5, 6]


def hashed_words(texts: list[str]) -> list[list[float]]:
    """Deterministic embedding: hashed word counts plus a constant part, normalised."""
    vectors = []
    for text in texts:
        vector = [0.0] * DIMS
        vector[0] = 1.0
        for word in re.findall(r"\w+", text.lower()):
            vector[1 + zlib.crc32(word.encode()) % (DIMS - 1)] += 1.0
        norm = sum(v * v for v in vector) ** 0.5
        vectors.append([v / norm for v in vector])
    return vectors


def value(i: int) -> dict[str, Any]:
    return {"content": MEMORIES[i], "metadata": {"title": f"memory {i}"}, "n": i}


def fill(store: BaseStore) -> None:
    for i in range(len(MEMORIES)):
        store.put(NS, f"m{i:02d}", value(i))


async def afill(store: BaseStore) -> None:
    for i in range(len(MEMORIES)):
        await store.aput(NS, f"m{i:02d}", value(i))


def plant(server: RerankServer, wrapped_order: list[Any]) -> None:
    """Script the server so that the reranked order is ``PLANTED`` of ``wrapped_order``."""
    scores = {
        wrapped_order[rank - 1].value["content"]: round(0.95 - 0.07 * position, 6)
        for position, rank in enumerate(PLANTED)
    }
    server.default = scores_by_text(scores)


def keys(items: list[Any]) -> list[str]:
    return [item.key for item in items]


def dicts(items: list[Any]) -> list[dict[str, Any]]:
    return [item.dict() for item in items]


def expected(store: MemRerankStore, pool: list[Any]) -> list[tuple[str, float]]:
    """(key, P(yes)) of the core's own ranking of the pool's texts."""
    results = store.reranker.rerank(QUERY, [item.value["content"] for item in pool])
    assert not any(r.is_fallback for r in results)
    return [(pool[r.index].key, r.score) for r in results]


def check_window(
    got: list[Any], pool: list[Any], want: list[tuple[str, float]], window: slice
) -> None:
    by_key = {item.key: item for item in pool}
    assert [(item.key, item.score) for item in got] == want[window]
    for item in got:
        assert isinstance(item, RerankedSearchItem)
        original = by_key[item.key]
        assert item.retrieval_score == original.score  # the wrapped store's, kept
        assert item.value == original.value and item.namespace == original.namespace
        assert item.created_at == original.created_at and item.updated_at == original.updated_at


@pytest.fixture
def settings(rerank_server: RerankServer) -> dict[str, Any]:
    return {"backend": "vllm", "base_url": rerank_server.url, **FAST}


@pytest.fixture
def memory_store() -> InMemoryStore:
    store = InMemoryStore(index={"dims": DIMS, "embed": hashed_words, "fields": ["content"]})
    fill(store)
    return store


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    # No vector index: this Python's sqlite3 cannot load the sqlite-vec extension, so the
    # store answers a query in its own (recency) order, with no score: reranked all the same.
    with SqliteStore.from_conn_string(str(tmp_path / "store.db")) as store:
        store.setup()
        fill(store)
        yield store


@pytest.fixture
async def async_sqlite_store(tmp_path: Path) -> AsyncIterator[AsyncSqliteStore]:
    async with AsyncSqliteStore.from_conn_string(str(tmp_path / "astore.db")) as store:
        await store.setup()
        await afill(store)
        yield store


@pytest.fixture(params=["memory", "sqlite"])
def wrapped(request: pytest.FixtureRequest) -> BaseStore:
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def store(
    wrapped: BaseStore, settings: dict[str, Any], rerank_server: RerankServer
) -> Iterator[MemRerankStore]:
    """The wrapped store reranked (candidates 12: the whole pool), the server scripted."""
    plant(rerank_server, wrapped.search(NS, query=QUERY, limit=12))
    reranking = MemRerankStore(wrapped, candidates=12, **settings)
    yield reranking
    reranking.close()


# --- search -----------------------------------------------------------------------------


def test_top_of_the_reranked_order_of_every_candidate(
    store: MemRerankStore, wrapped: BaseStore, rerank_server: RerankServer
) -> None:
    pool = wrapped.search(NS, query=QUERY, limit=12)
    assert len(pool) == 12
    want = expected(store, pool)
    assert [key for key, _ in want[:3]] != keys(pool[:3])  # reranking changes the answer
    rerank_server.requests.clear()
    got = store.search(NS, query=QUERY, limit=3)
    check_window(got, pool, want, slice(0, 3))
    assert len(rerank_server.requests) == 1  # one core call for the search
    assert len(rerank_server.last.body["documents"]) == 12
    assert [item.value for item in wrapped.search(NS, query=QUERY, limit=12)] == [
        item.value for item in pool
    ]  # nothing stored changed


def test_offset_applies_to_the_reranked_order(store: MemRerankStore, wrapped: BaseStore) -> None:
    pool = wrapped.search(NS, query=QUERY, limit=12)
    want = expected(store, pool)
    got = store.search(NS, query=QUERY, limit=2, offset=1)
    check_window(got, pool, want, slice(1, 3))


def test_the_pool_is_never_smaller_than_offset_plus_limit(
    wrapped: BaseStore, settings: dict[str, Any], rerank_server: RerankServer
) -> None:
    with_small_pool = MemRerankStore(wrapped, candidates=2, **settings)
    got = with_small_pool.search(NS, query=QUERY, limit=4, offset=1)
    assert len(got) == 4
    assert len(rerank_server.last.body["documents"]) == 5


def test_default_candidates(
    memory_store: InMemoryStore, settings: dict[str, Any], rerank_server: RerankServer
) -> None:
    """max(20, 3 * (offset + limit)): 20 for a small search, 3x beyond (checked on a store
    of 70 items, so the pool is not capped by what the store holds)."""
    for i in range(12, 70):
        memory_store.put(NS, f"x{i}", {"content": f"filler memory number {i}"})
    reranking = MemRerankStore(memory_store, **settings)
    sizes = []
    for limit, offset in [(3, 0), (10, 0), (5, 15)]:
        assert len(reranking.search(NS, query=QUERY, limit=limit, offset=offset)) == limit
        sizes.append(len(rerank_server.last.body["documents"]))
    assert sizes == [20, 30, 60]


async def test_asearch_gives_the_same(
    memory_store: InMemoryStore, settings: dict[str, Any], rerank_server: RerankServer
) -> None:
    pool = await memory_store.asearch(NS, query=QUERY, limit=12)
    plant(rerank_server, pool)
    store = MemRerankStore(memory_store, candidates=12, **settings)
    want = expected(store, pool)
    check_window(await store.asearch(NS, query=QUERY, limit=3), pool, want, slice(0, 3))
    check_window(await store.asearch(NS, query=QUERY, limit=2, offset=1), pool, want, slice(1, 3))
    await store.aclose()


async def test_abatch_is_native_on_an_async_store(
    async_sqlite_store: AsyncSqliteStore, settings: dict[str, Any], rerank_server: RerankServer
) -> None:
    """AsyncSqliteStore answers only on its event loop (its sync batch from the loop would
    deadlock): abatch awaits its abatch, and the core's arerank (httpx), so two searches
    score at the same time."""
    pool = await async_sqlite_store.asearch(NS, query=QUERY, limit=12)
    plant(rerank_server, pool)
    rerank_server.default = Score(mutate=rerank_server.default.mutate, delay=0.3)
    store = MemRerankStore(async_sqlite_store, candidates=12, **settings)
    want = expected(store, pool)
    rerank_server.requests.clear()
    first, second = await asyncio.wait_for(
        asyncio.gather(
            store.asearch(NS, query=QUERY, limit=3),
            store.asearch(NS, query=QUERY, limit=2, offset=1),
        ),
        timeout=20,
    )
    check_window(first, pool, want, slice(0, 3))
    check_window(second, pool, want, slice(1, 3))
    assert user_agents(rerank_server.requests) == ["httpx", "httpx"]
    assert rerank_server.peak_in_flight == 2
    await store.aclose()


# --- pass-through ---------------------------------------------------------------------


def test_other_operations_pass_through(
    store: MemRerankStore, wrapped: BaseStore, rerank_server: RerankServer
) -> None:
    rerank_server.requests.clear()
    assert dicts(store.search(NS, limit=5, offset=2)) == dicts(
        wrapped.search(NS, limit=5, offset=2)
    )
    filtered = store.search(NS, filter={"n": 3})
    assert dicts(filtered) == dicts(wrapped.search(NS, filter={"n": 3}))
    assert store.get(NS, "m03") == wrapped.get(NS, "m03")
    assert store.get(NS, "m03").dict() == wrapped.get(NS, "m03").dict()
    assert store.list_namespaces() == wrapped.list_namespaces() == [NS]
    store.put(NS, "new", {"content": "User likes jasmine tea."})
    assert wrapped.get(NS, "new").value == {"content": "User likes jasmine tea."}
    store.delete(NS, "new")
    assert wrapped.get(NS, "new") is None
    assert rerank_server.requests == []  # nothing was scored


def test_mixed_batch_keeps_op_order(
    store: MemRerankStore, wrapped: BaseStore, rerank_server: RerankServer
) -> None:
    pool = wrapped.search(NS, query=QUERY, limit=12)
    want = expected(store, pool)
    plain = dicts(wrapped.search(NS, limit=4))
    memories_only = (MatchCondition(match_type="prefix", path=("memories",)),)
    ops = [
        GetOp(NS, "m05"),
        SearchOp(NS, None, 2, 1, QUERY),
        SearchOp(NS, None, 4, 0, None),
        ListNamespacesOp(match_conditions=memories_only),
        # Elsewhere, so that whether the store applies it before or after the searches of
        # its batch changes none of their answers.
        PutOp(("scratch",), "note", {"content": "changed"}),
        SearchOp(NS, None, 3, 0, QUERY),
        GetOp(NS, "missing"),
    ]
    mine = store.batch(ops)
    assert len(mine) == len(ops)
    assert mine[0] == Item(**{**pool_item(pool, "m05"), "value": value(5)})
    check_window(mine[1], pool, want, slice(1, 3))
    assert dicts(mine[2]) == plain
    assert mine[3] == [NS]
    assert mine[4] is None
    assert wrapped.get(("scratch",), "note").value == {"content": "changed"}
    check_window(mine[5], pool, want, slice(0, 3))
    assert mine[6] is None


def pool_item(pool: list[Any], key: str) -> dict[str, Any]:
    item = next(item for item in pool if item.key == key)
    return {
        "namespace": item.namespace,
        "key": item.key,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
    }


# --- failure ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_broken_model_gives_the_wrapped_stores_results(
    memory_store: InMemoryStore, missing_model: str, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    store = MemRerankStore(memory_store, model=missing_model, candidates=12)
    caplog.set_level(logging.WARNING)
    if mode == "sync":
        got = store.search(NS, query=QUERY, limit=3, offset=2)
    else:
        got = asyncio.run(store.asearch(NS, query=QUERY, limit=3, offset=2))
    assert dicts(got) == dicts(memory_store.search(NS, query=QUERY, limit=3, offset=2))
    assert not any(isinstance(item, RerankedSearchItem) for item in got)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "ModelLoadError" in warnings[0].getMessage()


def test_on_error_raise(memory_store: InMemoryStore, missing_model: str) -> None:
    store = MemRerankStore(memory_store, model=missing_model, on_error="raise")
    with pytest.raises(ModelLoadError):
        store.search(NS, query=QUERY, limit=3)
    assert len(store.search(NS, limit=3)) == 3  # a query-less search never scores


# --- the text scored --------------------------------------------------------------------


def scored_texts(server: RerankServer) -> list[str]:
    return untemplate(server.last.body["query"], server.last.body["documents"]).documents


def test_text_defaults_to_the_index_fields(
    store: MemRerankStore, wrapped: BaseStore, rerank_server: RerankServer
) -> None:
    """InMemoryStore indexes "content": that is scored. SqliteStore has no index: the
    value's memory text ("content") is scored all the same."""
    store.search(NS, query=QUERY, limit=1)
    pool = wrapped.search(NS, query=QUERY, limit=12)
    assert scored_texts(rerank_server) == [item.value["content"] for item in pool]


def test_text_paths_and_callable(
    memory_store: InMemoryStore, settings: dict[str, Any], rerank_server: RerankServer
) -> None:
    pool = memory_store.search(NS, query=QUERY, limit=12)
    MemRerankStore(memory_store, text=["metadata.title", "content"], **settings).search(
        NS, query=QUERY, limit=1
    )
    both = [f"{item.value['metadata']['title']}\n{item.value['content']}" for item in pool]
    assert scored_texts(rerank_server) == both
    MemRerankStore(memory_store, text=lambda item: item.key, **settings).search(
        NS, query=QUERY, limit=1
    )
    assert scored_texts(rerank_server) == [item.key for item in pool]
    MemRerankStore(memory_store, text=["$"], **settings).search(NS, query=QUERY, limit=1)
    assert [json.loads(text) for text in scored_texts(rerank_server)] == [
        item.value for item in pool
    ]


def test_langmem_values_and_json_without_index(
    settings: dict[str, Any], rerank_server: RerankServer
) -> None:
    """A store without index fields: LangMem's {"kind", "content": {"content"}} is read by
    the core's memory-text rule; a value without text keys is scored as its JSON."""
    plain = InMemoryStore()
    plain.put(NS, "a", {"kind": "Memory", "content": {"content": "User likes oolong."}})
    plain.put(NS, "b", {"topic": "tea", "n": 1})
    MemRerankStore(plain, **settings).search(NS, query=QUERY, limit=2)
    assert scored_texts(rerank_server) == ["User likes oolong.", '{"n": 1, "topic": "tea"}']


# trustcall (a LangMem dependency) imports Send from its deprecated place: not ours.
@pytest.mark.filterwarnings("ignore:Importing Send from langgraph.constants:DeprecationWarning")
def test_langmem_search_tool(
    memory_store: InMemoryStore, settings: dict[str, Any], rerank_server: RerankServer
) -> None:
    """LangMem's own search tool over the wrapped store, sync and async."""
    from langmem import create_search_memory_tool

    pool = memory_store.search(NS, query=QUERY, limit=12)
    plant(rerank_server, pool)
    store = MemRerankStore(memory_store, candidates=12, **settings)
    want = expected(store, pool)
    tool = create_search_memory_tool(namespace=NS, store=store)
    sync = json.loads(tool.invoke({"query": QUERY, "limit": 3}))
    assert [(m["key"], m["score"]) for m in sync] == want[:3]
    assert all(m["retrieval_score"] is not None for m in sync)
    later = json.loads(asyncio.run(tool.ainvoke({"query": QUERY, "limit": 2, "offset": 1})))
    assert [(m["key"], m["score"]) for m in later] == want[1:3]


# --- construction ------------------------------------------------------------------------


def test_settings_are_validated_once(memory_store: InMemoryStore, settings: dict[str, Any]) -> None:
    core = MemReranker(**settings)
    store = MemRerankStore(memory_store, core, base_url=settings["base_url"])
    assert store.reranker is core
    with pytest.raises(ValueError, match="contradict"):
        MemRerankStore(memory_store, core, backend="memos")
    with pytest.raises(ValueError, match="top_n"):
        MemRerankStore(memory_store, top_n=3, **settings)
    with pytest.raises(ValueError, match="candidates"):
        MemRerankStore(memory_store, candidates=0, **settings)
    with pytest.raises(TypeError, match="candidates"):
        MemRerankStore(memory_store, candidates="10", **settings)
    with pytest.raises(TypeError, match="text"):
        MemRerankStore(memory_store, text="content", **settings)
    with pytest.raises(TypeError, match="store"):
        MemRerankStore({}, **settings)
    core.close()
