"""Hostile and odd input on every surface, sync and async, for every hosted dialect (MemOS,
vLLM, TEI) and local weights: each case gets a clear error naming the argument (in both
``on_error`` modes: a caller mistake is not an outage) or a correct result. Nothing crashes or
hangs (pytest-timeout on every test)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from reliability_kit import (
    MODES,
    SURFACES,
    Out,
    Surface,
    assert_fallback,
    assert_ranked,
    is_probability,
    memreranker_warnings,
    ranking,
)
from servers import RerankServer, Score, deterministic_score

from memreranker import InputTooLongError, MemReranker
from memreranker.http.batching import estimate_tokens

pytestmark = pytest.mark.timeout(60)

QUERY = "What does the user drink?"
DOCS = ["green tea every morning", "a sister in Berlin", "coffee after lunch, never tea"]

UNICODE_DOCS = [
    "用户每天早上喝绿茶",  # CJK
    "ユーザーは朝に緑茶を飲む",
    "사용자는 아침에 녹차를 마신다",
    "the user 🍵☕️ loves tea 👩‍👩‍👧‍👦",  # emoji, ZWJ sequences
    "المستخدم يشرب الشاي الأخضر",  # right-to-left
    "המשתמש שותה תה",
    "mixed \u202eRTL override\u202c and \u200b zero width",
    "control \x00 NUL \x01\x07\x1b[31m escape \x7f and \r\n newlines\ttab",
    "",  # empty document: allowed, scored
    "   ",
    "combining e\u0301 and ﬁ ligature and \ufeff BOM",
]


DIALECTS = ("memos", "vllm", "tei")
KEY = "sk-bad-input-0123456789"


def hosted(server: RerankServer, dialect: str, **options: Any) -> dict[str, Any]:
    return {
        "backend": dialect,
        "api_key": KEY,
        "base_url": server.base_url(dialect),
        "max_retries": 0,
        **options,
    }


def expected(query: str, docs: list[str]) -> list[tuple[int, float]]:
    return ranking([deterministic_score(query, d) for d in docs])


# --- Caller mistakes: a TypeError/ValueError naming the argument ------------------------------

BAD_QUERIES: list[tuple[Any, type[Exception]]] = [
    ("", ValueError),
    ("   \t\n", ValueError),
    (None, (TypeError, ValueError)),  # type: ignore[list-item]  # LlamaIndex: no query bundle
    (42, TypeError),
    (b"tea", TypeError),
    (["tea"], TypeError),
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("on_error", ["fallback", "raise"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_bad_query_is_named(
    rerank_server: RerankServer,
    surface: str,
    mode: str,
    on_error: str,
    dialect: str,
) -> None:
    s = Surface(surface, **hosted(rerank_server, dialect, on_error=on_error))
    for query, kind in BAD_QUERIES:
        with pytest.raises(kind, match="query"):
            s.call(mode, query, s.inputs(DOCS))
    assert rerank_server.requests == []  # nothing was sent


def bad_documents(s: Surface) -> list[tuple[Any, str]]:
    """Malformed ``documents`` for this surface and the name its error must carry."""
    ok = s.inputs(["ok"])[0]
    name = "nodes" if s.kind == "llama_index" else "documents"
    return [
        (None, name),
        ("a string instead of a list", name),
        (b"bytes", name),
        ({"text": "a dict"}, name),
        (42, name),
        ([ok, None], rf"{name}\[1\]"),
        ([ok, 42], rf"{name}\[1\]"),
        ([ok, 4.2], rf"{name}\[1\]"),
        ([ok, {"text": "a dict"}], rf"{name}\[1\]"),
        ([ok, ["nested"]], rf"{name}\[1\]"),
        ([None], rf"{name}\[0\]"),
    ]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("on_error", ["fallback", "raise"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_bad_documents_are_named(
    rerank_server: RerankServer,
    surface: str,
    mode: str,
    on_error: str,
    dialect: str,
) -> None:
    s = Surface(surface, **hosted(rerank_server, dialect, on_error=on_error))
    for documents, name in bad_documents(s):
        with pytest.raises(TypeError, match=name):
            s.call(mode, QUERY, documents)
    assert rerank_server.requests == []


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"top_n": -1}, "top_n"),
        ({"top_n": "3"}, "top_n"),
        ({"top_n": 2.5}, "top_n"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"score_threshold": float("nan")}, "score_threshold"),
        ({"score_threshold": "high"}, "score_threshold"),
    ],
)
@pytest.mark.parametrize("surface", SURFACES)
def test_bad_top_n_and_threshold_are_named(
    rerank_server: RerankServer,
    surface: str,
    options: dict[str, Any],
    name: str,
    dialect: str,
) -> None:
    with pytest.raises((TypeError, ValueError), match=name):
        # Integrations check at construction, the core at the call.
        Surface(surface, **hosted(rerank_server, dialect), **options).run("sync", QUERY, DOCS)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_no_documents_no_call(
    rerank_server: RerankServer, surface: str, mode: str, dialect: str
) -> None:
    s = Surface(surface, **hosted(rerank_server, dialect))
    assert s.run(mode, QUERY, []) == []
    assert rerank_server.requests == []


# --- Size: many documents, long documents, long queries ---------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_ten_thousand_documents_batched(
    rerank_server: RerankServer,
    surface: str,
    mode: str,
    dialect: str,
) -> None:
    rerank_server.default = Score(shuffle=True)
    docs = [
        f"memory {i}: the user drinks {('tea', 'coffee', 'water')[i % 3]}" for i in range(10_000)
    ]
    s = Surface(
        surface,
        **hosted(rerank_server, dialect),
        max_documents_per_request=500,
        max_tokens_per_request=10**7,  # split by count only (tokens: test_http_batching.py)
    )
    outs = s.run(mode, QUERY, docs)
    assert_ranked(outs, expected(QUERY, docs))
    assert len(rerank_server.requests) == 20
    assert [o.text for o in outs] == [docs[o.index] for o in outs]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("mode", MODES)
def test_ten_thousand_documents_top_n(rerank_server: RerankServer, mode: str, dialect: str) -> None:
    docs = [f"memory {i} about tea" for i in range(10_000)]
    s = Surface("core", **hosted(rerank_server, dialect), top_n=10)
    assert_ranked(s.run(mode, QUERY, docs), expected(QUERY, docs)[:10])


@pytest.mark.parametrize("mode", MODES)
def test_many_short_documents_local(tiny_reranker: MemReranker, mode: str) -> None:
    docs = [f"memory {i}: tea" for i in range(300)]
    outs = Surface("core", reranker=tiny_reranker).run(mode, QUERY, docs)
    assert sorted(o.index for o in outs) == list(range(300))
    assert all(is_probability(o.score) for o in outs)
    assert outs == sorted(outs, key=lambda o: (-o.score, o.index))


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_huge_document_truncated_with_a_warning_over_http(
    rerank_server: RerankServer,
    caplog: pytest.LogCaptureFixture,
    surface: str,
    mode: str,
    dialect: str,
) -> None:
    huge = "tea and memories " * 12_000  # 204,000 characters
    docs = ["green tea", huge, "coffee"]
    one_request = hosted(rerank_server, dialect, max_tokens_per_request=100_000)
    s = Surface(surface, **one_request)
    caplog.set_level(logging.WARNING, logger="memreranker")
    caplog.clear()
    outs = s.run(mode, QUERY, docs)
    sent = rerank_server.last.documents  # the caller's texts (inside the template, if any)
    assert sent[0] == "green tea" and sent[2] == "coffee"
    assert huge.startswith(sent[1]) and 0 < len(sent[1]) < len(huge)
    assert estimate_tokens(rerank_server.last.sent_documents[1]) <= 32_000  # as sent
    assert_ranked(outs, expected(QUERY, sent))
    assert outs[[o.index for o in outs].index(1)].text == huge  # the caller's text, uncut
    warnings = memreranker_warnings(caplog)
    assert len(warnings) == 1 and "truncated" in warnings[0].getMessage()


@pytest.mark.parametrize("mode", MODES)
def test_huge_document_local(tiny_reranker: MemReranker, mode: str) -> None:
    huge = "tea and memories " * 12_000
    docs = ["green tea", huge, "coffee"]
    outs = Surface("core", reranker=tiny_reranker).run(mode, QUERY, docs)
    assert sorted(o.index for o in outs) == [0, 1, 2]
    assert all(is_probability(o.score) for o in outs)


LONG_QUERY = "What does the user drink " + "and what else do they like " * 400  # > 2k tokens


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_long_query_truncated_with_a_warning_over_http(
    rerank_server: RerankServer,
    caplog: pytest.LogCaptureFixture,
    surface: str,
    mode: str,
    dialect: str,
) -> None:
    assert estimate_tokens(LONG_QUERY) > 2000
    s = Surface(surface, **hosted(rerank_server, dialect))
    caplog.set_level(logging.WARNING, logger="memreranker")
    caplog.clear()
    outs = s.run(mode, LONG_QUERY, DOCS)
    sent = rerank_server.last.query
    assert LONG_QUERY.startswith(sent) and estimate_tokens(rerank_server.last.sent_query) <= 2000
    assert_ranked(outs, expected(sent, DOCS))
    assert len(memreranker_warnings(caplog)) == 1


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("on_error", ["fallback", "raise"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_long_query_without_truncation_is_a_caller_error(
    rerank_server: RerankServer,
    surface: str,
    mode: str,
    on_error: str,
    dialect: str,
) -> None:
    s = Surface(surface, **hosted(rerank_server, dialect, truncate=False, on_error=on_error))
    with pytest.raises(InputTooLongError, match="max_query_tokens"):
        s.run(mode, LONG_QUERY, DOCS)
    with pytest.raises(InputTooLongError, match="max_document_tokens"):
        s.run(mode, QUERY, ["x" * 200_000])
    assert rerank_server.requests == []


@pytest.mark.parametrize("mode", MODES)
def test_long_query_local(tiny_reranker: MemReranker, mode: str) -> None:
    outs = Surface("core", reranker=tiny_reranker).run(mode, LONG_QUERY, DOCS)
    assert sorted(o.index for o in outs) == [0, 1, 2]
    assert all(is_probability(o.score) for o in outs)


# --- Unicode, control characters, duplicates ---------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_unicode_and_control_characters_over_http(
    rerank_server: RerankServer,
    surface: str,
    mode: str,
    dialect: str,
) -> None:
    rerank_server.default = Score(shuffle=True)
    query = "用户 喝 tea? 🍵 \x00 שותה"
    outs = Surface(surface, **hosted(rerank_server, dialect)).run(mode, query, UNICODE_DOCS)
    assert rerank_server.last.documents == UNICODE_DOCS  # sent byte for byte
    assert rerank_server.last.query == query
    assert_ranked(outs, expected(query, UNICODE_DOCS))
    assert [o.text for o in outs] == [UNICODE_DOCS[o.index] for o in outs]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_unicode_and_control_characters_local(
    tiny_reranker: MemReranker, surface: str, mode: str
) -> None:
    query = "用户 喝 tea? 🍵 \x00 שותה"
    outs = Surface(surface, reranker=tiny_reranker).run(mode, query, UNICODE_DOCS)
    assert sorted(o.index for o in outs) == list(range(len(UNICODE_DOCS)))
    assert all(is_probability(o.score) for o in outs)
    again = Surface("core", reranker=tiny_reranker).run("sync", query, UNICODE_DOCS)
    assert [(o.index, o.score) for o in outs] == [
        (o.index, pytest.approx(o.score, abs=1e-6)) for o in again
    ]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("surface", SURFACES)
def test_duplicates_each_returned_once_in_input_order(
    rerank_server: RerankServer,
    tiny_reranker: MemReranker,
    surface: str,
    mode: str,
    dialect: str,
) -> None:
    docs = ["tea", "coffee", "tea", "tea", "coffee", "water"]
    for s in (
        Surface(surface, **hosted(rerank_server, dialect)),
        Surface(surface, reranker=tiny_reranker),
    ):
        outs = s.run(mode, QUERY, docs)
        assert sorted(o.index for o in outs) == list(range(len(docs)))
        assert_ties_in_input_order(outs)
        by_index = {o.index: o.score for o in outs}
        assert by_index[0] == by_index[2] == by_index[3]
        assert by_index[1] == by_index[4]


def assert_ties_in_input_order(outs: list[Out]) -> None:
    assert [(o.score, o.index) for o in outs] == sorted(
        ((o.score, o.index) for o in outs), key=lambda p: (-p[0], p[1])
    )


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("mode", MODES)
def test_lone_surrogate_cannot_be_sent_and_falls_back(
    rerank_server: RerankServer,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    dialect: str,
) -> None:
    # Not valid Unicode: it cannot be encoded to UTF-8 for the request. A failure to score,
    # absorbed by the fallback like any other (documented, not a crash or a hang).
    docs = ["ok", "lone \ud800 surrogate"]
    s = Surface("core", **hosted(rerank_server, dialect))
    caplog.set_level(logging.WARNING, logger="memreranker")
    assert_fallback(s.run(mode, QUERY, docs), docs)
    assert "UnicodeEncodeError" in memreranker_warnings(caplog)[0].getMessage()


DEEP = "[" * 100_000 + "]" * 100_000


def deep_replies() -> list[Any]:
    from servers import Reply

    just_parseable = "[" * 900 + "0" + "]" * 900  # parsed, then described in the error
    return [
        Reply(200, DEEP),
        Reply(200, '{"results": ' + DEEP + "}"),
        Reply(200, '{"results": [{"index": ' + just_parseable + ', "relevance_score": 0.5}]}'),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dialect", ["vllm", "tei"])
def test_a_deeply_nested_reply_is_an_invalid_response(
    rerank_server: RerankServer, dialect: str, mode: str
) -> None:
    """Not a RecursionError wrapped as a status-less InferenceError: the reply is the
    server's fault, typed as such, with its status; with fallback, the original order."""
    from memreranker import InvalidResponseError, MemRerankerError

    strict = Surface("core", **hosted(rerank_server, dialect, on_error="raise"),
                     circuit_failure_threshold=0)  # fmt: skip
    lenient = Surface("core", **hosted(rerank_server, dialect), circuit_failure_threshold=0)
    for reply in deep_replies():
        rerank_server.default = reply
        with pytest.raises(MemRerankerError) as info:
            strict.run(mode, QUERY, DOCS)
        assert isinstance(info.value, InvalidResponseError), repr(info.value)
        assert info.value.status == 200
        assert_fallback(lenient.run(mode, QUERY, DOCS), DOCS)
    strict.close()
    lenient.close()
