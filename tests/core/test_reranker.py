"""MemReranker's contract on the local backend: ordering, top_n, validation, fallback."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from memreranker import (
    InferenceError,
    MemReranker,
    MemRerankerError,
    ModelLoadError,
    RerankResult,
)

QUERY = "What does the user like to drink?"
DOCS = [
    "User prefers Jiangxiang-flavored baijiu, like Moutai.",
    "I don't drink alcohol.",
    "The user's sister Anna lives in Berlin.",
    "Flight to Berlin booked for 2026-05-14.",
    "User drinks green tea every morning.",
]


@pytest.fixture(scope="module")
def reranker(tiny_model: Path) -> MemReranker:
    return MemReranker(model=str(tiny_model), on_error="raise")


def test_results_sorted_and_complete(reranker: MemReranker) -> None:
    results = reranker.rerank(QUERY, DOCS)
    assert sorted(r.index for r in results) == list(range(len(DOCS)))
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    for r in results:
        assert isinstance(r, RerankResult)
        assert r.document == DOCS[r.index]
        assert 0.0 <= r.score <= 1.0
        assert not r.is_fallback and r.fallback_reason is None


def test_scores_do_not_depend_on_neighbours(reranker: MemReranker) -> None:
    together = {r.index: r.score for r in reranker.rerank(QUERY, DOCS)}
    for i, doc in enumerate(DOCS):
        assert reranker.rerank(QUERY, [doc])[0].score == pytest.approx(together[i], abs=1e-5)


def test_ties_keep_input_order(reranker: MemReranker) -> None:
    docs = ["same memory", DOCS[0], "same memory", "same memory"]
    results = reranker.rerank(QUERY, docs)
    tied = [r.index for r in results if r.document == "same memory"]
    assert tied == [0, 2, 3]


@pytest.mark.parametrize(("top_n", "expected"), [(None, 5), (0, 0), (2, 2), (5, 5), (50, 5)])
def test_top_n(reranker: MemReranker, top_n: int | None, expected: int) -> None:
    results = reranker.rerank(QUERY, DOCS, top_n=top_n)
    assert len(results) == expected
    assert results == reranker.rerank(QUERY, DOCS)[:expected]


def test_score_threshold(reranker: MemReranker) -> None:
    everything = reranker.rerank(QUERY, DOCS)
    cut = sorted(r.score for r in everything)[2]
    kept = reranker.rerank(QUERY, DOCS, score_threshold=cut)
    assert kept == [r for r in everything if r.score >= cut]
    assert len(kept) == 3


def test_empty_documents_touch_nothing(caplog: pytest.LogCaptureFixture) -> None:
    broken = MemReranker(model="/does/not/exist", on_error="raise")
    assert broken.rerank(QUERY, []) == []
    assert not caplog.records


async def test_empty_documents_async() -> None:
    assert await MemReranker(model="/does/not/exist").arerank(QUERY, []) == []


@pytest.mark.parametrize(
    ("query", "documents", "kwargs", "error", "names"),
    [
        (None, DOCS, {}, TypeError, "query"),
        (3, DOCS, {}, TypeError, "query"),
        ("  ", DOCS, {}, ValueError, "query"),
        (QUERY, None, {}, TypeError, "documents"),
        (QUERY, "one string", {}, TypeError, "documents"),
        (QUERY, ["ok", None], {}, TypeError, "documents[1]"),
        (QUERY, ["ok", 3], {}, TypeError, "documents[1]"),
        (QUERY, [{"text": "x"}], {}, TypeError, "documents[0]"),
        (QUERY, DOCS, {"top_n": -1}, ValueError, "top_n"),
        (QUERY, DOCS, {"top_n": 1.5}, TypeError, "top_n"),
        (QUERY, DOCS, {"top_n": True}, TypeError, "top_n"),
        (QUERY, DOCS, {"score_threshold": 1.5}, ValueError, "score_threshold"),
        (QUERY, DOCS, {"instruction": 3}, TypeError, "instruction"),
    ],
)
@pytest.mark.parametrize("on_error", ["fallback", "raise"])
def test_caller_mistakes_raise_in_both_modes(
    query: object, documents: object, kwargs: dict, error: type, names: str, on_error: str
) -> None:
    # Validation happens before any loading: the broken model path is never touched.
    reranker = MemReranker(model="/does/not/exist", on_error=on_error)
    with pytest.raises(error, match=names.replace("[", r"\[").replace("]", r"\]")):
        reranker.rerank(query, documents, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"on_error": "ignore"}, "on_error"),
        ({"backend": "openai"}, "backend"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_length": 10}, "max_length"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_bad_settings_name_the_argument(options: dict, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        MemReranker(**options)


def test_fallback_on_unloadable_model(caplog: pytest.LogCaptureFixture) -> None:
    reranker = MemReranker(model="/does/not/exist")
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        results = reranker.rerank(QUERY, DOCS, top_n=3)
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.document for r in results] == DOCS[:3]
    assert all(r.score == 0.0 and r.is_fallback for r in results)
    assert all("does not exist" in (r.fallback_reason or "") for r in results)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "local:/does/not/exist" in warnings[0].getMessage()
    assert "ModelLoadError" in warnings[0].getMessage()


async def test_fallback_async() -> None:
    results = await MemReranker(model="/does/not/exist").arerank(QUERY, DOCS)
    assert [r.index for r in results] == list(range(len(DOCS)))
    assert all(r.is_fallback for r in results)


def test_raise_on_unloadable_model() -> None:
    reranker = MemReranker(model="/does/not/exist", on_error="raise")
    with pytest.raises(ModelLoadError, match="does not exist"):
        reranker.rerank(QUERY, DOCS)


def test_hub_id_offline_is_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Hub id that cannot be fetched is a load failure naming the model, not an inference
    # error or any other MemRerankerError.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"IAAR-Shanghai/MemReranker-4B") as info:
        MemReranker(model="IAAR-Shanghai/MemReranker-4B", on_error="raise").rerank(QUERY, DOCS)
    assert type(info.value) is ModelLoadError


def test_sequence_classification_checkpoints(tmp_path: Path, tiny_cross_encoder: Path) -> None:
    # The failure modes CONTRACTS warns about: a checkpoint must never be scored with a head
    # it does not have. Several labels or a missing classifier are refused; a one-label
    # cross-encoder is served (through sentence-transformers).
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(tiny_cross_encoder)
    config.num_labels = 2
    nli = tmp_path / "two-labels"
    AutoModelForSequenceClassification.from_config(config).save_pretrained(nli)
    headless = tmp_path / "headless"
    for target in (nli, headless):
        for name in ("tokenizer.json", "tokenizer_config.json"):
            target.mkdir(exist_ok=True)
            (target / name).write_bytes((tiny_cross_encoder / name).read_bytes())
    (headless / "config.json").write_bytes((tiny_cross_encoder / "config.json").read_bytes())
    weights = load_file(tiny_cross_encoder / "model.safetensors")
    weights = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
    save_file(weights, headless / "model.safetensors", metadata={"format": "pt"})

    with pytest.raises(ModelLoadError, match="BertForSequenceClassification checkpoint with 2"):
        MemReranker(model=str(nli), on_error="raise").rerank(QUERY, DOCS)
    with pytest.raises(ModelLoadError, match=r"no trained scoring head.*classifier\.weight"):
        MemReranker(model=str(headless), on_error="raise").rerank(QUERY, DOCS)
    served = MemReranker(model=str(tiny_cross_encoder), on_error="raise").rerank(QUERY, DOCS)
    assert sorted(r.index for r in served) == list(range(len(DOCS)))
    assert not any(r.is_fallback for r in served)


def test_refuses_checkpoint_with_missing_weights(tmp_path: Path, tiny_model: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(tiny_model / "model.safetensors")
    del weights["lm_head.weight"]
    for item in tiny_model.iterdir():
        if item.name != "model.safetensors":
            (tmp_path / item.name).write_bytes(item.read_bytes())
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"lm_head\.weight"):
        MemReranker(model=str(tmp_path), on_error="raise").rerank(QUERY, DOCS)


def test_inference_failure_falls_back(tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A device that does not exist fails when the weights move there; "meta" loads but
    # cannot compute, which is a runtime failure of the forward pass.
    reranker = MemReranker(model=str(tiny_model), device="meta")
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        results = reranker.rerank(QUERY, DOCS)
    assert [r.index for r in results] == list(range(len(DOCS)))
    assert all(r.is_fallback and r.score == 0.0 for r in results)
    with pytest.raises(MemRerankerError):
        MemReranker(model=str(tiny_model), device="meta", on_error="raise").rerank(QUERY, DOCS)


def test_fallback_chain_to_a_working_reranker(tiny_model: Path) -> None:
    second = MemReranker(model=str(tiny_model), on_error="raise")
    first = MemReranker(model="/does/not/exist", fallback=second)
    assert first.rerank(QUERY, DOCS) == second.rerank(QUERY, DOCS)
    assert "fallback=" in repr(first)


def test_fallback_rejects_non_reranker() -> None:
    with pytest.raises(TypeError, match="fallback"):
        MemReranker(fallback="local")  # type: ignore[arg-type]


def test_shared_by_threads(reranker: MemReranker) -> None:
    expected = reranker.rerank(QUERY, DOCS)
    outcomes: list[list[RerankResult]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            outcomes.append(reranker.rerank(QUERY, DOCS))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert outcomes == [expected] * 8


def test_loads_once(tiny_model: Path) -> None:
    reranker = MemReranker(model=str(tiny_model))
    reranker.load()
    engine = reranker.backend.load()  # type: ignore[attr-defined]
    reranker.rerank(QUERY, DOCS)
    assert reranker.backend.load() is engine  # type: ignore[attr-defined]


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, memreranker\n"
        "from memreranker import MemReranker\n"
        "r = MemReranker(model='/does/not/exist')\n"
        "r = MemReranker(model='/does/not/exist', engine='crossencoder')\n"
        "r = MemReranker(model='/does/not/exist', runtime='onnx', quantize='int8')\n"
        "import memreranker.pool, memreranker.memory_text\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers', 'langgraph', 'onnxruntime'}\n"
        "heavy &= set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_error_types_are_exceptions() -> None:
    assert issubclass(InferenceError, MemRerankerError)
    assert issubclass(ModelLoadError, MemRerankerError)
