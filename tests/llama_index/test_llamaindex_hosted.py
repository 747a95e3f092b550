"""MemRerank on the hosted backends, against the loopback rerank server (tests/servers)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore
from servers import RerankServer, Score, deterministic_score, running_server
from servers.clients import FAST, user_agents

from llama_index.postprocessor.memreranker import MemRerank

QUERY = "What does the user like to drink in the morning?"
SECRET = "sk-loopback-secret-1234"
RETRIEVE = 6
TOP_N = 3


@pytest.fixture
def server() -> Iterator[RerankServer]:
    with running_server(api_key=SECRET) as started:
        yield started


def hosted(server: RerankServer, backend: str, **options: object) -> MemRerank:
    base_url = server.memos_base_url if backend == "memos" else server.url
    return MemRerank(
        backend=backend, base_url=base_url, api_key=SECRET, top_n=TOP_N, **FAST, **options
    )


def want(retrieved: list[NodeWithScore]) -> list[tuple[str, float]]:
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in retrieved]
    scored = sorted(
        ((i, deterministic_score(QUERY, t)) for i, t in enumerate(texts)),
        key=lambda pair: (-pair[1], pair[0]),
    )
    return [(retrieved[i].node.node_id, s) for i, s in scored[:TOP_N]]


@pytest.mark.parametrize("backend", ["memos", "vllm"])
@pytest.mark.parametrize("use_async", [False, True])
async def test_query_engine_hosted(
    server: RerankServer, nodes, embed_model, backend: str, use_async: bool
) -> None:
    index = VectorStoreIndex([n.node for n in nodes], embed_model=embed_model)
    retriever = index.as_retriever(similarity_top_k=RETRIEVE)
    rerank = hosted(server, backend)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(), node_postprocessors=[rerank])
    server.script(Score(shuffle=True))  # results in any order: mapped by index

    retrieved = retriever.retrieve(QUERY)
    response = await engine.aquery(QUERY) if use_async else engine.query(QUERY)

    got = [(n.node.node_id, n.score) for n in response.source_nodes]
    expected = want(retrieved)
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected])
    assert all("rerank_fallback" not in n.node.metadata for n in response.source_nodes)

    (request,) = server.requests
    # aquery took the core's native async path (httpx), not the sync one (requests).
    assert user_agents(server.requests) == ["httpx" if use_async else "requests"]
    scheme = "Token" if backend == "memos" else "Bearer"
    assert request.headers["authorization"] == f"{scheme} {SECRET}"
    assert request.query == QUERY
    assert request.documents == [
        n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in retrieved
    ]
    rerank.close()


def test_hosted_secret_hygiene_and_auth_failure(
    server: RerankServer, nodes, caplog: pytest.LogCaptureFixture
) -> None:
    rerank = MemRerank(
        backend="memos",
        base_url=server.memos_base_url,
        api_key="sk-wrong-key-9876",
        top_n=2,
        **FAST,
    )
    for text in (repr(rerank), str(rerank), rerank.to_json(), repr(rerank.reranker)):
        assert "sk-wrong-key-9876" not in text
    with caplog.at_level(logging.DEBUG):
        out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == ["memory-0", "memory-1"]
    assert all(n.score == 0.0 and n.node.metadata["rerank_fallback"] for n in out)
    assert "sk-wrong-key-9876" not in caplog.text
    assert "falling back" in caplog.text
    rerank.close()


async def test_hosted_outage_keeps_the_query_alive(refused_url: str, nodes) -> None:
    rerank = MemRerank(backend="vllm", model="served", base_url=refused_url, top_n=2, **FAST)
    out = await rerank.apostprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == ["memory-0", "memory-1"]
    assert all(n.node.metadata["rerank_fallback"] for n in out)
    rerank.close()
