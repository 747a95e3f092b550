"""The memos and vllm backends against a real loopback server, sync and async."""

from __future__ import annotations

import time
from typing import Any

import pytest
from servers import (
    Close,
    Drop,
    Hang,
    Reply,
    RerankServer,
    Score,
    deterministic_score,
    drop_result,
    duplicate_index,
    index_out_of_range,
    malformed_json,
    memos_error,
    missing_results,
    nan_score,
    negative_index,
    retry_after,
    set_score,
    vllm_error,
    wrong_envelope,
)
from servers.clients import FAST, MODES, rerank

from memreranker import (
    AuthenticationError,
    InvalidResponseError,
    MemReranker,
    RateLimitError,
    RequestTooLargeError,
    RerankTimeoutError,
    ServiceConnectionError,
    ServiceError,
)

KEY = "sk-memos-test-4f9a1c2e7b"
QUERY = "What are the user's hobbies?"
DOCS = [
    "User likes playing badminton.",
    "User is a backend developer in Hangzhou.",
    "User prefers concise replies.",
    "User prefers Jiangxiang-flavored baijiu.",
    "User's hobbies are hiking and chess.",
]


def memos(server: RerankServer, **options: Any) -> MemReranker:
    return MemReranker(
        "memos", **{"api_key": KEY, "base_url": server.memos_base_url, **FAST, **options}
    )


def vllm(server: RerankServer, **options: Any) -> MemReranker:
    return MemReranker("vllm", **{"base_url": server.url, **FAST, **options})


def expected(query: str, docs: list[str], top_n: int | None = None) -> list[tuple[int, float]]:
    pairs = sorted(
        ((i, deterministic_score(query, d)) for i, d in enumerate(docs)),
        key=lambda p: (-p[1], p[0]),
    )
    return pairs if top_n is None else pairs[:top_n]


def pairs(results: list[Any]) -> list[tuple[int, float]]:
    assert not any(r.is_fallback for r in results)
    return [(r.index, r.score) for r in results]


def assert_fallback(results: list[Any], docs: list[str]) -> None:
    assert [r.index for r in results] == list(range(len(docs)))
    assert [r.document for r in results] == docs
    assert all(r.score == 0.0 and r.is_fallback and r.fallback_reason for r in results)


# --- The exact request -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_memos_request(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.api_key = KEY
    with memos(rerank_server, model="memos-reranker-4b") as rr:
        got = rerank(rr, mode, QUERY, DOCS, top_n=2)
    assert pairs(got) == expected(QUERY, DOCS, 2)
    assert [r.document for r in got] == [DOCS[i] for i, _ in expected(QUERY, DOCS, 2)]
    (request,) = rerank_server.requests
    assert request.path == "/api/openmem/v1/rerank"
    assert request.headers["authorization"] == f"Token {KEY}"
    assert request.headers["content-type"].startswith("application/json")
    assert request.body == {
        "model": "memos-reranker-4b",
        "query": QUERY,
        "documents": DOCS,
        "top_n": 2,
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("top_n", [None, 5, 50])
def test_memos_top_n_omitted_means_all(rerank_server: RerankServer, mode: str, top_n: Any) -> None:
    with memos(rerank_server) as rr:
        got = rerank(rr, mode, QUERY, DOCS, top_n=top_n)
    assert pairs(got) == expected(QUERY, DOCS)
    assert rerank_server.last.body == {
        "model": "memos-reranker-0.6b",
        "query": QUERY,
        "documents": DOCS,
    }


@pytest.mark.parametrize("mode", MODES)
def test_top_n_zero_sends_nothing(rerank_server: RerankServer, mode: str) -> None:
    with memos(rerank_server) as rr:
        assert rerank(rr, mode, QUERY, DOCS, top_n=0) == []
    assert rerank_server.requests == []


@pytest.mark.parametrize("mode", MODES)
def test_vllm_request_without_key(rerank_server: RerankServer, mode: str) -> None:
    with vllm(rerank_server) as rr:
        got = rerank(rr, mode, QUERY, DOCS, top_n=3)
    assert pairs(got) == expected(QUERY, DOCS, 3)
    request = rerank_server.last
    assert request.path == "/v1/rerank"
    assert "authorization" not in request.headers
    assert sorted(request.body) == ["documents", "query", "top_n"] and request.body["top_n"] == 3
    # prompt_format="qwen3" (vllm's default): the caller's texts inside the card's template.
    assert request.pair.templated
    assert (request.query, request.documents) == (QUERY, DOCS)


@pytest.mark.parametrize("mode", MODES)
def test_vllm_request_with_key_and_model(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.api_key = "vllm-key-123456"
    with vllm(
        rerank_server,
        base_url=rerank_server.url + "/v1/",
        api_key="vllm-key-123456",
        model="m",
        prompt_format="plain",
    ) as rr:
        assert pairs(rerank(rr, mode, QUERY, DOCS)) == expected(QUERY, DOCS)
    request = rerank_server.last
    assert request.path == "/v1/rerank"  # never /v1/v1/rerank
    assert request.headers["authorization"] == "Bearer vllm-key-123456"
    assert request.body == {"model": "m", "query": QUERY, "documents": DOCS}


@pytest.mark.parametrize("mode", MODES)
def test_cohere_v2_route(rerank_server: RerankServer, mode: str) -> None:
    with vllm(rerank_server, base_url=rerank_server.url + "/v2/rerank") as rr:
        assert pairs(rerank(rr, mode, QUERY, DOCS)) == expected(QUERY, DOCS)
    assert rerank_server.last.path == "/v2/rerank"


def test_vllm_needs_base_url() -> None:
    with pytest.raises(ValueError, match="base_url"):
        MemReranker("vllm", model="m")


# --- Replies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "behaviour",
    [
        Score(),
        Score(envelope="data"),
        Score(envelope="data", code=200),
        Score(shuffle=True),
        Score(shuffle=True, envelope="data"),
        Score(shuffle=True, echo=False),
    ],
    ids=["plain", "data-0", "data-200", "shuffled", "shuffled-data", "no-echo"],
)
def test_replies_mapped_by_index(rerank_server: RerankServer, mode: str, behaviour: Score) -> None:
    docs = [f"doc {i} about hobbies" if i % 3 else f"doc {i}" for i in range(40)]
    rerank_server.default = behaviour
    with memos(rerank_server) as rr:
        assert pairs(rerank(rr, mode, "hobbies doc", docs)) == expected("hobbies doc", docs)


# --- Retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "failure",
    [
        vllm_error(503, "busy"),
        vllm_error(500),
        vllm_error(502),
        vllm_error(504),
        Reply(429, {"error": {"message": "slow"}}),
        memos_error(40300, "rate limit exceeded"),
        memos_error(50000, "internal error"),
        Drop(),
        Close(),
    ],
    ids=["503", "500", "502", "504", "429", "40300", "50000", "drop", "close"],
)
def test_retryable_failure_then_success(
    rerank_server: RerankServer, mode: str, failure: Any
) -> None:
    rerank_server.script(failure, Score(shuffle=True))
    with memos(rerank_server) as rr:
        assert pairs(rerank(rr, mode, QUERY, DOCS)) == expected(QUERY, DOCS)
    assert len(rerank_server.requests) == 2


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_is_honoured(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.script(retry_after(1), Score())
    with vllm(rerank_server) as rr:
        assert pairs(rerank(rr, mode, QUERY, DOCS)) == expected(QUERY, DOCS)
    first, second = rerank_server.requests
    assert second.received_at - first.received_at >= 0.95


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_longer_than_deadline_gives_up(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.script(retry_after(30))
    with vllm(rerank_server, on_error="raise") as rr:
        start = time.monotonic()
        with pytest.raises(RateLimitError) as info:
            rerank(rr, mode, QUERY, DOCS)
    assert time.monotonic() - start < 2
    assert info.value.status == 429
    assert len(rerank_server.requests) == 1


@pytest.mark.parametrize("mode", MODES)
def test_retries_exhausted(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = vllm_error(503, "still busy")
    with vllm(rerank_server, on_error="raise", max_retries=2) as rr:
        with pytest.raises(ServiceError) as info:
            rerank(rr, mode, QUERY, DOCS)
    assert (info.value.status, info.value.message) == (503, "still busy")
    assert len(rerank_server.requests) == 3


@pytest.mark.parametrize("mode", MODES)
def test_hang_past_timeout(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = Hang(10)
    with vllm(rerank_server, on_error="raise", timeout=0.2, max_retries=1) as rr:
        start = time.monotonic()
        with pytest.raises(RerankTimeoutError) as info:
            rerank(rr, mode, QUERY, DOCS)
        elapsed = time.monotonic() - start
    assert elapsed < 2.0
    assert info.value.status is None
    assert len(rerank_server.requests) == 2


@pytest.mark.parametrize("mode", MODES)
def test_deadline_bounds_the_call(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = Hang(10)
    with vllm(rerank_server, on_error="raise", timeout=0.3, max_retries=10, deadline=0.5) as rr:
        start = time.monotonic()
        with pytest.raises(RerankTimeoutError):
            rerank(rr, mode, QUERY, DOCS)
        assert time.monotonic() - start < 1.5
    assert len(rerank_server.requests) == 2


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused(refused_url: str, mode: str) -> None:
    with MemReranker("vllm", base_url=refused_url, on_error="raise", **FAST) as rr:
        with pytest.raises(ServiceConnectionError) as info:
            rerank(rr, mode, QUERY, DOCS)
    assert info.value.status is None
    assert refused_url.split("//")[1] in str(info.value)


# --- Failures that are not retried -------------------------------------------------------------

NOT_RETRIED = {
    "malformed json": (malformed_json(), InvalidResponseError, 200, None, None),
    "code 40132": (
        memos_error(40132, "API key invalid"),
        AuthenticationError,
        200,
        40132,
        "API key invalid",
    ),
    "code 40100 http 401": (
        memos_error(40100, "API key required", status=401),
        AuthenticationError,
        401,
        40100,
        "API key required",
    ),
    "code 40304": (
        memos_error(40304, "quota exceeded"),
        RateLimitError,
        200,
        40304,
        "quota exceeded",
    ),
    "code 40305": (
        memos_error(40305, "input exceeds token limit"),
        RequestTooLargeError,
        200,
        40305,
        "input exceeds token limit",
    ),
    "vllm 400": (vllm_error(400, "bad top_n"), ServiceError, 400, 400, "bad top_n"),
    "vllm 401": (
        Reply(401, {"error": "Unauthorized"}),
        AuthenticationError,
        401,
        None,
        "Unauthorized",
    ),
    "detail 404": (Reply(404, {"detail": "Not Found"}), ServiceError, 404, None, "Not Found"),
    "index out of range": (index_out_of_range(), InvalidResponseError, 200, None, None),
    "negative index": (negative_index(), InvalidResponseError, 200, None, None),
    "duplicate index": (duplicate_index(), InvalidResponseError, 200, None, None),
    "nan score": (nan_score(), InvalidResponseError, 200, None, None),
    "inf score": (set_score(float("inf")), InvalidResponseError, 200, None, None),
    "score above 1": (set_score(1.5), InvalidResponseError, 200, None, None),
    "score as str": (set_score("0.5"), InvalidResponseError, 200, None, None),
    "score as bool": (set_score(True), InvalidResponseError, 200, None, None),
    "missing document": (drop_result(), InvalidResponseError, 200, None, None),
    "missing results": (missing_results(), InvalidResponseError, 200, None, None),
    "wrong envelope": (wrong_envelope(), InvalidResponseError, 200, None, None),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(NOT_RETRIED))
def test_typed_error_with_on_error_raise(rerank_server: RerankServer, mode: str, case: str) -> None:
    behaviour, kind, status, code, message = NOT_RETRIED[case]
    rerank_server.default = behaviour
    with memos(rerank_server, on_error="raise") as rr:
        with pytest.raises(kind) as info:
            rerank(rr, mode, QUERY, DOCS)
    error = info.value
    assert type(error) is kind
    assert error.status == status
    assert error.code == code
    if message is not None:
        assert error.message == message
        assert message in str(error)
    assert len(rerank_server.requests) == 1  # never retried


FAILURES = {
    **{name: spec[0] for name, spec in NOT_RETRIED.items()},
    "503": vllm_error(503),
    "429": Reply(429, {"error": {"message": "slow"}}),
    "code 50000": memos_error(50000),
    "hang": Hang(10),
    "drop": Drop(),
    "close": Close(),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(FAILURES))
def test_fallback_on_every_failure(rerank_server: RerankServer, mode: str, case: str) -> None:
    rerank_server.default = FAILURES[case]
    with memos(rerank_server, timeout=0.2, max_retries=1) as rr:
        assert_fallback(rerank(rr, mode, QUERY, DOCS), DOCS)
        assert_fallback(rerank(rr, mode, QUERY, DOCS, top_n=2), DOCS[:2])


@pytest.mark.parametrize("mode", MODES)
def test_fallback_when_refused(refused_url: str, mode: str) -> None:
    with MemReranker("memos", api_key=KEY, base_url=refused_url, **FAST) as rr:
        assert_fallback(rerank(rr, mode, QUERY, DOCS), DOCS)


# --- Fallback chains -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_hosted_first_then_second_reranker_then_original_order(
    rerank_server: RerankServer, refused_url: str, mode: str
) -> None:
    second = vllm(rerank_server)
    chain = MemReranker("memos", api_key=KEY, base_url=refused_url, fallback=second, **FAST)
    with chain:
        assert pairs(rerank(chain, mode, QUERY, DOCS, top_n=3)) == expected(QUERY, DOCS, 3)
        assert len(rerank_server.requests) == 1
        rerank_server.default = vllm_error(500, "down too")
        results = rerank(chain, mode, QUERY, DOCS)
    assert_fallback(results, DOCS)
    assert "down too" in (results[0].fallback_reason or "")


@pytest.mark.parametrize("mode", MODES)
def test_chain_raises_the_last_error(
    rerank_server: RerankServer, refused_url: str, mode: str
) -> None:
    rerank_server.default = memos_error(40132, "API key invalid")
    second = memos(rerank_server)
    chain = MemReranker("vllm", base_url=refused_url, fallback=second, on_error="raise", **FAST)
    with chain, pytest.raises(AuthenticationError) as info:
        rerank(chain, mode, QUERY, DOCS)
    assert info.value.code == 40132
