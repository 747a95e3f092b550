"""End to end with a local cross-encoder: ContextualCompressionRetriever -> MemRerank ->
the core -> sentence-transformers, ranking exactly as ``CrossEncoder.predict`` called here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from sentence_transformers import CrossEncoder

from langchain_memreranker import FALLBACK_KEY, RELEVANCE_SCORE_KEY, MemRerank

QUERY = "What does the user like to drink?"
K = 6
TOP_N = 3


@pytest.fixture(scope="module")
def compressor(tiny_cross_encoder: Path) -> Iterator[MemRerank]:
    rerank = MemRerank(model=str(tiny_cross_encoder), on_error="raise", top_n=TOP_N)
    yield rerank
    rerank.close()


def predicted(path: Path, docs: list[Document]) -> list[tuple[str, float]]:
    """The top ``TOP_N`` (id, score) by sentence-transformers' own CrossEncoder.predict."""
    scores = CrossEncoder(str(path)).predict([(QUERY, d.page_content) for d in docs])
    order = sorted(range(len(docs)), key=lambda i: -float(scores[i]))[:TOP_N]
    return [(str(docs[i].id), float(scores[i])) for i in order]


def check(docs: list[Document], want: list[tuple[str, float]]) -> None:
    assert [d.id for d in docs] == [doc_id for doc_id, _ in want]
    for doc, (_, score) in zip(docs, want, strict=True):
        assert doc.metadata[RELEVANCE_SCORE_KEY] == pytest.approx(score, abs=1e-5)
        assert FALLBACK_KEY not in doc.metadata
        assert doc.metadata["tags"] == ["memory"]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_retriever_ranks_like_cross_encoder_predict(
    vectorstore: InMemoryVectorStore, compressor: MemRerank, tiny_cross_encoder: Path, mode: str
) -> None:
    base = vectorstore.as_retriever(search_kwargs={"k": K}).invoke(QUERY)
    assert len(base) == K
    want = predicted(tiny_cross_encoder, base)
    assert [i for i, _ in want] != [d.id for d in base[:TOP_N]]  # the reranker reorders
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor,
        base_retriever=vectorstore.as_retriever(search_kwargs={"k": K}),
    )
    docs = retriever.invoke(QUERY) if mode == "sync" else await retriever.ainvoke(QUERY)
    check(docs, want)
    # The store's documents are untouched.
    stored = vectorstore.get_by_ids([d.id for d in docs if d.id])
    assert all(RELEVANCE_SCORE_KEY not in d.metadata for d in stored)


def test_onnx_runtime_ranks_like_cross_encoder_predict(
    vectorstore: InMemoryVectorStore, tiny_cross_encoder: Path
) -> None:
    # runtime="onnx" through the shell: ONNX Runtime on the exported model, the same ranking
    # and scores as CrossEncoder.predict (within 1e-5).
    base = vectorstore.as_retriever(search_kwargs={"k": K}).invoke(QUERY)
    rerank = MemRerank(model=str(tiny_cross_encoder), runtime="onnx", on_error="raise", top_n=TOP_N)
    assert rerank.runtime == "onnx"
    check(list(rerank.compress_documents(base, QUERY)), predicted(tiny_cross_encoder, base))
    rerank.close()
