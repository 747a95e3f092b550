"""The circuit breaker of the hosted backends (``memreranker.http.circuit``).

Unit tests drive :class:`CircuitBreaker` with a fake clock; the rest runs a real
``MemReranker`` against the loopback server with a tiny cool-down, sync and async.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from reliability_kit import MODES, SURFACES, Surface, assert_fallback, memreranker_warnings
from servers import RerankServer, Score, deterministic_score, memos_error, vllm_error
from servers.clients import rerank

from memreranker import (
    AuthenticationError,
    CircuitOpenError,
    InputTooLongError,
    InvalidResponseError,
    MemReranker,
    RateLimitError,
    RerankerSettings,
    RerankTimeoutError,
    ServiceConnectionError,
    ServiceError,
)
from memreranker.http.circuit import CircuitBreaker, is_service_failure

pytestmark = pytest.mark.timeout(30)

QUERY = "hiking chess"
DOCS = ["hiking in the alps", "chess club", "tea", "hiking and chess"]
COOLDOWN = 0.3


def expected(query: str = QUERY) -> list[tuple[int, float]]:
    return sorted(
        ((i, deterministic_score(query, d)) for i, d in enumerate(DOCS)),
        key=lambda p: (-p[1], p[0]),
    )


def pairs(results: list[Any]) -> list[tuple[int, float]]:
    return [(r.index, r.score) for r in results]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(threshold: int = 3, cooldown: float = 10.0) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(
        name="test", failure_threshold=threshold, cooldown=cooldown, clock=clock
    ), clock


def fail(cb: CircuitBreaker, error: BaseException | None = None) -> None:
    cb.settle(cb.acquire(), error or ServiceError("down", status=503))


def succeed(cb: CircuitBreaker) -> None:
    cb.settle(cb.acquire(), None)


# --- The state machine ----------------------------------------------------------------------


def test_opens_after_threshold_consecutive_failures() -> None:
    cb, _ = breaker(threshold=3)
    fail(cb)
    fail(cb)
    succeed(cb)  # a success resets the count: failures must be consecutive
    fail(cb)
    fail(cb)
    assert cb.state == "closed"
    fail(cb)
    assert cb.state == "open"
    with pytest.raises(CircuitOpenError, match="circuit open after 3 consecutive failures"):
        cb.acquire()


def test_half_open_lets_exactly_one_probe_through() -> None:
    cb, clock = breaker(threshold=1, cooldown=10.0)
    fail(cb)
    clock.now += 9.9
    with pytest.raises(CircuitOpenError):
        cb.acquire()
    clock.now += 0.2
    assert cb.state == "open"  # until a call comes
    probe = cb.acquire()
    assert probe.probe and cb.state == "half_open"
    for _ in range(3):  # callers during the probe fail fast
        with pytest.raises(CircuitOpenError, match="probe call is in flight"):
            cb.acquire()
    cb.settle(probe, None)
    assert cb.state == "closed" and cb.consecutive_failures == 0
    succeed(cb)


def test_failed_probe_reopens_for_another_cooldown() -> None:
    cb, clock = breaker(threshold=2, cooldown=5.0)
    fail(cb)
    fail(cb)
    clock.now += 5.0
    probe = cb.acquire()
    cb.settle(probe, RerankTimeoutError("no reply"))
    assert cb.state == "open"
    clock.now += 4.9
    with pytest.raises(CircuitOpenError, match="RerankTimeoutError: no reply"):
        cb.acquire()
    clock.now += 0.1
    assert cb.acquire().probe


def test_probe_ending_without_a_verdict_frees_the_slot() -> None:
    # A cancelled probe, or a caller error during it, must not leave the circuit half-open
    # with nobody allowed through.
    cb, clock = breaker(threshold=1, cooldown=1.0)
    fail(cb)
    clock.now += 1.0
    cb.settle(cb.acquire(), asyncio.CancelledError())
    assert cb.state == "half_open"
    probe = cb.acquire()  # the next caller probes
    cb.settle(probe, None)
    assert cb.state == "closed"


def test_late_outcomes_of_older_calls_change_nothing() -> None:
    cb, clock = breaker(threshold=1, cooldown=1.0)
    early = cb.acquire()  # admitted while closed, still running
    fail(cb)  # opens
    cb.settle(early, None)  # its success proves nothing about now
    assert cb.state == "open"
    clock.now += 1.0
    probe = cb.acquire()
    cb.settle(early, ServiceError("late", status=500))  # nor does its failure
    assert cb.state == "half_open"
    cb.settle(probe, None)
    assert cb.state == "closed"


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (ServiceError("x", status=500), True),
        (ServiceError("x", status=503), True),
        (ServiceError("x", status=200, code=50000), True),
        (ServiceError("x", status=404), True),  # a wrong URL fails every call
        (RateLimitError("x", status=429), True),
        (AuthenticationError("x", status=200, code=40132), True),
        (RerankTimeoutError("x"), True),
        (ServiceConnectionError("x"), True),
        (InvalidResponseError("x", status=200), True),
        # The request, not the service: these say nothing about its health.
        (ServiceError("x", status=400, code=400), False),
        (ServiceError("x", status=422), False),
        (ServiceError("x", status=200, code=40305), False),
        (ServiceError("x", status=200, code=40002), False),
        (InputTooLongError("x"), False),
        (TypeError("x"), False),
        (asyncio.CancelledError(), False),
        (CircuitOpenError("x"), False),
    ],
)
def test_what_counts_as_a_failure(error: BaseException, counts: bool) -> None:
    assert is_service_failure(error) is counts
    cb, _ = breaker(threshold=1)
    cb.settle(cb.acquire(), error)
    assert cb.state == ("open" if counts else "closed")


def test_threshold_zero_disables() -> None:
    cb, _ = breaker(threshold=0)
    for _ in range(50):
        fail(cb)
    assert cb.state == "closed" and not cb.enabled


def test_thread_safe_probe_admission() -> None:
    # 32 threads race for the half-open slot: exactly one gets it.
    cb, clock = breaker(threshold=1, cooldown=1.0)
    fail(cb)
    clock.now += 1.0
    barrier = threading.Barrier(32)
    admitted: list[bool] = []

    def race() -> None:
        barrier.wait()
        try:
            admitted.append(cb.acquire().probe)
        except CircuitOpenError:
            admitted.append(False)

    with ThreadPoolExecutor(32) as pool:
        for future in [pool.submit(race) for _ in range(32)]:
            future.result(timeout=10)
    assert admitted.count(True) == 1


def test_transitions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="memreranker")
    cb, clock = breaker(threshold=2, cooldown=1.0)
    fail(cb)
    assert not caplog.records
    fail(cb)
    clock.now += 1.0
    cb.settle(cb.acquire(), None)
    got = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in got] == [logging.WARNING, logging.INFO, logging.INFO]
    assert "circuit opened after 2 consecutive failures" in got[0][1]
    assert "half-open" in got[1][1]
    assert "circuit closed" in got[2][1]


def test_settings() -> None:
    settings = RerankerSettings()
    assert (settings.circuit_failure_threshold, settings.circuit_cooldown) == (5, 30.0)
    with pytest.raises(ValueError, match="circuit_failure_threshold"):
        RerankerSettings(circuit_failure_threshold=-1)
    with pytest.raises(ValueError, match="circuit_cooldown"):
        RerankerSettings(circuit_cooldown=0)


# --- On a real backend, against the loopback server -----------------------------------------


def hosted(server: RerankServer, dialect: str = "vllm", **options: Any) -> MemReranker:
    settings: dict[str, Any] = {
        "base_url": server.base_url(dialect),
        **({"api_key": "k"} if dialect == "memos" else {}),
        "timeout": 2.0,
        "max_retries": 0,
        "circuit_failure_threshold": 2,
        "circuit_cooldown": COOLDOWN,
        **options,
    }
    return MemReranker(dialect, **settings)


@pytest.mark.parametrize("mode", MODES)
def test_open_fail_fast_probe_close(
    rerank_server: RerankServer, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    caplog.set_level(logging.INFO, logger="memreranker")
    rerank_server.default = vllm_error(503, "down")
    rr = hosted(rerank_server)
    assert rr.circuit_state == "closed"
    for _ in range(2):
        assert_fallback_results(rerank(rr, mode, QUERY, DOCS))
    assert rr.circuit_state == "open"
    assert len(rerank_server.requests) == 2
    opened = [r for r in caplog.records if "circuit opened" in r.getMessage()]
    assert len(opened) == 1 and opened[0].levelno == logging.WARNING

    # Open: no request reaches the service, the fallback is immediate.
    start = time.monotonic()
    for _ in range(5):
        results = rerank(rr, mode, QUERY, DOCS)
        assert_fallback_results(results)
        assert "CircuitOpenError" in (results[0].fallback_reason or "")
    assert time.monotonic() - start < COOLDOWN
    assert len(rerank_server.requests) == 2

    # After the cool-down one probe goes through; the service is back: closed.
    time.sleep(COOLDOWN + 0.05)
    rerank_server.default = Score(shuffle=True)
    assert pairs(rerank(rr, mode, QUERY, DOCS)) == expected()
    assert rr.circuit_state == "closed"
    assert len(rerank_server.requests) == 3
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("half-open" in m for m in messages)
    assert any("circuit closed" in m for m in messages)
    rr.close()


@pytest.mark.parametrize("mode", MODES)
def test_failed_probe_reopens(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = memos_error(50000, "internal error")
    rr = hosted(rerank_server, on_error="raise")
    for _ in range(2):
        with pytest.raises(ServiceError):
            rerank(rr, mode, QUERY, DOCS)
    with pytest.raises(CircuitOpenError) as info:
        rerank(rr, mode, QUERY, DOCS)
    assert info.value.status is None and info.value.code is None
    assert "internal error" in str(info.value)  # the last error, for the operator
    time.sleep(COOLDOWN + 0.05)
    with pytest.raises(ServiceError) as probe:
        rerank(rr, mode, QUERY, DOCS)
    assert type(probe.value) is ServiceError and probe.value.code == 50000
    assert rr.circuit_state == "open"
    with pytest.raises(CircuitOpenError):
        rerank(rr, mode, QUERY, DOCS)
    assert len(rerank_server.requests) == 3
    rr.close()


def test_concurrent_callers_fail_fast_during_the_async_probe(rerank_server: RerankServer) -> None:
    rerank_server.default = vllm_error(503, "down")
    rr = hosted(rerank_server, on_error="raise", circuit_failure_threshold=1)

    async def scenario() -> list[Any]:
        with pytest.raises(ServiceError):
            await rr.arerank(QUERY, DOCS)
        await asyncio.sleep(COOLDOWN + 0.05)
        rerank_server.default = Score(delay=0.3)  # a slow probe
        probe = asyncio.ensure_future(rr.arerank(QUERY, DOCS))
        await asyncio.sleep(0.05)
        assert rr.circuit_state == "half_open"
        others = await asyncio.gather(
            *(rr.arerank(QUERY, DOCS) for _ in range(20)), return_exceptions=True
        )
        return [await probe, *others]

    probe, *others = asyncio.run(scenario())
    assert pairs(probe) == expected()
    assert all(isinstance(o, CircuitOpenError) for o in others)
    assert rr.circuit_state == "closed"
    assert len(rerank_server.requests) == 2  # the failure and the probe
    rr.close()


def test_concurrent_callers_fail_fast_during_the_threaded_probe(
    rerank_server: RerankServer,
) -> None:
    rerank_server.default = vllm_error(503, "down")
    rr = hosted(rerank_server, circuit_failure_threshold=1)
    assert_fallback_results(rr.rerank(QUERY, DOCS))
    time.sleep(COOLDOWN + 0.05)
    rerank_server.default = Score(delay=0.3)
    with ThreadPoolExecutor(8) as pool:
        probe = pool.submit(rr.rerank, QUERY, DOCS)
        time.sleep(0.05)
        others = [pool.submit(rr.rerank, QUERY, DOCS) for _ in range(16)]
        outcomes = [f.result(timeout=10) for f in others]
        assert pairs(probe.result(timeout=10)) == expected()
    assert all(r[0].is_fallback for r in outcomes)
    assert len(rerank_server.requests) == 2
    assert rr.circuit_state == "closed"
    rr.close()


@pytest.mark.parametrize("mode", MODES)
def test_caller_errors_never_open_it(rerank_server: RerankServer, mode: str) -> None:
    rr = hosted(rerank_server, on_error="raise", truncate=False, max_query_tokens=120)
    for _ in range(4):
        with pytest.raises(InputTooLongError):  # with the template's ~96 estimated tokens
            rerank(rr, mode, "a query that is far too long for the limit " * 3, DOCS)
    rerank_server.default = vllm_error(400, "bad top_n")
    for _ in range(4):
        with pytest.raises(ServiceError):
            rerank(rr, mode, QUERY, DOCS)
    for query, documents in ((None, DOCS), ("", DOCS), (QUERY, None), (QUERY, ["ok", None])):
        with pytest.raises((TypeError, ValueError)):
            rerank(rr, mode, query, documents)
    assert rr.circuit_state == "closed"
    rr.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "reply",
    [
        memos_error(40304, "quota exceeded"),  # not retried, counted
        memos_error(40300, "rate limit exceeded", status=400),  # 400 alone is not counted
        memos_error(40002, "missing parameter", status=429),  # 40002 alone is not counted
    ],
    ids=["quota", "rate-code-on-400", "429-with-request-code"],
)
def test_rate_limits_count_against_the_circuit(
    rerank_server: RerankServer, mode: str, reply: Any
) -> None:
    """A rate-limit or quota refusal opens the circuit even where the other half of the
    reply alone would not count (http/error_policy.py): every call is refused alike."""
    rerank_server.default = reply
    rr = hosted(rerank_server, "memos")
    for _ in range(2):
        results = rerank(rr, mode, QUERY, DOCS)
        assert_fallback_results(results)
        assert "RateLimitError" in (results[0].fallback_reason or "")
    assert rr.circuit_state == "open"
    assert "CircuitOpenError" in (rerank(rr, mode, QUERY, DOCS)[0].fallback_reason or "")
    assert len(rerank_server.requests) == 2
    rr.close()


def test_a_quota_refusal_is_not_retried(rerank_server: RerankServer) -> None:
    rerank_server.default = memos_error(40304, "quota exceeded")
    rr = hosted(
        rerank_server,
        "memos",
        max_retries=3,
        retry_backoff=0.001,
        retry_backoff_max=0.005,
        on_error="raise",
    )
    with pytest.raises(RateLimitError):
        rr.rerank(QUERY, DOCS)
    assert len(rerank_server.requests) == 1
    rerank_server.requests.clear()
    rerank_server.default = memos_error(40300, "rate limit exceeded")
    with pytest.raises(RateLimitError):
        rr.rerank(QUERY, DOCS)
    assert len(rerank_server.requests) == 4  # a rate limit, unlike a quota, passes: retried
    rr.close()


@pytest.mark.parametrize("mode", MODES)
def test_open_circuit_goes_straight_to_the_fallback_reranker(
    rerank_server: RerankServer, refused_url: str, mode: str
) -> None:
    second = MemReranker("vllm", base_url=rerank_server.url, on_error="raise", max_retries=0)
    first = MemReranker(
        "vllm",
        base_url=refused_url,
        max_retries=0,
        circuit_failure_threshold=1,
        circuit_cooldown=30.0,
        fallback=second,
    )
    assert pairs(rerank(first, mode, QUERY, DOCS)) == expected()  # refused: handed over
    assert first.circuit_state == "open"
    start = time.monotonic()
    for _ in range(10):
        assert pairs(rerank(first, mode, QUERY, DOCS)) == expected()
    assert time.monotonic() - start < 2.0
    assert second.circuit_state == "closed"
    first.close()


def test_disabled_every_call_reaches_the_service(rerank_server: RerankServer) -> None:
    rerank_server.default = vllm_error(503, "down")
    rr = hosted(rerank_server, circuit_failure_threshold=0)
    for _ in range(8):
        assert_fallback_results(rr.rerank(QUERY, DOCS))
    assert len(rerank_server.requests) == 8
    assert rr.circuit_state == "closed"
    rr.close()


def test_local_backend_has_no_circuit(tmp_path: Any) -> None:
    assert MemReranker(model=str(tmp_path / "weights")).circuit_state is None  # never loaded


@pytest.mark.parametrize("surface", SURFACES)
def test_visible_through_every_surface(
    rerank_server: RerankServer, caplog: pytest.LogCaptureFixture, surface: str
) -> None:
    rerank_server.default = vllm_error(502, "bad gateway")
    s = Surface(
        surface,
        backend="vllm",
        base_url=rerank_server.url,
        max_retries=0,
        circuit_failure_threshold=3,
        circuit_cooldown=30.0,
    )
    for _ in range(3):
        s.run("sync", QUERY, DOCS)
    assert s.core.circuit_state == "open"
    caplog.set_level(logging.WARNING, logger="memreranker")
    caplog.clear()
    for mode in MODES:
        assert_fallback(s.run(mode, QUERY, DOCS), DOCS)
    assert len(memreranker_warnings(caplog)) == 2  # one per call, none for the circuit
    assert len(rerank_server.requests) == 3
    s.close()


def assert_fallback_results(results: list[Any]) -> None:
    assert [r.index for r in results] == list(range(len(DOCS)))
    assert all(r.is_fallback and r.score == 0.0 for r in results)
