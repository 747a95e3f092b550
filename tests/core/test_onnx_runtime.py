"""``runtime="onnx"``: local cross-encoders scored by ONNX Runtime, against a real CrossEncoder.

The reference is ``sentence_transformers.CrossEncoder(path).predict(pairs)`` called here; the
fp32 ONNX session must give its scores within 1e-5 on both tiny cross-encoders (BERT, and the
seq-cls Qwen3 conversion), truncation and instructions included. FlashRank, run on the very
file the session scores with, agrees too. The export is made once into $MEMRERANKER_CACHE
(pytest's for the session) and found there by a second process; nothing goes to the system
temp directory.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sentence_transformers import CrossEncoder

# Imported before FlashRank can import onnxruntime: it keeps onnxruntime's telemetry file out
# of the temp directory (see the module).
import memreranker.local.onnx_runtime  # noqa: F401
from memreranker import (
    InputTooLongError,
    MemReranker,
    ModelLoadError,
    UnsupportedRuntimeError,
)

QUERY = "When is the user flying to Berlin, and who will they visit?"
DOCS = [
    "Flight LH2341 to Berlin booked for 14 May 2026.",
    "The user's sister Anna lives in Berlin; she moved there last year.",
    "User prefers window seats.",
    "Meeting with Bob moved from Thursday to Friday 🎉🎉",
    "用户下周一要去北京出差",
    "x",
    "",
    "The user's dog is called Biscuit and needs walking twice a day.",
    "Tabs\tand\nnewlines\r\ninside",
    "Berlin museum trip with the sister on the weekend.",
]
LONG = [
    "A long note. " + "The user described their week in detail, including errands. " * 40,
    "Berlin " * 300,
]
INSTRUCTION = "Given a question about the user, find the memories that answer it"


def scores(reranker: MemReranker, docs: list[str], **kw: object) -> list[float]:
    results = reranker.rerank(QUERY, docs, **kw)  # type: ignore[arg-type]
    assert not any(r.is_fallback for r in results)
    by_index = {r.index: r.score for r in results}
    return [by_index[i] for i in range(len(docs))]


@functools.lru_cache(maxsize=4)
def reference(path: Path, max_length: int | None) -> CrossEncoder:
    return CrossEncoder(str(path), max_length=max_length)


def predict(path: Path, docs: list[str], **kw: object) -> list[float]:
    model = reference(path, kw.pop("max_length", None))  # type: ignore[arg-type]
    return [float(s) for s in model.predict([(QUERY, d) for d in docs], **kw)]


def worst(got: list[float], want: list[float]) -> float:
    assert len(got) == len(want)
    return max(abs(g - w) for g, w in zip(got, want, strict=True))


def engine_of(reranker: MemReranker) -> object:
    return reranker.backend.load()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def bert_onnx(tiny_cross_encoder: Path) -> Iterator[MemReranker]:
    # 2 threads: batches run as slices on worker threads whatever this machine's cores.
    reranker = MemReranker(
        model=str(tiny_cross_encoder), runtime="onnx", threads=2, batch_size=4, on_error="raise"
    )
    yield reranker
    reranker.close()


# Scores -------------------------------------------------------------------------------


def test_bert_fp32_matches_cross_encoder_predict(
    bert_onnx: MemReranker, tiny_cross_encoder: Path
) -> None:
    engine = engine_of(bert_onnx)
    assert engine.runtime == "onnx"  # type: ignore[attr-defined]
    docs = DOCS + LONG + DOCS[:3]  # duplicates: scored once, same score
    got = scores(bert_onnx, docs)
    assert worst(got, predict(tiny_cross_encoder, docs)) <= 1e-5
    assert max(got) - min(got) > 0.1
    assert got[-3:] == got[:3]


def test_bert_truncation_is_cross_encoders_and_never_silent(
    tiny_cross_encoder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    short = MemReranker(
        model=str(tiny_cross_encoder), runtime="onnx", max_length=64, on_error="raise"
    )
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        got = scores(short, DOCS + LONG)
    assert worst(got, predict(tiny_cross_encoder, DOCS + LONG, max_length=64)) <= 1e-5
    cut = [r.getMessage() for r in caplog.records if "max_length=64" in r.getMessage()]
    assert len(cut) == 1 and "text beyond it was cut" in cut[0]
    strict = MemReranker(
        model=str(tiny_cross_encoder), runtime="onnx", max_length=64, truncate=False
    )
    with pytest.raises(InputTooLongError, match="max_length=64"):
        strict.rerank(QUERY, DOCS + LONG)


@pytest.fixture(scope="module")
def seq_cls_onnx(tiny_qwen3_cross_encoder: Path) -> Iterator[MemReranker]:
    reranker = MemReranker(
        model=str(tiny_qwen3_cross_encoder), runtime="onnx", max_length=96, on_error="raise"
    )
    yield reranker
    reranker.close()


@pytest.mark.parametrize("instruction", [None, INSTRUCTION])
def test_seq_cls_fp32_matches_cross_encoder_predict(
    seq_cls_onnx: MemReranker, tiny_qwen3_cross_encoder: Path, instruction: str | None
) -> None:
    # A seq-cls conversion of a yes/no reranker: with runtime="onnx" it is scored by ONNX
    # Runtime as a cross-encoder (CrossEncoder.predict's scores), not by the torch engines.
    reranker = seq_cls_onnx
    engine = engine_of(reranker)
    assert (engine.name, engine.runtime) == ("crossencoder", "onnx")  # type: ignore[attr-defined]
    got = scores(reranker, DOCS + LONG, instruction=instruction)
    prompt = {} if instruction is None else {"prompt": instruction}
    want = predict(tiny_qwen3_cross_encoder, DOCS + LONG, max_length=96, **prompt)
    assert worst(got, want) <= 1e-5
    assert max(got) - min(got) > 0.2


def _kernels(path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_encoders_are_exported_with_eager_attention_and_a_decoder_quantizes(
    bert_onnx: MemReranker, seq_cls_onnx: MemReranker, tiny_qwen3_cross_encoder: Path
) -> None:
    # Traced from SDPA attention (transformers' default), the graph guards fully masked rows
    # with IsNaN and Where in every layer, and ONNX Runtime runs it slower on long pairs.
    bert = _kernels(engine_of(bert_onnx).forward.path)  # type: ignore[attr-defined]
    assert "Softmax" in bert and "IsNaN" not in bert
    int8 = MemReranker(
        model=str(tiny_qwen3_cross_encoder), runtime="onnx", quantize="int8", max_length=96
    )
    assert "MatMulInteger" in _kernels(engine_of(int8).forward.path)  # type: ignore[attr-defined]
    assert 0 < worst(scores(int8, DOCS), scores(seq_cls_onnx, DOCS)) < 0.25


def test_int8_is_the_quantized_file_and_flashrank_agrees_on_the_fp32_file(
    bert_onnx: MemReranker, tiny_cross_encoder: Path, tmp_path: Path
) -> None:
    from flashrank import Ranker, RerankRequest
    from flashrank.Config import model_file_map

    int8 = MemReranker(model=str(tiny_cross_encoder), runtime="onnx", quantize="int8")
    fp32_file = Path(engine_of(bert_onnx).forward.path)  # type: ignore[attr-defined]
    int8_file = Path(engine_of(int8).forward.path)  # type: ignore[attr-defined]
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= _kernels(int8_file)
    assert [p.name for p in int8_file.parent.iterdir()] == ["model.onnx"]
    assert int8_file.parent.parent == fp32_file.parent.parent  # both in the cache
    got = scores(int8, DOCS)
    want = scores(bert_onnx, DOCS)
    assert 0 < worst(got, want) < 0.25  # a tiny random BERT quantizes coarsely (README)

    # FlashRank on the very same fp32 file (its offline layout) gives the same scores. (Not
    # compared on the int8 file: dynamic quantization scales activations per session run,
    # so int8 scores depend on which pairs share a run, and FlashRank runs them all at once.)
    name = "ms-marco-MiniLM-L-12-v2"
    home = tmp_path / name
    home.mkdir()
    shutil.copyfile(fp32_file, home / model_file_map[name])
    for filename in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copyfile(tiny_cross_encoder / filename, home / filename)
    specials = CrossEncoder(str(tiny_cross_encoder)).tokenizer.special_tokens_map
    (home / "special_tokens_map.json").write_text(json.dumps(specials))
    ranker = Ranker(model_name=name, cache_dir=str(tmp_path), log_level="WARNING")
    passages = [{"id": i, "text": d} for i, d in enumerate(DOCS)]
    ranked = ranker.rerank(RerankRequest(query=QUERY, passages=passages))
    flash = {p["id"]: float(p["score"]) for p in ranked}
    assert worst(want, [flash[i] for i in range(len(DOCS))]) <= 1e-5


def test_progress_per_batch_and_close_frees_the_session(tiny_cross_encoder: Path) -> None:
    reranker = MemReranker(model=str(tiny_cross_encoder), runtime="onnx", threads=2, batch_size=3)
    before = set(threading.enumerate())
    seen: list[tuple[int, int]] = []
    scores(reranker, DOCS, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(3, 10), (6, 10), (9, 10), (10, 10)]  # after each batch of 3
    forward = engine_of(reranker).forward  # type: ignore[attr-defined]
    assert forward.session is not None and forward._workers is not None
    workers = [t for t in set(threading.enumerate()) - before if "memreranker-onnx" in t.name]
    assert workers  # this reranker's own
    pool = forward._workers  # held here, so only close() can stop its threads
    reranker.close()
    assert forward.session is None and forward._workers is None
    for thread in workers:  # the worker threads stop
        thread.join(timeout=10)
        assert not thread.is_alive()
    del pool
    assert len(scores(reranker, DOCS)) == len(DOCS)  # reloads after close


# Refusals and fallback ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"backend": "memos", "model": "x"}, "runtime"),
        ({"model": None}, "default model"),
        ({"model": "m", "dtype": "bfloat16"}, "dtype"),
        ({"model": "m", "device": "cuda"}, "device"),
    ],
)
def test_runtime_refused_where_it_cannot_apply(options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MemReranker(runtime="onnx", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("option", [{"quantize": "int8"}, {"threads": 2}])
def test_onnx_options_need_the_onnx_runtime(option: dict[str, object]) -> None:
    with pytest.raises(ValueError, match='runtime="onnx" only'):
        MemReranker(model="m", **option)  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["prefix", "crossencoder"])
def test_yes_no_checkpoint_refuses_onnx_at_load(tiny_model: Path, engine: str) -> None:
    reranker = MemReranker(model=str(tiny_model), runtime="onnx", engine=engine)
    with pytest.raises(UnsupportedRuntimeError, match="yes/no causal LM") as caught:
        reranker.load()
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ModelLoadError)
    # With fallback on, a call gives the original order (one warning), like any load failure.
    assert all(r.is_fallback for r in reranker.rerank(QUERY, DOCS[:3]))


def _copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_shipped_onnx_file_is_used_and_a_broken_one_falls_back_to_torch(
    bert_onnx: MemReranker,
    tiny_cross_encoder: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    exported = Path(engine_of(bert_onnx).forward.path)  # type: ignore[attr-defined]
    good = _copy_checkpoint(tiny_cross_encoder, tmp_path / "ships-onnx")
    (good / "onnx").mkdir()
    shutil.copyfile(exported, good / "onnx" / "model.onnx")
    reranker = MemReranker(model=str(good), runtime="onnx", on_error="raise")
    assert Path(engine_of(reranker).forward.path) == good / "onnx" / "model.onnx"  # type: ignore[attr-defined]
    assert worst(scores(reranker, DOCS), predict(tiny_cross_encoder, DOCS)) <= 1e-5

    broken = _copy_checkpoint(tiny_cross_encoder, tmp_path / "broken-onnx")
    (broken / "onnx").mkdir()
    (broken / "onnx" / "model.onnx").write_bytes(b"not an onnx file")
    reranker = MemReranker(model=str(broken), runtime="onnx", on_error="raise")
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        got = scores(reranker, DOCS)
    assert engine_of(reranker).runtime == "torch"  # type: ignore[attr-defined]
    fallback = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(fallback) == 1 and "scoring with torch instead" in fallback[0].getMessage()
    assert worst(got, predict(tiny_cross_encoder, DOCS)) <= 1e-5


# The cache ------------------------------------------------------------------------------


def test_changed_checkpoint_gets_another_cache_key(
    tiny_cross_encoder: Path, tmp_path: Path
) -> None:
    from memreranker.local.onnx_runtime import content_digest

    copy = _copy_checkpoint(tiny_cross_encoder, tmp_path / "copy")
    assert content_digest(str(copy)) == content_digest(str(tiny_cross_encoder))
    config = json.loads((copy / "config.json").read_text())
    config["layer_norm_eps"] = 1e-6
    (copy / "config.json").write_text(json.dumps(config))
    assert content_digest(str(copy)) != content_digest(str(tiny_cross_encoder))


def test_exported_once_then_loaded_from_the_cache_by_another_process(
    tiny_cross_encoder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A fresh cache and temp directory: the export happens here, a second process finds it.
    cache, temp = tmp_path / "cache", tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("MEMRERANKER_CACHE", str(cache))
    for name in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.setenv(name, str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    model = str(tiny_cross_encoder)
    with caplog.at_level(logging.INFO, logger="memreranker"):
        here = MemReranker(model=model, runtime="onnx", quantize="int8", on_error="raise")
        want = [r.score for r in here.rerank("q", ["a", "b"])]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "exported to ONNX" in logged and "quantized the ONNX file to int8" in logged
    program = (
        "import logging, sys\n"
        "from memreranker import MemReranker\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s')\n"
        f"r = MemReranker(model={model!r}, runtime='onnx', quantize='int8', on_error='raise')\n"
        "print('SCORES', [x.score for x in r.rerank('q', ['a', 'b'])])\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "exported to ONNX" not in run.stdout and "quantized" not in run.stdout
    assert "int8 ONNX file found in the cache" in run.stdout
    assert run.stdout.splitlines()[-1] == f"SCORES {want}"  # the same scores
    entries = sorted(p.name for p in (cache / "onnx").iterdir())
    assert len(entries) == 2 and not any(e.startswith(".") for e in entries), entries
    assert not list(temp.iterdir()), "nothing may be left in the system temp directory"
