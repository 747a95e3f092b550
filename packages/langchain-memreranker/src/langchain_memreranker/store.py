"""``MemRerankStore``: a LangGraph store whose semantic searches are reranked by MemReranker.

An agent's long-term memory lives in a LangGraph ``BaseStore`` (``InMemoryStore``,
``SqliteStore``, ``PostgresStore``; LangMem's memory tools search one), and a store has no
rerank hook. This wrapper is one: a search with a ``query`` asks the wrapped store for a
wider pool of candidates, scores them in one core call and answers with the best
``limit`` after ``offset``. Everything else passes through.

Needs ``pip install "langchain-memreranker[langgraph]"``; ``import langchain_memreranker``
works without it (this module is imported on first use of ``MemRerankStore``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from langgraph.store.base import (
    BaseStore,
    Item,
    Op,
    Result,
    SearchItem,
    SearchOp,
    get_text_at_path,
    tokenize_path,
)

from memreranker import MemReranker, RerankerSettings, RerankResult
from memreranker.integration import adopt_settings
from memreranker.memory_text import find_memory_text
from memreranker.pool import check_candidates, pool_size

logger = logging.getLogger("memreranker")

TextOption = Sequence[str] | Callable[[Item], str] | None

__all__ = ["MemRerankStore", "RerankedSearchItem"]


class RerankedSearchItem(SearchItem):
    """A ``SearchItem`` of a reranked search.

    ``score`` is MemReranker's P(yes) in [0, 1]; ``retrieval_score`` is the score the wrapped
    store gave the item (its vector similarity; ``None`` if it gave none). ``dict()``
    includes both. Everything else (``value`` included) is the wrapped store's item as is.
    """

    __slots__ = ("retrieval_score",)

    def __init__(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any],
        created_at: datetime,
        updated_at: datetime,
        score: float | None = None,
        retrieval_score: float | None = None,
    ) -> None:
        super().__init__(namespace, key, value, created_at, updated_at, score)
        self.retrieval_score = retrieval_score

    def dict(self) -> dict[str, Any]:
        result = super().dict()
        result["retrieval_score"] = self.retrieval_score
        return result


class MemRerankStore(BaseStore):
    """Wrap a LangGraph store so that its searches with a ``query`` come back reranked.

    ::

        store = MemRerankStore(InMemoryStore(index={...}), backend="memos")
        store.search(("memories", user), query="What does the user drink?", limit=3)

    Args:
        store: The store holding the memories (any ``BaseStore``). It is not closed by
            :meth:`close`.
        reranker: A ready ``MemReranker`` (to share loaded weights or use a fallback chain).
            Settings given next to it must agree with its settings, else ``ValueError``.
        candidates: How many items a reranked search asks the wrapped store for. ``None``
            (the default) draws ``max(20, 3 * (offset + limit))`` (why: :mod:`memreranker.pool`).
            A number is used as given, but never below ``offset + limit``: a search always
            gets the items it asked for if the store holds them. Scoring cost grows with it.
        text: The text scored for an item: a list of field paths in the syntax of the
            store's index ``fields`` (``["content", "metadata.title"]``, ``"$"`` for the
            whole value; the texts found are joined by newlines), or a callable
            ``Item -> str``. ``None``: the wrapped store's own index fields when they name
            fields (not the whole-value ``"$"``), else the memory's text read as mem0 and
            LangMem store it (``"memory"``, ``"text"``, ``"content"``, also one level down:
            ``{"kind": ..., "content": {"content": "..."}}``), else the JSON of the value.
            An item whose fields hold no text is scored by that same default.
        **settings: Any field of :class:`~memreranker.RerankerSettings` (``backend``,
            ``model``, ``api_key``, ``on_error``...), validated once, here.

    A search without a ``query`` and every other operation (``get``, ``put``, ``delete``,
    ``list_namespaces``, TTL refreshes) go to the wrapped store untouched; a ``batch``
    mixing operations makes one call of the wrapped store's ``batch`` (``abatch``) and
    answers in op order. A reranked search scores its pool in one core call and returns
    items ``offset .. offset + limit`` of the reranked order as :class:`RerankedSearchItem`
    (``score`` = P(yes), ``retrieval_score`` = the wrapped store's score). Widening the pool
    means a search with ``refresh_ttl`` refreshes the TTL of every candidate.

    If scoring fails and ``on_error="fallback"`` (the default), the search answers with the
    wrapped store's own results (its order and scores, ``offset .. offset + limit``) and the
    core logs one warning; ``on_error="raise"`` lets the typed ``MemRerankerError`` out.
    The items' values are never modified.
    """

    def __init__(
        self,
        store: BaseStore,
        reranker: MemReranker | None = None,
        *,
        candidates: int | None = None,
        text: TextOption = None,
        **settings: Any,
    ) -> None:
        if not isinstance(store, BaseStore):
            raise TypeError(f"store must be a langgraph BaseStore, got {type(store).__name__}")
        self.store = store
        self.candidates = check_candidates(candidates)
        self._paths, self._text_fn = _text_option(text)
        if reranker is not None:
            # Validated once: unknown or contradicting settings raise here.
            RerankerSettings.model_validate(adopt_settings(reranker, settings))
            self._core, self._owns_core = reranker, False
        else:
            settings_ = RerankerSettings.model_validate(settings)
            self._core, self._owns_core = MemReranker.from_settings(settings_), True

    # The wrapped store decides TTL support: BaseStore's put/get/search read these.
    @property
    def supports_ttl(self) -> bool:  # type: ignore[override]
        return self.store.supports_ttl

    @property
    def ttl_config(self) -> Any:  # type: ignore[override]
        return self.store.ttl_config

    @property
    def reranker(self) -> MemReranker:
        """The ``MemReranker`` doing the work."""
        return self._core

    def __repr__(self) -> str:
        return f"MemRerankStore({self.store!r}, {self._core!r}, candidates={self.candidates!r})"

    def close(self) -> None:
        """Release the core's connections or weights, if this store built it."""
        if self._owns_core:
            self._core.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        if self._owns_core:
            await self._core.aclose()

    # -- BaseStore --------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        results = self.store.batch([self._widened(op) for op in ops])
        return [
            self._reranked(op, result, self._score(op, result)) if _reranks(op) else result
            for op, result in zip(ops, results, strict=True)
        ]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        results = await self.store.abatch([self._widened(op) for op in ops])

        async def finish(op: Op, result: Result) -> Result:
            if not _reranks(op):
                return result
            return self._reranked(op, result, await self._ascore(op, result))

        # The searches of one batch score concurrently, each in one core call.
        return list(await asyncio.gather(*map(finish, ops, results)))

    # -- one reranked search ------------------------------------------------------------

    def _widened(self, op: Op) -> Op:
        """The op sent to the wrapped store: a reranked search asks for the whole pool."""
        if not _reranks(op):
            return op
        return op._replace(limit=self._pool(op), offset=0)

    def _pool(self, op: SearchOp) -> int:
        return pool_size(op.offset + op.limit, self.candidates)

    def _score(self, op: SearchOp, pool: list[SearchItem]) -> list[RerankResult]:
        if not pool:
            return []
        return self._core.rerank(op.query, self._texts(pool), top_n=op.offset + op.limit)

    async def _ascore(self, op: SearchOp, pool: list[SearchItem]) -> list[RerankResult]:
        if not pool:
            return []
        return await self._core.arerank(op.query, self._texts(pool), top_n=op.offset + op.limit)

    def _reranked(
        self, op: SearchOp, pool: list[SearchItem], results: list[RerankResult]
    ) -> list[SearchItem]:
        window = slice(op.offset, op.offset + op.limit)
        if any(result.is_fallback for result in results):
            # The core warned once; the answer is the wrapped store's own for this search.
            return list(pool[window])
        return [_scored(pool[result.index], result) for result in results[window]]

    # -- the text of an item --------------------------------------------------------------

    def _texts(self, items: Sequence[Item]) -> list[str]:
        # Every candidate's text comes from here (one place to add its fields later).
        return [self._item_text(item) for item in items]

    def _item_text(self, item: Item) -> str:
        if self._text_fn is not None:
            text = self._text_fn(item)
            if not isinstance(text, str):
                raise TypeError(
                    f"text= callable must return a str, got {type(text).__name__} "
                    f"for item {item.key!r}"
                )
            return text
        paths = self._paths if self._paths is not None else _index_paths(self.store)
        if paths:
            found = [text for path in paths for text in get_text_at_path(item.value, path)]
            if found:
                return "\n".join(found)
        return _value_text(item.value)


def _reranks(op: Op) -> bool:
    return isinstance(op, SearchOp) and bool(op.query) and op.limit > 0


def _scored(item: SearchItem, result: RerankResult) -> RerankedSearchItem:
    return RerankedSearchItem(
        item.namespace,
        item.key,
        item.value,
        item.created_at,
        item.updated_at,
        score=result.score,
        retrieval_score=getattr(item, "score", None),
    )


def _value_text(value: Any) -> str:
    text = find_memory_text(value) if isinstance(value, dict) else None
    if text is not None:
        return text
    # The same text as the store's "$" path (its default index field).
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _index_paths(store: BaseStore) -> list[str | list[str]] | None:
    """The fields the wrapped store embeds, when it names fields (not the whole value).

    ``InMemoryStore`` and the SQLite stores keep them tokenized in
    ``index_config["__tokenized_fields"]`` (read from ``fields`` by the former,
    ``text_fields`` by the latter); other stores may only have the ``fields`` they were given.
    """
    config = getattr(store, "index_config", None)
    if not isinstance(config, dict):
        return None
    tokenized = config.get("__tokenized_fields")
    if tokenized:
        paths = [tokens for _, tokens in tokenized]
    else:
        paths = list(config.get("fields") or config.get("text_fields") or [])
    paths = [path for path in paths if path != "$"]
    return paths or None


def _text_option(text: Any) -> tuple[list[list[str] | str] | None, Callable[[Item], str] | None]:
    if text is None:
        return None, None
    if callable(text):
        return None, text
    if isinstance(text, str) or not isinstance(text, Sequence):
        raise TypeError(
            "text must be a list of field paths (e.g. ['content']), a callable Item -> str "
            f"or None, got {type(text).__name__}"
        )
    paths: list[list[str] | str] = []
    for i, path in enumerate(text):
        if not isinstance(path, str) or not path:
            raise ValueError(f"text[{i}] must be a non-empty field path, got {path!r}")
        paths.append("$" if path == "$" else tokenize_path(path))
    if not paths:
        raise ValueError("text must name at least one field path (None: the default text)")
    return paths, None
