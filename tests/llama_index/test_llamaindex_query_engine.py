"""End to end: VectorStoreIndex -> RetrieverQueryEngine -> MemRerank (tiny local model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore

from llama_index.postprocessor.memreranker import MemRerank
from memreranker import MemReranker

QUERY = "What does the user like to drink in the morning?"
RETRIEVE = 6
TOP_N = 3


@pytest.fixture
def setup(tiny_model: Path, nodes: list[NodeWithScore], embed_model):
    index = VectorStoreIndex([n.node for n in nodes], embed_model=embed_model)
    retriever = index.as_retriever(similarity_top_k=RETRIEVE)
    debug = LlamaDebugHandler()
    rerank = MemRerank(model=str(tiny_model), top_n=TOP_N, keep_retrieval_score=True)
    engine = RetrieverQueryEngine.from_args(
        retriever,
        llm=MockLLM(),
        node_postprocessors=[rerank],
        callback_manager=CallbackManager([debug]),
    )
    return retriever, rerank, engine, debug


def expected(tiny_model: Path, retrieved: list[NodeWithScore]) -> list[tuple[str, float]]:
    """What the core says about the retrieved nodes' texts, as (node id, score)."""
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in retrieved]
    results = MemReranker(model=str(tiny_model)).rerank(QUERY, texts, top_n=TOP_N)
    assert not any(r.is_fallback for r in results)
    return [(retrieved[r.index].node.node_id, r.score) for r in results]


def check(response_nodes: list[NodeWithScore], retrieved: list[NodeWithScore], want) -> None:
    got = [(n.node.node_id, n.score) for n in response_nodes]
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)
    # The test means something only if reranking changed the retrieval order.
    assert [i for i, _ in want] != [n.node.node_id for n in retrieved[:TOP_N]]
    first_stage = {n.node.node_id: n.score for n in retrieved}
    for n in response_nodes:
        assert n.node.metadata["retrieval_score"] == pytest.approx(first_stage[n.node.node_id])
        assert "rerank_fallback" not in n.node.metadata


def check_events(events, debug: LlamaDebugHandler, rerank: MemRerank, retrieved, response) -> None:
    starts = [e for e in events.of_type(ReRankStartEvent) if e.model_name == rerank.reranker.name]
    assert len(starts) == 1
    assert starts[0].top_n == TOP_N
    assert [n.node.node_id for n in starts[0].nodes] == [n.node.node_id for n in retrieved]
    ends = events.of_type(ReRankEndEvent)
    assert [n.node.node_id for n in ends[-1].nodes] == [
        n.node.node_id for n in response.source_nodes
    ]
    ((start, end),) = debug.get_event_pairs(CBEventType.RERANKING)
    assert start.payload[EventPayload.QUERY_STR] == QUERY
    assert start.payload[EventPayload.TOP_K] == TOP_N
    assert start.payload[EventPayload.MODEL_NAME] == rerank.reranker.name
    assert end.payload[EventPayload.NODES] == response.source_nodes


def test_query(setup, tiny_model: Path, events) -> None:
    retriever, rerank, engine, debug = setup
    retrieved = retriever.retrieve(QUERY)
    assert len(retrieved) == RETRIEVE
    response = engine.query(QUERY)
    check(response.source_nodes, retrieved, expected(tiny_model, retrieved))
    check_events(events, debug, rerank, retrieved, response)


async def test_aquery(setup, tiny_model: Path, events) -> None:
    retriever, rerank, engine, debug = setup
    retrieved = await retriever.aretrieve(QUERY)
    response = await engine.aquery(QUERY)
    check(response.source_nodes, retrieved, expected(tiny_model, retrieved))
    check_events(events, debug, rerank, retrieved, response)


def test_query_survives_a_missing_model(tmp_path: Path, nodes, embed_model) -> None:
    index = VectorStoreIndex([n.node for n in nodes], embed_model=embed_model)
    retriever = index.as_retriever(similarity_top_k=RETRIEVE)
    engine = RetrieverQueryEngine.from_args(
        retriever,
        llm=MockLLM(),
        node_postprocessors=[MemRerank(model=str(tmp_path / "missing"), top_n=TOP_N)],
    )
    retrieved = retriever.retrieve(QUERY)
    response = engine.query(QUERY)
    assert [n.node.node_id for n in response.source_nodes] == [
        n.node.node_id for n in retrieved[:TOP_N]
    ]
    assert all(n.score == 0.0 for n in response.source_nodes)
    assert all(n.node.metadata["rerank_fallback"] for n in response.source_nodes)
