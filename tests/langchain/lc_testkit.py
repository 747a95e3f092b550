"""Helpers of the LangChain integration tests: a scripted backend and a small embedding.

A uniquely named module (not conftest) so that test files can import it by name.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from memreranker.errors import InferenceError

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


@dataclass
class FakeBackend:
    """A scripted backend: ``scores(query, documents)`` gives one P(yes) per document."""

    scores: Callable[[str, Sequence[str]], list[float]] = lambda q, docs: [0.5] * len(docs)
    fail: bool = False
    sync_calls: list[tuple[str, list[str]]] = field(default_factory=list)
    async_calls: list[tuple[str, list[str]]] = field(default_factory=list)
    async_threads: list[int] = field(default_factory=list)
    closed: int = 0

    @property
    def name(self) -> str:
        return "fake"

    def _score(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        if self.fail:
            raise InferenceError("scripted failure")
        return list(enumerate(self.scores(query, documents)))

    def score(
        self, query: str, documents: Sequence[str], *, instruction: str | None, top_n: int | None
    ) -> list[tuple[int, float]]:
        self.sync_calls.append((query, list(documents)))
        return self._score(query, documents)

    async def ascore(
        self, query: str, documents: Sequence[str], *, instruction: str | None, top_n: int | None
    ) -> list[tuple[int, float]]:
        self.async_calls.append((query, list(documents)))
        self.async_threads.append(threading.get_ident())
        return self._score(query, documents)

    def close(self) -> None:
        self.closed += 1

    @property
    def calls(self) -> int:
        return len(self.sync_calls) + len(self.async_calls)


@dataclass
class BackendFactory:
    """Stands in for ``memreranker.reranker.create_backend``; counts the backends built."""

    backend: FakeBackend
    built: list[object] = field(default_factory=list)

    def __call__(self, settings: object) -> FakeBackend:
        self.built.append(settings)
        return self.backend
