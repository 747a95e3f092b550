"""An optional LRU cache of scores, for agents that rerank the same memories again and again.

Scores are pointwise: P(yes) of one (instruction, query, document) for one model does not
depend on the other documents of the call, so a score can be reused across calls. The cache
is keyed by exactly that tuple, bounded (least recently used entries go first), thread-safe,
and off by default (``score_cache_size=0``).

:class:`CachedBackend` wraps any backend (local or HTTP): only the documents not in the cache
reach the backend (once each: ``MemReranker`` removes identical documents first), asked
for all their scores (``top_n=None``) so that every returned score can be stored.
Failures are not cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from memreranker.backends.base import Backend, Circuit
from memreranker.progress import Advance
from memreranker.ranking import Scored

CacheKey = tuple[str, str | None, str, str]


class ScoreCache:
    """A thread-safe LRU map from (model, instruction, query, document) to a score."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self.max_size = max_size
        self._data: OrderedDict[CacheKey, float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        # Under the lock: put_many inserts before it evicts, so an unlocked read could see
        # more than max_size entries mid-update.
        with self._lock:
            return len(self._data)

    def get_many(self, keys: Sequence[CacheKey]) -> list[float | None]:
        """The cached score of each key, or None; found keys become most recently used."""
        found: list[float | None] = []
        with self._lock:
            for key in keys:
                score = self._data.get(key)
                if score is not None:
                    self._data.move_to_end(key)
                    self.hits += 1
                else:
                    self.misses += 1
                found.append(score)
        return found

    def put_many(self, items: Sequence[tuple[CacheKey, float]]) -> None:
        with self._lock:
            for key, score in items:
                self._data[key] = score
                self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0


class _Lookup:
    """The cached part of one call and the documents still to score.

    The documents arrive distinct (``MemReranker`` removes identical ones, dedup.py), so each
    missing one is asked for once.
    """

    def __init__(
        self,
        cache: ScoreCache,
        model: str,
        instruction: str | None,
        query: str,
        documents: Sequence[str],
    ) -> None:
        self.cache = cache
        self.keys = [(model, instruction, query, doc) for doc in documents]
        self.scores = cache.get_many(self.keys)
        self.where = [i for i, score in enumerate(self.scores) if score is None]
        """The input position of each document of :attr:`missing`."""
        self.missing = [documents[i] for i in self.where]

    def cached_only(self) -> list[Scored]:
        return [(i, s) for i, s in enumerate(self.scores) if s is not None]

    def complete(self, scored: Sequence[Scored]) -> list[Scored]:
        """Merge the backend's scores of :attr:`missing` and store them."""
        fresh = {idx: float(score) for idx, score in scored}
        if len(fresh) != len(self.missing) or set(fresh) != set(range(len(self.missing))):
            raise RuntimeError(
                f"the backend scored {len(fresh)} of {len(self.missing)} documents; "
                "a cached backend needs every score"
            )
        self.cache.put_many([(self.keys[i], fresh[j]) for j, i in enumerate(self.where)])
        merged = list(self.scores)
        for j, i in enumerate(self.where):
            merged[i] = fresh[j]
        return [(i, score) for i, score in enumerate(merged) if score is not None]


def cached_score(
    cache: ScoreCache,
    model: str,
    query: str,
    documents: Sequence[str],
    instruction: str | None,
    compute: Callable[[list[str]], Sequence[Scored]],
) -> list[Scored]:
    """Scores of ``documents``; ``compute(missing)`` scores only the uncached ones.

    ``compute`` returns ``(index into missing, score)`` for every document it was given.
    """
    lookup = _Lookup(cache, model, instruction, query, documents)
    if not lookup.missing:
        return lookup.cached_only()
    return lookup.complete(compute(lookup.missing))


async def acached_score(
    cache: ScoreCache,
    model: str,
    query: str,
    documents: Sequence[str],
    instruction: str | None,
    compute: Callable[[list[str]], Awaitable[Sequence[Scored]]],
) -> list[Scored]:
    """Async twin of :func:`cached_score`."""
    lookup = _Lookup(cache, model, instruction, query, documents)
    if not lookup.missing:
        return lookup.cached_only()
    return lookup.complete(await compute(lookup.missing))


class CachedBackend(Backend):
    """Any :class:`~memreranker.backends.base.Backend` behind a :class:`ScoreCache`.

    ``create_backend`` wraps every backend kind in it when ``score_cache_size`` is set, a
    user's ``Backend`` instance included. Cache keys start with the inner backend's name
    (backend kind and model), so rerankers of different models never share scores.
    ``load``, ``close``, ``aclose`` and ``circuit`` are the inner backend's.
    """

    def __init__(self, inner: Backend, cache: ScoreCache) -> None:
        self.inner = inner
        self.cache = cache

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def circuit(self) -> Circuit | None:  # type: ignore[override]
        return self.inner.circuit

    def load(self) -> Any:  # the inner backend's result (the local engine)
        return self.inner.load()

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        return cached_score(
            self.cache,
            self.inner.name,
            query,
            documents,
            instruction,
            lambda missing: self.inner.score(
                query, missing, instruction=instruction, top_n=None, progress=progress
            ),
        )

    async def ascore(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        async def compute(missing: list[str]) -> Sequence[Scored]:
            return await self.inner.ascore(
                query, missing, instruction=instruction, top_n=None, progress=progress
            )

        return await acached_score(
            self.cache, self.inner.name, query, documents, instruction, compute
        )

    def close(self) -> None:
        self.inner.close()
        self.cache.clear()

    async def aclose(self) -> None:
        await self.inner.aclose()
        self.cache.clear()
