"""Every fault a rerank service or a local model can throw at a call, on every surface (core,
LangChain, LlamaIndex), sync and async, and for services in every dialect (MemOS, vLLM, TEI).

With ``on_error="fallback"`` (the default) each input comes back exactly once, in input order,
score 0.0, flagged (``is_fallback`` / ``metadata["rerank_fallback"]``), with exactly one
warning on the ``memreranker`` logger. With ``on_error="raise"`` the typed error propagates,
carrying the service's status, code and message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from reliability_kit import (
    FAST,
    MODES,
    SURFACES,
    Surface,
    assert_fallback,
    memreranker_warnings,
)
from servers import (
    Behaviour,
    Close,
    Drop,
    Flood,
    Hang,
    Reply,
    RerankServer,
    Score,
    Trickle,
    duplicate_index,
    index_out_of_range,
    malformed_json,
    memos_error,
    missing_results,
    nan_score,
    retry_after,
    set_score,
    tei_error,
    vllm_error,
    wrong_envelope,
)

from memreranker import (
    AuthenticationError,
    Backend,
    InferenceError,
    InvalidResponseError,
    MemReranker,
    MemRerankerError,
    ModelLoadError,
    RateLimitError,
    RequestTooLargeError,
    RerankTimeoutError,
    ServedModelError,
    ServiceConnectionError,
    ServiceError,
)

pytestmark = pytest.mark.timeout(30)

QUERY = "What does the user drink in the morning?"
DOCS = [
    "The user drinks green tea every morning.",
    "The user's sister Anna lives in Berlin.",
    "Coffee after lunch, never tea.",
    "Flight to Berlin booked for 2026-05-14.",
]
KEY = "sk-faults-0123456789"


@dataclass(frozen=True)
class Fault:
    behaviour: Behaviour
    error: type[MemRerankerError]
    status: int | None
    code: int | str | None = None
    message: str | None = None
    requests: int = 1
    """Requests the server sees with ``max_retries=1``: 2 when the fault is retried."""
    options: tuple[tuple[str, Any], ...] = ()


DIALECTS = ("memos", "vllm", "tei")

SLACK = ("deadline", 3.0)

# Faults any service can show (a proxy in front of it, a broken deployment), every dialect.
COMMON_FAULTS: dict[str, Fault] = {
    "http 500": Fault(vllm_error(500, "internal"), ServiceError, 500, 500, "internal", 2),
    "http 502 text": Fault(Reply(502, "Bad Gateway"), ServiceError, 502, None, "Bad Gateway", 2),
    "http 503": Fault(vllm_error(503, "overloaded"), ServiceError, 503, 503, "overloaded", 2),
    "http 504": Fault(
        Reply(504, {"detail": "upstream timed out"}),
        ServiceError,
        504,
        None,
        "upstream timed out",
        2,
    ),
    "429 no retry-after": Fault(
        Reply(429, {"error": {"message": "slow down"}}), RateLimitError, 429, None, "slow down", 2
    ),
    # A Retry-After longer than the call's deadline: give up at once instead of sleeping.
    "429 retry-after": Fault(retry_after(30), RateLimitError, 429, 429, "slow down", 1),
    # A deadline with room to spare: a GC pause on a loaded machine must not cost the retry.
    "hang past timeout": Fault(
        Hang(10), RerankTimeoutError, None, requests=2, options=(("timeout", 0.2), SLACK)
    ),
    # A reply that comes, complete and correct, one byte every 0.1 s: each read is quick, the
    # request is not. The attempt's timeout bounds the whole of it.
    "trickled reply": Fault(
        Trickle(0.1), RerankTimeoutError, None, requests=2, options=(("timeout", 0.3), SLACK)
    ),
    "trickled reply, Connection: close": Fault(
        Trickle(0.1, close=True),
        RerankTimeoutError,
        None,
        requests=2,
        options=(("timeout", 0.3), SLACK),
    ),
    "trickled headers": Fault(
        Trickle(0.1, headers=True),
        RerankTimeoutError,
        None,
        requests=2,
        options=(("timeout", 0.3), SLACK),
    ),
    # A valid ranking padded with whitespace past max_response_bytes: refused, not retried.
    "reply over max_response_bytes": Fault(
        Flood(2 * 2**20), InvalidResponseError, 200, options=(("max_response_bytes", 2**16),)
    ),
    "chunked reply over max_response_bytes": Fault(
        Flood(2 * 2**20, declare_length=False),
        InvalidResponseError,
        200,
        options=(("max_response_bytes", 2**16),),
    ),
    "reset mid-reply": Fault(Drop(), ServiceConnectionError, None, requests=2),
    "closed without reply": Fault(Close(), ServiceConnectionError, None, requests=2),
    "malformed json": Fault(malformed_json(), InvalidResponseError, 200),
    "wrong envelope": Fault(wrong_envelope(), InvalidResponseError, 200),
    "missing results": Fault(missing_results(), InvalidResponseError, 200),
    "index out of range": Fault(index_out_of_range(), InvalidResponseError, 200),
    "duplicate index": Fault(duplicate_index(), InvalidResponseError, 200),
    "nan score": Fault(nan_score(), InvalidResponseError, 200),
    "score above 1": Fault(set_score(1.5), InvalidResponseError, 200),
    "negative score": Fault(set_score(-0.25), InvalidResponseError, 200),
    "score as string": Fault(set_score("0.3"), InvalidResponseError, 200),
    "http 401": Fault(
        Reply(401, {"error": "Unauthorized"}), AuthenticationError, 401, None, "Unauthorized"
    ),
}

# The MemOS envelope's error codes (HTTP 200).
MEMOS_FAULTS: dict[str, Fault] = {
    "code 40132": Fault(
        memos_error(40132, "API key invalid"), AuthenticationError, 200, 40132, "API key invalid"
    ),
    "code 40300": Fault(
        memos_error(40300, "rate limit exceeded"),
        RateLimitError,
        200,
        40300,
        "rate limit exceeded",
        2,
    ),
    "code 50000": Fault(
        memos_error(50000, "internal error"), ServiceError, 200, 50000, "internal error", 2
    ),
    "code 40305": Fault(
        memos_error(40305, "input exceeds token limit"),
        RequestTooLargeError,
        200,
        40305,
        "input exceeds token limit",
    ),
}

# vLLM's (OpenAI-style) error bodies.
VLLM_FAULTS: dict[str, Fault] = {
    "vllm 400": Fault(vllm_error(400, "bad top_n"), ServiceError, 400, 400, "bad top_n"),
    "vllm 413": Fault(
        vllm_error(413, "too many tokens"), RequestTooLargeError, 413, 413, "too many tokens"
    ),
}

# TEI's {"error", "error_type"} bodies, with the statuses its router maps them to.
TEI_FAULTS: dict[str, Fault] = {
    "tei 413 batch size": Fault(
        tei_error(413, "batch size 40 > maximum allowed batch size 32", "validation"),
        RequestTooLargeError,
        413,
        "validation",
        "batch size 40 > maximum allowed batch size 32",
    ),
    "tei 424 backend": Fault(
        tei_error(424, "Inference failed", "backend"),
        ServedModelError,
        424,
        "backend",
        "Inference failed",
    ),
    "tei 429 overloaded": Fault(
        tei_error(429, "Model is overloaded", "overloaded"),
        RateLimitError,
        429,
        "overloaded",
        "Model is overloaded",
        2,
    ),
    "tei 422 tokenizer": Fault(
        tei_error(422, "Tokenization error", "tokenizer"),
        ServiceError,
        422,
        "tokenizer",
        "Tokenization error",
    ),
    "tei 503 unhealthy": Fault(
        tei_error(503, "unhealthy", "unhealthy"), ServiceError, 503, "unhealthy", "unhealthy", 2
    ),
    "tei 401 empty": Fault(
        Reply(401), AuthenticationError, 401, None, "HTTP 401 with an empty body"
    ),
    "tei error with 200": Fault(
        tei_error(200, "score is NaN", "backend"), ServiceError, 200, "backend", "score is NaN"
    ),
}

HTTP_FAULTS: dict[str, dict[str, Fault]] = {
    "memos": {**COMMON_FAULTS, **MEMOS_FAULTS},
    "vllm": {**COMMON_FAULTS, **VLLM_FAULTS},
    "tei": {**COMMON_FAULTS, **TEI_FAULTS},
}
CASES = [(dialect, name) for dialect in DIALECTS for name in sorted(HTTP_FAULTS[dialect])]
CASE_IDS = [f"{dialect}-{name}" for dialect, name in CASES]


def dialect_settings(server: RerankServer, dialect: str) -> dict[str, Any]:
    """A backend of ``dialect`` calling ``server`` (a key everywhere: memos requires one)."""
    return {"backend": dialect, "api_key": KEY, "base_url": server.base_url(dialect)}


def hosted(server: RerankServer, dialect: str, fault: Fault, **options: Any) -> dict[str, Any]:
    return {
        **dialect_settings(server, dialect),
        **FAST,
        **dict(fault.options),
        **options,
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize(("dialect", "name"), CASES, ids=CASE_IDS)
def test_http_fault_falls_back(
    rerank_server: RerankServer,
    caplog: pytest.LogCaptureFixture,
    dialect: str,
    name: str,
    surface: str,
    mode: str,
) -> None:
    fault = HTTP_FAULTS[dialect][name]
    rerank_server.default = fault.behaviour
    s = Surface(surface, **hosted(rerank_server, dialect, fault))
    caplog.set_level(logging.WARNING, logger="memreranker")
    caplog.clear()
    outs = s.run(mode, QUERY, DOCS)
    assert_fallback(outs, DOCS)
    warnings = memreranker_warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    assert "falling back to original order" in warnings[0].getMessage()
    assert fault.error.__name__ in warnings[0].getMessage()
    assert len(rerank_server.requests) == fault.requests
    s.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize(("dialect", "name"), CASES, ids=CASE_IDS)
def test_http_fault_raises_typed_error(
    rerank_server: RerankServer, dialect: str, name: str, surface: str, mode: str
) -> None:
    fault = HTTP_FAULTS[dialect][name]
    rerank_server.default = fault.behaviour
    s = Surface(surface, **hosted(rerank_server, dialect, fault, on_error="raise"))
    with pytest.raises(fault.error) as info:
        s.run(mode, QUERY, DOCS)
    error = info.value
    assert type(error) is fault.error
    assert error.status == fault.status
    assert error.code == fault.code
    if fault.message is not None:
        assert error.message == fault.message
        assert fault.message in str(error)
    if fault.status is not None:
        assert f"HTTP {fault.status}" in str(error)
    assert len(rerank_server.requests) == fault.requests  # retried only when retryable
    s.close()


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_connection_refused(
    refused_url: str, caplog: pytest.LogCaptureFixture, surface: str, mode: str, dialect: str
) -> None:
    settings = {"backend": dialect, "api_key": KEY, "base_url": refused_url, **FAST}
    s = Surface(surface, **settings)
    caplog.set_level(logging.WARNING, logger="memreranker")
    caplog.clear()
    assert_fallback(s.run(mode, QUERY, DOCS), DOCS)
    assert len(memreranker_warnings(caplog)) == 1
    strict = Surface(surface, **settings, on_error="raise")
    with pytest.raises(ServiceConnectionError) as info:
        strict.run(mode, QUERY, DOCS)
    assert info.value.status is None
    assert refused_url.split("//")[1] in str(info.value)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_one_bad_batch_fails_the_whole_call(
    rerank_server: RerankServer,
    caplog: pytest.LogCaptureFixture,
    surface: str,
    mode: str,
    dialect: str,
) -> None:
    # Two requests of two documents; one reply is invalid: no partial ranking, a fallback.
    rerank_server.script(Score(), index_out_of_range())
    s = Surface(
        surface,
        **dialect_settings(rerank_server, dialect),
        max_documents_per_request=2,
        **FAST,
    )
    caplog.set_level(logging.WARNING, logger="memreranker")
    caplog.clear()
    assert_fallback(s.run(mode, QUERY, DOCS), DOCS)
    assert len(memreranker_warnings(caplog)) == 1
    assert len(rerank_server.requests) == 2


# --- Local weights ------------------------------------------------------------------------

LOCAL_FAULTS: dict[str, tuple[type[MemRerankerError], str]] = {
    "missing directory": (ModelLoadError, "does not exist"),
    "meta device": (InferenceError, "meta"),  # loads, but the forward pass cannot compute
    "nan checkpoint": (InferenceError, "not a probability"),  # runs, every score NaN
}


def local_settings(name: str, tiny_model: Path, nan_model: Path, tmp_path: Path) -> dict[str, Any]:
    if name == "missing directory":
        return {"model": str(tmp_path / "no-such-model")}
    if name == "meta device":
        return {"model": str(tiny_model), "device": "meta"}
    return {"model": str(nan_model)}


@pytest.fixture(scope="module")
def local_cores(
    tiny_model: Path, nan_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[MemReranker, MemReranker]]:
    """Per fault, a lenient and a strict ``MemReranker`` sharing one backend, so that each
    faulty checkpoint loads once for the module (loading the tokenizer takes seconds)."""
    tmp_path = tmp_path_factory.mktemp("local-faults")
    cores = {}
    for name in LOCAL_FAULTS:
        settings = local_settings(name, tiny_model, nan_model, tmp_path)
        lenient = MemReranker(**settings)
        # A reranker of the same Backend instance: same weights, same fault.
        strict = MemReranker(backend=lenient.backend, on_error="raise")
        # Load now: loading may log its own warnings (the engine choice), which belong to the
        # load, not to the failed calls whose one warning each test counts.
        with contextlib.suppress(ModelLoadError):
            lenient.load()
        cores[name] = (lenient, strict)
    return cores


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("name", sorted(LOCAL_FAULTS))
def test_local_fault_falls_back(
    local_cores: dict[str, tuple[MemReranker, MemReranker]],
    caplog: pytest.LogCaptureFixture,
    name: str,
    surface: str,
    mode: str,
) -> None:
    s = Surface(surface, reranker=local_cores[name][0])
    caplog.set_level(logging.WARNING, logger="memreranker")
    caplog.clear()
    assert_fallback(s.run(mode, QUERY, DOCS), DOCS)
    warnings = memreranker_warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    assert LOCAL_FAULTS[name][0].__name__ in warnings[0].getMessage()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("name", sorted(LOCAL_FAULTS))
def test_local_fault_raises_typed_error(
    local_cores: dict[str, tuple[MemReranker, MemReranker]], name: str, surface: str, mode: str
) -> None:
    kind, message = LOCAL_FAULTS[name]
    s = Surface(surface, reranker=local_cores[name][1])
    with pytest.raises(kind, match=message) as info:
        s.run(mode, QUERY, DOCS)
    assert type(info.value) is kind


class _Scripted(Backend):
    """A backend returning fixed ``(index, score)`` pairs, whatever it is asked."""

    name = "scripted"

    def __init__(self, scored: list[tuple[Any, Any]]) -> None:
        self.scored = scored

    def score(self, query: str, documents: Any, **kwargs: Any) -> list[tuple[Any, Any]]:
        return list(self.scored)

    async def ascore(self, query: str, documents: Any, **kwargs: Any) -> list[tuple[Any, Any]]:
        return list(self.scored)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "scored",
    [
        [(0, float("nan")), (1, 0.5)],
        [(0, 1.5), (1, 0.5)],
        [(0, -0.1), (1, 0.5)],
        [(0, True), (1, 0.5)],
        [(0, "0.5"), (1, 0.5)],
        [(0, 0.5), (0, 0.4)],
        [(0, 0.5), (4, 0.4)],
        [(-1, 0.5), (1, 0.4)],
        [(True, 0.5), (1, 0.4)],
    ],
    ids=["nan", "above 1", "negative", "bool", "str", "duplicate", "out of range", "-1", "bool i"],
)
def test_facade_refuses_untrustworthy_backend_scores(
    caplog: pytest.LogCaptureFixture, scored: list[tuple[Any, Any]], mode: str
) -> None:
    # Whatever the backend (a future one, a custom one), the ranking never carries a score
    # outside [0, 1] or an index that is not one of the caller's, once.
    rr = MemReranker(backend=_Scripted(scored))
    caplog.set_level(logging.WARNING, logger="memreranker")
    docs = DOCS[:2]
    assert_fallback(Surface("core", reranker=rr).run(mode, QUERY, docs), docs)
    assert len(memreranker_warnings(caplog)) == 1
    strict = MemReranker(backend=_Scripted(scored), on_error="raise")
    with pytest.raises(InferenceError, match="scripted"):
        Surface("core", reranker=strict).run(mode, QUERY, docs)


# --- Fallback chains ------------------------------------------------------------------------
#
# The rule: one WARNING per call that met a failure, for its outcome ("scored by fallback X",
# or "falling back to original order"), naming every reranker that failed and its error; each
# handover along the chain is an INFO line.

CHAINS = {
    "rescued": ("fault", "ok"),
    "rescued after two failures": ("fault", "refused", "ok"),
    "all failed": ("fault", "refused"),
}


def chain_of(links: tuple[str, ...], server: RerankServer, refused_url: str) -> MemReranker:
    reranker: MemReranker | None = None
    for position, link in reversed(list(enumerate(links))):
        if link == "fault":  # the MemOS route, failing with a retryable 50000 (twice)
            settings = {"backend": "memos", "api_key": KEY, "base_url": server.memos_base_url}
        else:
            url = server.url if link == "ok" else refused_url
            settings = {"backend": "vllm", "base_url": url, "model": f"link{position}"}
        reranker = MemReranker(**settings, **FAST, fallback=reranker)
    assert reranker is not None
    return reranker


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_fallback_chain_logs_one_warning(
    rerank_server: RerankServer,
    refused_url: str,
    caplog: pytest.LogCaptureFixture,
    chain: str,
    surface: str,
    mode: str,
) -> None:
    links = CHAINS[chain]
    rerank_server.script(*[memos_error(50000, "internal error")] * 2)  # the first link's tries
    core = chain_of(links, rerank_server, refused_url)
    names = []
    link: MemReranker | None = core
    while link is not None:
        names.append(link.name)
        link = link.fallback
    s = Surface(surface, reranker=core)
    caplog.set_level(logging.INFO, logger="memreranker")
    caplog.clear()
    outs = s.run(mode, QUERY, DOCS)
    failed = [n for n, kind in zip(names, links, strict=True) if kind != "ok"]
    warnings = memreranker_warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    message = warnings[0].getMessage()
    if links[-1] == "ok":
        assert not any(o.fallback for o in outs)
        assert sorted(o.index for o in outs) == list(range(len(DOCS)))
        assert f"scored by fallback {names[-1]}" in message
    else:
        assert_fallback(outs, DOCS)
        assert "falling back to original order" in message
    for name, error in zip(failed, ["ServiceError", "ServiceConnectionError"], strict=False):
        assert f"{name}: {error}" in message
    handovers = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and "handing over to fallback" in r.getMessage()
    ]
    assert len(handovers) == len(names) - 1, handovers
    for line, (name, after) in zip(handovers, itertools.pairwise(names), strict=True):
        assert line.startswith(f"MemReranker {name} failed, handing over to fallback {after}:")
    strict_core = chain_of(links, rerank_server, refused_url)
    strict_core.settings.on_error = "raise"
    rerank_server.script(*[memos_error(50000, "internal error")] * 2)
    if links[-1] == "ok":
        assert not any(
            o.fallback for o in Surface(surface, reranker=strict_core).run(mode, QUERY, DOCS)
        )
    else:
        with pytest.raises(ServiceConnectionError):
            Surface(surface, reranker=strict_core).run(mode, QUERY, DOCS)


def test_one_bad_batch_cancels_its_siblings(
    rerank_server: RerankServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Four concurrent requests; the first to arrive fails for good, the others would hang for
    # 10 s. The call falls back at once, and leaves no request of its own running behind it.
    rerank_server.script(vllm_error(400, "bad request"), Hang(10), Hang(10), Hang(10))
    rr = MemReranker(
        "vllm",
        base_url=rerank_server.url,
        max_documents_per_request=1,
        max_concurrency=4,
        **FAST,
    )
    caplog.set_level(logging.WARNING, logger="memreranker")

    async def main() -> tuple[list[Any], list[asyncio.Task[Any]], float]:
        start = time.monotonic()
        results = await rr.arerank(QUERY, DOCS)
        elapsed = time.monotonic() - start
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await rr.aclose()
        return results, left, elapsed

    results, left, elapsed = asyncio.run(main())
    assert [r.index for r in results] == [0, 1, 2, 3] and all(r.is_fallback for r in results)
    assert left == [], f"{len(left)} sibling request(s) still running after the call"
    assert elapsed < 5.0
    assert 1 <= len(rerank_server.requests) <= 4  # siblings may be cancelled before sending
    assert len(memreranker_warnings(caplog)) == 1
