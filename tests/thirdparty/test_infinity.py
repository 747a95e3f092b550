"""The core, the LangChain and the LlamaIndex shells against a real third-party rerank server.

Infinity (``infinity-emb``) serves the tiny test cross-encoder on loopback behind its
Cohere/vLLM-shaped ``/rerank``; every surface, sync and async, must return the scores that the
same checkpoint gives on this machine (the ``reference`` fixture), mapped to the right inputs.
A cross-encoder reads plain texts: ``prompt_format="plain"``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode
from servers.infinity import InfinityServer

from langchain_memreranker import MemRerank as LangChainRerank
from llama_index.postprocessor.memreranker import MemRerank as LlamaIndexRerank
from memreranker import MemReranker, ServiceError

# Installing Infinity (first run) and starting it count towards the first test.
pytestmark = pytest.mark.timeout(1200)

QUERY = "what does the user drink in the morning"
DOCS = [
    "the user drinks green tea every morning",
    "the user's sister lives in berlin",
    "coffee after lunch, never tea",
    "the user booked a flight to berlin",
    "morning tea with milk and no sugar",
    "the dog is called biscuit",
    "water, mostly, and sometimes juice",
]
MODES = ("sync", "async")
TOL = 1e-5  # float32 on both sides; different library versions, same weights


def settings(server: InfinityServer, **options: Any) -> dict[str, Any]:
    return {
        "backend": "vllm",
        "base_url": server.rerank_url,
        "model": server.model,
        "prompt_format": "plain",
        "on_error": "raise",
        **options,
    }


def ranked(scores: Sequence[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def run(mode: str, sync: Any, async_: Any) -> Any:
    return sync() if mode == "sync" else asyncio.run(async_())


@pytest.mark.parametrize("mode", MODES)
def test_core(infinity_server: InfinityServer, reference: Any, mode: str) -> None:
    want = reference(QUERY, DOCS)
    with MemReranker(**settings(infinity_server)) as rr:
        got = run(mode, lambda: rr.rerank(QUERY, DOCS), lambda: rr.arerank(QUERY, DOCS))
    assert [r.index for r in got] == ranked(want)
    assert [r.document for r in got] == [DOCS[i] for i in ranked(want)]
    assert [r.score for r in got] == pytest.approx([want[i] for i in ranked(want)], abs=TOL)
    assert not any(r.is_fallback for r in got)
    assert len(set(want)) == len(want)  # distinct scores: the order above is the model's


@pytest.mark.parametrize("mode", MODES)
def test_core_top_n_and_batches(infinity_server: InfinityServer, reference: Any, mode: str) -> None:
    # top_n travels to the server (it cuts); three requests of at most three documents each are
    # merged into one global ranking, concurrently on the async path.
    want = reference(QUERY, DOCS)
    with MemReranker(**settings(infinity_server, max_documents_per_request=3)) as rr:
        got = run(
            mode, lambda: rr.rerank(QUERY, DOCS, top_n=3), lambda: rr.arerank(QUERY, DOCS, top_n=3)
        )
    assert [r.index for r in got] == ranked(want)[:3]
    assert [r.score for r in got] == pytest.approx([want[i] for i in ranked(want)[:3]], abs=TOL)


@pytest.mark.parametrize("mode", MODES)
def test_langchain(infinity_server: InfinityServer, reference: Any, mode: str) -> None:
    want = reference(QUERY, DOCS)
    docs = [Document(page_content=t, id=f"d{i}", metadata={"i": i}) for i, t in enumerate(DOCS)]
    compressor = LangChainRerank(**settings(infinity_server), top_n=None)
    out = run(
        mode,
        lambda: compressor.compress_documents(docs, QUERY),
        lambda: compressor.acompress_documents(docs, QUERY),
    )
    compressor.close()
    assert [d.id for d in out] == [f"d{i}" for i in ranked(want)]
    for d in out:
        assert d.metadata["relevance_score"] == pytest.approx(want[d.metadata["i"]], abs=TOL)
        assert d.page_content == DOCS[d.metadata["i"]]
    assert all("relevance_score" not in d.metadata for d in docs)  # inputs untouched


@pytest.mark.parametrize("mode", MODES)
def test_llama_index(infinity_server: InfinityServer, reference: Any, mode: str) -> None:
    want = reference(QUERY, DOCS)
    nodes = [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.5) for i, t in enumerate(DOCS)
    ]
    postprocessor = LlamaIndexRerank(**settings(infinity_server), top_n=4)
    out = run(
        mode,
        lambda: postprocessor.postprocess_nodes(nodes, query_str=QUERY),
        lambda: postprocessor.apostprocess_nodes(nodes, query_str=QUERY),
    )
    postprocessor.close()
    assert [n.node.node_id for n in out] == [f"n{i}" for i in ranked(want)[:4]]
    for n in out:
        assert n.score == pytest.approx(want[int(n.node.node_id[1:])], abs=TOL)
    assert all(n.score == 0.5 for n in nodes)


@pytest.mark.parametrize("mode", MODES)
def test_server_errors_are_typed_or_fall_back(
    infinity_server: InfinityServer, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    # A query over the server's limit (122,880 characters): Infinity answers 422 with FastAPI's
    # validation detail. Raised typed with the server's message, or the mem0 fallback.
    too_long = "tea " * 40_000
    strict = MemReranker(**settings(infinity_server, max_retries=0, max_query_tokens=10**6))
    with pytest.raises(ServiceError) as info:
        run(mode, lambda: strict.rerank(too_long, DOCS), lambda: strict.arerank(too_long, DOCS))
    assert info.value.status == 422 and "122880" in info.value.message
    lenient = MemReranker(
        **settings(infinity_server, max_retries=0, max_query_tokens=10**6, on_error="fallback")
    )
    caplog.set_level(logging.WARNING, logger="memreranker")
    got = run(mode, lambda: lenient.rerank(too_long, DOCS), lambda: lenient.arerank(too_long, DOCS))
    assert [(r.index, r.score, r.is_fallback) for r in got] == [(i, 0.0, True) for i in range(7)]
    assert sum("falling back" in r.getMessage() for r in caplog.records) == 1


def test_reference_is_the_checkpoint_s_own_scores(tiny_cross_encoder: Any, reference: Any) -> None:
    # The reference is the core's local backend; it must itself be CrossEncoder.predict.
    from sentence_transformers import CrossEncoder

    direct = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict([(QUERY, d) for d in DOCS])
    assert reference(QUERY, DOCS) == pytest.approx([float(s) for s in direct], abs=TOL)
