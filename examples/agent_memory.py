"""Demo: rerank an agent's long-term memories for a few questions.

Run it with ``./scripts/demo.sh``. It uses ``$MEMRERANKER_MODEL`` (a Hub id or a directory),
else ``IAAR-Shanghai/MemReranker-4B``. When the Hub cannot be reached it says so in one line
and uses only the local cache; when the weights cannot be had it says so and runs on a tiny
random test model, built once into the cache directory (``$MEMRERANKER_CACHE``, else
``~/.cache/memreranker``) and reused, so that the whole path still runs; those scores are
meaningless.
"""

from __future__ import annotations

import os
import sys

from memreranker.logs import log_to_stderr
from memreranker.stand_in import load_or_stand_in

# What an assistant remembered about one user over a few weeks of conversations
# (today is 2026-11-21). Several answers need a date or a pronoun resolved.
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
    "User's manager approved leave from 2026-12-17 to 2027-01-04.",
]

QUERIES = [
    "Any drink recommendations for the user's holiday dinner?",
    "What should the user pack for the trip to see their sister?",
    "Who looks after the dog while the user is away in December?",
    "What is on the user's calendar next week?",
]


def main() -> int:
    log_to_stderr()
    reranker, meaningful = load_or_stand_in(os.environ.get("MEMRERANKER_MODEL"), announce=print)
    print(f"\nReranker: {reranker!r}\n")
    instruction = "Given a question about the user, find the memories that help answer it"
    for query in QUERIES:
        results = reranker.rerank(query, MEMORIES, top_n=3, instruction=instruction)
        print(f"Q: {query}")
        for rank, result in enumerate(results, 1):
            flag = " (fallback)" if result.is_fallback else ""
            print(f"  {rank}. [{result.score:.3f}]{flag} {result.document}")
        print()
    reranker.close()
    if not meaningful:
        print("(tiny random test model: the order above is not a judgement of relevance)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
