"""Long document lists are split across requests and merged back into one global ranking."""

from __future__ import annotations

import random
from typing import Any

import pytest
from servers import RerankServer, Score, deterministic_score, vllm_error
from servers.clients import FAST, MODES, rerank

from memreranker import InputTooLongError, MemReranker
from memreranker.http.batching import estimate_tokens

QUERY = "which memories mention hiking or chess hobbies"


def documents(n: int, seed: int = 0) -> list[str]:
    rnd = random.Random(seed)
    words = "user likes hiking chess tea coffee code travel music books rain hobbies".split()
    return [
        " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 60))) + f" #{i}" for i in range(n)
    ]


def expected(docs: list[str], top_n: int | None = None) -> list[tuple[int, float]]:
    ranked = sorted(
        ((i, deterministic_score(QUERY, d)) for i, d in enumerate(docs)),
        key=lambda p: (-p[1], p[0]),
    )
    return ranked if top_n is None else ranked[:top_n]


def batched(server: RerankServer, **options: Any) -> MemReranker:
    settings = {
        "base_url": server.url,
        "max_documents_per_request": 64,
        "max_tokens_per_request": 1500,
        "on_error": "raise",
        **FAST,
        **options,
    }
    return MemReranker("vllm", **settings)


@pytest.mark.parametrize("prompt_format", ["qwen3", "plain"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("top_n", [None, 10])
def test_thousand_documents_equal_one_big_call(
    rerank_server: RerankServer, mode: str, top_n: int | None, prompt_format: str
) -> None:
    docs = documents(1000)
    rerank_server.default = Score(shuffle=True)
    with batched(rerank_server, prompt_format=prompt_format) as rr:
        got = rerank(rr, mode, QUERY, docs, top_n=top_n)
    requests = rerank_server.requests
    assert len(requests) > 1000 // 64
    # Consecutive slices that cover every document once, in order, within the limits.
    sent = [doc for request in requests for doc in request.documents]
    assert sorted(sent) == sorted(docs) and len(sent) == len(docs)
    if mode == "sync":
        assert sent == docs
    for request in requests:
        batch = request.body["documents"]  # as sent: the token budget covers the template
        assert len(batch) <= 64
        assert sum(estimate_tokens(d) for d in batch) <= 1500
        assert request.body.get("top_n") == (
            top_n if top_n is not None and top_n < len(batch) else None
        )
    assert [(r.index, r.score) for r in got] == expected(docs, top_n)
    assert [r.document for r in got] == [docs[i] for i, _ in expected(docs, top_n)]

    # The same ranking as one request holding everything.
    with batched(
        rerank_server,
        max_documents_per_request=10_000,
        max_tokens_per_request=10**9,
        prompt_format=prompt_format,
    ) as one:
        before = len(rerank_server.requests)
        whole = rerank(one, mode, QUERY, docs, top_n=top_n)
        assert len(rerank_server.requests) == before + 1
    assert whole == got


@pytest.mark.parametrize("mode", MODES)
def test_huge_document_travels_alone(rerank_server: RerankServer, mode: str) -> None:
    docs = ["short one", "x" * 9000, "short two"]  # 3000 estimated tokens
    with batched(rerank_server, max_tokens_per_request=1000) as rr:
        got = rerank(rr, mode, "short", docs)
    sent = sorted(r.documents for r in rerank_server.requests)  # async: any order
    assert sent == sorted([["short one"], ["x" * 9000], ["short two"]])
    assert sorted(r.index for r in got) == [0, 1, 2]


async def test_async_batches_run_concurrently_but_bounded(rerank_server: RerankServer) -> None:
    docs = documents(200)
    rerank_server.default = Score(delay=0.05)
    with batched(rerank_server, max_documents_per_request=10, max_concurrency=3) as rr:
        got = await rr.arerank(QUERY, docs)
    assert len(rerank_server.requests) == 20
    assert 1 < rerank_server.peak_in_flight <= 3
    assert [(r.index, r.score) for r in got] == expected(docs)


def test_sync_batches_run_one_at_a_time(rerank_server: RerankServer) -> None:
    docs = documents(50)
    rerank_server.default = Score(delay=0.01)
    with batched(rerank_server, max_documents_per_request=10) as rr:
        rr.rerank(QUERY, docs)
    assert len(rerank_server.requests) == 5
    assert rerank_server.peak_in_flight == 1


@pytest.mark.parametrize("mode", MODES)
def test_one_failing_batch_fails_the_call(rerank_server: RerankServer, mode: str) -> None:
    docs = documents(50)
    rerank_server.script(Score(), Score(), vllm_error(400, "batch 3 rejected"))
    with batched(rerank_server, max_documents_per_request=10, on_error="fallback") as rr:
        got = rerank(rr, mode, QUERY, docs)
    assert [r.index for r in got] == list(range(50))
    assert all(r.is_fallback for r in got)
    assert "batch 3 rejected" in (got[0].fallback_reason or "")


@pytest.mark.parametrize("mode", MODES)
def test_long_query_and_document_truncated(
    rerank_server: RerankServer, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="memreranker")
    # Plain texts: the estimates are exact character counts (tests/core/test_http_templates.py
    # covers the same with the template's tokens).
    with batched(
        rerank_server, max_query_tokens=10, max_document_tokens=20, prompt_format="plain"
    ) as rr:
        rerank(rr, mode, "q" * 100, ["d" * 100, "ok"])
    body = rerank_server.last.body
    assert body["query"] == "q" * 30
    assert body["documents"] == ["d" * 60, "ok"]
    assert "truncated" in caplog.text


@pytest.mark.parametrize("on_error", ["fallback", "raise"])
@pytest.mark.parametrize("mode", MODES)
def test_truncate_false_refuses_long_input(
    rerank_server: RerankServer, mode: str, on_error: str
) -> None:
    # Too long for the service with truncation off is a caller mistake: it is raised in
    # both modes, never turned into a fallback.
    with batched(
        rerank_server,
        max_query_tokens=10,
        truncate=False,
        on_error=on_error,
        prompt_format="plain",
    ) as rr:
        with pytest.raises(InputTooLongError, match="max_query_tokens"):
            rerank(rr, mode, "q" * 100, ["d"])
    assert rerank_server.requests == []
