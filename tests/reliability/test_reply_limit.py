"""A reply larger than ``max_response_bytes`` is refused without being read, sync and async.

The server's replies are valid rankings padded with whitespace (valid JSON): a client that
reads them whole gets scores, after holding hundreds of megabytes. The bytes the server got
to write before the client hung up show how much was read.
"""

from __future__ import annotations

import time

import pytest
from reliability_kit import MODES, Surface
from servers import Flood, RerankServer

from memreranker import InvalidResponseError, MemReranker, RerankerSettings

pytestmark = pytest.mark.timeout(60)

QUERY = "What does the user drink?"
DOCS = ["green tea every morning", "a sister in Berlin", "coffee after lunch"]
HUGE = 300 * 2**20


def flooded(server: RerankServer) -> int:
    """Body bytes the server wrote for the one flood reply (waits for its handler)."""
    end = time.monotonic() + 10
    while not server.flooded and time.monotonic() < end:
        time.sleep(0.01)
    assert len(server.flooded) == 1
    return server.flooded[0]


def strict(server: RerankServer, **options: object) -> Surface:
    return Surface(
        "core", backend="vllm", base_url=server.url, on_error="raise", max_retries=0, **options
    )


def test_default_limit() -> None:
    # Far above a ranking of 100 documents (a few kB; under 1 MB even with every document
    # echoed at max_document_tokens), far below what a runaway server can send.
    assert RerankerSettings().max_response_bytes == 4 * 2**20


@pytest.mark.parametrize("mode", MODES)
def test_announced_huge_reply_is_refused_unread(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = Flood(HUGE)
    s = strict(rerank_server)
    start = time.monotonic()
    with pytest.raises(InvalidResponseError, match="max_response_bytes=4194304") as info:
        s.run(mode, QUERY, DOCS)
    assert time.monotonic() - start < 2.0
    assert info.value.status == 200
    assert f"Content-Length {HUGE}" in str(info.value)
    assert flooded(rerank_server) < 16 * 2**20  # socket buffers at most, not the reply
    s.close()


@pytest.mark.parametrize("mode", MODES)
def test_streamed_huge_reply_stops_at_the_limit(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = Flood(HUGE, declare_length=False)  # chunked: no length up front
    s = strict(rerank_server, max_response_bytes=2**20)
    start = time.monotonic()
    with pytest.raises(InvalidResponseError, match="max_response_bytes=1048576"):
        s.run(mode, QUERY, DOCS)
    assert time.monotonic() - start < 5.0
    assert flooded(rerank_server) < 32 * 2**20
    s.close()


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("mode", MODES)
def test_limit_is_inclusive(rerank_server: RerankServer, mode: str, declare_length: bool) -> None:
    s = strict(rerank_server, max_response_bytes=4096)
    rerank_server.default = Flood(4096, declare_length=declare_length)
    results = s.run(mode, QUERY, DOCS)
    assert sorted(o.index for o in results) == [0, 1, 2]
    assert not any(o.fallback for o in results)
    rerank_server.default = Flood(4097, declare_length=declare_length)
    with pytest.raises(InvalidResponseError, match="max_response_bytes=4096"):
        s.run(mode, QUERY, DOCS)
    s.close()


@pytest.mark.parametrize("mode", MODES)
def test_huge_reply_is_not_retried_and_falls_back(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = Flood(HUGE)
    rr = MemReranker("vllm", base_url=rerank_server.url, max_retries=2)
    outs = Surface("core", reranker=rr).run(mode, QUERY, DOCS)
    assert [o.index for o in outs] == [0, 1, 2] and all(o.fallback for o in outs)
    assert len(rerank_server.requests) == 1
    rr.close()


@pytest.mark.parametrize("mode", MODES)
def test_credentials_in_base_url_never_appear_in_the_reply_too_large_error(
    rerank_server: RerankServer, mode: str
) -> None:
    secret = "sk-URL-CRED-7f3a9c1e-do-not-leak"
    rerank_server.default = Flood(HUGE)
    url = rerank_server.url.replace("http://", f"http://user:{secret}@")
    s = Surface("core", backend="vllm", base_url=url, on_error="raise", max_retries=0)
    with pytest.raises(InvalidResponseError, match="max_response_bytes") as info:
        s.run(mode, QUERY, DOCS)
    error = info.value
    texts = [str(error), repr(error), *map(str, error.args), str(error.__cause__)]
    assert not [t for t in texts if secret in t]
    assert "http://***@127.0.0.1" in str(error)
    s.close()
