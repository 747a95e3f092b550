"""Cross-encoder checkpoints on the local backend, against a real ``CrossEncoder`` called here.

The reference is ``sentence_transformers.CrossEncoder(path).predict(pairs)`` (one label: the
sigmoid of the logit), called directly in the test; the core must give the same scores within
1e-5 on two tiny checkpoints that load like Hub ones: a BERT cross-encoder and the seq-cls
conversion of the tiny Qwen3 yes/no model (also served by the exact engines).
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import CrossEncoder

from memreranker import InputTooLongError, MemReranker, MemRerankerError, ModelLoadError

QUERY = "When is the user flying to Berlin, and who will they visit?"
DOCS = [
    "Flight LH2341 to Berlin booked for 14 May 2026.",
    "The user's sister Anna lives in Berlin; she moved there last year.",
    "User prefers window seats.",
    "User is allergic to peanuts.",
    "Meeting with Bob moved from Thursday to Friday 🎉🎉",
    "用户下周一要去北京出差",
    "ユーザーは寿司が好きです。",
    "x",
    "",
    "Dinner reservation at 7pm on Saturday at the Italian place downtown.",
    "The user's dog is called Biscuit and needs walking twice a day.",
    "Trip cancelled? No — rescheduled to June.",
    "Emoji only: 🛫🏙️👩‍👧",
    "Tabs\tand\nnewlines\r\ninside",
    "The user said 'yes' to the invitation and 'no' to the after-party.",
    "Remember: passport expires in 2027.",
    "Anna's birthday is on 20 May.",
    "User works as a backend developer in Hangzhou.",
    "The user drinks green tea every morning.",
    "Berlin museum trip with the sister on the weekend.",
]
LONG = [
    "A long note. " + "The user described their week in detail, including errands. " * 40,
    "Berlin " * 300,
]
INSTRUCTION = "Given a question about the user, find the memories that answer it"
CARD_TASK = "Given a web search query, retrieve relevant passages that answer the query"
SIGMOID = torch.nn.Sigmoid()


def scores(reranker: MemReranker, query: str, docs: list[str], **kw: object) -> list[float]:
    results = reranker.rerank(query, docs, **kw)  # type: ignore[arg-type]
    assert not any(r.is_fallback for r in results)
    by_index = {r.index: r.score for r in results}
    return [by_index[i] for i in range(len(docs))]


@functools.lru_cache(maxsize=8)
def reference(path: Path, max_length: int | None = None) -> CrossEncoder:
    return CrossEncoder(str(path), max_length=max_length)


def predict(
    path: Path, docs: list[str], *, max_length: int | None = None, **kw: object
) -> list[float]:
    """The reference: sentence-transformers' own CrossEncoder, loaded and called here."""
    model = reference(path, max_length)
    return [float(s) for s in model.predict([(QUERY, d) for d in docs], **kw)]


def assert_close(got: list[float], want: list[float], tol: float = 1e-5) -> None:
    assert len(got) == len(want)
    worst = max(abs(g - w) for g, w in zip(got, want, strict=True))
    assert worst <= tol, f"max |diff| {worst:.3g} > {tol}"


def engine_of(reranker: MemReranker) -> str:
    return reranker.backend.load().name  # type: ignore[attr-defined]


# BERT cross-encoder ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert(tiny_cross_encoder: Path) -> MemReranker:
    return MemReranker(model=str(tiny_cross_encoder), batch_size=4, on_error="raise")


def test_bert_matches_cross_encoder_predict(bert: MemReranker, tiny_cross_encoder: Path) -> None:
    docs = DOCS + LONG
    got = scores(bert, QUERY, docs)
    assert_close(got, predict(tiny_cross_encoder, docs))
    assert engine_of(bert) == "crossencoder"
    assert max(got) - min(got) > 0.1, "scores should spread over (0, 1)"
    ranked = [r.index for r in bert.rerank(QUERY, docs)]
    reference = predict(tiny_cross_encoder, docs)
    assert ranked == sorted(range(len(docs)), key=lambda i: -reference[i])


def test_bert_truncation_matches_cross_encoder(
    tiny_cross_encoder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = DOCS + LONG
    short = MemReranker(model=str(tiny_cross_encoder), max_length=64, on_error="raise")
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        got = scores(short, QUERY, docs)
    assert_close(got, predict(tiny_cross_encoder, docs, max_length=64))
    # The long documents really were cut, and the call said so, once.
    full = scores(MemReranker(model=str(tiny_cross_encoder), on_error="raise"), QUERY, LONG)
    assert got[-2:] != pytest.approx(full, abs=1e-4)
    tokenizer = reference(tiny_cross_encoder).tokenizer
    cut = sum(len(tokenizer(QUERY, d)["input_ids"]) >= 64 for d in docs)
    assert 2 <= cut < len(docs)
    warnings = [r.getMessage() for r in caplog.records if "max_length=64" in r.getMessage()]
    assert len(warnings) == 1 and f"{cut} of {len(docs)} document(s)" in warnings[0]


@pytest.mark.parametrize("on_error", ["fallback", "raise"])
def test_truncate_false_refuses_pairs_over_max_length(
    tiny_cross_encoder: Path, on_error: str
) -> None:
    strict = MemReranker(
        model=str(tiny_cross_encoder), max_length=64, truncate=False, on_error=on_error
    )
    tokenizer = reference(tiny_cross_encoder).tokenizer
    fits = [d for d in DOCS if len(tokenizer(QUERY, d)["input_ids"]) < 64]
    assert len(fits) >= 3
    assert len(strict.rerank(QUERY, fits)) == len(fits)  # within the limit: scored
    with pytest.raises(InputTooLongError, match="max_length=64"):
        strict.rerank(QUERY, fits + LONG)  # a caller's choice, not an outage: in both modes


def test_max_length_never_exceeds_the_model(bert: MemReranker) -> None:
    # The default 8192 would overrun BERT's 512 position embeddings; 600 words must still score.
    engine = bert.backend.load()  # type: ignore[attr-defined]
    assert engine.max_length == 512
    assert len(scores(bert, QUERY, ["word " * 600])) == 1


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_bert_batch_size_and_duplicates(tiny_cross_encoder: Path, batch_size: int) -> None:
    docs = DOCS[:7] + DOCS[:3]  # duplicates are scored once and given the same score
    reranker = MemReranker(model=str(tiny_cross_encoder), batch_size=batch_size)
    seen: list[tuple[int, int]] = []
    got = scores(reranker, QUERY, docs, progress=lambda done, total: seen.append((done, total)))
    assert_close(got, predict(tiny_cross_encoder, docs))
    assert got[7:] == got[:3]
    unique = 7
    batches = -(-unique // batch_size)
    # progress(n) after each of the ceil(7 / batch_size) forwards, then completed by the core.
    per_batch = [min(unique, batch_size * (k + 1)) for k in range(batches)]
    assert seen == [(done, 10) for done in per_batch] + [(10, 10)]


def test_default_batch_sizes(tiny_cross_encoder: Path, tiny_model: Path) -> None:
    # CrossEncoder.predict's 32 through sentence-transformers (faster there than 16 on CPU);
    # the yes/no engines keep 16.
    ce = MemReranker(model=str(tiny_cross_encoder)).backend.load()  # type: ignore[attr-defined]
    yes_no = MemReranker(model=str(tiny_model)).backend.load()  # type: ignore[attr-defined]
    assert (ce.batch_size, yes_no.batch_size) == (32, 16)


async def test_bert_async_equals_sync(bert: MemReranker) -> None:
    assert await bert.arerank(QUERY, DOCS) == bert.rerank(QUERY, DOCS)


def test_classic_cross_encoder_ignores_an_instruction_with_one_warning(
    tiny_cross_encoder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reranker = MemReranker(model=str(tiny_cross_encoder), instruction=INSTRUCTION)
    plain = MemReranker(model=str(tiny_cross_encoder))
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        first = scores(reranker, QUERY, DOCS)
        again = scores(reranker, QUERY, DOCS, instruction="another one")
    assert first == again == scores(plain, QUERY, DOCS)
    ignored = [r for r in caplog.records if "takes no instruction" in r.getMessage()]
    assert len(ignored) == 1, "one warning per reranker, not per call"
    assert not any(r.levelno >= logging.WARNING for r in caplog.records if r not in ignored)


def test_dtype_and_score_cache(tiny_cross_encoder: Path) -> None:
    bf16 = MemReranker(model=str(tiny_cross_encoder), dtype="bfloat16", score_cache_size=64)
    engine = bf16.backend.load()  # type: ignore[attr-defined]
    assert next(engine.model.model.parameters()).dtype == torch.bfloat16
    got = scores(bf16, QUERY, DOCS)
    assert_close(got, predict(tiny_cross_encoder, DOCS), tol=5e-2)
    assert scores(bf16, QUERY, DOCS) == got  # from the cache


def test_device_failure_falls_back(
    tiny_cross_encoder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # "meta" holds no data: loading works, the forward pass cannot compute.
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        results = MemReranker(model=str(tiny_cross_encoder), device="meta").rerank(QUERY, DOCS)
    assert [r.index for r in results] == list(range(len(DOCS)))
    assert all(r.is_fallback and r.score == 0.0 for r in results)
    assert (
        sum(r.name == "memreranker" and r.levelno == logging.WARNING for r in caplog.records) == 1
    )
    with pytest.raises(MemRerankerError):
        MemReranker(model=str(tiny_cross_encoder), device="meta", on_error="raise").rerank(
            QUERY, DOCS
        )


def test_shared_by_threads(bert: MemReranker) -> None:
    expected = bert.rerank(QUERY, DOCS)
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda _: bert.rerank(QUERY, DOCS), range(8)))
    assert outcomes == [expected] * 8


def test_loads_lazily_once(tiny_cross_encoder: Path) -> None:
    reranker = MemReranker(model=str(tiny_cross_encoder))
    assert reranker.backend._engine is None  # type: ignore[attr-defined]
    reranker.rerank(QUERY, DOCS[:2])
    engine = reranker.backend.load()  # type: ignore[attr-defined]
    reranker.rerank(QUERY, DOCS[:2])
    assert reranker.backend.load() is engine  # type: ignore[attr-defined]


# Refusals -----------------------------------------------------------------------------


def copy_of(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def without_weights(source: Path, target: Path, prefix: str) -> Path:
    copy_of(source, target)
    weights = load_file(target / "model.safetensors")
    dropped = [k for k in weights if k.startswith(prefix)]
    assert dropped
    for key in dropped:
        del weights[key]
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return target


def with_labels(source: Path, target: Path, labels: int) -> Path:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(source)
    config.num_labels = labels
    model = AutoModelForSequenceClassification.from_pretrained(
        source, config=config, ignore_mismatched_sizes=True
    )
    copy_of(source, target)
    model.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def broken(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_cross_encoder: Path,
    tiny_qwen3_cross_encoder: Path,
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken-cross-encoders")
    notok = copy_of(tiny_cross_encoder, root / "no-tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (notok / name).unlink()
    config = json.loads((tiny_cross_encoder / "config.json").read_text())
    config["architectures"] = ["BertForMaskedLM"]
    other = copy_of(tiny_cross_encoder, root / "masked-lm")
    (other / "config.json").write_text(json.dumps(config))
    return {
        "three labels": with_labels(tiny_cross_encoder, root / "nli", 3),
        "headless": without_weights(tiny_cross_encoder, root / "headless", "classifier."),
        "headless qwen3": without_weights(tiny_qwen3_cross_encoder, root / "headless-q", "score."),
        "no tokenizer": notok,
        "masked lm": other,
    }


REFUSALS = {
    "three labels": "3 labels",
    "headless": r"no trained scoring head: its weights lack classifier\.weight, classifier\.bias",
    "headless qwen3": r"no trained scoring head: its weights lack score\.weight",
    "no tokenizer": "has no tokenizer",
    "masked lm": "BertForMaskedLM checkpoint: neither a cross-encoder",
}


@pytest.mark.parametrize(
    ("case", "engine"),
    [
        (case, engine)
        for case in sorted(REFUSALS)
        for engine in ("prefix", "crossencoder")
        if case != "headless qwen3" or engine == "prefix"
    ],
)
def test_refuses_unusable_checkpoints(
    broken: dict[str, Path], case: str, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ModelLoadError, match=REFUSALS[case]):
        MemReranker(model=str(broken[case]), engine=engine, on_error="raise").rerank(QUERY, DOCS)
    # With the default fallback: input order, flagged, one warning naming the reason.
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        results = MemReranker(model=str(broken[case]), engine=engine).rerank(QUERY, DOCS)
    assert [r.index for r in results] == list(range(len(DOCS)))
    assert all(r.is_fallback and r.score == 0.0 for r in results)
    ours = [r for r in caplog.records if r.name == "memreranker" and r.levelno == logging.WARNING]
    assert len(ours) == 1 and "ModelLoadError" in ours[0].getMessage()


# Qwen3 seq-cls conversion --------------------------------------------------------------


@pytest.fixture(scope="module")
def seq_cls(tiny_qwen3_cross_encoder: Path) -> dict[str, MemReranker]:
    path = str(tiny_qwen3_cross_encoder)
    return {
        engine: MemReranker(model=path, engine=engine, on_error="raise")
        for engine in ("prefix", "batched", "crossencoder")
    }


@pytest.mark.parametrize("engine", ["prefix", "batched", "crossencoder"])
@pytest.mark.parametrize("instruction", [None, INSTRUCTION])
def test_seq_cls_matches_cross_encoder_predict(
    seq_cls: dict[str, MemReranker],
    tiny_qwen3_cross_encoder: Path,
    engine: str,
    instruction: str | None,
) -> None:
    reranker = seq_cls[engine]
    assert engine_of(reranker) == engine  # the exact engines serve the conversion too
    got = scores(reranker, QUERY, DOCS + LONG, instruction=instruction)
    prompt = {} if instruction is None else {"prompt": instruction}
    assert_close(got, predict(tiny_qwen3_cross_encoder, DOCS + LONG, **prompt))
    assert max(got) - min(got) > 0.2


def test_exact_engine_is_checked_against_sentence_transformers(
    seq_cls: dict[str, MemReranker],
    tiny_qwen3_cross_encoder: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The load-time safety net: a view of the checkpoint that would score differently from
    # CrossEncoder (here its head negated) is not used.
    import dataclasses

    from memreranker.local.backend import _exact_engine_for
    from memreranker.local.checkpoint import inspect_checkpoint
    from memreranker.local.crossencoder import yes_no_view

    reference = seq_cls["crossencoder"].backend.load()  # type: ignore[attr-defined]
    settings = seq_cls["prefix"].settings
    view = yes_no_view(reference.model, inspect_checkpoint(str(tiny_qwen3_cross_encoder)))
    assert view is not None
    assert _exact_engine_for(view, reference, settings) is not None
    wrong = dataclasses.replace(view, head=-view.head)
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        assert _exact_engine_for(wrong, reference, settings) is None
    assert any(
        "scores differ from sentence-transformers'" in r.getMessage() for r in caplog.records
    )


def test_seq_cls_truncation_matches_cross_encoder(tiny_qwen3_cross_encoder: Path) -> None:
    # Through sentence-transformers, truncation is its own (the fixed chat-template suffix is
    # restored after the cut), unlike the model card's, which the exact engines follow.
    reranker = MemReranker(
        model=str(tiny_qwen3_cross_encoder), engine="crossencoder", max_length=96, on_error="raise"
    )
    docs = DOCS + LONG
    got = scores(reranker, QUERY, docs)
    assert_close(got, predict(tiny_qwen3_cross_encoder, docs, max_length=96))


def test_seq_cls_conversion_scores_like_the_causal_model(
    seq_cls: dict[str, MemReranker], tiny_model: Path
) -> None:
    causal = MemReranker(model=str(tiny_model), on_error="raise")
    for instruction in (None, INSTRUCTION):
        want = scores(causal, QUERY, DOCS + LONG, instruction=instruction)
        assert_close(scores(seq_cls["prefix"], QUERY, DOCS + LONG, instruction=instruction), want)


def test_seq_cls_without_prompts_scores_through_sentence_transformers(
    tmp_path: Path, tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from memreranker.testing import build_test_qwen3_cross_encoder

    path = build_test_qwen3_cross_encoder(tmp_path / "bare", causal=tiny_model, prompts=False)
    reranker = MemReranker(model=str(path), on_error="raise")
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        got = scores(reranker, QUERY, DOCS, instruction=INSTRUCTION)
    assert engine_of(reranker) == "crossencoder"  # its prompt is not the card's: no exact engine
    assert_close(got, predict(path, DOCS))
    assert sum("takes no instruction" in r.getMessage() for r in caplog.records) == 1


# A MemReranker (causal yes/no) checkpoint through sentence-transformers ----------------


def test_yes_no_model_through_sentence_transformers(tiny_model: Path) -> None:
    # The model card's "Sentence Transformers (Recommended)" path against its transformers
    # recipe: the two officially documented ways to score agree (no truncation here).
    from memreranker.local.crossencoder import CARD_CHAT_TEMPLATE

    path = str(tiny_model)
    st = MemReranker(model=path, engine="crossencoder", on_error="raise")
    exact = MemReranker(model=path, on_error="raise")  # the prefix engine, = the card's recipe
    reference = CrossEncoder(
        path,
        processor_kwargs={"chat_template": CARD_CHAT_TEMPLATE},
        prompts={"query": CARD_TASK},
        default_prompt_name="query",
    )
    assert engine_of(st) == "crossencoder"
    docs = DOCS + LONG[:1]
    for instruction in (None, INSTRUCTION):
        got = scores(st, QUERY, docs, instruction=instruction)
        assert_close(got, scores(exact, QUERY, docs, instruction=instruction), tol=1e-4)
        kw = {} if instruction is None else {"prompt": instruction}
        want = reference.predict([(QUERY, d) for d in docs], activation_fn=SIGMOID, **kw)
        assert_close(got, [float(s) for s in want])


# The CLI and imports --------------------------------------------------------------------


def test_cli_with_a_cross_encoder(tiny_cross_encoder: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "memreranker.cli",
            "rerank",
            "--query",
            QUERY,
            "--model",
            str(tiny_cross_encoder),
            "--json",
            "--no-progress",
        ],
        input=json.dumps(DOCS),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = json.loads(out)
    reference = predict(tiny_cross_encoder, DOCS)
    assert [row["index"] for row in rows] == sorted(range(len(DOCS)), key=lambda i: -reference[i])
    assert [row["score"] for row in rows] == pytest.approx(
        sorted(reference, reverse=True), abs=1e-5
    )
    assert not any(row["is_fallback"] for row in rows)
