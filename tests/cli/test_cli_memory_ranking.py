"""``memreranker rerank`` over object documents (JSON list, JSON Lines) with
``--document-template`` and ``--recency-weight``: the texts the loopback server gets, and
the order (the formula of tests/servers/memories.py), through ``main(argv)``."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from servers.memories import (
    CREATED,
    MEMORY,
    QUERY,
    RENDERED,
    TEXTS,
    WEIGHT,
    by_text,
    expected_order,
    fields,
)
from servers.rerank_server import RerankServer, Score

from memreranker.cli import main

pytestmark = pytest.mark.timeout(60)


def vllm(server: RerankServer) -> list[str]:
    return ["--backend", "vllm", "--base-url", server.url, "--model", "m", "--timeout", "5"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_object_documents_render_through_the_template(
    rerank_server: RerankServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    docs = [{"text": MEMORY, "created_at": CREATED}, "User likes tea.", {"memory": "a dog"}]
    path = tmp_path / f"docs.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(docs), encoding="utf-8")
    else:
        path.write_text("\n".join(json.dumps(d) for d in docs) + "\n\n", encoding="utf-8")
    status, out, _ = run(
        capsys,
        "rerank",
        "-q",
        QUERY,
        "-d",
        str(path),
        "--json",
        "--document-template",
        "[{date}] {text}",
        *vllm(rerank_server),
    )
    assert status == 0
    # vllm's default prompt_format is qwen3: the server takes the template off again.
    assert rerank_server.requests[-1].pair.documents == [RENDERED, "User likes tea.", "a dog"]
    rows = json.loads(out)
    assert sorted(r["document"] for r in rows) == sorted([MEMORY, "User likes tea.", "a dog"])
    assert all("rank_score" not in r for r in rows)
    if fmt == "jsonl":
        assert sorted(r["line"] for r in rows) == [1, 2, 3]


def test_recency_order_is_the_formula(
    rerank_server: RerankServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rerank_server.default = Score(model=by_text)
    now = datetime.now(timezone.utc)
    docs = [{"text": t, **(f or {})} for t, f in zip(TEXTS, fields(now), strict=True)]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in docs), encoding="utf-8")
    status, out, _ = run(
        capsys,
        "rerank",
        "-q",
        QUERY,
        "-d",
        str(path),
        "--json",
        "--top-n",
        "4",
        "--recency-weight",
        str(WEIGHT),
        "--recency-half-life",
        str(2 * 86400),
        *vllm(rerank_server),
    )
    assert status == 0
    rows = json.loads(out)
    want = expected_order(WEIGHT, now)[:4]
    assert [r["document"] for r in rows] == [text for text, _, _ in want]
    assert [r["score"] for r in rows] == [score for _, score, _ in want]
    assert [r["rank_score"] for r in rows] == pytest.approx([k for _, _, k in want], rel=1e-3)


def test_bad_inputs_are_usage_errors(
    rerank_server: RerankServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "a"}\n{"title": "no text"}\n', encoding="utf-8")
    status, _, err = run(capsys, "rerank", "-q", QUERY, "-d", str(path), *vllm(rerank_server))
    assert status == 2 and "line 2" in err and '"text"' in err
    path.write_text('{"text": "a"}\n', encoding="utf-8")
    status, _, err = run(
        capsys,
        "rerank",
        "-q",
        QUERY,
        "-d",
        str(path),
        "--document-template",
        "{date}",
        *vllm(rerank_server),
    )
    assert status == 2 and "document-template" in err
    status, _, err = run(
        capsys,
        "rerank",
        "-q",
        QUERY,
        "-d",
        str(path),
        "--recency-weight",
        "1",
        *vllm(rerank_server),
    )
    assert status == 2 and "recency-weight" in err
    assert rerank_server.requests == []
