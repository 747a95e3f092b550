"""Truncation of a ``document_template`` rendering through sentence-transformers (a BERT
cross-encoder): the memory's own text is cut, the date after it survives, and the pair
scored is that cut text."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from memreranker import MemReranker
from memreranker.document_template import DocumentTemplate, render_documents

TEMPLATE = "{text} (said on {date})"
LONG = "the user talked about their week in great detail . " * 30
QUERY = "does the user drink ?"


def test_cross_encoder_truncation_keeps_the_date(
    tiny_cross_encoder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reranker = MemReranker(
        model=str(tiny_cross_encoder), max_length=64, on_error="raise", document_template=TEMPLATE
    )
    meta = [{"created_at": "2026-10-01T09:30:00+00:00"}, None]
    caplog.set_level(logging.WARNING, logger="memreranker")
    [got] = [r for r in reranker.rerank(QUERY, [LONG, "short"], metadata=meta) if r.index == 0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("1 of 2 document(s)" in w for w in warnings), warnings  # never silent
    engine = reranker.backend.load()  # type: ignore[attr-defined]
    docs = render_documents(DocumentTemplate(TEMPLATE), [LONG], meta[:1])
    engine._fit_rendered(QUERY, docs, engine.prompt(None))
    [fitted] = docs
    assert fitted.endswith(" (said on 2026-10-01)") and LONG.startswith(fitted.text)
    assert len(fitted.text) < len(LONG)
    model = engine.model
    limit = model.max_seq_length
    model.max_seq_length = 1 << 20
    try:
        size = int(model.preprocess([(QUERY, str(fitted))])["attention_mask"].sum())
    finally:
        model.max_seq_length = limit
    assert size <= limit
    # What was scored is that cut text: the same string, given without fields (so scored as
    # it is), scores the same.
    again = reranker.rerank(QUERY, [str(fitted)])[0].score
    assert again == pytest.approx(got.score, abs=1e-6)
    reranker.close()
