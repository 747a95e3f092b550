"""Fixtures of the LlamaIndex integration tests.

No ``__init__.py`` in this directory, on purpose: a regular package named ``llama_index``
on ``sys.path`` would hide the real namespace package.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from li_testkit import SERVED_MODEL, HostedCore
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.schema import NodeWithScore, TextNode
from servers import RerankServer, Score
from servers.clients import FAST

from memreranker import MemReranker

MEMORIES = (
    "User prefers Jiangxiang-flavored baijiu, like Moutai.",
    "I don't drink alcohol on weekdays.",
    "The user's sister Anna lives in Berlin.",
    "Flight to Berlin booked for 2026-05-14.",
    "用户喜欢打羽毛球",
    "Meeting with Bob moved to Friday 🎉",
    "The user drinks green tea every morning.",
    "Python is the user's favourite programming language.",
)


class HashEmbedding(BaseEmbedding):
    """Deterministic bag-of-words embedding: words hashed (crc32) into ``dim`` buckets."""

    dim: int = 64

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for word in re.findall(r"\w+", text.lower()):
            vector[zlib.crc32(word.encode()) % self.dim] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._embed(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed(text)


@pytest.fixture
def hosted_core(rerank_server: RerankServer) -> Iterator[HostedCore]:
    """Builds real ``MemReranker`` objects scoring through ``rerank_server`` (vllm backend,
    quick retries). The server answers in a shuffled order (the shell must map by index),
    scores :func:`servers.deterministic_score`; script it for failures. All closed after."""
    rerank_server.default = Score(shuffle=True)
    built: list[MemReranker] = []

    def make(**options: Any) -> MemReranker:
        settings: dict[str, Any] = {"model": SERVED_MODEL, "base_url": rerank_server.url, **FAST}
        core = MemReranker("vllm", **{**settings, **options})
        built.append(core)
        return core

    yield make
    for core in built:
        core.close()


@pytest.fixture
def nodes() -> list[NodeWithScore]:
    """Retrieved nodes, retrieval scores descending, with metadata (some hidden from EMBED)."""
    out = []
    for i, text in enumerate(MEMORIES):
        node = TextNode(
            text=text,
            id_=f"memory-{i}",
            metadata={"source": f"chat-{i}", "secret_note": "not for the reranker"},
            excluded_embed_metadata_keys=["secret_note"],
        )
        out.append(NodeWithScore(node=node, score=round(0.9 - 0.05 * i, 2)))
    return out


class EventCollector(BaseEventHandler):
    """Keeps every instrumentation event it sees."""

    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EventCollector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)

    def of_type(self, kind: type[BaseEvent]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def events() -> Iterator[EventCollector]:
    """An event handler on the root dispatcher, removed after the test."""
    root = get_dispatcher()
    collector = EventCollector()
    root.add_event_handler(collector)
    try:
        yield collector
    finally:
        root.event_handlers.remove(collector)


@pytest.fixture
def embed_model() -> HashEmbedding:
    return HashEmbedding()
