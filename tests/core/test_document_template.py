"""``document_template`` and opt-in recency in the core: what reaches a backend, and the order.

The texts a backend receives are read from the loopback vLLM-style server's recorded
requests (``prompt_format="plain"``: sent as given) and, for local weights, from the scores
of the tiny model and the engine's own prompt ids. Scores of the server are chosen by the test
(``Score(model=...)``), so the recency order can be computed here from the formula.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from servers.memories import (
    CREATED,
    HALF_LIFE,
    MEMORIES,
    MEMORY,
    QUERY,
    RENDERED,
    by_text,
    expected_order,
    fields,
)
from servers.rerank_server import RerankServer, Score

from memreranker import MemReranker
from memreranker.document_template import (
    DEFAULT_DATE_FIELDS,
    DocumentTemplate,
    memory_date,
    render_documents,
)

FAST: dict[str, Any] = {"timeout": 5.0, "max_retries": 0}


def served(server: RerankServer, **settings: Any) -> MemReranker:
    return MemReranker(
        "vllm",
        base_url=server.url,
        model="m",
        prompt_format="plain",
        on_error="raise",
        **FAST,
        **settings,
    )


def memreranker_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("memreranker") and r.levelno >= logging.WARNING
    ]


# --- The template ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "[{date] {text}",  # unclosed
        "{text} }",  # single closing brace
        "[{}] {text}",  # positional
        "[{0}] {text}",
        "[{meta.date}] {text}",  # attribute access
        "[{meta[0]}] {text}",
        "[{date}]",  # no {text}
        "{text} {text}",  # {text} twice
        "{text!r}",  # a conversion on the part truncation cuts
        "{text:>20}",
        "{date:{width}} {text}",  # nested
    ],
)
def test_bad_template_is_a_value_error_at_construction(template: str) -> None:
    with pytest.raises(ValueError, match="document_template"):
        MemReranker("vllm", base_url="http://127.0.0.1:1", document_template=template)


def test_template_type_and_recency_settings_are_checked() -> None:
    with pytest.raises(TypeError, match="document_template"):
        MemReranker("vllm", base_url="http://127.0.0.1:1", document_template=3)
    for bad in ({"recency_weight": 1.0}, {"recency_weight": -0.1}, {"recency_half_life": 0}):
        with pytest.raises(ValueError, match="recency"):
            MemReranker("vllm", base_url="http://127.0.0.1:1", **bad)
    with pytest.raises(ValueError, match="date_fields"):
        MemReranker("vllm", base_url="http://127.0.0.1:1", date_fields="created_at")
    settings = MemReranker("vllm", base_url="http://x", recency_half_life=timedelta(hours=1))
    assert settings.settings.recency_half_life == 3600.0


def test_sent_text_is_the_rendered_memory_and_the_query_is_untouched(
    rerank_server: RerankServer, caplog: pytest.LogCaptureFixture
) -> None:
    reranker = served(rerank_server, document_template="[{date}] {text}")
    docs = [MEMORY, "User likes tea.", "User has a dog."]
    metadata = [{"created_at": CREATED}, None, {"created_at": None, "source": "chat"}]
    caplog.set_level(logging.WARNING, logger="memreranker")
    results = reranker.rerank(QUERY, docs, metadata=metadata)
    [request] = rerank_server.requests
    assert request.sent_documents == [RENDERED, "User likes tea.", "User has a dog."]
    assert request.sent_query == QUERY  # the template is never applied to the query
    # Results carry the caller's text; one warning counts the memories scored plain.
    assert sorted(r.document for r in results) == sorted(docs)
    [warning] = memreranker_warnings(caplog)
    assert "2 of 3 document(s)" in warning and "plain text" in warning
    assert all("None" not in d for d in request.sent_documents)


def test_fields_by_name_and_dates_of_every_kind(rerank_server: RerankServer) -> None:
    reranker = served(rerank_server, document_template="{speaker} on {date}: {text} ({source})")
    docs = ["a", "b", "c", "d", "e"]
    metadata = [
        {"speaker": "Ann", "source": "chat", "created_at": datetime(2026, 10, 1, 23, 59)},
        {"speaker": "Bob", "source": "mail", "date": date(2025, 1, 2)},
        {"speaker": "Cy", "source": "sms", "updated_at": "2024-02-29T08:00:00Z"},
        # The calendar date as written: not moved to UTC.
        {"speaker": "Di", "source": "app", "created_at": "2026-10-01T23:30:00-07:00"},
        {"speaker": "Ed", "source": "x", "created_at": "not a date"},  # no date: plain
    ]
    reranker.rerank(QUERY, docs, metadata=metadata)
    assert rerank_server.requests[-1].sent_documents == [
        "Ann on 2026-10-01: a (chat)",
        "Bob on 2025-01-02: b (mail)",
        "Cy on 2024-02-29: c (sms)",
        "Di on 2026-10-01: d (app)",
        "e",
    ]


def test_date_is_read_from_the_fields_in_order(rerank_server: RerankServer) -> None:
    both = {"created_at": CREATED, "updated_at": "2026-12-24T10:00:00+00:00"}
    assert DEFAULT_DATE_FIELDS == ("date", "created_at", "updated_at")
    assert memory_date(both) == "2026-10-01"  # created_at before updated_at
    assert memory_date({"date": "2020-05-05", **both}) == "2020-05-05"
    assert memory_date({"updated_at": "2026-12-24T10:00:00+00:00"}) == "2026-12-24"
    reranker = served(rerank_server, document_template="[{date}] {text}")
    reranker.rerank(QUERY, [MEMORY], metadata=[both])
    assert rerank_server.requests[-1].sent_documents == [RENDERED]
    custom = served(rerank_server, document_template="[{date}] {text}", date_fields=["updated_at"])
    custom.rerank(QUERY, [MEMORY], metadata=[both])
    assert rerank_server.requests[-1].sent_documents == ["[2026-12-24] User stopped drinking."]


def test_template_unset_sends_the_documents_as_given(rerank_server: RerankServer) -> None:
    docs = [MEMORY, "User likes tea."]
    plain = served(rerank_server)
    got = plain.rerank(QUERY, docs, metadata=[{"created_at": CREATED}, None])
    assert rerank_server.requests[-1].sent_documents == docs
    assert got == plain.rerank(QUERY, docs)
    assert render_documents(None, docs, None) == docs


def test_metadata_is_checked(rerank_server: RerankServer) -> None:
    reranker = served(rerank_server, document_template="[{date}] {text}")
    with pytest.raises(ValueError, match="metadata"):
        reranker.rerank(QUERY, ["a", "b"], metadata=[None])
    with pytest.raises(TypeError, match=r"metadata\[1\]"):
        reranker.rerank(QUERY, ["a", "b"], metadata=[None, "created_at"])
    with pytest.raises(TypeError, match="metadata"):
        reranker.rerank(QUERY, ["a"], metadata={"created_at": CREATED})
    with pytest.raises(TypeError, match="now"):
        reranker.rerank(QUERY, ["a"], now="2026-10-01")
    assert rerank_server.requests == []


def test_a_field_value_the_spec_rejects_is_scored_plain(rerank_server: RerankServer) -> None:
    reranker = served(rerank_server, document_template="#{n:03d} {text}")
    reranker.rerank(QUERY, ["a", "b"], metadata=[{"n": 7}, {"n": "seven"}])
    assert rerank_server.requests[-1].sent_documents == ["#007 a", "b"]


# --- Truncation counts the rendered text and cuts the memory's own text only ---------------


@pytest.mark.parametrize("template", ["[{date}] {text}", "{text} (said on {date})"])
def test_http_truncation_keeps_the_date(rerank_server: RerankServer, template: str) -> None:
    reranker = served(rerank_server, document_template=template, max_document_tokens=20)
    long = "The user talked about their week in great detail. " * 10
    reranker.rerank(QUERY, [long, "short"], metadata=[{"created_at": CREATED}] * 2)
    sent = rerank_server.requests[-1].sent_documents
    head, tail = template.split("{text}")
    for doc, text in zip(sent, [long, "short"], strict=True):
        prefix = head.replace("{date}", "2026-10-01")
        suffix = tail.replace("{date}", "2026-10-01")
        assert doc.startswith(prefix) and doc.endswith(suffix), doc
        assert text.startswith(doc[len(prefix) : len(doc) - len(suffix)])
    assert len(sent[0]) < len(long)  # it was cut
    assert sent[1] == f"{head}short{tail}".replace("{date}", "2026-10-01")


@pytest.fixture(scope="module")
def local(tiny_model: Path) -> Any:
    reranker = MemReranker(
        model=str(tiny_model),
        max_length=160,
        on_error="raise",
        document_template="[{date}] {text}",
    )
    reranker.load()
    yield reranker
    reranker.close()


def test_local_prompt_is_the_rendered_memory(local: MemReranker) -> None:
    got = local.rerank(QUERY, [MEMORY, "User likes tea."], metadata=[{"created_at": CREATED}, None])
    # The same text given plain (no date: the template falls back to the text as it is).
    want = local.rerank(QUERY, [RENDERED, "User likes tea."])
    assert [(r.index, r.score) for r in got] == [(r.index, r.score) for r in want]
    assert got[0].document in (MEMORY, "User likes tea.")
    assert asyncio.run(local.arerank(QUERY, [MEMORY], metadata=[{"created_at": CREATED}]))[
        0
    ].score == pytest.approx(local.rerank(QUERY, [RENDERED])[0].score, abs=1e-6)


@pytest.mark.parametrize("engine_kind", ["prefix", "batched"])
@pytest.mark.parametrize("template", ["[{date}] {text}", "{text} (said on {date})"])
def test_local_truncation_keeps_the_date(
    local: MemReranker, caplog: pytest.LogCaptureFixture, engine_kind: str, template: str
) -> None:
    engine = local.backend.load()  # type: ignore[attr-defined]
    recipe = engine._recipe if engine_kind == "prefix" else engine
    tok = recipe.loaded.tokenizer
    long = "The user talked about their week in great detail. " * 20
    docs = render_documents(
        DocumentTemplate(template), [long, "short"], [{"created_at": CREATED}] * 2
    )
    caplog.set_level(logging.WARNING, logger="memreranker")
    prompts = (engine if engine_kind == "prefix" else recipe).encode(QUERY, docs, None)
    assert all(len(p) <= 160 for p in prompts)
    text = tok.decode(prompts[0])
    body = text.split("<Document>: ", 1)[1].split("<|im_end|>", 1)[0]
    head, tail = (part.replace("{date}", "2026-10-01") for part in template.split("{text}"))
    assert body.startswith(head) and body.endswith(tail), body
    assert long.startswith(body[len(head) : len(body) - len(tail)])
    assert len(body) < len(long)
    [warning] = memreranker_warnings(caplog)  # truncation is never silent
    assert "1 of 2 document(s)" in warning


# --- Recency ----------------------------------------------------------------------------------

NOW = datetime(2026, 10, 8, 12, 0, tzinfo=timezone.utc)


def metadata() -> list[dict[str, Any] | None]:
    return fields(NOW)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_recency_order_is_the_formula(rerank_server: RerankServer, mode: str) -> None:
    rerank_server.default = Score(model=by_text)
    reranker = served(rerank_server, recency_weight=0.4, recency_half_life=HALF_LIFE)
    docs = list(MEMORIES)
    if mode == "sync":
        results = reranker.rerank(QUERY, docs, metadata=metadata(), now=NOW)
    else:
        results = asyncio.run(reranker.arerank(QUERY, docs, metadata=metadata(), now=NOW))
    want = expected_order(0.4, NOW)
    assert [r.document for r in results] == [text for text, _, _ in want]
    assert [r.score for r in results] == [score for _, score, _ in want]  # P(yes) unchanged
    assert [r.rank_score for r in results] == pytest.approx([key for _, _, key in want])
    # The order differs from P(yes) alone: recency really moved it.
    assert [r.document for r in results] != [t for t, _, _ in expected_order(0.0, NOW)]


def test_recency_naive_now_is_utc_and_default_now_is_the_current_time(
    rerank_server: RerankServer,
) -> None:
    rerank_server.default = Score(model=by_text)
    reranker = served(rerank_server, recency_weight=0.4, recency_half_life=HALF_LIFE)
    docs = list(MEMORIES)
    naive = reranker.rerank(QUERY, docs, metadata=metadata(), now=NOW.replace(tzinfo=None))
    want = expected_order(0.4, NOW)
    assert [r.rank_score for r in naive] == pytest.approx([k for _, _, k in want])
    current = datetime.now(timezone.utc)
    got = reranker.rerank(QUERY, docs, metadata=fields(current))  # no now=: the current time
    want = expected_order(0.4, current)
    assert [r.document for r in got] == [t for t, _, _ in want]
    assert [r.rank_score for r in got] == pytest.approx([k for _, _, k in want], rel=1e-3)


def test_score_threshold_applies_to_p_yes_not_the_rank_score(rerank_server: RerankServer) -> None:
    rerank_server.default = Score(model=by_text)
    reranker = served(rerank_server, recency_weight=0.9, recency_half_life=HALF_LIFE)
    results = reranker.rerank(
        QUERY, list(MEMORIES), metadata=metadata(), now=NOW, score_threshold=0.5, top_n=3
    )
    want = expected_order(0.9, NOW, threshold=0.5)[:3]
    assert [r.document for r in results] == [t for t, _, _ in want]
    assert all(r.score >= 0.5 for r in results)
    # "from the future" has the best rank score (recency 1) but P(yes) 0.2: dropped.
    assert "from the future" not in [r.document for r in results]


def test_recency_ties_keep_input_order(rerank_server: RerankServer) -> None:
    rerank_server.default = Score(model=lambda q, d: 0.5)
    reranker = served(rerank_server, recency_weight=0.5)
    same = {"created_at": CREATED}
    results = reranker.rerank(QUERY, ["a", "b", "c", "d"], metadata=[same, None, same, None])
    assert [r.document for r in results] == ["a", "c", "b", "d"]


def test_recency_off_is_byte_identical(rerank_server: RerankServer) -> None:
    rerank_server.default = Score(model=by_text)
    docs = list(MEMORIES)
    before = served(rerank_server).rerank(QUERY, docs)
    off = served(rerank_server, recency_weight=0.0).rerank(
        QUERY, docs, metadata=metadata(), now=NOW
    )
    assert off == before
    assert repr(off) == repr(before)
    assert all(r.rank_score == r.score for r in off)


def test_fallback_keeps_the_original_order_without_recency(refused_url: str) -> None:
    reranker = MemReranker(
        "vllm",
        base_url=refused_url,
        model="m",
        recency_weight=0.9,
        document_template="[{date}] {text}",
        **FAST,
    )
    docs = list(MEMORIES)
    results = reranker.rerank(QUERY, docs, metadata=metadata(), now=NOW)
    assert [r.document for r in results] == docs
    assert all(r.is_fallback and r.score == 0.0 and r.rank_score == 0.0 for r in results)
