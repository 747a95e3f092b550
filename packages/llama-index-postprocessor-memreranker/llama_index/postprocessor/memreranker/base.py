"""``MemRerank``: a LlamaIndex node postprocessor backed by :class:`memreranker.MemReranker`.

A thin translation layer: nodes become texts, the core's results become new nodes. Input
checks, sorting, ``top_n``, ``score_threshold`` and the fallback all live in the core.
"""

from __future__ import annotations

from typing import Annotated, Any

from llama_index.core.bridge.pydantic import BeforeValidator, Field, PrivateAttr, SecretStr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.callbacks.base import EventContext
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from memreranker import MemReranker, RerankerSettings, RerankResult
from memreranker.validation import check_score_threshold, check_top_n

dispatcher = get_dispatcher(__name__)

_CORE_FIELDS: tuple[str, ...] = tuple(RerankerSettings.model_fields)

RETRIEVAL_SCORE_KEY = "retrieval_score"
FALLBACK_KEY = "rerank_fallback"


class MemRerank(BaseNodePostprocessor, RerankerSettings):
    """Rerank retrieved nodes with MemReranker (local weights or a hosted rerank API).

    Configure it either with the core's settings, which it inherits from
    :class:`memreranker.RerankerSettings` (``backend``, ``model``, ``api_key``, ``base_url``,
    ``device``, ``on_error``...), or with a ready ``reranker=MemReranker(...)`` (to share one
    loaded model, or to use a fallback chain). Settings that contradict a given reranker
    raise ``ValueError``. The core is built once, here, and reused by every call; the core
    settings are fixed after construction.

    Args:
        reranker: A ready :class:`memreranker.MemReranker` to use instead of building one.
        top_n: Keep at most this many nodes. ``None`` (the default) keeps every node,
            reordered: pass, say, ``top_n=3`` with ``similarity_top_k=10`` to cut.
        score_threshold: Drop nodes whose rerank score (P(yes), in [0, 1]) is below it.
            Never applied on fallback, whose scores are unknown rather than low.
        keep_retrieval_score: Copy the first-stage score to
            ``metadata["retrieval_score"]`` of the returned nodes.
        **settings: Any field of :class:`memreranker.RerankerSettings`.

    Returns new ``NodeWithScore`` objects holding copies of the nodes, ``score`` set to the
    rerank score; the caller's nodes are left untouched. When scoring fails and
    ``on_error="fallback"`` (the default), the nodes keep their order (cut to ``top_n``) with
    score 0.0 and ``metadata["rerank_fallback"] = True``, and a warning is logged.
    """

    top_n: Annotated[int | None, BeforeValidator(check_top_n)] = Field(
        default=None,
        description="Keep at most this many nodes; None keeps all of them, reordered.",
    )
    score_threshold: Annotated[float | None, BeforeValidator(check_score_threshold)] = Field(
        default=None,
        description="Drop nodes scoring below this P(yes); not applied on fallback.",
    )
    keep_retrieval_score: bool = Field(
        default=False,
        description='Keep the first-stage score in metadata["retrieval_score"].',
    )

    _reranker: MemReranker | None = PrivateAttr(default=None)
    _owns_reranker: bool = PrivateAttr(default=True)

    def __init__(self, *, reranker: MemReranker | None = None, **data: Any) -> None:
        if reranker is not None:
            data = _adopt_settings(reranker, data)
        super().__init__(**data)
        self._owns_reranker = reranker is None
        self._reranker = reranker if reranker is not None else MemReranker.from_settings(self)

    @classmethod
    def class_name(cls) -> str:
        return "MemRerank"

    @property
    def reranker(self) -> MemReranker:
        """The core :class:`memreranker.MemReranker` doing the scoring."""
        if self._reranker is None:  # built through model_validate, which skips __init__
            self._reranker = MemReranker.from_settings(self)
        return self._reranker

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CORE_FIELDS:
            raise AttributeError(
                f"MemRerank.{name} is fixed once the reranker is built; "
                "create a new MemRerank with the settings you want"
            )
        super().__setattr__(name, value)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> MemRerank:
        # The core (loaded weights, locks, connection pools) is shared, not copied.
        memo = {} if memo is None else memo
        if self._reranker is not None:
            memo[id(self._reranker)] = self._reranker
        clone = super().__deepcopy__(memo)
        clone._owns_reranker = False
        return clone

    def close(self) -> None:
        """Release the core's connections or weights (only of a core this object built)."""
        if self._owns_reranker and self._reranker is not None:
            self._reranker.close()

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query = self._start(nodes, query_bundle)
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._payload(nodes, query)
        ) as event:
            results = self.reranker.rerank(
                query,
                _texts(nodes),
                top_n=self.top_n,
                score_threshold=self.score_threshold,
            )
            return self._end(nodes, results, event)

    @dispatcher.span
    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query = self._start(nodes, query_bundle)
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._payload(nodes, query)
        ) as event:
            results = await self.reranker.arerank(
                query,
                _texts(nodes),
                top_n=self.top_n,
                score_threshold=self.score_threshold,
            )
            return self._end(nodes, results, event)

    def _event_top_n(self, nodes: list[NodeWithScore]) -> int:
        # The events want an int: "all" is the number of nodes.
        return len(nodes) if self.top_n is None else self.top_n

    def _start(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> str:
        if query_bundle is None:
            raise ValueError("MemRerank needs the query: pass query_bundle (or query_str)")
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=self._event_top_n(nodes),
                model_name=self.reranker.name,
            )
        )
        return query_bundle.query_str

    def _payload(self, nodes: list[NodeWithScore], query: str) -> dict[str, Any]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.reranker.name,
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self._event_top_n(nodes),
        }

    def _end(
        self,
        nodes: list[NodeWithScore],
        results: list[RerankResult],
        event: EventContext,
    ) -> list[NodeWithScore]:
        reranked = [self._result_node(nodes[result.index], result) for result in results]
        event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def _result_node(self, original: NodeWithScore, result: RerankResult) -> NodeWithScore:
        metadata = dict(original.node.metadata)
        if self.keep_retrieval_score:
            metadata[RETRIEVAL_SCORE_KEY] = original.score
        if result.is_fallback:
            metadata[FALLBACK_KEY] = True
        node = original.node.model_copy(update={"metadata": metadata})
        return NodeWithScore(node=node, score=result.score)


def _texts(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]


def _adopt_settings(reranker: MemReranker, data: dict[str, Any]) -> dict[str, Any]:
    """The reranker's settings as field values; ``ValueError`` if ``data`` contradicts them."""
    if not isinstance(reranker, MemReranker):
        raise TypeError(
            f"reranker must be a memreranker.MemReranker, got {type(reranker).__name__}"
        )
    have = {name: getattr(reranker.settings, name) for name in _CORE_FIELDS}
    given = {name: data[name] for name in _CORE_FIELDS if name in data}
    if given:
        wanted = RerankerSettings.model_validate({**have, **given})
        conflicts = [name for name in given if getattr(wanted, name) != have[name]]
        if conflicts:
            raise ValueError(
                "MemRerank got a ready reranker and settings that contradict it: "
                + "; ".join(
                    _describe(name, getattr(wanted, name), have[name]) for name in conflicts
                )
                + ". Pass either reranker=... or the settings, not both."
            )
    return {**data, **have}


def _describe(name: str, wanted: Any, have: Any) -> str:
    if isinstance(wanted, SecretStr) or isinstance(have, SecretStr):
        return f"{name} differs"  # never show a key, not even masked
    return f"{name}={wanted!r} but the reranker has {have!r}"
