"""``document_template`` and recency through the mem0 provider: a memory dict's
``created_at`` (mem0's ISO string) and its nested ``metadata`` reach the scored text, and
``rank_score`` orders the memories (the formula in tests/servers/memories.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from types import ModuleType
from typing import Any

import pytest
from servers.memories import (
    CREATED,
    HALF_LIFE,
    MEMORY,
    QUERY,
    RENDERED,
    TEMPLATE,
    TEXTS,
    WEIGHT,
    by_text,
    expected_order,
    fields,
)
from servers.rerank_server import RerankServer, Score

pytestmark = pytest.mark.timeout(60)


def provider_for(provider: ModuleType, server: RerankServer, **settings: Any) -> Any:
    config = {
        "backend": "vllm",
        "base_url": server.url,
        "model": "m",
        "prompt_format": "plain",
        "on_error": "raise",
        "timeout": 5.0,
        "max_retries": 0,
        **settings,
    }
    return provider.MemRerankerMem0(config)


def memory(i: int, text: str, **extra: Any) -> dict[str, Any]:
    """A dict shaped as ``Memory.search`` returns it."""
    return {
        "id": f"mem-{i}",
        "memory": text,
        "hash": f"h{i}",
        "metadata": {"source": "chat"},
        "score": 0.5,
        "user_id": "alice",
        **extra,
    }


def test_the_rendered_memory_is_what_the_backend_gets(
    provider: ModuleType, rerank_server: RerankServer
) -> None:
    reranker = provider_for(provider, rerank_server, document_template=TEMPLATE)
    memories = [
        memory(0, MEMORY, created_at=CREATED, updated_at=None),
        memory(1, "User likes tea.", created_at=None, updated_at=None),
    ]
    out = reranker.rerank(QUERY, memories)
    assert rerank_server.requests[-1].sent_documents == [RENDERED, "User likes tea."]
    assert rerank_server.requests[-1].sent_query == QUERY
    assert sorted(m["memory"] for m in out) == sorted([MEMORY, "User likes tea."])
    assert all("rank_score" not in m for m in out)
    # A field of mem0's nested metadata renders like a top-level one.
    sourced = provider_for(provider, rerank_server, document_template="{text} ({source})")
    sourced.rerank(QUERY, memories[:1])
    assert rerank_server.requests[-1].sent_documents == [f"{MEMORY} (chat)"]


def test_recency_order_is_the_formula(provider: ModuleType, rerank_server: RerankServer) -> None:
    rerank_server.default = Score(model=by_text)
    reranker = provider_for(
        provider, rerank_server, recency_weight=WEIGHT, recency_half_life=HALF_LIFE
    )
    now = datetime.now(timezone.utc)
    memories = [
        memory(i, t, **(f or {"created_at": None}), updated_at=None)
        for i, (t, f) in enumerate(zip(TEXTS, fields(now), strict=True))
    ]
    out = reranker.rerank(QUERY, memories, top_k=4)
    want = expected_order(WEIGHT, now)[:4]
    assert [m["memory"] for m in out] == [text for text, _, _ in want]
    assert [m["rerank_score"] for m in out] == [score for _, score, _ in want]
    assert [m["rank_score"] for m in out] == pytest.approx([k for _, _, k in want], rel=1e-3)
