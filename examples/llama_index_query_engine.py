"""LlamaIndex: a query engine whose retrieved nodes are reranked by MemReranker.

Run: ``python examples/llama_index_query_engine.py ["your question"]``. Needs
``llama-index-postprocessor-memreranker`` and ``memreranker[local]``. It uses
``$MEMRERANKER_MODEL`` (a Hub id or a directory), else ``IAAR-Shanghai/MemReranker-4B``.
When the Hub cannot be reached it says so in one line and uses only the local cache; when
the weights cannot be had it says so and runs on a tiny random test model (needs
``memreranker[testing]``; built once into ``$MEMRERANKER_CACHE`` or ``~/.cache/memreranker``,
then reused), whose scores are meaningless.

Everything else is offline too: a toy hashing embedding stands in for a real embedding
model and LlamaIndex's ``MockLLM`` for the LLM, so what to look at is the order of the
source nodes, not the answer text. For the hosted MemOS API use
``MemRerank(backend="memos", api_key=..., top_n=3)`` instead (see the package README).
"""

from __future__ import annotations

import math
import os
import re
import sys
import zlib

from llama_index.core import VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import TextNode

from llama_index.postprocessor.memreranker import MemRerank
from memreranker.logs import log_to_stderr
from memreranker.stand_in import load_or_stand_in

MEMORIES = [
    "User prefers Jiangxiang-flavoured baijiu, especially Moutai, but only on holidays.",
    "User said they stopped drinking alcohol on 2026-10-01 for health reasons.",
    "User's sister Anna lives in Berlin; she works as a pediatric nurse.",
    "User booked a flight to Berlin for 2026-12-18, returning 2027-01-03.",
    "Anna asked the user to bring green tea from Hangzhou.",
    "User works as a backend developer in Hangzhou, mostly in Go and Python.",
    "User's dog Biscuit stays with a neighbour, Mr. Chen, during trips.",
    "User has a dentist appointment on 2026-11-25 at 9:00.",
    "User plays badminton every Saturday morning with colleagues.",
    "User's manager approved leave from 2026-12-17 to 2027-01-04.",
]
QUERY = "What should the user bring for the trip to see their sister?"


class HashEmbedding(BaseEmbedding):
    """Toy bag-of-words embedding (words hashed into 256 buckets): offline and deterministic."""

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * 256
        for word in re.findall(r"\w+", text.lower()):
            vector[zlib.crc32(word.encode()) % 256] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._embed(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed(text)


def main() -> int:
    log_to_stderr()
    query = sys.argv[1] if len(sys.argv) > 1 else QUERY
    core, _ = load_or_stand_in(os.environ.get("MEMRERANKER_MODEL"), announce=print)
    nodes = [TextNode(text=text, id_=f"memory-{i}") for i, text in enumerate(MEMORIES)]
    index = VectorStoreIndex(nodes, embed_model=HashEmbedding())
    # Retrieve generously, then let the reranker pick the best three.
    rerank = MemRerank(reranker=core, top_n=3, keep_retrieval_score=True)
    engine = index.as_query_engine(similarity_top_k=6, node_postprocessors=[rerank], llm=MockLLM())

    print(f"Q: {query}")
    print("Retrieved (hashing embedding):")
    for hit in index.as_retriever(similarity_top_k=6).retrieve(query):
        print(f"  [{hit.score:.3f}] {hit.node.get_content()}")
    response = engine.query(query)
    print(f"Reranked by {core.name} (top 3):")
    for rank, hit in enumerate(response.source_nodes, 1):
        retrieval = hit.node.metadata["retrieval_score"]
        flag = " (fallback)" if hit.node.metadata.get("rerank_fallback") else ""
        scores = f"[{hit.score:.3f}, retrieval {retrieval:.3f}]"
        print(f"  {rank}. {scores}{flag} {hit.node.get_content()}")
    core.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
