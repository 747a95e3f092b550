"""The I/O-free parts of the hosted backends: requests, replies, retry policy, batching."""

from __future__ import annotations

import email.utils
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memreranker import (
    AuthenticationError,
    InvalidResponseError,
    RateLimitError,
    RequestTooLargeError,
    RerankerSettings,
    RerankTimeoutError,
    ServedModelError,
    ServiceConnectionError,
    ServiceError,
)
from memreranker.http import batching
from memreranker.http.protocol import (
    DEFAULT_MEMOS_BASE_URL,
    Endpoint,
    HTTPReply,
    build_request,
    is_insecure_remote,
    memos_url,
    parse_reply,
    tei_url,
    vllm_url,
)
from memreranker.http.retry import RetryPolicy, Send, Sleep, exchange, parse_retry_after

KEY = "sk-test-0123456789abcdef"
MEMOS = Endpoint("memos", DEFAULT_MEMOS_BASE_URL + "/rerank", "memos-reranker-0.6b", KEY)
VLLM = Endpoint("vllm", "http://127.0.0.1:8000/v1/rerank", None, None)
TEI = Endpoint("tei", "http://127.0.0.1:8080/rerank", "bge-reranker", None)


def reply(body: object, status: int = 200, headers: dict[str, str] | None = None) -> HTTPReply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HTTPReply(status, {k.lower(): v for k, v in (headers or {}).items()}, raw)


def results(scores: list[float], order: list[int] | None = None) -> list[dict[str, object]]:
    order = order if order is not None else list(range(len(scores)))
    return [{"index": i, "relevance_score": scores[i]} for i in order]


# --- URLs and requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://h:8000", "http://h:8000/v1/rerank"),
        ("http://h:8000/", "http://h:8000/v1/rerank"),
        ("http://h:8000/v1", "http://h:8000/v1/rerank"),
        ("http://h:8000/v1/", "http://h:8000/v1/rerank"),
        ("http://h:8000/v2", "http://h:8000/v2/rerank"),
        ("http://h:8000/v2/rerank", "http://h:8000/v2/rerank"),
        ("https://proxy/api/rerank", "https://proxy/api/rerank"),
        ("https://proxy/prefix", "https://proxy/prefix/v1/rerank"),
    ],
)
def test_vllm_url_rule(base: str, url: str) -> None:
    assert vllm_url(base) == url


def test_memos_url() -> None:
    assert memos_url(DEFAULT_MEMOS_BASE_URL) == DEFAULT_MEMOS_BASE_URL + "/rerank"
    assert memos_url(DEFAULT_MEMOS_BASE_URL + "/") == DEFAULT_MEMOS_BASE_URL + "/rerank"


@pytest.mark.parametrize(
    "bad", ["", "   ", "localhost:8000", "ftp://h/x", "http://", "http://h/?a=1"]
)
def test_bad_base_url(bad: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        vllm_url(bad)


@pytest.mark.parametrize(
    ("url", "insecure"),
    [
        ("http://localhost:8000", False),
        ("http://127.0.0.1:8000", False),
        ("http://127.5.0.1", False),
        ("http://[::1]:8000", False),
        ("http://api.localhost", False),
        ("https://10.0.0.5", False),
        ("http://10.0.0.5:8000", True),
        ("http://example.com", True),
    ],
)
def test_insecure_remote(url: str, insecure: bool) -> None:
    assert is_insecure_remote(url) is insecure


def test_build_memos_request() -> None:
    request = build_request(MEMOS, "q", ["a", "b", "c"], 2)
    assert request.url == DEFAULT_MEMOS_BASE_URL + "/rerank"
    assert request.headers["Authorization"] == f"Token {KEY}"
    assert request.json == {
        "model": "memos-reranker-0.6b",
        "query": "q",
        "documents": ["a", "b", "c"],
        "top_n": 2,
    }
    assert json.loads(request.content) == request.json
    assert KEY not in repr(request)


@pytest.mark.parametrize("top_n", [None, 3, 10])
def test_top_n_omitted_when_it_cuts_nothing(top_n: int | None) -> None:
    request = build_request(MEMOS, "q", ["a", "b", "c"], top_n)
    assert "top_n" not in request.json
    assert request.top_n is None


def test_build_vllm_request_without_key_or_model() -> None:
    request = build_request(VLLM, "q", ["a"], None)
    assert "Authorization" not in request.headers
    assert request.json == {"query": "q", "documents": ["a"]}
    keyed = Endpoint("vllm", VLLM.url, "m", "k-123456")
    assert build_request(keyed, "q", ["a"], None).headers["Authorization"] == "Bearer k-123456"


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://h:8080", "http://h:8080/rerank"),
        ("http://h:8080/", "http://h:8080/rerank"),
        ("https://gw/tei", "https://gw/tei/rerank"),
        ("https://gw/tei/rerank", "https://gw/tei/rerank"),
    ],
)
def test_tei_url_rule(base: str, url: str) -> None:
    assert tei_url(base) == url


@pytest.mark.parametrize("top_n", [None, 1, 5])
def test_build_tei_request(top_n: int | None) -> None:
    request = build_request(TEI, "q", ["a", "b", "c"], top_n)
    # No model (a TEI server serves one) and no top_n (it always scores every text).
    assert request.json == {
        "query": "q",
        "texts": ["a", "b", "c"],
        "truncate": True,
        "raw_scores": False,
    }
    assert request.top_n is None
    assert "Authorization" not in request.headers
    keyed = Endpoint("tei", TEI.url, None, "tei-k-123456", truncate=False)
    keyed_request = build_request(keyed, "q", ["a"], None)
    assert keyed_request.headers["Authorization"] == "Bearer tei-k-123456"
    assert keyed_request.json["truncate"] is False


def test_tei_reply_in_any_order() -> None:
    request = build_request(TEI, "q", ["a", "b", "c"], 1)
    body = [
        {"index": 2, "score": 0.9},
        {"index": 0, "score": 0.5, "text": "a"},
        {"index": 1, "score": 0.1},
    ]
    assert sorted(parse_reply(TEI, request, reply(body))) == [(0, 0.5), (1, 0.1), (2, 0.9)]


@pytest.mark.parametrize(
    "body",
    [
        {"results": [{"index": 0, "relevance_score": 0.5}]},  # a vLLM reply: wrong server
        [{"index": 0, "relevance_score": 0.5}],  # the wrong score key
        [{"index": 0, "score": 0.5}, {"index": 0, "score": 0.4}],
        [{"index": 0, "score": 1.5}, {"index": 1, "score": 0.4}],
        [{"index": 0, "score": 0.5}],  # one text missing: TEI always scores them all
        "0.5",
    ],
)
def test_tei_untrustworthy_replies(body: object) -> None:
    request = build_request(TEI, "q", ["a", "b"], None)
    with pytest.raises(InvalidResponseError):
        parse_reply(TEI, request, reply(body))


@pytest.mark.parametrize(
    ("status", "error_type", "kind"),
    [
        (413, "validation", RequestTooLargeError),
        (424, "backend", ServedModelError),
        (429, "overloaded", RateLimitError),
        (422, "tokenizer", ServiceError),
        (503, "unhealthy", ServiceError),
        (200, "backend", ServiceError),  # an error body with a success status
    ],
)
def test_tei_errors(status: int, error_type: str, kind: type[ServiceError]) -> None:
    request = build_request(TEI, "q", ["a"], None)
    body = {"error": "batch size 40 > maximum allowed batch size 32", "error_type": error_type}
    with pytest.raises(kind) as info:
        parse_reply(TEI, request, reply(body, status=status))
    error = info.value
    assert type(error) is kind
    assert (error.status, error.code) == (status, error_type)
    assert error.message == "batch size 40 > maximum allowed batch size 32"


def test_tei_bare_401_is_an_authentication_error() -> None:
    request = build_request(TEI, "q", ["a"], None)
    with pytest.raises(AuthenticationError, match="HTTP 401"):
        parse_reply(TEI, request, reply(b"", status=401))


def test_non_ascii_sent_as_utf8() -> None:
    request = build_request(MEMOS, "酒", ["茅台"], None)
    assert "茅台".encode() in request.content


# --- Replies -------------------------------------------------------------------------------


def test_plain_and_wrapped_envelopes_agree() -> None:
    request = build_request(MEMOS, "q", ["a", "b"], None)
    res = results([0.25, 0.75], order=[1, 0])
    plain = parse_reply(MEMOS, request, reply({"id": "x", "results": res}))
    for code in (0, 200, "0"):
        wrapped = parse_reply(
            MEMOS, request, reply({"code": code, "message": "ok", "data": {"results": res}})
        )
        assert sorted(wrapped) == sorted(plain) == [(0, 0.25), (1, 0.75)]


def test_cohere_reply_without_documents() -> None:
    request = build_request(VLLM, "q", ["a", "b"], None)
    body = {"id": "c", "results": results([0.1, 0.9], order=[1, 0]), "meta": {}}
    assert sorted(parse_reply(VLLM, request, reply(body))) == [(0, 0.1), (1, 0.9)]


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.randoms())
def test_scores_follow_indices_in_any_order(scores: list[float], rnd: object) -> None:
    order = list(range(len(scores)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    request = build_request(VLLM, "q", [str(i) for i in range(len(scores))], None)
    parsed = parse_reply(VLLM, request, reply({"results": results(scores, order)}))
    assert dict(parsed) == dict(enumerate(scores))


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (40100, AuthenticationError),
        (40130, AuthenticationError),
        (40132, AuthenticationError),
        (40300, RateLimitError),
        (40304, RateLimitError),
        (40000, ServiceError),
        (40305, RequestTooLargeError),
        (50000, ServiceError),
    ],
)
@pytest.mark.parametrize("status", [200, 400])
def test_memos_codes(code: int, kind: type[ServiceError], status: int) -> None:
    request = build_request(MEMOS, "q", ["a"], None)
    with pytest.raises(kind) as info:
        parse_reply(MEMOS, request, reply({"code": code, "message": "nope"}, status=status))
    error = info.value
    assert type(error) is kind
    assert (error.code, error.message, error.status) == (code, "nope", status)


@pytest.mark.parametrize(
    ("status", "body", "kind", "message", "code"),
    [
        (
            400,
            {"error": {"message": "bad", "type": "BadRequestError", "param": None, "code": 400}},
            ServiceError,
            "bad",
            400,
        ),
        (401, {"error": "Unauthorized"}, AuthenticationError, "Unauthorized", None),
        (403, {"message": "forbidden"}, AuthenticationError, "forbidden", None),
        (429, {"detail": "slow"}, RateLimitError, "slow", None),
        (422, {"detail": [{"loc": ["body"], "msg": "x"}]}, ServiceError, '[{"loc"', None),
        (502, b"<html>Bad Gateway</html>", ServiceError, "<html>Bad Gateway</html>", None),
        (503, b"", ServiceError, "HTTP 503 with an empty body", None),
        (200, {"error": {"message": "oops", "type": "X"}}, ServiceError, "oops", "X"),
    ],
)
def test_error_bodies(
    status: int, body: object, kind: type[ServiceError], message: str, code: object
) -> None:
    request = build_request(VLLM, "q", ["a"], None)
    with pytest.raises(kind) as info:
        parse_reply(VLLM, request, reply(body, status=status))
    assert type(info.value) is kind
    assert info.value.message.startswith(message)
    assert info.value.status == status
    assert info.value.code == code


BAD_REPLIES = {
    "malformed json": b'{"results": [',
    "not utf-8": b"\xff\xfe",
    "a list": [{"index": 0, "relevance_score": 0.5}],
    "no results": {"id": "x"},
    "ok code without data": {"code": 0, "message": "ok", "data": None},
    "ok code with empty data": {"code": 200, "message": "ok", "data": {}},
    "wrong envelope": {"data": [{"index": 0, "relevance_score": 0.5}]},
    "results not a list": {"results": {"0": 0.5}},
    "result not an object": {"results": [0.5, 0.5]},
    "index out of range": {"results": [{"index": 2, "relevance_score": 0.5}, *results([0.1])]},
    "negative index": {"results": [{"index": -1, "relevance_score": 0.5}, *results([0.1])]},
    "index as str": {"results": [{"index": "0", "relevance_score": 0.5}, results([0, 1])[1]]},
    "index as float": {"results": [{"index": 0.0, "relevance_score": 0.5}, results([0, 1])[1]]},
    "index as bool": {"results": [{"index": False, "relevance_score": 0.5}, results([0, 1])[1]]},
    "duplicate index": {"results": results([0.1, 0.2], order=[0, 0])},
    "missing document": {"results": results([0.1, 0.2], order=[1])},
    "missing score": {"results": [{"index": 0}, {"index": 1, "relevance_score": 0.3}]},
    "score as str": {"results": [{"index": 0, "relevance_score": "0.3"}, results([0, 1])[1]]},
    "score as bool": {"results": [{"index": 0, "relevance_score": True}, results([0, 1])[1]]},
    "nan score": b'{"results": [{"index": 0, "relevance_score": NaN}, '
    b'{"index": 1, "relevance_score": 0.2}]}',
    "inf score": b'{"results": [{"index": 0, "relevance_score": Infinity}, '
    b'{"index": 1, "relevance_score": 0.2}]}',
    "score above 1": {"results": results([1.5, 0.2])},
    "negative score": {"results": results([-0.1, 0.2])},
}


@pytest.mark.parametrize("name", sorted(BAD_REPLIES))
def test_untrustworthy_replies(name: str) -> None:
    request = build_request(VLLM, "q", ["a", "b"], None)
    with pytest.raises(InvalidResponseError) as info:
        parse_reply(VLLM, request, reply(BAD_REPLIES[name]))
    assert info.value.status == 200


def test_top_n_needs_at_least_top_n_results() -> None:
    request = build_request(VLLM, "q", ["a", "b", "c"], 2)
    assert len(parse_reply(VLLM, request, reply({"results": results([0.9, 0.8])}))) == 2
    assert len(parse_reply(VLLM, request, reply({"results": results([0.9, 0.8, 0.1])}))) == 3
    with pytest.raises(InvalidResponseError, match="top_n=2"):
        parse_reply(VLLM, request, reply({"results": results([0.9])}))


def test_integer_scores_accepted() -> None:
    request = build_request(VLLM, "q", ["a", "b"], None)
    assert parse_reply(VLLM, request, reply({"results": results([0, 1])})) == [(0, 0.0), (1, 1.0)]


def test_key_scrubbed_from_server_text() -> None:
    request = build_request(MEMOS, "q", ["a"], None)
    for status, body in [
        (401, {"message": f"bad header Token {KEY}"}),
        (200, f"<html>Token {KEY}</html>".encode()),
        (200, {"code": 40132, "message": f"key {KEY} expired"}),
    ]:
        with pytest.raises(ServiceError) as info:
            parse_reply(MEMOS, request, reply(body, status=status))
        assert KEY not in str(info.value)
        assert KEY not in info.value.message
        assert "***" in info.value.message


# --- Retry policy -----------------------------------------------------------------------------


POLICY = RetryPolicy(timeout=1.0, max_retries=3, backoff=0.5, backoff_max=2.0, deadline=10.0)


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (ServiceConnectionError("refused"), True),
        (RerankTimeoutError("slow"), True),
        (RateLimitError("x", status=429), True),
        (ServiceError("x", status=500), True),
        (ServiceError("x", status=502), True),
        (ServiceError("x", status=503), True),
        (ServiceError("x", status=504), True),
        (RateLimitError("x", status=200, code=40300), True),
        (ServiceError("x", status=200, code=50000), True),
        (RateLimitError("quota", status=200, code=40304), False),
        (ServiceError("x", status=400), False),
        (ServiceError("x", status=404), False),
        (ServiceError("x", status=200, code=40305), False),
        (RequestTooLargeError("x", status=413, code="validation"), False),
        (ServedModelError("x", status=424, code="backend"), False),
        (RateLimitError("x", status=429, code="overloaded"), True),
        (ServiceError("x", status=503, code="unhealthy"), True),
        (AuthenticationError("x", status=401), False),
        (AuthenticationError("x", status=503, code=40132), False),
        (InvalidResponseError("x", status=200), False),
        (InvalidResponseError("x", status=503), False),
    ],
)
def test_what_is_retried(error: ServiceError, retry: bool) -> None:
    assert POLICY.is_retryable(error) is retry


def test_full_jitter_backoff() -> None:
    assert POLICY.backoff_delay(0, rng=lambda: 1.0) == 0.5
    assert POLICY.backoff_delay(1, rng=lambda: 1.0) == 1.0
    assert POLICY.backoff_delay(5, rng=lambda: 1.0) == 2.0  # capped
    assert POLICY.backoff_delay(3, rng=lambda: 0.0) == 0.0
    assert all(0 <= POLICY.backoff_delay(2) <= 2.0 for _ in range(100))


def test_default_deadline() -> None:
    settings = RerankerSettings(
        backend="vllm", timeout=2.0, max_retries=3, retry_backoff=1.0, retry_backoff_max=3.0
    )
    assert RetryPolicy.from_settings(settings).deadline == 2.0 * 4 + (1 + 2 + 3)
    explicit = RerankerSettings(backend="vllm", deadline=5.0)
    assert RetryPolicy.from_settings(explicit).deadline == 5.0


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("1.5", now) == 1.5
    assert parse_retry_after("-4", now) == 0.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(7.0)
    past = email.utils.formatdate(now - 60, usegmt=True)
    assert parse_retry_after(past, now) == 0.0
    for junk in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(junk, now) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(steps, outcomes, clock: FakeClock, attempt_cost: float = 0.0):  # type: ignore[no-untyped-def]
    """Run an exchange against scripted outcomes; returns (result or error, steps seen)."""
    seen: list[object] = []
    outcomes = list(outcomes)
    try:
        step = next(steps)
        while True:
            seen.append(step)
            if isinstance(step, Sleep):
                clock.now += step.seconds
                step = steps.send(None)
            else:
                clock.now += attempt_cost
                step = steps.send(outcomes.pop(0))
    except StopIteration as done:
        return done.value, seen
    except ServiceError as error:
        return error, seen


OK = reply({"results": results([0.5])})


def test_exchange_retries_then_succeeds() -> None:
    request = build_request(VLLM, "q", ["a"], None)
    clock = FakeClock()
    busy = reply({"error": {"message": "busy"}}, status=503)
    value, seen = drive(
        exchange(VLLM, request, POLICY, clock=clock, rng=lambda: 1.0),
        [busy, ServiceConnectionError("refused"), OK],
        clock,
    )
    assert value == [(0, 0.5)]
    assert [type(s).__name__ for s in seen] == ["Send", "Sleep", "Send", "Sleep", "Send"]
    assert [s.seconds for s in seen if isinstance(s, Sleep)] == [0.5, 1.0]


def test_exchange_honours_retry_after() -> None:
    request = build_request(VLLM, "q", ["a"], None)
    clock = FakeClock()
    limited = reply({"error": {"message": "slow"}}, status=429, headers={"Retry-After": "4"})
    value, seen = drive(exchange(VLLM, request, POLICY, clock=clock), [limited, OK], clock)
    assert value == [(0, 0.5)]
    assert [s.seconds for s in seen if isinstance(s, Sleep)] == [4.0]


def test_exchange_gives_up_when_retry_after_exceeds_deadline() -> None:
    request = build_request(VLLM, "q", ["a"], None)
    clock = FakeClock()
    limited = reply({"error": {"message": "slow"}}, status=429, headers={"Retry-After": "60"})
    error, seen = drive(exchange(VLLM, request, POLICY, clock=clock), [limited], clock)
    assert isinstance(error, RateLimitError) and error.status == 429
    assert len(seen) == 1


def test_exchange_stops_after_max_retries() -> None:
    request = build_request(VLLM, "q", ["a"], None)
    clock = FakeClock()
    errors = [RerankTimeoutError("slow")] * 4
    error, seen = drive(exchange(VLLM, request, POLICY, clock=clock), errors, clock)
    assert isinstance(error, RerankTimeoutError)
    assert sum(isinstance(s, Send) for s in seen) == POLICY.max_retries + 1


def test_exchange_clips_attempts_to_the_deadline() -> None:
    request = build_request(VLLM, "q", ["a"], None)
    clock = FakeClock()
    policy = RetryPolicy(timeout=4.0, max_retries=10, backoff=0.0, backoff_max=0.0, deadline=10.0)
    errors = [RerankTimeoutError("slow")] * 11
    error, seen = drive(exchange(VLLM, request, policy, clock=clock), errors, clock, 4.0)
    sends = [s for s in seen if isinstance(s, Send)]
    assert isinstance(error, RerankTimeoutError)
    assert [s.timeout for s in sends] == [4.0, 4.0, 2.0]
    assert clock.now <= 10.0 + 1e-9 + 2.0


def test_exchange_does_not_retry_auth_or_validation() -> None:
    request = build_request(MEMOS, "q", ["a"], None)
    for outcome in (
        reply({"code": 40132, "message": "API key invalid"}),
        reply(b"not json"),
        reply({"results": [{"index": 3, "relevance_score": 0.1}]}),
    ):
        clock = FakeClock()
        error, seen = drive(exchange(MEMOS, request, POLICY, clock=clock), [outcome], clock)
        assert isinstance(error, (AuthenticationError, InvalidResponseError))
        assert len(seen) == 1


# --- Batching --------------------------------------------------------------------------------


def limits(**kw: object) -> batching.Limits:
    base = {
        "max_documents_per_request": 100,
        "max_tokens_per_request": 8000,
        "max_query_tokens": 2000,
        "max_document_tokens": 32000,
        "truncate": True,
    }
    return batching.Limits(**{**base, **kw})  # type: ignore[arg-type]


def test_estimate_tokens() -> None:
    assert batching.estimate_tokens("") == 0
    assert batching.estimate_tokens("abc") == 1
    assert batching.estimate_tokens("abcd") == 2
    assert batching.estimate_tokens("茅台酒") == 3
    assert batching.estimate_tokens("ab茅台") == 3


@given(st.text(max_size=300), st.integers(0, 100))
def test_truncate_text_is_the_longest_fitting_prefix(text: str, budget: int) -> None:
    cut = batching.truncate_text(text, budget)
    assert text.startswith(cut)
    assert batching.estimate_tokens(cut) <= budget or cut == text
    if cut != text:
        assert batching.estimate_tokens(text[: len(cut) + 1]) > budget


@given(
    st.lists(st.text(max_size=40), max_size=60),
    st.integers(1, 10),
    st.integers(1, 50),
)
def test_plan_batches_covers_everything_in_order(docs: list[str], per: int, tokens: int) -> None:
    plan = batching.plan_batches(
        docs, limits(max_documents_per_request=per, max_tokens_per_request=tokens)
    )
    assert [i for batch in plan for i in batch] == list(range(len(docs)))
    for batch in plan:
        assert 1 <= len(batch) <= per
        cost = sum(max(1, batching.estimate_tokens(docs[i])) for i in batch)
        assert cost <= tokens or len(batch) == 1


def test_fit_inputs_truncates_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="memreranker")
    lim = limits(max_query_tokens=5, max_document_tokens=10)
    query, docs = batching.fit_inputs("q" * 30, ["d" * 60, "short"], lim, where="t")
    assert query == "q" * 15
    assert docs == ["d" * 30, "short"]
    assert "query over max_query_tokens" in caplog.text
    assert "document(s) over max_document_tokens" in caplog.text


def test_fit_inputs_raises_when_truncation_is_off() -> None:
    lim = limits(max_query_tokens=5, max_document_tokens=10, truncate=False)
    with pytest.raises(ValueError, match="max_query_tokens"):
        batching.fit_inputs("q" * 30, ["ok"], lim, where="t")
    with pytest.raises(ValueError, match="max_document_tokens"):
        batching.fit_inputs("q", ["d" * 60], lim, where="t")


def test_merge_shifts_indices() -> None:
    merged = batching.merge([(range(0, 2), [(1, 0.2), (0, 0.1)]), (range(2, 5), [(2, 0.9)])])
    assert merged == [(1, 0.2), (0, 0.1), (4, 0.9)]
    assert not math.isnan(merged[0][1])


def test_one_error_policy_table_decides_type_retry_and_circuit() -> None:
    """protocol.py (the type), retry.py (retried?) and circuit.py (counted?) all read
    http/error_policy.py: each row, as a real error reply, gets exactly its rule."""
    from memreranker.http.circuit import is_service_failure
    from memreranker.http.error_policy import BY_CODE, BY_STATUS

    request = build_request(MEMOS, "q", ["a"], None)
    cases = [(status, None, rule) for status, rule in BY_STATUS.items()]
    cases += [(200, code, rule) for code, rule in BY_CODE.items()]
    for status, code, rule in cases:
        body = {"code": code, "message": "no"} if code is not None else {"message": "no"}
        with pytest.raises(ServiceError) as caught:
            parse_reply(MEMOS, request, reply(body, status=status))
        error = caught.value
        assert type(error) is rule.error, (status, code)
        assert POLICY.is_retryable(error) is rule.retried, (status, code)
        assert is_service_failure(error) is rule.counts, (status, code)
    # MemOS 40304, quota exceeded: a rate-limit error, not retried (waiting does not
    # restore a quota), counted against the circuit (every call fails alike until it is).
    assert (BY_CODE[40304].error, BY_CODE[40304].retried, BY_CODE[40304].counts) == (
        RateLimitError,
        False,
        True,
    )
