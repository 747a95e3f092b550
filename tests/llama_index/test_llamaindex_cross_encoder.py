"""End to end with a local cross-encoder: VectorStoreIndex -> RetrieverQueryEngine -> MemRerank
-> the core -> sentence-transformers, ranking exactly as ``CrossEncoder.predict`` called here."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore
from sentence_transformers import CrossEncoder

from llama_index.postprocessor.memreranker import MemRerank

QUERY = "What does the user like to drink in the morning?"
RETRIEVE = 6
TOP_N = 3


def predicted(path: Path, retrieved: list[NodeWithScore]) -> list[tuple[str, float]]:
    """The top ``TOP_N`` (node id, score) by sentence-transformers' own CrossEncoder.predict,
    on the text the postprocessor reads (``MetadataMode.EMBED``)."""
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in retrieved]
    scores = CrossEncoder(str(path)).predict([(QUERY, t) for t in texts])
    order = sorted(range(len(texts)), key=lambda i: -float(scores[i]))[:TOP_N]
    return [(retrieved[i].node.node_id, float(scores[i])) for i in order]


# runtime="onnx": ONNX Runtime on the exported model, the same ranking and scores (1e-5).
@pytest.mark.parametrize(
    ("mode", "runtime"), [("sync", "torch"), ("async", "torch"), ("sync", "onnx")]
)
async def test_query_engine_ranks_like_cross_encoder_predict(
    tiny_cross_encoder: Path, nodes: list[NodeWithScore], embed_model, mode: str, runtime: str
) -> None:
    index = VectorStoreIndex([n.node for n in nodes], embed_model=embed_model)
    retriever = index.as_retriever(similarity_top_k=RETRIEVE)
    rerank = MemRerank(
        model=str(tiny_cross_encoder),
        top_n=TOP_N,
        keep_retrieval_score=True,
        on_error="raise",
        runtime=runtime,
    )
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(), node_postprocessors=[rerank])
    retrieved = retriever.retrieve(QUERY)
    assert len(retrieved) == RETRIEVE
    want = predicted(tiny_cross_encoder, retrieved)
    assert [i for i, _ in want] != [n.node.node_id for n in retrieved[:TOP_N]]

    response = engine.query(QUERY) if mode == "sync" else await engine.aquery(QUERY)
    got = [(n.node.node_id, n.score) for n in response.source_nodes]
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)
    first_stage = {n.node.node_id: n.score for n in retrieved}
    for n in response.source_nodes:
        assert n.node.metadata["retrieval_score"] == pytest.approx(first_stage[n.node.node_id])
        assert "rerank_fallback" not in n.node.metadata
    rerank.close()
