"""A service that never answers costs a bounded time: ``timeout * (max_retries + 1)`` plus the
backoff waits plus a small margin, then the call falls back (or raises), on every surface."""

from __future__ import annotations

import logging
import time

import pytest
from reliability_kit import MODES, SURFACES, Surface, assert_fallback, memreranker_warnings
from servers import Close, Hang, RerankServer

from memreranker import RerankTimeoutError

pytestmark = pytest.mark.timeout(30)

QUERY = "What does the user drink?"
DOCS = ["green tea every morning", "a sister in Berlin", "coffee after lunch"]

TIMEOUT = 0.2
MAX_RETRIES = 2
BACKOFF, BACKOFF_MAX = 0.05, 0.1
# The longest possible backoff waits: min(max, base * 2**retry) for each retry.
WAITS = sum(min(BACKOFF_MAX, BACKOFF * 2**i) for i in range(MAX_RETRIES))
MARGIN = 0.5  # scheduling, connecting, an event loop per async call, a loaded CI machine
BOUND = TIMEOUT * (MAX_RETRIES + 1) + WAITS + MARGIN

SETTINGS = {
    "timeout": TIMEOUT,
    "max_retries": MAX_RETRIES,
    "retry_backoff": BACKOFF,
    "retry_backoff_max": BACKOFF_MAX,
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_silent_server_falls_back_within_the_bound(
    rerank_server: RerankServer, caplog: pytest.LogCaptureFixture, surface: str, mode: str
) -> None:
    rerank_server.default = Hang(60)
    s = Surface(surface, backend="vllm", base_url=rerank_server.url, **SETTINGS)
    caplog.set_level(logging.WARNING, logger="memreranker")
    caplog.clear()
    start = time.monotonic()
    outs = s.run(mode, QUERY, DOCS)
    elapsed = time.monotonic() - start
    assert_fallback(outs, DOCS)
    assert elapsed < BOUND, f"{elapsed:.2f}s > {BOUND:.2f}s"
    assert elapsed >= TIMEOUT * (MAX_RETRIES + 1) * 0.9  # every attempt really waited
    assert len(rerank_server.requests) == MAX_RETRIES + 1
    assert len(memreranker_warnings(caplog)) == 1
    s.close()


@pytest.mark.parametrize("mode", MODES)
def test_silent_server_raises_within_the_bound(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = Hang(60)
    s = Surface("core", backend="vllm", base_url=rerank_server.url, on_error="raise", **SETTINGS)
    start = time.monotonic()
    with pytest.raises(RerankTimeoutError):
        s.run(mode, QUERY, DOCS)
    assert time.monotonic() - start < BOUND


@pytest.mark.parametrize("mode", MODES)
def test_many_batches_share_the_bound_in_async(rerank_server: RerankServer, mode: str) -> None:
    # Six requests of one document each: async runs them concurrently (max_concurrency=6),
    # so the whole call still fits in one request's bound; sync stops at the first failure.
    rerank_server.default = Hang(60)
    docs = [f"memory {i}" for i in range(6)]
    s = Surface(
        "core",
        backend="vllm",
        base_url=rerank_server.url,
        max_documents_per_request=1,
        max_concurrency=6,
        **SETTINGS,
    )
    start = time.monotonic()
    assert_fallback(s.run(mode, QUERY, docs), docs)
    assert time.monotonic() - start < BOUND


@pytest.mark.parametrize("mode", MODES)
def test_deadline_caps_many_retries(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = Hang(60)
    s = Surface(
        "core",
        backend="vllm",
        base_url=rerank_server.url,
        timeout=0.2,
        max_retries=50,
        retry_backoff=0.01,
        deadline=0.5,
    )
    start = time.monotonic()
    assert_fallback(s.run(mode, QUERY, DOCS), DOCS)
    assert time.monotonic() - start < 0.5 + MARGIN
    assert len(rerank_server.requests) <= 3


@pytest.mark.parametrize("mode", MODES)
def test_server_closing_connections_is_quick(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = Close()
    s = Surface("core", backend="vllm", base_url=rerank_server.url, **SETTINGS)
    start = time.monotonic()
    assert_fallback(s.run(mode, QUERY, DOCS), DOCS)
    assert time.monotonic() - start < WAITS + MARGIN  # no timeout involved
