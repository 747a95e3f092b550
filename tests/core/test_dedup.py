"""Identical documents are removed once, in the core, before any backend sees the call."""

from __future__ import annotations

from typing import Any

import pytest
from servers import RerankServer, deterministic_score
from servers.clients import FAST, MODES, rerank

from memreranker import MemReranker
from memreranker.testing import FakeBackend

QUERY = "What does the user drink?"
DOCS = [
    "User drinks green tea.",
    "User lives in Berlin.",
    "User drinks green tea.",
    "User has a dog.",
    "User lives in Berlin.",
    "User drinks green tea.",
]
DISTINCT = ["User drinks green tea.", "User lives in Berlin.", "User has a dog."]


def hosted(server: RerankServer, dialect: str, **options: Any) -> MemReranker:
    key = {"api_key": "k"} if dialect == "memos" else {}
    extra = {"prompt_format": "plain"} if dialect != "memos" else {}
    return MemReranker(
        dialect,
        base_url=server.base_url(dialect),
        on_error="raise",
        **FAST,
        **key,
        **extra,
        **options,
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dialect", ["memos", "vllm", "tei"])
@pytest.mark.parametrize("top_n", [None, 2])
def test_a_hosted_backend_is_sent_each_document_once(
    rerank_server: RerankServer, dialect: str, mode: str, top_n: int | None
) -> None:
    with hosted(rerank_server, dialect) as reranker:
        got = rerank(reranker, mode, QUERY, DOCS, top_n=top_n)
    assert [r.sent_documents for r in rerank_server.requests] == [DISTINCT]
    # Every copy gets its document's score, at its own index; ties keep input order.
    want = sorted(
        ((i, deterministic_score(QUERY, d)) for i, d in enumerate(DOCS)),
        key=lambda pair: (-pair[1], pair[0]),
    )
    assert [(r.index, r.score) for r in got] == want[:top_n]
    assert [r.document for r in got] == [DOCS[i] for i, _ in want[:top_n]]


@pytest.mark.parametrize("mode", MODES)
def test_a_user_backend_is_given_each_document_once(mode: str) -> None:
    fake = FakeBackend({d: s for d, s in zip(DISTINCT, [0.2, 0.9, 0.5], strict=True)})
    got = rerank(MemReranker(backend=fake), mode, QUERY, DOCS)
    assert [call.documents for call in fake.calls] == [tuple(DISTINCT)]
    assert [(r.index, r.score) for r in got] == [
        (1, 0.9),
        (4, 0.9),
        (3, 0.5),
        (0, 0.2),
        (2, 0.2),
        (5, 0.2),
    ]


def test_a_rendered_memory_is_not_merged_with_a_plain_text_that_reads_alike() -> None:
    """``[2026-10-01] tea`` rendered from a date, and the same words typed by the user (no
    date field: scored as plain text), are cut differently: never merged."""
    fake = FakeBackend(lambda query, doc: 0.5)
    reranker = MemReranker(backend=fake, document_template="[{date}] {text}")
    reranker.rerank(QUERY, ["tea", "[2026-10-01] tea"], metadata=[{"date": "2026-10-01"}, None])
    (call,) = fake.calls
    assert call.documents == ("[2026-10-01] tea", "[2026-10-01] tea")


def test_a_fallback_is_given_each_document_once() -> None:
    head = FakeBackend(fail_on=1, name="head")
    tail = FakeBackend(name="tail")
    got = MemReranker(backend=head, fallback=MemReranker(backend=tail)).rerank(QUERY, DOCS)
    assert [c.documents for c in head.calls] == [c.documents for c in tail.calls]
    assert tail.calls[0].documents == tuple(DISTINCT)
    assert sorted(r.index for r in got) == list(range(len(DOCS)))
