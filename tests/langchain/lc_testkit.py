"""Helpers of the LangChain integration tests: scripted server replies and a small embedding.

A uniquely named module (not conftest) so that test files can import it by name.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from servers import Score

from langchain_memreranker import MemRerank

MEMORIES = [
    ("m1", "User prefers Jiangxiang-flavored baijiu, like Moutai.", "2025-01-03"),
    ("m2", "The user's sister Anna lives in Berlin.", "2025-02-11"),
    ("m3", "Flight to Berlin booked for 2026-05-14.", "2025-03-20"),
    ("m4", "User does not drink coffee after 3pm.", "2025-04-02"),
    ("m5", "Meeting with Bob moved to Friday.", "2025-04-15"),
    ("m6", "User likes green tea in the morning.", "2025-05-01"),
    ("m7", "User's favourite drink at parties is red wine.", "2025-05-09"),
    ("m8", "Python is the user's main programming language.", "2025-06-30"),
]

Hosted = Callable[..., MemRerank]
"""The ``hosted`` fixture: ``hosted(**options)`` builds a ``MemRerank`` on the vLLM backend
of the test's rerank server (conftest.py)."""


def memory_documents() -> list[Document]:
    return [
        Document(id=i, page_content=text, metadata={"created": day, "tags": ["memory"]})
        for i, text, day in MEMORIES
    ]


class BagOfWords(Embeddings):
    """Deterministic bag-of-words embedding: hashed word counts, L2-normalised."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for word in re.findall(r"\w+", text.lower()):
            vector[zlib.crc32(word.encode()) % self.dim] += 1.0
        norm = sum(v * v for v in vector) ** 0.5 or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)


def scores_by_index(scores: Sequence[float]) -> Score:
    """A server behaviour: document ``i`` of a request scores ``scores[i]``.

    The results come back worst first (cut to the request's ``top_n`` first), so that a
    client that trusted their order, or the input order, would get it wrong.
    """

    def mutate(body: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        docs = request["documents"]
        best_first = sorted(range(len(docs)), key=lambda i: (-scores[i], i))
        top_n = request.get("top_n")
        if isinstance(top_n, int) and top_n > 0:
            best_first = best_first[:top_n]
        body["results"] = [
            {"index": i, "document": {"text": docs[i]}, "relevance_score": scores[i]}
            for i in reversed(best_first)
        ]
        return body

    return Score(mutate=mutate)
