"""The optional score cache: LRU, thread-safe, keyed by model/instruction/query/document."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from servers import RerankServer
from servers.clients import FAST

from memreranker import MemReranker
from memreranker.errors import InferenceError
from memreranker.progress import Advance
from memreranker.ranking import Scored
from memreranker.score_cache import CachedBackend, ScoreCache, cached_score
from memreranker.testing import FakeBackend

QUERY = "What does the user like to drink?"
DOCS = ["tea", "coffee", "Berlin", "tea", "dog"]
UNIQUE = ["tea", "coffee", "Berlin", "dog"]


def fake_score(doc: str) -> float:
    return (sum(map(ord, doc)) % 97) / 97


class CountingBackend:
    """Scores by a hash of the text; records every document it was asked about."""

    name = "fake"

    def __init__(self, *, top_n_only: bool = False, fail: bool = False) -> None:
        self.seen: list[list[str]] = []
        self.top_ns: list[int | None] = []
        self.top_n_only = top_n_only
        self.fail = fail
        self.closed = False

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        self.seen.append(list(documents))
        self.top_ns.append(top_n)
        if self.fail:
            raise InferenceError("boom")
        scored = [(i, fake_score((instruction or "") + query + d)) for i, d in enumerate(documents)]
        if self.top_n_only:
            return scored[:1]
        return scored

    async def ascore(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        await asyncio.sleep(0)
        return self.score(query, documents, instruction=instruction, top_n=top_n)

    def close(self) -> None:
        self.closed = True


def test_lru_eviction_and_counters() -> None:
    cache = ScoreCache(2)
    cache.put_many([(("m", None, "q", "a"), 0.1), (("m", None, "q", "b"), 0.2)])
    assert cache.get_many([("m", None, "q", "a")]) == [0.1]  # a is now most recent
    cache.put_many([(("m", None, "q", "c"), 0.3)])  # evicts b
    assert cache.get_many([("m", None, "q", k) for k in "abc"]) == [0.1, None, 0.3]
    assert len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 1)
    cache.clear()
    assert len(cache) == 0 and cache.hits == 0


def test_zero_score_is_a_hit() -> None:
    cache = ScoreCache(4)
    cache.put_many([(("m", None, "q", "a"), 0.0)])
    assert cache.get_many([("m", None, "q", "a")]) == [0.0]


def test_invalid_size() -> None:
    with pytest.raises(ValueError):
        ScoreCache(0)


def test_key_has_every_part() -> None:
    cache = ScoreCache(10)
    cache.put_many([(("m", "i", "q", "d"), 0.5)])
    others = [
        ("M", "i", "q", "d"),
        ("m", None, "q", "d"),
        ("m", "i", "Q", "d"),
        ("m", "i", "q", "D"),
    ]
    assert cache.get_many(others) == [None] * 4


def test_only_missing_documents_are_computed() -> None:
    cache = ScoreCache(100)
    calls: list[list[str]] = []
    docs = ["tea", "coffee", "Berlin", "dog"]  # distinct: MemReranker removes copies first

    def compute(missing: list[str]) -> list[Scored]:
        calls.append(missing)
        return [(i, fake_score(d)) for i, d in enumerate(missing)]

    first = cached_score(cache, "m", QUERY, docs, None, compute)
    assert calls == [docs]
    assert first == [(i, fake_score(d)) for i, d in enumerate(docs)]
    second = cached_score(cache, "m", QUERY, ["cat", *docs], None, compute)
    assert calls[1] == ["cat"]
    assert second == [(0, fake_score("cat"))] + [(i + 1, s) for i, s in first]
    third = cached_score(cache, "m", QUERY, docs, None, compute)
    assert len(calls) == 2 and third == first


def test_duplicates_reach_the_cached_backend_once() -> None:
    """Through the core: "tea" twice in DOCS is asked for once, both copies get its score."""
    fake = FakeBackend(lambda query, doc: fake_score(doc))
    reranker = MemReranker(backend=fake, score_cache_size=100)
    first = reranker.rerank(QUERY, DOCS)
    assert [call.documents for call in fake.calls] == [("tea", "coffee", "Berlin", "dog")]
    assert sorted((r.index, r.score) for r in first) == [
        (i, fake_score(d)) for i, d in enumerate(DOCS)
    ]
    assert len(reranker.rerank(QUERY, [*DOCS, "cat"])) == 6
    assert fake.calls[1].documents == ("cat",)


def test_failures_are_not_cached() -> None:
    cache = ScoreCache(100)

    def compute(missing: list[str]) -> list[Scored]:
        raise InferenceError("down")

    with pytest.raises(InferenceError):
        cached_score(cache, "m", QUERY, DOCS, None, compute)
    assert len(cache) == 0


def test_cached_backend_sync_and_async() -> None:
    inner = CountingBackend()
    backend = CachedBackend(inner, ScoreCache(100))
    assert backend.name == "fake"
    want = inner.score(QUERY, UNIQUE, instruction=None, top_n=None)
    inner.seen.clear()
    assert backend.score(QUERY, UNIQUE, instruction=None, top_n=2) == want
    assert inner.top_ns == [None, None]  # asks for every score, whatever top_n
    assert (
        asyncio.run(backend.ascore(QUERY, [*UNIQUE, "new"], instruction=None, top_n=1))[:4] == want
    )
    assert inner.seen == [["tea", "coffee", "Berlin", "dog"], ["new"]]
    backend.close()
    assert inner.closed


def test_cached_backend_refuses_partial_results() -> None:
    backend = CachedBackend(CountingBackend(top_n_only=True), ScoreCache(100))
    with pytest.raises(RuntimeError, match="every score"):
        backend.score(QUERY, DOCS, instruction=None, top_n=1)


def test_cached_backend_failure_propagates_and_caches_nothing() -> None:
    cache = ScoreCache(100)
    backend = CachedBackend(CountingBackend(fail=True), cache)
    with pytest.raises(InferenceError):
        backend.score(QUERY, DOCS, instruction=None, top_n=None)
    assert len(cache) == 0


def test_thread_safety() -> None:
    cache = ScoreCache(50)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(300):
                docs = [f"d{(seed * 7 + i + j) % 120}" for j in range(5)]
                got = cached_score(
                    cache,
                    "m",
                    "q",
                    docs,
                    None,
                    lambda missing: [(k, fake_score(d)) for k, d in enumerate(missing)],
                )
                assert got == [(k, fake_score(d)) for k, d in enumerate(docs)]
                assert len(cache) <= 50
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) == 50


# Wiring: every backend kind, through create_backend ------------------------------------


def test_off_by_default(tiny_model: Path) -> None:
    reranker = MemReranker(model=str(tiny_model))
    assert reranker.settings.score_cache_size == 0
    assert not isinstance(reranker.backend, CachedBackend)


def test_negative_size_rejected() -> None:
    with pytest.raises(ValueError):
        MemReranker(model="x", score_cache_size=-1)


def test_local_backend_uses_the_cache(tiny_model: Path) -> None:
    pytest.importorskip("torch")
    plain = MemReranker(model=str(tiny_model), on_error="raise")
    cached = MemReranker(model=str(tiny_model), on_error="raise", score_cache_size=100)
    backend = cached.backend
    assert isinstance(backend, CachedBackend)
    first = cached.rerank(QUERY, DOCS)
    assert first == plain.rerank(QUERY, DOCS)
    # Counted per distinct document: "tea" twice in DOCS is looked up once per call.
    assert (backend.cache.hits, backend.cache.misses) == (0, 4)
    assert cached.rerank(QUERY, DOCS, top_n=2) == first[:2]
    assert asyncio.run(cached.arerank(QUERY, DOCS)) == first
    assert (backend.cache.hits, backend.cache.misses) == (8, 4)
    # Another instruction or query is another key.
    other = cached.rerank(QUERY, DOCS, instruction="Find the memory that answers")
    assert other == plain.rerank(QUERY, DOCS, instruction="Find the memory that answers")
    assert backend.cache.misses == 8


def test_http_backend_uses_the_cache(rerank_server: RerankServer) -> None:
    options = {"base_url": rerank_server.url, "on_error": "raise", **FAST}
    plain = MemReranker("vllm", **options)
    want = plain.rerank(QUERY, [*DOCS, "cat"])
    rerank_server.requests.clear()

    cached = MemReranker("vllm", score_cache_size=100, **options)
    first = cached.rerank(QUERY, DOCS, top_n=2)
    assert first == [r for r in want if r.index < len(DOCS)][:2]
    # Each distinct document is asked for once, with every score (no top_n): the cache
    # needs them all.
    sent = [r.body for r in rerank_server.requests]
    assert [r.documents for r in rerank_server.requests] == [["tea", "coffee", "Berlin", "dog"]]
    assert not sent[0].get("top_n")
    assert cached.rerank(QUERY, DOCS, top_n=2) == first
    assert asyncio.run(cached.arerank(QUERY, [*DOCS, "cat"])) == want
    assert [r.documents for r in rerank_server.requests][1:] == [["cat"]]
    assert cached.circuit_state == "closed"  # the inner backend's attributes stay reachable
