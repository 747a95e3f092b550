"""``document_template`` and recency through ``MemRerankStore``: an item's ``value`` keys and
its ``created_at`` / ``updated_at`` are its fields (tests/servers/memories.py's formula)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore
from servers.memories import (
    HALF_LIFE,
    QUERY,
    TEXTS,
    WEIGHT,
    by_text,
    expected_order,
    fields,
)
from servers.rerank_server import RerankServer, Score

from langchain_memreranker import MemRerankStore

pytestmark = pytest.mark.timeout(60)

NS = ("memories", "alice")


def settings(server: RerankServer, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "vllm",
        "base_url": server.url,
        "model": "m",
        "prompt_format": "plain",
        "on_error": "raise",
        "timeout": 5.0,
        "max_retries": 0,
        **extra,
    }


def test_the_item_date_is_rendered(rerank_server: RerankServer) -> None:
    wrapped = InMemoryStore()
    wrapped.put(NS, "a", {"content": "User stopped drinking."})
    wrapped.put(NS, "b", {"content": "User likes tea.", "source": "chat"})
    store = MemRerankStore(
        wrapped, **settings(rerank_server, document_template="[{date}] {text} ({source})")
    )
    store.search(NS, query=QUERY, limit=2)
    created = {item.key: item.created_at for item in wrapped.search(NS, limit=2)}
    assert sorted(rerank_server.requests[-1].sent_documents) == sorted(
        [
            "User stopped drinking.",  # no "source": plain
            f"[{created['b'].date().isoformat()}] User likes tea. (chat)",
        ]
    )
    plain = MemRerankStore(wrapped, **settings(rerank_server))
    [item, _] = plain.search(NS, query=QUERY, limit=2)
    assert "rank_score" not in item.dict()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_recency_order_is_the_formula(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = Score(model=by_text)
    now = datetime.now(timezone.utc)
    wrapped = InMemoryStore()
    for i, (text, meta) in enumerate(zip(TEXTS, fields(now, key="date"), strict=True)):
        wrapped.put(NS, f"m{i}", {"content": text, **(meta or {})})
    store = MemRerankStore(
        wrapped,
        **settings(
            rerank_server,
            recency_weight=WEIGHT,
            recency_half_life=HALF_LIFE,
            date_fields=["date"],  # the store's own created_at (just now) left out
        ),
    )
    if mode == "sync":
        got = store.search(NS, query=QUERY, limit=4)
    else:
        got = asyncio.run(store.asearch(NS, query=QUERY, limit=4))
    want = expected_order(WEIGHT, now)[:4]
    assert [item.value["content"] for item in got] == [text for text, _, _ in want]
    assert [item.score for item in got] == [score for _, score, _ in want]
    assert [item.rank_score for item in got] == pytest.approx([k for _, _, k in want], rel=1e-3)
    assert got[0].dict()["rank_score"] == got[0].rank_score
