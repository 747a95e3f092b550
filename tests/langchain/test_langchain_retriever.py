"""End to end: ContextualCompressionRetriever and an LCEL chain, with the tiny real model."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.documents import Document
from langchain_core.language_models import LLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import Runnable, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_memreranker import FALLBACK_KEY, RELEVANCE_SCORE_KEY, MemRerank

QUERY = "What does the user like to drink?"
K = 6


class EchoLLM(LLM):
    """A fake LLM that answers with its prompt, so the test sees what reached the model."""

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _call(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        return prompt


def format_docs(docs: list[Document]) -> str:
    return "\n".join(f"- {d.page_content}" for d in docs)


@pytest.fixture(scope="module")
def tiny_rerank(tiny_model: Path) -> Iterator[MemRerank]:
    """One compressor for the module: the tiny model loads once. Failures raise here."""
    compressor = MemRerank(model=str(tiny_model), on_error="raise", top_n=3)
    yield compressor
    compressor.close()


def retriever_of(
    store: InMemoryVectorStore, compressor: MemRerank
) -> ContextualCompressionRetriever:
    return ContextualCompressionRetriever(
        base_compressor=compressor,
        base_retriever=store.as_retriever(search_kwargs={"k": K}),
    )


def expected(store: InMemoryVectorStore, compressor: MemRerank) -> list[tuple[str, float]]:
    """What the core itself says about the documents the base retriever returns."""
    base = store.as_retriever(search_kwargs={"k": K}).invoke(QUERY)
    assert len(base) == K
    results = compressor.reranker.rerank(QUERY, [d.page_content for d in base], top_n=3)
    return [(str(base[r.index].id), r.score) for r in results]


def check(docs: list[Document], want: list[tuple[str, float]]) -> None:
    assert [d.id for d in docs] == [doc_id for doc_id, _ in want]
    for doc, (_, score) in zip(docs, want, strict=True):
        assert doc.metadata[RELEVANCE_SCORE_KEY] == pytest.approx(score, abs=1e-5)
        assert 0.0 <= doc.metadata[RELEVANCE_SCORE_KEY] <= 1.0
        assert FALLBACK_KEY not in doc.metadata
        assert doc.metadata["tags"] == ["memory"]
    scores = [d.metadata[RELEVANCE_SCORE_KEY] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_retriever_invoke(vectorstore: InMemoryVectorStore, tiny_rerank: MemRerank) -> None:
    want = expected(vectorstore, tiny_rerank)
    docs = retriever_of(vectorstore, tiny_rerank).invoke(QUERY)
    check(docs, want)
    base = vectorstore.as_retriever(search_kwargs={"k": K}).invoke(QUERY)
    assert [d.id for d in docs] != [d.id for d in base[:3]]  # the reranker did reorder
    # The store's own documents are untouched.
    stored = vectorstore.get_by_ids([d.id for d in docs if d.id])
    assert all(RELEVANCE_SCORE_KEY not in d.metadata for d in stored)


async def test_retriever_ainvoke(vectorstore: InMemoryVectorStore, tiny_rerank: MemRerank) -> None:
    want = expected(vectorstore, tiny_rerank)
    docs = await retriever_of(vectorstore, tiny_rerank).ainvoke(QUERY)
    check(docs, want)


def test_compress_leaves_retrieved_documents_alone(
    vectorstore: InMemoryVectorStore, tiny_rerank: MemRerank
) -> None:
    base = vectorstore.as_retriever(search_kwargs={"k": K}).invoke(QUERY)
    before = copy.deepcopy(base)
    out = tiny_rerank.compress_documents(base, QUERY)
    assert base == before
    assert len(out) == 3


def chain_of(retriever: ContextualCompressionRetriever) -> Runnable[str, str]:
    prompt = PromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}\nAnswer:")
    return (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | prompt
        | EchoLLM()
        | StrOutputParser()
    )


async def test_lcel_chain(vectorstore: InMemoryVectorStore, tiny_rerank: MemRerank) -> None:
    want = expected(vectorstore, tiny_rerank)
    texts = {str(d.id): d.page_content for d in vectorstore.get_by_ids([i for i, _ in want])}
    context = "\n".join(f"- {texts[doc_id]}" for doc_id, _ in want)
    chain = chain_of(retriever_of(vectorstore, tiny_rerank))

    answer = chain.invoke(QUERY)
    assert f"Context:\n{context}\n\nQuestion: {QUERY}" in answer
    # Exactly the three reranked memories, best first.
    assert [line for line in answer.splitlines() if line.startswith("- ")] == context.splitlines()
    assert await chain.ainvoke(QUERY) == answer


def test_an_outage_does_not_crash_the_chain(
    vectorstore: InMemoryVectorStore, missing_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = vectorstore.as_retriever(search_kwargs={"k": K}).invoke(QUERY)
    retriever = retriever_of(vectorstore, MemRerank(model=missing_model, top_n=3))
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        docs = retriever.invoke(QUERY)
        answer = chain_of(retriever).invoke(QUERY)
    assert [d.id for d in docs] == [d.id for d in base[:3]]  # first-stage order
    assert all(d.metadata[FALLBACK_KEY] is True for d in docs)
    assert all(d.metadata[RELEVANCE_SCORE_KEY] == 0.0 for d in docs)
    assert base[0].page_content in answer
    assert any("falling back to original order" in r.getMessage() for r in caplog.records)
