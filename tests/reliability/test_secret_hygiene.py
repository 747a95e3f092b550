"""A distinctive API key never shows: not in logs (DEBUG, every logger), exception text (str,
repr, tracebacks, chained causes and contexts), ``repr``, pydantic serialisation, LangChain's
``dumps`` or LlamaIndex's ``to_dict``/``to_json``, on every surface, sync and async, including
when the server echoes the ``Authorization`` header back in its error bodies and when the
circuit breaker quotes the last error."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import pytest
from langchain_core.load import dumps
from reliability_kit import MODES, SURFACES, Surface
from servers import (
    Drop,
    Reply,
    RerankServer,
    Score,
    memos_error,
    refused_port,
    running_server,
    vllm_error,
)

from memreranker import MemReranker, MemRerankerError, RerankerSettings

pytestmark = pytest.mark.timeout(30)

KEY = "sk-ZEBRA-7f3a9c1e5b2d4-do-not-leak"
QUERY = "What does the user drink?"
DOCS = ["green tea every morning", "a sister in Berlin", "coffee after lunch"]
QUICK = {"timeout": 1.0, "max_retries": 1, "retry_backoff": 0.001, "retry_backoff_max": 0.002}


def echoes(scheme: str) -> list[Any]:
    """Replies of servers that quote the Authorization header (or the key) back."""
    header = f"{scheme} {KEY}"
    return [
        Reply(401, {"error": {"message": f"invalid header 'Authorization: {header}'"}}),
        memos_error(40132, f"API key {KEY} invalid or expired"),
        Reply(403, f"<html><pre>Authorization: {header}</pre></html>"),  # a proxy page
        Reply(503, {"detail": {"headers": {"authorization": header}}}),  # retried, then fails
        Reply(200, f"not json, but {header}".encode()),
        Reply(200, {"code": 40000, "message": f"bad request from {header}"}),
        Reply(200, {"results": [{"index": KEY, "relevance_score": 0.5}]}),
        Reply(200, {KEY: "an unexpected envelope keyed by the key"}),
        Score(mutate=lambda body, request: {"results": [{"index": 0, "relevance_score": KEY}]}),
        Drop(partial=f'{{"echo": "{header}", "resu'.encode()),
    ]


def exception_texts(error: BaseException) -> list[str]:
    """str, repr, args, attributes and the formatted traceback of ``error`` and of every
    exception chained to it, as tracebacks and error trackers follow the chain: the
    ``__cause__``, else the ``__context__`` unless suppressed (``raise ... from None``)."""
    texts: list[str] = []
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        exc = stack.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        texts += [str(exc), repr(exc), *map(repr, exc.args), *map(str, vars(exc).values())]
        texts.append("".join(traceback.format_exception(exc)))
        stack.append(exc.__cause__)
        if not exc.__suppress_context__:
            stack.append(exc.__context__)
    return texts


def object_texts(obj: Any) -> list[str]:
    """Every rendering of a reranker object the surfaces offer."""
    texts = [repr(obj), str(obj)]
    if hasattr(obj, "model_dump"):
        texts += [
            str(obj.model_dump()),
            str(obj.model_dump(mode="json")),
            obj.model_dump_json(),
            str(type(obj).model_json_schema()),
        ]
    if hasattr(obj, "to_dict"):  # LlamaIndex
        texts += [str(obj.to_dict()), obj.to_json()]
    if hasattr(obj, "lc_secrets"):  # LangChain
        texts += [dumps(obj), dumps(obj, pretty=True), str(obj.to_json())]
    core = obj if isinstance(obj, MemReranker) else obj.reranker
    backend = core.backend
    texts += [repr(core), repr(core.settings), str(core.settings), core.settings.model_dump_json()]
    texts += [repr(backend), repr(getattr(backend, "circuit", None))]
    return texts


def surface_settings(server: RerankServer, surface: str, dialect: str) -> dict[str, Any]:
    base_url = server.memos_base_url if dialect == "memos" else server.url
    return {"backend": dialect, "api_key": KEY, "base_url": base_url, **QUICK}


@pytest.mark.parametrize("dialect", ["memos", "vllm"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_key_never_leaks(
    rerank_server: RerankServer,
    caplog: pytest.LogCaptureFixture,
    surface: str,
    mode: str,
    dialect: str,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, urllib3, httpx, httpcore...
    settings = surface_settings(rerank_server, surface, dialect)
    lenient = Surface(surface, **settings, circuit_failure_threshold=3, circuit_cooldown=30.0)
    strict = Surface(surface, **settings, on_error="raise", circuit_failure_threshold=0)
    texts = object_texts(lenient.obj) + object_texts(strict.obj)

    scheme = "Token" if dialect == "memos" else "Bearer"
    for behaviour in echoes(scheme):
        rerank_server.default = behaviour
        with pytest.raises(MemRerankerError) as info:
            strict.run(mode, QUERY, DOCS)
        texts += exception_texts(info.value)
        outs = lenient.run(mode, QUERY, DOCS)
        assert all(o.fallback for o in outs)
        if surface == "core":
            raw = lenient.call(mode, QUERY, DOCS)
            texts += [repr(r) for r in raw] + [r.fallback_reason or "" for r in raw]
        texts += [repr(o) for o in outs]
    # The lenient one's circuit opened: its error and warning quote the last (echoed) error.
    assert lenient.core.circuit_state == "open"
    texts += object_texts(lenient.obj)
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    texts.append(caplog.text)

    leaks = [text for text in texts if KEY in text]
    assert not leaks, leaks[:3]
    assert any("***" in text for text in texts)  # scrubbed where echoed, not silently lost
    # The key did travel, where it belongs: the Authorization header.
    assert rerank_server.requests[0].headers["authorization"] == f"{scheme} {KEY}"
    lenient.close()
    strict.close()


@pytest.mark.parametrize("mode", MODES)
def test_key_from_the_environment_never_leaks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MEMOS_API_KEY", KEY)
    with running_server(api_key="another-key") as server:  # wrong key: 40132 replies
        texts: list[str] = []
        for surface in SURFACES:
            s = Surface(surface, backend="memos", base_url=server.memos_base_url, **QUICK)
            texts += object_texts(s.obj)
            assert all(o.fallback for o in s.run(mode, QUERY, DOCS))
            s.close()
    texts.append(caplog.text)
    assert not [t for t in texts if KEY in t]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_credentials_in_the_url_never_reach_logs_or_errors(
    caplog: pytest.LogCaptureFixture, surface: str, mode: str
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://user:{KEY}@127.0.0.1:{refused_port()}"
    strict = Surface(surface, backend="vllm", base_url=url, on_error="raise", **QUICK)
    with pytest.raises(MemRerankerError) as info:
        strict.run(mode, QUERY, DOCS)
    texts = [*exception_texts(info.value), caplog.text]
    texts += [repr(strict.core), repr(strict.core.backend), str(strict.core.backend.circuit)]
    assert not [t for t in texts if KEY in t]
    assert "http://***@127.0.0.1" in str(info.value)
    # Not covered: base_url is a plain setting, kept verbatim by repr and model_dump (it must
    # survive dumps/loads); put the key in api_key, which is a SecretStr and never serialised.


def test_settings_serialisation_never_holds_the_key() -> None:
    settings = RerankerSettings(backend="memos", api_key=KEY)
    assert settings.api_key is not None and settings.api_key.get_secret_value() == KEY
    for text in (
        repr(settings),
        str(settings.model_dump()),
        settings.model_dump_json(),
        str(settings.model_dump(mode="json")),
        str(settings.core_settings()),
    ):
        assert KEY not in text
    with pytest.raises(ValueError) as info:
        RerankerSettings(backend="memos", api_key=KEY, timeout=-1)
    assert KEY not in str(info.value)


@pytest.mark.parametrize("surface", ["langchain", "llama_index"])
def test_validation_errors_never_echo_the_key(surface: str) -> None:
    with pytest.raises(ValueError) as info:
        Surface(surface, backend="memos", api_key=KEY, timeout=-1)
    assert KEY not in "".join(exception_texts(info.value))


def test_vllm_error_body_quoting_the_key_raises_scrubbed(rerank_server: RerankServer) -> None:
    rerank_server.default = vllm_error(500, f"upstream said: Bearer {KEY}")
    rr = MemReranker(
        "vllm", base_url=rerank_server.url, api_key=KEY, on_error="raise", max_retries=0
    )
    with pytest.raises(MemRerankerError) as info:
        rr.rerank(QUERY, DOCS)
    assert info.value.message == "upstream said: Bearer ***"


def straddling(dialect: str) -> list[Reply]:
    """Error bodies, not JSON or without a message, whose key straddles the 500th byte."""
    head = "x" * (500 - 8)
    return [
        Reply(500, f"{head}{KEY} proxy error page".encode()),
        Reply(500, {"error": {"detail": head + KEY}}),  # no message: the object is quoted
        Reply(200, f"{head}{KEY} not json".encode()),  # a 2xx reply that is not JSON
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dialect", ["vllm", "tei"])
def test_a_key_straddling_the_cut_of_an_error_body_shows_no_fragment(
    rerank_server: RerankServer, dialect: str, mode: str
) -> None:
    core = Surface(
        "core", backend=dialect, api_key=KEY, base_url=rerank_server.base_url(dialect),
        on_error="raise", max_retries=0, circuit_failure_threshold=0,
    )  # fmt: skip
    for reply in straddling(dialect):
        rerank_server.default = reply
        with pytest.raises(MemRerankerError) as info:
            core.run(mode, QUERY, DOCS)
        texts = exception_texts(info.value)
        assert not [t for t in texts if KEY[:5] in t], info.value  # not even "sk-ZE"
        assert "xxx" in str(info.value)  # the body is quoted, cut
    core.close()


def test_scrub_takes_the_key_out_before_cutting_and_a_key_head_at_the_cut() -> None:
    from memreranker.http.protocol import scrub

    straddled = scrub("x" * 495 + KEY + " and more", KEY)
    assert KEY[:3] not in straddled and straddled.startswith("x" * 495 + "***")
    cut_short = scrub("x" * 490 + KEY[:20] + "y" * 40, KEY)  # a text holding the key cut
    assert cut_short == "x" * 490 + "..." and KEY[:1] not in cut_short
    assert scrub("short " + KEY[:10], KEY) == "short " + KEY[:10]  # no cut: nothing to guess


NON_ASCII_KEY = "sk-clé-ZEBRA-secret"


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("dialect", ["memos", "vllm", "tei"])
def test_a_non_ascii_key_is_refused_at_construction_without_echoing_it(
    rerank_server: RerankServer, surface: str, dialect: str
) -> None:
    """It would be accepted, then every call would fail with an encoding error whose
    chained cause holds "Bearer <key>"."""
    with pytest.raises(ValueError, match="ASCII") as info:
        Surface(surface, backend=dialect, api_key=NON_ASCII_KEY,
                base_url=rerank_server.base_url(dialect))  # fmt: skip
    texts = exception_texts(info.value)
    assert not [t for t in texts if "ZEBRA" in t or NON_ASCII_KEY in t]


def test_a_non_ascii_memos_key_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, rerank_server: RerankServer
) -> None:
    monkeypatch.setenv("MEMOS_API_KEY", NON_ASCII_KEY)
    with pytest.raises(ValueError, match="ASCII") as info:
        MemReranker("memos", base_url=rerank_server.memos_base_url)
    assert not [t for t in exception_texts(info.value) if "ZEBRA" in t]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dialect", ["vllm", "tei"])
def test_vllm_and_tei_never_send_the_memos_key(
    monkeypatch: pytest.MonkeyPatch, rerank_server: RerankServer, dialect: str, mode: str
) -> None:
    """$MEMOS_API_KEY is the MemOS cloud's: a key for one service must not travel to
    another (a self-hosted server, a proxy) that was given none."""
    monkeypatch.setenv("MEMOS_API_KEY", KEY)
    core = Surface("core", backend=dialect, base_url=rerank_server.base_url(dialect),
                   on_error="raise")  # fmt: skip
    assert not any(o.fallback for o in core.run(mode, QUERY, DOCS))
    core.close()
    assert rerank_server.requests
    for request in rerank_server.requests:
        assert "authorization" not in request.headers
        assert KEY not in request.raw.decode()
