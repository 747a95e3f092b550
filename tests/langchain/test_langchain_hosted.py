"""MemRerank over the hosted backends (memos, vllm), against the loopback rerank server."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.load import dumps
from langchain_core.vectorstores import InMemoryVectorStore
from lc_testkit import memory_documents
from servers import Reply, RerankServer, Score, deterministic_score
from servers.clients import user_agents

from langchain_memreranker import FALLBACK_KEY, RELEVANCE_SCORE_KEY, MemRerank

KEY = "sk-hosted-secret-42"
QUERY = "What does the user like to drink?"
FAST = {"timeout": 2.0, "max_retries": 0}


def expected(docs: list[Document], top_n: int) -> list[tuple[str | None, float]]:
    scored = [(i, deterministic_score(QUERY, d.page_content)) for i, d in enumerate(docs)]
    scored.sort(key=lambda pair: (-pair[1], pair[0]))
    return [(docs[i].id, score) for i, score in scored[:top_n]]


def got(docs: list[Document]) -> list[tuple[str | None, float]]:
    return [(d.id, d.metadata[RELEVANCE_SCORE_KEY]) for d in docs]


def same(actual: list[tuple[str | None, float]], want: list[tuple[str | None, float]]) -> bool:
    ids_match = [i for i, _ in actual] == [i for i, _ in want]
    return ids_match and [s for _, s in actual] == pytest.approx([s for _, s in want])


@pytest.fixture
def keyed_server() -> Iterator[RerankServer]:
    with RerankServer(api_key=KEY) as server:
        yield server


async def test_memos_backend(keyed_server: RerankServer) -> None:
    docs = memory_documents()
    compressor = MemRerank(
        backend="memos", base_url=keyed_server.memos_base_url, api_key=KEY, top_n=3, **FAST
    )
    assert same(got(list(compressor.compress_documents(docs, QUERY))), expected(docs, 3))
    assert same(got(list(await compressor.acompress_documents(docs, QUERY))), expected(docs, 3))
    request = keyed_server.last
    assert request.path.endswith("/rerank")
    assert request.headers["authorization"] == f"Token {KEY}"
    assert request.query == QUERY
    assert request.documents == [d.page_content for d in docs]
    assert request.body["model"] == "memos-reranker-0.6b"
    compressor.close()


def test_memos_key_from_the_environment(
    keyed_server: RerankServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMOS_API_KEY", KEY)
    compressor = MemRerank(backend="memos", base_url=keyed_server.memos_base_url, **FAST)
    assert compressor.api_key is None  # read by the core, never copied into the object
    out = compressor.compress_documents(memory_documents(), QUERY)
    assert FALLBACK_KEY not in out[0].metadata
    assert keyed_server.last.headers["authorization"] == f"Token {KEY}"
    for text in (repr(compressor), dumps(compressor), str(compressor.model_dump())):
        assert KEY not in text
    compressor.close()


def test_memos_without_a_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMOS_API_KEY", raising=False)
    with pytest.raises(ValueError, match="MEMOS_API_KEY"):
        MemRerank(backend="memos")


def test_a_wrong_key_falls_back_without_leaking(
    keyed_server: RerankServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-wrong-key-777"
    compressor = MemRerank(
        backend="memos", base_url=keyed_server.memos_base_url, api_key=wrong, top_n=2, **FAST
    )
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        out = compressor.compress_documents(memory_documents(), QUERY)
    assert [(d.id, d.metadata[FALLBACK_KEY]) for d in out] == [("m1", True), ("m2", True)]
    assert wrong not in caplog.text
    assert "falling back to original order" in caplog.text
    compressor.close()


async def test_vllm_backend_in_a_retriever(
    rerank_server: RerankServer, vectorstore: InMemoryVectorStore
) -> None:
    compressor = MemRerank(backend="vllm", base_url=rerank_server.url, model="mr", top_n=3, **FAST)
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor, base_retriever=vectorstore.as_retriever(search_kwargs={"k": 6})
    )
    base = vectorstore.as_retriever(search_kwargs={"k": 6}).invoke(QUERY)
    want = expected(base, 3)
    rerank_server.script(Score(shuffle=True), Score(shuffle=True))  # mapped by index
    assert same(got(retriever.invoke(QUERY)), want)
    assert same(got(await retriever.ainvoke(QUERY)), want)
    assert [r.path for r in rerank_server.requests] == ["/v1/rerank"] * 2
    assert [r.body["model"] for r in rerank_server.requests] == ["mr"] * 2
    # invoke went through the core's sync transport (requests), ainvoke through its async
    # one (httpx): ainvoke did not run the sync path in a thread.
    assert user_agents(rerank_server.requests) == ["requests", "httpx"]
    compressor.close()


async def test_a_service_outage_keeps_the_chain_alive(
    rerank_server: RerankServer, vectorstore: InMemoryVectorStore
) -> None:
    rerank_server.default = Reply(503, {"error": {"message": "busy"}})
    compressor = MemRerank(backend="vllm", base_url=rerank_server.url, top_n=3, **FAST)
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor, base_retriever=vectorstore.as_retriever(search_kwargs={"k": 6})
    )
    base = vectorstore.as_retriever(search_kwargs={"k": 6}).invoke(QUERY)
    for docs in (retriever.invoke(QUERY), await retriever.ainvoke(QUERY)):
        assert [d.id for d in docs] == [d.id for d in base[:3]]
        assert all(d.metadata[FALLBACK_KEY] is True for d in docs)
        assert all(d.metadata[RELEVANCE_SCORE_KEY] == 0.0 for d in docs)
    compressor.close()


def test_refused_connection_falls_back(refused_url: str) -> None:
    compressor = MemRerank(backend="vllm", base_url=refused_url, top_n=None, **FAST)
    out = compressor.rerank(["a", "b"], QUERY)
    assert out == [
        {"index": 0, RELEVANCE_SCORE_KEY: 0.0, FALLBACK_KEY: True},
        {"index": 1, RELEVANCE_SCORE_KEY: 0.0, FALLBACK_KEY: True},
    ]
    compressor.close()


def test_hosted_use_never_imports_torch(rerank_server: RerankServer) -> None:
    code = (
        "import sys\n"
        "from langchain_core.documents import Document\n"
        "from langchain_memreranker import MemRerank\n"
        f"m = MemRerank(backend='vllm', base_url={rerank_server.url!r}, on_error='raise')\n"
        "out = m.compress_documents([Document(page_content='a drink'), "
        "Document(page_content='tea')], 'drink')\n"
        "assert len(out) == 2 and 'rerank_fallback' not in out[0].metadata\n"
        "heavy = {'torch', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
