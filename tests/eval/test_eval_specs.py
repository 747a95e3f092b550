"""``--reranker SPEC``: parsing, and building an ordinary MemReranker from it."""

from __future__ import annotations

import pytest

from memreranker import MemReranker
from memreranker.eval import RerankerSpec, parse_spec

HUB = "IAAR-Shanghai/MemReranker-4B"
VLLM = "vllm:MemReranker-4B@http://localhost:8000"
TEI = "tei:http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("spec", "name", "backend", "model", "base_url"),
    [
        (f"local:{HUB}", f"local:{HUB}", "local", HUB, None),
        ("local:/models/my ckpt", "local:/models/my ckpt", "local", "/models/my ckpt", None),
        ("memos:memos-reranker-4b", "memos:memos-reranker-4b", "memos", "memos-reranker-4b", None),
        ("memos:", "memos:", "memos", None, None),
        (VLLM, VLLM, "vllm", "MemReranker-4B", "http://localhost:8000"),
        (TEI, TEI, "tei", None, "http://127.0.0.1:8080"),
        ("4b=local:/w", "4b", "local", "/w", None),
        ("bge=tei:https://tei.internal/rerank?x=1", "bge", "tei", None,
         "https://tei.internal/rerank?x=1"),
        # An "=" inside the spec (not a NAME= prefix) belongs to the spec.
        ("local:/w=1", "local:/w=1", "local", "/w=1", None),
    ],
)
def test_specs_parse(
    spec: str, name: str, backend: str, model: str | None, base_url: str | None
) -> None:
    assert parse_spec(spec) == RerankerSpec(name, backend, model, base_url)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("MemReranker-4B", "expected local:PATH_OR_HUB_ID"),
        ("local:", "local: needs a directory or Hub id"),
        ("vllm:MemReranker-4B", "expected vllm:MODEL@URL"),
        ("vllm:@http://x", "expected vllm:MODEL@URL"),
        ("vllm:m@localhost:8000", "expected vllm:MODEL@URL"),
        ("tei:", "expected tei:URL"),
        ("cohere:rerank-v3", "unknown backend 'cohere'"),
        ("first-stage=local:/w", "the name 'first-stage' is the baseline's"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_specs_build_ordinary_rerankers(monkeypatch: pytest.MonkeyPatch) -> None:
    local = parse_spec("local:/weights").build(device="cpu", on_error="raise")
    assert isinstance(local, MemReranker) and local.name == "local:/weights"
    assert (local.settings.device, local.settings.on_error) == ("cpu", "raise")

    monkeypatch.setenv("MEMOS_API_KEY", "k-123")
    memos = parse_spec("memos:memos-reranker-4b").build(timeout=3)
    assert memos.settings.backend == "memos"
    assert memos.settings.resolved_model() == "memos-reranker-4b"
    assert memos.settings.timeout == 3
    assert parse_spec("memos:").build().settings.resolved_model() == "memos-reranker-0.6b"

    vllm = parse_spec("vllm:MemReranker-4B@http://127.0.0.1:9").build()
    assert (vllm.settings.backend, vllm.settings.model, vllm.settings.base_url) == (
        "vllm", "MemReranker-4B", "http://127.0.0.1:9",
    )
    for reranker in (local, memos, vllm):
        reranker.close()


def test_memos_without_a_key_is_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMOS_API_KEY", raising=False)
    with pytest.raises(ValueError, match="MEMOS_API_KEY"):
        parse_spec("memos:").build()
