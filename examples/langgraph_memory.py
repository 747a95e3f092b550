"""LangGraph / LangMem: an agent's long-term memory store whose searches MemReranker reranks.

Run: ``python examples/langgraph_memory.py`` (needs ``langchain-memreranker[langgraph,local]``
and ``memreranker[testing]``). It uses ``$MEMRERANKER_MODEL`` (a Hub id or a directory of
MemReranker weights), else ``IAAR-Shanghai/MemReranker-4B``. When the Hub cannot be reached
it says so in one line and uses only the local cache; when the weights cannot be had it says
so and runs on a tiny random test model (built once into ``$MEMRERANKER_CACHE`` or
``~/.cache/memreranker``, then reused), whose scores are meaningless.

The memories are stored the way LangMem's memory tools store them
(``{"kind": "Memory", "content": {"content": "..."}}``); ``create_search_memory_tool(...,
store=store)`` searches the wrapped store the same way this example does. For the hosted
MemOS API, build the store as ``MemRerankStore(base, backend="memos")`` with
``$MEMOS_API_KEY`` set; nothing else changes.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import zlib

from langgraph.store.memory import InMemoryStore

from langchain_memreranker import MemRerankStore
from memreranker.logs import log_to_stderr
from memreranker.stand_in import load_or_stand_in

NAMESPACE = ("memories", "alice")

MEMORIES = [
    "User prefers Jiangxiang-flavoured baijiu, especially Moutai, but only on holidays.",
    "User said they stopped drinking alcohol on 2026-10-01 for health reasons.",
    "User's sister Anna lives in Berlin; she works as a pediatric nurse.",
    "User booked a flight to Berlin for 2026-12-18, returning 2027-01-03.",
    "She asked the user to bring green tea from Hangzhou.",
    "User works as a backend developer in Hangzhou, mostly in Go and Python.",
    "User's dog Biscuit stays with a neighbour, Mr. Chen, during trips.",
    "User is allergic to peanuts.",
    "User drinks oolong tea every afternoon at work.",
    "User plays badminton every Saturday morning with colleagues.",
]

QUERY = "What should the user drink at the holiday dinner?"


def hashed_words(texts: list[str]) -> list[list[float]]:
    """A toy first-stage embedding (hashed word counts) standing in for a real one."""
    vectors = []
    for text in texts:
        vector = [0.0] * 256
        for word in re.findall(r"\w+", text.lower()):
            vector[zlib.crc32(word.encode()) % 256] += 1.0
        norm = sum(v * v for v in vector) ** 0.5 or 1.0
        vectors.append([v / norm for v in vector])
    return vectors


def show(title: str, items: list) -> None:
    print(title)
    for item in items:
        first = getattr(item, "retrieval_score", item.score)
        reranked = "" if first is item.score else f" rerank {item.score:.3f}"
        print(f"  [vector {first:.3f}{reranked}] {item.value['content']['content']}")


def main() -> int:
    log_to_stderr()
    core, _ = load_or_stand_in(os.environ.get("MEMRERANKER_MODEL"), announce=print)
    base = InMemoryStore(index={"dims": 256, "embed": hashed_words, "fields": ["content.content"]})
    for i, text in enumerate(MEMORIES):
        base.put(NAMESPACE, f"memory-{i}", {"kind": "Memory", "content": {"content": text}})
    # Every search with a query draws 10 candidates from the base store and keeps the best.
    store = MemRerankStore(base, core, candidates=10)
    print(f"Store: {store!r}\n")

    print(f"Q: {QUERY}")
    show(" the base store alone (top 3):", base.search(NAMESPACE, query=QUERY, limit=3))
    reranked = store.search(NAMESPACE, query=QUERY, limit=3)
    show(" reranked (top 3 of 10):", reranked)

    # Async is native (the core's arerank, the base store's abatch): the same answer.
    again = asyncio.run(store.asearch(NAMESPACE, query=QUERY, limit=3))
    same = [(i.key, i.score) for i in again] == [(i.key, i.score) for i in reranked]
    print(f"\nasearch gave the same top 3: {same}")
    core.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
