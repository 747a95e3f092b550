"""``document_template`` and recency through the LangChain and LlamaIndex shells, sync and
async: the texts the loopback vLLM-style server receives (``prompt_format="plain"``) and the
order, computed here from the formula (tests/servers/memories.py). The core and mem0 are in
tests/core/test_document_template.py and tests/mem0/test_mem0_memory_ranking.py."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode
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

from langchain_memreranker import MemRerank as LangChainRerank
from llama_index.postprocessor.memreranker import MemRerank as LlamaIndexRerank

pytestmark = pytest.mark.timeout(60)

SHELLS = ("langchain", "llama_index")
MODES = ("sync", "async")


def shell(kind: str, server: RerankServer, **settings: Any) -> Any:
    options: dict[str, Any] = {
        "backend": "vllm",
        "base_url": server.url,
        "model": "m",
        "prompt_format": "plain",
        "on_error": "raise",
        "timeout": 5.0,
        "max_retries": 0,
        "top_n": None,
        **settings,
    }
    return (LangChainRerank if kind == "langchain" else LlamaIndexRerank)(**options)


def rows(
    kind: str, obj: Any, mode: str, texts: list[str], metadata: list[dict[str, Any] | None]
) -> list[tuple[str, float, dict[str, Any]]]:
    """(text, P(yes), metadata) of the results, best first."""
    if kind == "langchain":
        docs = [
            Document(page_content=t, metadata=dict(m or {}), id=f"d{i}")
            for i, (t, m) in enumerate(zip(texts, metadata, strict=True))
        ]
        if mode == "sync":
            out = obj.compress_documents(docs, QUERY)
        else:
            out = asyncio.run(obj.acompress_documents(docs, QUERY))
        return [(d.page_content, d.metadata["relevance_score"], d.metadata) for d in out]
    nodes = [
        NodeWithScore(node=TextNode(text=t, metadata=dict(m or {}), id_=f"n{i}"), score=0.5)
        for i, (t, m) in enumerate(zip(texts, metadata, strict=True))
    ]
    if mode == "sync":
        got = obj.postprocess_nodes(nodes, query_str=QUERY)
    else:
        got = asyncio.run(obj.apostprocess_nodes(nodes, query_str=QUERY))
    return [(n.node.get_content(), n.score, n.node.metadata) for n in got]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SHELLS)
def test_the_rendered_memory_is_what_the_backend_gets(
    rerank_server: RerankServer, kind: str, mode: str
) -> None:
    obj = shell(kind, rerank_server, document_template=TEMPLATE)
    out = rows(kind, obj, mode, [MEMORY, "User likes tea."], [{"created_at": CREATED}, None])
    [request] = rerank_server.requests
    assert request.sent_documents == [RENDERED, "User likes tea."]
    assert request.sent_query == QUERY
    assert sorted(text for text, _, _ in out) == sorted([MEMORY, "User likes tea."])
    assert all("rank_score" not in meta for _, _, meta in out)  # recency off: nothing added


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SHELLS)
def test_recency_order_is_the_formula(rerank_server: RerankServer, kind: str, mode: str) -> None:
    rerank_server.default = Score(model=by_text)
    obj = shell(kind, rerank_server, recency_weight=WEIGHT, recency_half_life=HALF_LIFE)
    now = datetime.now(timezone.utc)  # the shells measure age from the current time
    out = rows(kind, obj, mode, TEXTS, fields(now))
    want = expected_order(WEIGHT, now)
    assert [text for text, _, _ in out] == [text for text, _, _ in want]
    assert [score for _, score, _ in out] == [score for _, score, _ in want]  # P(yes) kept
    assert [meta["rank_score"] for _, _, meta in out] == pytest.approx(
        [key for _, _, key in want], rel=1e-3
    )


def test_llamaindex_without_template_keeps_its_embed_text(rerank_server: RerankServer) -> None:
    node = TextNode(text=MEMORY, metadata={"created_at": CREATED})
    rows("llama_index", shell("llama_index", rerank_server), "sync", [MEMORY], [node.metadata])
    # LlamaIndex's own MetadataMode.EMBED rendering, exactly as before.
    assert rerank_server.requests[-1].sent_documents == [f"created_at: {CREATED}\n\n{MEMORY}"]


@pytest.mark.parametrize("mode", MODES)
def test_langchain_rerank_reads_dicts_and_documents(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = Score(model=by_text)
    obj = shell("langchain", rerank_server, document_template="{text} ({source}, {date})")
    docs: list[Any] = [
        {"memory": "fresh and relevant", "created_at": CREATED, "metadata": {"source": "chat"}},
        Document(page_content="week old", metadata={"created_at": CREATED, "source": "mail"}),
        "undated and relevant",
    ]
    if mode == "sync":
        out = obj.rerank(docs, QUERY)
    else:
        out = asyncio.run(obj.arerank(docs, QUERY))
    assert rerank_server.requests[-1].sent_documents == [
        "fresh and relevant (chat, 2026-10-01)",
        "week old (mail, 2026-10-01)",
        "undated and relevant",
    ]
    assert all("rank_score" not in item for item in out)
    recent = shell("langchain", rerank_server, recency_weight=WEIGHT, recency_half_life=HALF_LIFE)
    now = datetime.now(timezone.utc)
    memories = [{"memory": t, **(f or {})} for t, f in zip(TEXTS, fields(now), strict=True)]
    if mode == "sync":
        got = recent.rerank(memories, QUERY, now=now)
    else:
        got = asyncio.run(recent.arerank(memories, QUERY, now=now))
    want = expected_order(WEIGHT, now)
    assert [TEXTS[item["index"]] for item in got] == [text for text, _, _ in want]
    assert [item["rank_score"] for item in got] == pytest.approx([k for _, _, k in want])
