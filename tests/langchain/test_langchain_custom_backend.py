"""The README's "Writing a backend" example through ``MemRerank(reranker=...)``."""

from __future__ import annotations

from custom_backend import keyword_backend
from langchain_core.documents import Document

from langchain_memreranker import MemRerank
from memreranker import MemReranker

QUERY = "What does the user like to drink?"
TEXTS = ["User rows a boat.", "User likes to drink tea.", "Tea is what the user likes."]


async def test_a_users_backend_through_the_compressor() -> None:
    core = MemReranker(backend=keyword_backend(), on_error="raise")
    want = [r.document for r in core.rerank(QUERY, TEXTS, top_n=2)]
    compressor = MemRerank(reranker=core, top_n=2)
    docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(TEXTS)]
    got = compressor.compress_documents(docs, QUERY)
    assert [d.page_content for d in got] == want == [TEXTS[1], TEXTS[2]]
    assert [d.metadata["i"] for d in got] == [1, 2] and "relevance_score" in got[0].metadata
    again = await compressor.acompress_documents(docs, QUERY)
    assert [d.metadata for d in again] == [d.metadata for d in got]
    assert compressor.backend is core.settings.backend  # the fields mirror the core's
