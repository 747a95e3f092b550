"""Offline building blocks for real mem0 ``Memory`` objects: data, an embedder, a config.

Nothing here imports mem0 at module level: mem0 reads ``MEM0_DIR`` and ``MEM0_TELEMETRY``
once, on first import, and ``conftest.py`` sets them (pytest tmp dir, telemetry off) before
any test touches mem0.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

USER = "alice"
DIMS = 64
OFFLINE_KEY = "offline-unused"  # mem0 builds OpenAI clients at construction; never called

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

QUERY = "What does the user like to drink?"

MemoryFactory = Callable[..., Any]
"""The ``make_memory`` / ``make_async_memory`` fixtures: build a real mem0 memory."""


def hashed_words(text: str, dims: int = DIMS) -> list[float]:
    """Hashed word counts plus a constant component (so every pair has a positive cosine),
    normalised: a deterministic stand-in for a real embedding model."""
    vector = [0.0] * dims
    vector[0] = 1.0
    for word in re.findall(r"\w+", text.lower()):
        vector[1 + zlib.crc32(word.encode()) % (dims - 1)] += 1.0
    norm = sum(v * v for v in vector) ** 0.5
    return [v / norm for v in vector]


def offline_embedder() -> Any:
    """A mem0 ``EmbeddingBase`` over :func:`hashed_words` (mem0 ships no offline embedder
    whose provider name its config accepts, so the test swaps it in after construction)."""
    from mem0.embeddings.base import EmbeddingBase

    class HashedWords(EmbeddingBase):
        def __init__(self) -> None:
            super().__init__(None)

        def embed(self, text: str, memory_action: str | None = None) -> list[float]:
            return hashed_words(text)

    return HashedWords()


def memory_config(directory: Path, reranker: dict[str, Any] | None) -> dict[str, Any]:
    """A ``Memory.from_config`` dict that keeps everything under ``directory``: local Qdrant,
    the history DB; OpenAI clients with a dummy key (``infer=False`` never calls the LLM)."""
    config: dict[str, Any] = {
        "vector_store": {
            "provider": "qdrant",
            "config": {
                "path": str(directory / "qdrant"),
                "collection_name": "memories",
                "embedding_model_dims": DIMS,
            },
        },
        "embedder": {"provider": "openai", "config": {"api_key": OFFLINE_KEY}},
        "llm": {"provider": "openai", "config": {"api_key": OFFLINE_KEY}},
        "history_db_path": str(directory / "history.db"),
    }
    if reranker is not None:
        config["reranker"] = reranker
    return config


def messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": text} for text in MEMORIES]


def search_kwargs(top_k: int, rerank: bool) -> dict[str, Any]:
    """mem0 2.x scopes searches through ``filters``; threshold 0 keeps every candidate."""
    return {"filters": {"user_id": USER}, "top_k": top_k, "threshold": 0.0, "rerank": rerank}
