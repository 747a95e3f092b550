"""``MemRerank``: a LlamaIndex node postprocessor backed by :class:`memreranker.MemReranker`.

A thin translation layer: nodes become texts, the core's results become new nodes. Input
checks, sorting, ``top_n``, ``score_threshold`` and the fallback all live in the core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.callbacks.base import EventContext
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from memreranker import RerankResult
from memreranker.integration import RerankerShell, detached_copy, flag_fallback

dispatcher = get_dispatcher(__name__)

RETRIEVAL_SCORE_KEY = "retrieval_score"


class MemRerank(BaseNodePostprocessor, RerankerShell):
    """Rerank retrieved nodes with MemReranker (local weights or a hosted rerank API).

    Configure it either with the core's settings, which it inherits from
    :class:`memreranker.RerankerSettings` (``backend``, ``model``, ``api_key``, ``base_url``,
    ``device``, ``on_error``...), or with a ready ``reranker=MemReranker(...)`` (to share one
    loaded model, or to use a fallback chain). Settings that contradict a given reranker
    raise ``ValueError``. The core is built once, here, and reused by every call; the core
    settings are fixed after construction (see :class:`memreranker.integration.RerankerShell`).

    Args:
        reranker: A ready :class:`memreranker.MemReranker` to use instead of building one.
        top_n: Keep at most this many nodes. ``None`` (the default) keeps every node,
            reordered: pass, say, ``top_n=3`` with ``similarity_top_k=10`` to cut.
        score_threshold: Drop nodes whose rerank score (P(yes), in [0, 1]) is below it.
            Never applied on fallback, whose scores are unknown rather than low.
        keep_retrieval_score: Copy the first-stage score to
            ``metadata["retrieval_score"]`` of the returned nodes.
        metadata_mode: Which of a node's metadata is scored with its text:
            ``MetadataMode.EMBED`` (the default, what the embedding saw in a vector index),
            or ``MetadataMode.NONE`` for the text alone. A ``VectorMemoryBlock`` of
            ``llama_index.core.memory.Memory`` embeds its nodes' text alone and gives them
            only a ``session_id`` metadata key: use ``MetadataMode.NONE`` there (see the
            README, "Agent memory").
        **settings: Any field of :class:`memreranker.RerankerSettings`.

    Returns new ``NodeWithScore`` objects holding deep copies of the nodes (metadata and
    relationships share nothing mutable with the input), ``score`` set to the rerank score;
    the caller's nodes are left untouched. A ``rerank_fallback`` flag left by an earlier
    failed call is removed on success. When scoring fails and
    ``on_error="fallback"`` (the default), the nodes keep their order (cut to ``top_n``) with
    score 0.0 and ``metadata["rerank_fallback"] = True``, and a warning is logged.
    """

    keep_retrieval_score: bool = Field(
        default=False,
        description='Keep the first-stage score in metadata["retrieval_score"].',
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED,
        description="The metadata scored with a node's text (NONE: the text alone).",
    )

    @classmethod
    def class_name(cls) -> str:
        return "MemRerank"

    def __setstate__(self, state: dict[str, Any]) -> None:
        # BaseComponent's re-runs __init__ from the fields alone, which would drop a ready
        # reranker (and its fallback chain): restore the pickled state as it was.
        RerankerShell.__setstate__(self, state)

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query = self._start(nodes, query_bundle)
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._payload(nodes, query)
        ) as event:
            results = self._rerank_texts(query, _texts(nodes, self.metadata_mode))
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
            results = await self._arerank_texts(query, _texts(nodes, self.metadata_mode))
            return self._end(nodes, results, event)

    def _event_top_n(self, nodes: list[NodeWithScore]) -> int:
        # The events want an int: "all" is the number of nodes.
        return len(nodes) if self.top_n is None else self.top_n

    def _start(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> str:
        _check_nodes(nodes)
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
        node = detached_copy(original.node)  # metadata, relationships...: nothing shared
        metadata = node.metadata
        if self.keep_retrieval_score:
            metadata[RETRIEVAL_SCORE_KEY] = original.score
        flag_fallback(metadata, result)
        return NodeWithScore(node=node, score=result.score)


def _check_nodes(nodes: Any) -> None:
    """A caller mistake named plainly (before the events' own validation gets to it)."""
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
        raise TypeError(f"nodes must be a list of NodeWithScore, got {type(nodes).__name__}")
    for i, node in enumerate(nodes):
        if not isinstance(node, NodeWithScore):
            raise TypeError(f"nodes[{i}] must be a NodeWithScore, got {type(node).__name__}")


def _texts(nodes: list[NodeWithScore], mode: MetadataMode) -> list[str]:
    return [n.node.get_content(metadata_mode=mode) for n in nodes]
