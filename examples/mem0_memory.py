"""mem0: MemReranker as the reranker of mem0's ``Memory.search``.

Run: ``python examples/mem0_memory.py`` (needs ``memreranker[mem0,local]``). It uses
``$MEMRERANKER_MODEL`` (a Hub id or a directory of MemReranker weights), else
``IAAR-Shanghai/MemReranker-4B``; where those cannot be had (offline, say) it says so at once
and runs on a tiny random test model (``memreranker.stand_in``, as the demo and the other
examples do), whose scores are meaningless.

To stay offline it adds memories with ``infer=False`` (stored as given: no LLM call), puts a
toy hashed embedder in place of mem0's OpenAI one, and turns mem0's telemetry off unless
``MEM0_TELEMETRY`` is set. mem0's store (local Qdrant) and history DB live in a temporary
directory, removed at the end.

For the hosted MemOS API instead of local weights, the reranker config becomes
``{"backend": "memos", "top_k": 3}`` with ``$MEMOS_API_KEY`` set; nothing else changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

# mem0 reads this once, when imported, and sends usage telemetry unless it is "False".
os.environ.setdefault("MEM0_TELEMETRY", "False")

from memreranker.stand_in import load_or_stand_in

if TYPE_CHECKING:
    from mem0 import AsyncMemory, Memory

    from memreranker.mem0 import MemRerankerMem0

USER = "alice"

MEMORIES = [
    "User prefers Jiangxiang-flavoured baijiu, especially Moutai, but only on holidays.",
    "User said they stopped drinking alcohol on 2026-10-01 for health reasons.",
    "User's sister Anna lives in Berlin; she works as a pediatric nurse.",
    "User booked a flight to Berlin for 2026-12-18, returning 2027-01-03.",
    "She asked the user to bring green tea from Hangzhou.",
    "User works as a backend developer in Hangzhou, mostly in Go and Python.",
    "User's dog Biscuit stays with a neighbour, Mr. Chen, during trips.",
    "User has a dentist appointment on 2026-11-25 at 9:00.",
    "User is allergic to peanuts.",
    "User plays badminton every Saturday morning with colleagues.",
    "User moved from Shanghai to Hangzhou in March 2025.",
    "User drinks oolong tea every afternoon at work.",
]

QUERIES = [
    "What should the user drink at the holiday dinner?",
    "What should the user pack for the trip to Berlin?",
]

DIMS = 256
CANDIDATES = 6  # mem0 reranks the top_k memories its vector search found, and keeps top_k


def hashed_words() -> Any:
    """A toy embedding (hashed word counts) standing in for a real one, as a mem0 embedder.

    Defined on first use: importing mem0 imports torch and takes seconds, and the example
    says first whether weights can be had."""
    from mem0.embeddings.base import EmbeddingBase

    class HashedWords(EmbeddingBase):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(None)

        def embed(self, text: str, memory_action: str | None = None) -> list[float]:
            vector = [0.0] * DIMS
            for word in re.findall(r"\w+", text.lower()):
                vector[zlib.crc32(word.encode()) % DIMS] += 1.0
            norm = sum(v * v for v in vector) ** 0.5 or 1.0
            return [v / norm for v in vector]

    return HashedWords()


def memory_config(store: Path, reranker: dict[str, Any] | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "vector_store": {
            "provider": "qdrant",
            "config": {
                "path": str(store / "qdrant"),
                "collection_name": "memories",
                "embedding_model_dims": DIMS,
            },
        },
        # mem0 builds its OpenAI embedder and LLM clients up front; neither is called here
        # (infer=False, and the embedder is replaced), so any key will do.
        "embedder": {"provider": "openai", "config": {"api_key": "unused-offline"}},
        "llm": {"provider": "openai", "config": {"api_key": "unused-offline"}},
        "history_db_path": str(store / "history.db"),
    }
    if reranker is not None:
        config["reranker"] = reranker
    return config


def reranker_config(model: str) -> dict[str, Any]:
    """The reranker section, in mem0's style: a provider name and its config."""
    return {"provider": "memreranker", "config": {"model": model, "top_k": 3}}


def close(memory: Memory | AsyncMemory) -> None:
    memory.close()
    memory.vector_store.client.close()


def build_memory(workdir: Path) -> Memory:
    """A Memory configured the mem0 way (a provider name and its config), reranking with
    ``$MEMRERANKER_MODEL`` or MemReranker-4B if it loads, else with the stand-in model."""
    # Picks the weights that load (and says so, at once, when they cannot be had: before
    # importing mem0, which imports torch and takes seconds); its weights are then freed:
    # the Memory's own provider loads them on its first search.
    chosen, _ = load_or_stand_in(os.environ.get("MEMRERANKER_MODEL"), announce=print)
    model = chosen.settings.resolved_model()
    chosen.close()
    assert model is not None

    from mem0 import Memory

    from memreranker.mem0 import register

    # mem0 has no plugin entry point: this adds "memreranker" to its RerankerFactory.
    register()
    return Memory.from_config(memory_config(workdir / "store", reranker_config(model)))


def search(query: str, rerank: bool) -> dict[str, Any]:
    # threshold 0.0: the toy embedder's similarities are low; keep every candidate.
    return {
        "query": query,
        "filters": {"user_id": USER},
        "top_k": CANDIDATES,
        "threshold": 0.0,
        "rerank": rerank,
    }


def show(title: str, results: list[dict[str, Any]], key: str) -> None:
    print(title)
    for item in results:
        flag = " (fallback: original order)" if item.get("rerank_fallback") else ""
        print(f"  [{item[key]:.3f}] {item['memory']}{flag}")


async def async_search(workdir: Path, reranker: MemRerankerMem0, query: str) -> list[str]:
    """The same search through AsyncMemory (mem0 runs the reranker in a worker thread),
    here with the reranker assigned directly, to share the weights already loaded."""
    from mem0 import AsyncMemory

    amemory = AsyncMemory.from_config(memory_config(workdir / "store-async", None))
    amemory.reranker = reranker
    amemory.embedding_model = hashed_words()
    await amemory.add([{"role": "user", "content": m} for m in MEMORIES], user_id=USER, infer=False)
    results = (await amemory.search(**search(query, rerank=True)))["results"]
    close(amemory)
    return [item["memory"] for item in results]


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # mem0 warns that its optional spaCy / fastembed extras (keyword scoring) are missing.
    for name in ("mem0.utils.spacy_models", "mem0.vector_stores.qdrant"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="memreranker-mem0-") as tmp:
        workdir = Path(tmp)
        memory = build_memory(workdir)
        memory.embedding_model = hashed_words()
        memory.add([{"role": "user", "content": m} for m in MEMORIES], user_id=USER, infer=False)
        print(f"Reranker: {memory.reranker!r}\n")

        for query in QUERIES:
            print(f"Q: {query}")
            first = memory.search(**search(query, rerank=False))["results"]
            show(" vector search:", first, "score")
            reranked = memory.search(**search(query, rerank=True))["results"]
            show(" reranked by MemReranker:", reranked, "rerank_score")
            print()

        order = asyncio.run(async_search(workdir, memory.reranker, QUERIES[0]))
        reranked = memory.search(**search(QUERIES[0], rerank=True))["results"]
        print(f"AsyncMemory gave the same order: {order == [m['memory'] for m in reranked]}")
        memory.reranker.close()
        close(memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
