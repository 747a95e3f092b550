"""LangChain: rerank an agent's memories with MemRerank inside a ContextualCompressionRetriever.

Run: ``python examples/langchain_retriever.py`` (needs ``langchain-memreranker[local]``,
``memreranker[testing]`` and ``langchain-classic``). It uses ``$MEMRERANKER_MODEL`` (a Hub id
or a directory of MemReranker weights), else ``IAAR-Shanghai/MemReranker-4B``. When the Hub
cannot be reached it says so in one line and uses only the local cache; when the weights
cannot be had it says so and runs on a tiny random test model (built once into
``$MEMRERANKER_CACHE`` or ``~/.cache/memreranker``, then reused), whose scores are meaningless.

For the hosted MemOS API instead of local weights, build the compressor as
``MemRerank(backend="memos", top_n=3)`` with ``$MEMOS_API_KEY`` set; nothing else changes.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import zlib

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_memreranker import MemRerank
from memreranker.logs import log_to_stderr
from memreranker.stand_in import load_or_stand_in

MEMORIES = [
    "User prefers Jiangxiang-flavoured baijiu, especially Moutai, but only on holidays.",
    "User said they stopped drinking alcohol on 2026-10-01 for health reasons.",
    "User's sister Anna lives in Berlin; she works as a pediatric nurse.",
    "User booked a flight to Berlin for 2026-12-18, returning 2027-01-03.",
    "She asked the user to bring green tea from Hangzhou.",
    "User works as a backend developer in Hangzhou, mostly in Go and Python.",
    "User's dog Biscuit stays with a neighbour, Mr. Chen, during trips.",
    "User is allergic to peanuts.",
]

QUERIES = [
    "What should the user drink at the holiday dinner?",
    "What should the user pack for the trip to Berlin?",
]


class BagOfWords(Embeddings):
    """A toy first-stage embedding (hashed word counts) standing in for a real one."""

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * 256
        for word in re.findall(r"\w+", text.lower()):
            vector[zlib.crc32(word.encode()) % 256] += 1.0
        norm = sum(v * v for v in vector) ** 0.5 or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)


def show(title: str, docs: list[Document]) -> None:
    print(title)
    for doc in docs:
        score = doc.metadata.get("relevance_score")
        label = "" if score is None else f"[{score:.3f}] "
        flag = " (fallback: original order)" if doc.metadata.get("rerank_fallback") else ""
        print(f"  {label}{doc.page_content}{flag}")


def main() -> int:
    log_to_stderr()
    core, _ = load_or_stand_in(os.environ.get("MEMRERANKER_MODEL"), announce=print)
    # Imported after the line about the Hub: older langchain-classic releases import
    # transformers and torch with their retrievers (8 s here), which would delay it.
    from langchain_classic.retrievers import ContextualCompressionRetriever

    compressor = MemRerank(reranker=core, top_n=3)
    store = InMemoryVectorStore(embedding=BagOfWords())
    store.add_texts(MEMORIES, ids=[f"memory-{i}" for i in range(len(MEMORIES))])
    base = store.as_retriever(search_kwargs={"k": 6})
    retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)
    print(f"Compressor: {compressor!r}\n")

    for query in QUERIES:
        print(f"Q: {query}")
        show(" first stage (top 6):", base.invoke(query))
        show(" reranked (top 3):", retriever.invoke(query))
        print()

    # The async path is native: the same results through ainvoke.
    docs = asyncio.run(retriever.ainvoke(QUERIES[0]))
    print(f"ainvoke gave the same top 3: {docs == retriever.invoke(QUERIES[0])}")
    core.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
