"""The common base of the framework shells (LangChain, LlamaIndex).

A shell has the core's settings as its own fields (inherited from
:class:`~memreranker.settings.RerankerSettings`) or takes a ready ``reranker``; either way it
holds exactly one :class:`~memreranker.MemReranker`, built once, and adds ``top_n`` and
``score_threshold``. Everything here was needed by both shells, so it lives once, here.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import MutableMapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator

from memreranker.reranker import MemReranker
from memreranker.settings import RerankerSettings
from memreranker.types import RerankResult
from memreranker.validation import check_score_threshold, check_top_n

logger = logging.getLogger("memreranker")

FALLBACK_KEY = "rerank_fallback"
"""The metadata key (LangChain, LlamaIndex) or dict key (mem0) flagging a fallback result."""

CORE_FIELDS: frozenset[str] = frozenset(RerankerSettings.model_fields)
"""The settings that configure the core: fixed once a shell has built it."""

Model = TypeVar("Model", bound=BaseModel)


def detached_copy(item: Model) -> Model:
    """A copy of a framework object (a LangChain ``Document``, a LlamaIndex node) that shares
    nothing mutable with it: editing a nested metadata value (or a LlamaIndex relationship)
    of either never shows in the other.

    A value ``copy.deepcopy`` cannot copy (a lock, an open file, a client someone put in the
    metadata) is shared rather than failing a call whose scoring succeeded; its containers
    are still copied.
    """
    try:
        return item.model_copy(deep=True)
    except Exception as exc:
        logger.debug("deep copy of a %s failed (%s): copying value by value", type(item), exc)
    fields = {name: _copied(getattr(item, name)) for name in type(item).model_fields}
    return item.model_copy(update=fields)


def _copied(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:
        if isinstance(value, dict):
            return {key: _copied(item) for key, item in value.items()}
        if isinstance(value, list):
            return [_copied(item) for item in value]
        return value


def flag_fallback(item: MutableMapping[str, Any], result: RerankResult) -> None:
    """Set ``item[FALLBACK_KEY] = True`` for a fallback result; for a scored one remove the
    flag, which a copy of an earlier, failed reranking may still carry (a stale flag)."""
    if result.is_fallback:
        item[FALLBACK_KEY] = True
    else:
        item.pop(FALLBACK_KEY, None)


class RerankerShell(RerankerSettings):
    """Core settings or a ready reranker in; one core, built at construction, out.

    Args:
        reranker: A ready ``MemReranker`` (to share loaded weights or a fallback chain).
            Core settings given next to it must agree with its settings, else
            ``ValueError``; the fields then mirror the reranker's settings.
        top_n: Keep at most this many results (``None``: all).
        score_threshold: Drop results below this P(yes); not applied to fallback results.
        **settings: Any field of :class:`~memreranker.settings.RerankerSettings`.

    The core settings cannot be reassigned afterwards (``AttributeError``): the core was
    built from them. ``top_n`` and ``score_threshold`` can.
    """

    top_n: int | None = Field(
        default=None, description="Keep at most this many results; None keeps all."
    )
    score_threshold: float | None = Field(
        default=None,
        description="Drop results scoring below this P(yes) in [0, 1]; not applied on "
        "fallback, whose scores are unknown rather than low.",
    )

    _core: MemReranker | None = PrivateAttr(default=None)
    _owns_core: bool = PrivateAttr(default=True)

    def __init__(self, *, reranker: MemReranker | None = None, **data: Any) -> None:
        if reranker is not None:
            data = adopt_settings(reranker, data)
        super().__init__(**data)
        if reranker is not None:
            self._core, self._owns_core = reranker, False
        else:
            # Built here, not on first use, so that a bad setting (a missing API key, say)
            # fails at construction.
            self._core = MemReranker.from_settings(self)

    @field_validator("top_n", mode="before")
    @classmethod
    def _check_top_n(cls, value: Any) -> int | None:
        return check_top_n(value)

    @field_validator("score_threshold", mode="before")
    @classmethod
    def _check_score_threshold(cls, value: Any) -> float | None:
        return check_score_threshold(value)

    @property
    def reranker(self) -> MemReranker:
        """The core doing the work: the ``reranker`` given, or the one built from settings."""
        if self._core is None:  # made by model_validate/deserialisation, which skip __init__
            self._core = MemReranker.from_settings(self)
        return self._core

    @property
    def owns_reranker(self) -> bool:
        """False when the reranker was passed in (and is the caller's to close)."""
        return self._owns_core

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CORE_FIELDS:
            raise AttributeError(
                f"{type(self).__name__}.{name} is fixed once the reranker is built: "
                f"create a new {type(self).__name__} with the settings you want"
            )
        super().__setattr__(name, value)

    def __getstate__(self) -> dict[str, Any]:
        # A core built here is rebuilt from these settings on first use after unpickling;
        # a ready one given at construction travels (rebuilt from its own settings and
        # fallback chain by MemReranker's pickling). The key is sealed, never in clear.
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        if private.get("_owns_core", True):
            private["_core"] = None
        return {**state, "__pydantic_private__": private}

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Any:
        # The core (weights, locks, connection pools) is shared by copies, never copied.
        memo = {} if memo is None else memo
        if self._core is not None:
            memo[id(self._core)] = self._core
        clone = super().__deepcopy__(memo)
        clone._owns_core = False
        return clone

    def close(self) -> None:
        """Release the core's connections or weights, if this object built it."""
        if self._owns_core and self._core is not None:
            self._core.close()

    def _rerank_texts(self, query: str, texts: Sequence[str]) -> list[RerankResult]:
        return self.reranker.rerank(
            query, texts, top_n=self.top_n, score_threshold=self.score_threshold
        )

    async def _arerank_texts(self, query: str, texts: Sequence[str]) -> list[RerankResult]:
        return await self.reranker.arerank(
            query, texts, top_n=self.top_n, score_threshold=self.score_threshold
        )


def adopt_settings(reranker: MemReranker, data: dict[str, Any]) -> dict[str, Any]:
    """The reranker's settings as field values; ``ValueError`` if ``data`` contradicts them."""
    if not isinstance(reranker, MemReranker):
        raise TypeError(
            f"reranker must be a memreranker.MemReranker, got {type(reranker).__name__}"
        )
    have = {name: getattr(reranker.settings, name) for name in CORE_FIELDS}
    given = {name: data[name] for name in CORE_FIELDS if name in data}
    if given:
        wanted = RerankerSettings.model_validate({**have, **given})
        conflicts = sorted(name for name in given if getattr(wanted, name) != have[name])
        if conflicts:
            raise ValueError(
                "got a ready reranker and settings that contradict it: "
                + "; ".join(_describe(n, getattr(wanted, n), have[n]) for n in conflicts)
                + ". Pass either reranker=... or the settings, not both."
            )
    return {**data, **have}


def _describe(name: str, wanted: Any, have: Any) -> str:
    if isinstance(wanted, SecretStr) or isinstance(have, SecretStr):
        return f"{name} differs"  # never show a key, not even masked
    return f"{name}={wanted!r} but the reranker has {have!r}"
