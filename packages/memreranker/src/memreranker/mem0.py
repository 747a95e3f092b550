"""MemReranker as a mem0 reranker provider (``pip install "memreranker[mem0]"``).

::

    from mem0 import Memory
    from memreranker.mem0 import register

    register()  # once per process, before building a Memory
    memory = Memory.from_config({
        "reranker": {"provider": "memreranker", "config": {"backend": "memos", "top_k": 5}},
        ...
    })
    memory.search("What does the user drink?", filters={"user_id": "alice"}, rerank=True)

mem0 hands its reranker only the ``top_k`` memories its vector search already cut, so
reranking there can reorder them but never bring up memory number 30. :func:`search` (and
:func:`asearch` for ``AsyncMemory``) fetch a wider pool instead, rerank it in one core call
and keep the best ``top_k``::

    from memreranker.mem0 import search

    search(memory, "What does the user drink?", top_k=5, filters={"user_id": "alice"})

A translation layer, like the LangChain and LlamaIndex shells: mem0's memory dicts become
texts (read with :func:`memreranker.memory_text.memory_text`, mem0's own rule), one
:class:`~memreranker.MemReranker` scores them, and its results become new dicts. Settings,
input checks, sorting and the fallback are the core's.

Only this module imports mem0: ``import memreranker`` never does. Nothing here needs torch
for a hosted backend; note that mem0's ``mem0.reranker`` package (where ``BaseReranker``
lives) imports its built-in providers, and through them torch and transformers where those
are installed.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from mem0.configs.rerankers.base import BaseRerankerConfig
from mem0.reranker.base import BaseReranker
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from memreranker.integration import CORE_FIELDS, FALLBACK_KEY, adopt_settings, flag_fallback
from memreranker.memory_text import memory_text
from memreranker.pool import check_candidates, pool_size
from memreranker.reranker import MemReranker
from memreranker.settings import RerankerSettings
from memreranker.types import RerankResult
from memreranker.validation import check_query, check_top_n

logger = logging.getLogger("memreranker")

PROVIDER = "memreranker"
"""The provider name :func:`register` adds to mem0's ``RerankerFactory``."""

SCORE_KEY = "rerank_score"
"""The key mem0's rerankers write their score to: here P(yes), in [0, 1]."""

"""Set to ``True`` on memories that kept their original order because scoring failed."""

__all__ = [
    "FALLBACK_KEY",
    "PROVIDER",
    "SCORE_KEY",
    "MemRerankerMem0",
    "MemRerankerMem0Config",
    "asearch",
    "register",
    "search",
]


class MemRerankerMem0Config(RerankerSettings, BaseRerankerConfig):
    """The ``config`` of the ``"memreranker"`` provider: every MemReranker setting plus mem0's.

    It is a mem0 ``BaseRerankerConfig`` (``provider``, ``model``, ``api_key``, ``top_k``)
    whose other fields are :class:`memreranker.RerankerSettings`: ``backend``, ``model``,
    ``api_key``, ``base_url``, ``device``, ``dtype``, ``instruction``, ``on_error``,
    ``timeout``, ``max_retries``, ``batch_size``, ``score_cache_size``... with the same
    names, defaults and checks as ``MemReranker``. Unknown keys are a ``ValueError`` (a
    typo is not silently ignored).

    ``api_key`` left unset lets the ``memos`` backend read ``$MEMOS_API_KEY`` when the
    reranker is built. A key given here is a ``SecretStr``: masked in ``repr`` and left out
    of ``model_dump()``, so pass it in the ``config`` dict itself (or through the
    environment) rather than through ``model_dump()``.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True)

    provider: str | None = Field(
        default=PROVIDER, description="mem0's provider name; informational here."
    )
    top_k: int | None = Field(
        default=None,
        description="Keep at most this many memories when the caller gives no top_k. "
        "Memory.search always passes its own top_k, which then wins (as for every mem0 "
        "reranker). None keeps all.",
    )

    # Set once a MemRerankerMem0 has built its MemReranker from this object.
    _built: bool = PrivateAttr(default=False)

    @field_validator("top_k", mode="before")
    @classmethod
    def _valid_top_k(cls, value: Any) -> int | None:
        top_k = _check_top_k(value)
        if top_k == 0:
            # mem0 reads a top_k of 0 as "not set": say so rather than keep nothing.
            raise ValueError("top_k must be a positive int or None (None keeps all), got 0")
        return top_k

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CORE_FIELDS and getattr(self, "_built", False):
            raise AttributeError(
                f"{name} is fixed once the reranker is built: create a new MemRerankerMem0 "
                "with the settings you want (top_k can still be changed)"
            )
        super().__setattr__(name, value)


class MemRerankerMem0(BaseReranker):
    """A mem0 ``BaseReranker`` scoring memories with one :class:`~memreranker.MemReranker`.

    mem0's ``RerankerFactory`` builds it as ``MemRerankerMem0(config)`` once
    :func:`register` has run; it can also be built directly and assigned to
    ``memory.reranker``.

    Args:
        config: A :class:`MemRerankerMem0Config`, a dict of its fields, another mem0
            ``BaseRerankerConfig`` (its ``model``, ``api_key`` and ``top_k`` are taken), or
            ``None`` for the defaults (local ``IAAR-Shanghai/MemReranker-4B``).
        reranker: A ready ``MemReranker`` (to share loaded weights with other code, or to
            use a ``fallback=`` chain, which a mem0 config dict cannot express). Settings in
            ``config`` that contradict it raise ``ValueError``; ``top_k`` goes with either.

    The ``MemReranker`` is built here, once, and reused for every search (local weights
    load on the first call). Its settings are fixed from then on; ``config.top_k`` is read
    on every call.
    """

    def __init__(
        self,
        config: MemRerankerMem0Config | BaseRerankerConfig | Mapping[str, Any] | None = None,
        *,
        reranker: MemReranker | None = None,
    ) -> None:
        data = _config_data(config)
        if reranker is not None:
            data = adopt_settings(reranker, data)
        self.config = MemRerankerMem0Config.model_validate(data)
        if reranker is None:
            self._core, self._owns_core = MemReranker.from_settings(self.config), True
        else:
            self._core, self._owns_core = reranker, False
        self.config._built = True

    @property
    def reranker(self) -> MemReranker:
        """The ``MemReranker`` doing the work."""
        return self._core

    def __repr__(self) -> str:
        return f"MemRerankerMem0({self._core!r}, top_k={self.config.top_k!r})"

    def rerank(
        self,
        query: str,
        documents: Sequence[Mapping[str, Any]],
        top_k: int | None = None,
    ) -> list[dict[str, Any]]:
        """Score mem0 memories against ``query`` and return them best first.

        Args:
            query: The search query.
            documents: mem0 memory dicts. The text scored is ``"memory"``, else ``"text"``,
                else ``"content"`` (the first holding a string), else ``str(doc)``.
            top_k: Keep at most this many. ``None`` or 0 means "not given": then
                ``config.top_k`` applies (``None``: all), as in mem0's own rerankers.

        Returns:
            New dicts (deep copies: the caller's memories are never modified) with every
            key kept and ``"rerank_score"`` added, P(yes) in [0, 1], sorted descending, ties
            in input order. If scoring fails and ``on_error="fallback"`` (the default): the
            memories in their original order, ``rerank_score`` 0.0 and
            ``"rerank_fallback": True``, cut the same way, with one warning logged.
            ``on_error="raise"`` lets the ``MemRerankerError`` out (``Memory.search`` then
            logs it and keeps the vector-search results).
        """
        top_n = _check_top_k(top_k) or self.config.top_k
        memories = _memories(documents)
        results = self._core.rerank(query, _texts(memories), top_n=top_n)
        return [_scored(memories[result.index], result) for result in results]

    def close(self) -> None:
        """Release the core's connections or weights, if this object built it."""
        if self._owns_core:
            self._core.close()


def register() -> None:
    """Add the ``"memreranker"`` provider to mem0's ``RerankerFactory``.

    mem0 picks rerankers from a fixed table (``RerankerFactory.provider_to_class``) and has
    no plugin entry point, so a provider from another package exists only once added to
    that table. Call this once per process (each worker process too) before building a
    ``Memory`` with ``{"provider": "memreranker", ...}``; calling it again is harmless.
    """
    from mem0.utils.factory import RerankerFactory

    table = getattr(RerankerFactory, "provider_to_class", None)
    if not isinstance(table, dict):
        raise RuntimeError(
            "this mem0 version's RerankerFactory has no provider_to_class table; assign "
            "memory.reranker = MemRerankerMem0(...) instead"
        )
    entry = (f"{MemRerankerMem0.__module__}.{MemRerankerMem0.__qualname__}", MemRerankerMem0Config)
    if table.get(PROVIDER, entry) != entry:
        logger.warning("replacing mem0's reranker provider %r: %r", PROVIDER, table[PROVIDER])
    table[PROVIDER] = entry


def search(
    memory: Any,
    query: str,
    *,
    top_k: int = 5,
    candidates: int | None = None,
    reranker: MemReranker | MemRerankerMem0 | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Search a ``mem0.Memory`` over a wider pool: fetch, rerank in one core call, keep ``top_k``.

    Args:
        memory: A ``mem0.Memory`` (for ``AsyncMemory`` use :func:`asearch`).
        query: The search query.
        top_k: How many memories to return.
        candidates: How many memories the vector search fetches. ``None``:
            ``max(20, 3 * top_k)`` (why: :mod:`memreranker.pool`); never fewer than ``top_k``.
        reranker: A ``MemReranker``, or a :class:`MemRerankerMem0` (its core is used).
            ``None``: the memory's own reranker, when it is the ``"memreranker"`` provider.
        **kwargs: Passed to ``memory.search`` as they are (``filters``, ``threshold``,
            ``explain``...). ``rerank`` is not accepted: mem0's own reranking would cut the
            pool to ``top_k`` before this one sees it.

    Returns:
        mem0's answer (``{"results": [...]}``, other keys kept) whose ``results`` are the best
        ``top_k`` of the pool, best first: copies of mem0's dicts (its vector ``score`` kept)
        with ``"rerank_score"``, P(yes). When scoring fails and ``on_error="fallback"``:
        the vector order, ``rerank_score`` 0.0 and ``"rerank_fallback": True``, cut to
        ``top_k``, with one warning, as :class:`MemRerankerMem0` does; ``on_error="raise"``
        raises the ``MemRerankerError``.
    """
    if inspect.iscoroutinefunction(getattr(memory, "search", None)):
        raise TypeError("memory.search is async (an AsyncMemory): use memreranker.mem0.asearch")
    core, query, options = _pool_call(memory, query, top_k, candidates, reranker, kwargs)
    found = memory.search(query, **options)
    memories = _pool(found)
    results = core.rerank(query, _texts(memories), top_n=top_k) if memories else []
    return _pool_answer(found, memories, results)


async def asearch(
    memory: Any,
    query: str,
    *,
    top_k: int = 5,
    candidates: int | None = None,
    reranker: MemReranker | MemRerankerMem0 | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`search` for a ``mem0.AsyncMemory``: awaits its ``search`` and the core's
    ``arerank`` (local inference runs off the event loop)."""
    if not inspect.iscoroutinefunction(getattr(memory, "search", None)):
        raise TypeError("memory.search is not async (a mem0.Memory): use memreranker.mem0.search")
    core, query, options = _pool_call(memory, query, top_k, candidates, reranker, kwargs)
    memories = _pool(found := await memory.search(query, **options))
    results = await core.arerank(query, _texts(memories), top_n=top_k) if memories else []
    return _pool_answer(found, memories, results)


def _pool_call(
    memory: Any,
    query: Any,
    top_k: Any,
    candidates: Any,
    reranker: Any,
    kwargs: dict[str, Any],
) -> tuple[MemReranker, str, dict[str, Any]]:
    """The core, the query and the ``memory.search`` arguments of a pooled search."""
    query = check_query(query)
    kept = _check_top_k(top_k)
    if kept is None or kept == 0:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    pool = pool_size(kept, check_candidates(candidates))
    for name in ("rerank", "top_k", "limit"):
        if name in kwargs:
            raise TypeError(
                f"{name} is not a pass-through argument here: the pool is fetched with "
                "rerank off and top_k=candidates, then reranked and cut to top_k"
            )
    if reranker is None:
        reranker = getattr(memory, "reranker", None)
        if not isinstance(reranker, MemRerankerMem0):
            raise TypeError(
                "pass reranker= (a MemReranker): this memory's reranker is not the "
                f"'{PROVIDER}' provider"
            )
    if isinstance(reranker, MemRerankerMem0):
        reranker = reranker.reranker
    if not isinstance(reranker, MemReranker):
        raise TypeError(
            "reranker must be a MemReranker, a MemRerankerMem0 or None, "
            f"got {type(reranker).__name__}"
        )
    return reranker, query, {**kwargs, "top_k": pool, "rerank": False}


def _pool(found: Any) -> list[Mapping[str, Any]]:
    if not isinstance(found, Mapping) or not isinstance(found.get("results"), list):
        raise TypeError(
            "memory.search returned no {'results': [...]} dict (a mem0 version before 1.1?), "
            f"got {type(found).__name__}"
        )
    return _memories(found["results"])


def _pool_answer(
    found: Mapping[str, Any], memories: list[Mapping[str, Any]], results: list[RerankResult]
) -> dict[str, Any]:
    return {**found, "results": [_scored(memories[result.index], result) for result in results]}


def _texts(memories: Sequence[Mapping[str, Any]]) -> list[str]:
    # Every memory's text comes from here (one place to add its fields later).
    return [memory_text(memory) for memory in memories]


def _check_top_k(top_k: Any) -> int | None:
    """The core's ``top_n`` check, its errors naming mem0's argument."""
    try:
        return check_top_n(top_k)
    except (TypeError, ValueError) as exc:
        raise type(exc)(str(exc).replace("top_n", "top_k", 1)) from None


def _config_data(config: Any) -> dict[str, Any]:
    """The given fields of ``config`` as a dict (unset fields keep their defaults)."""
    if config is None:
        return {}
    if isinstance(config, MemRerankerMem0Config):
        return {name: getattr(config, name) for name in config.model_fields_set}
    if isinstance(config, BaseRerankerConfig):  # mem0's base, or another provider's config
        given = config.model_fields_set & {"model", "api_key", "top_k"}
        return {name: getattr(config, name) for name in given}
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(
        "config must be a MemRerankerMem0Config, a mem0 BaseRerankerConfig, a dict or None, "
        f"got {type(config).__name__}"
    )


def _memories(documents: Any) -> list[Mapping[str, Any]]:
    if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Sequence):
        raise TypeError(
            f"documents must be a list of mem0 memory dicts, got {type(documents).__name__}"
        )
    memories = list(documents)
    for i, memory in enumerate(memories):
        if not isinstance(memory, Mapping):
            raise TypeError(f"documents[{i}] must be a dict, got {type(memory).__name__}")
    return memories


def _scored(memory: Mapping[str, Any], result: RerankResult) -> dict[str, Any]:
    item = copy.deepcopy(dict(memory))  # nested metadata too: results never alias the input
    item[SCORE_KEY] = result.score
    flag_fallback(item, result)
    return item
