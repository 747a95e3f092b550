"""PrefixCacheEngine (shared prefix run once) gives the scores of PaddedBatchEngine (the recipe)."""

from __future__ import annotations

import itertools
import random
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from memreranker import MemReranker  # noqa: E402
from memreranker.errors import InstructionTooLongError  # noqa: E402
from memreranker.local.engines import PaddedBatchEngine  # noqa: E402
from memreranker.local.loading import LoadedModel, load_model  # noqa: E402
from memreranker.local.prefix_engine import (  # noqa: E402
    PrefixCacheEngine,
    PrefixEngineMismatch,
    common_prefix_length,
    plan_batches,
)
from memreranker.prompt import PREFIX, format_body  # noqa: E402

TOL = 2e-5  # float32; observed differences are ~1e-6
QUERY = "What does the user like to drink?"
DOCS = [
    "User prefers Jiangxiang-flavored baijiu, like Moutai.",
    "I don't drink alcohol.",
    "The user's sister Anna lives in Berlin.",
    "Flight to Berlin booked for 2026-05-14.",
    "Meeting with Bob moved to Friday 🎉",
    "The capital of China is Beijing.",
    "A long note. " + "The user described their week in detail. " * 12,
    "x",
]
# Documents whose first characters can merge with the ": " that ends the shared part.
MERGING = [
    "",
    " ",
    "  two leading spaces",
    ":",
    ": colon first",
    "\nnewline first",
    "\t tab",
    "'s possessive",
    "-dash",
    "123 digits",
    ".",
    "\uff1a\u5168\u89d2\u5192\u53f7",  # full-width colon first
    "word",
]
CJK_EMOJI = [
    "用户喜欢打羽毛球",
    "用户下周一要去北京出差",
    "ユーザーは寿司が好きです。",
    "사용자는 축구를 좋아합니다",
    "Emoji only: 🛫🏙️👩‍👧",
    "🎉",
    "混合 mixed 文本 🎉 text",
]


@pytest.fixture(scope="module")
def loaded(tiny_model: Path) -> LoadedModel:
    return load_model(str(tiny_model), device="cpu", dtype="float32")


def both(
    loaded: LoadedModel,
    query: str,
    docs: list[str],
    instruction: str | None = None,
    *,
    batch_size: int = 16,
    max_length: int = 8192,
    **prefix_kw: Any,
) -> tuple[list[float], list[float], PrefixCacheEngine]:
    recipe = PaddedBatchEngine(loaded, batch_size=batch_size, max_length=max_length)
    engine = PrefixCacheEngine(loaded, batch_size=batch_size, max_length=max_length, **prefix_kw)
    return (
        recipe.score(query, docs, instruction),
        engine.score(query, docs, instruction),
        engine,
    )


def assert_close(want: list[float], got: list[float], tol: float = TOL) -> None:
    assert len(want) == len(got)
    worst = max(abs(a - b) for a, b in zip(want, got, strict=True))
    assert worst <= tol, f"max |diff| {worst:.3g} > {tol}"


def test_many_documents(loaded: LoadedModel) -> None:
    rng = random.Random(1)
    words = "user likes tea coffee Berlin flight sister dog walk meeting friday memory".split()
    docs = [" ".join(rng.choices(words, k=rng.randint(1, 40))) for _ in range(70)]
    want, got, engine = both(loaded, QUERY, docs)
    assert_close(want, got)
    assert max(got) - min(got) > 0.05
    stats = engine.last_stats
    assert stats["prompts"] == len(set(docs))
    assert stats["forwards"] >= 1 + -(-stats["prompts"] // 16)
    assert stats["padded_tail_tokens"] >= stats["tail_tokens"]


def test_no_deprecated_keyword_reaches_transformers(loaded: LoadedModel) -> None:
    # transformers 5 renamed the forward's `past_key_values` to `cache`: the old name warns,
    # and goes in 5.40; the floor (4.56) knows only the old one. Either way, the right one.
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("error", category=category, module="transformers")
        want, got, _ = both(loaded, QUERY, DOCS)
    assert_close(want, got)


def test_prefix_is_shared(loaded: LoadedModel) -> None:
    _, _, engine = both(loaded, QUERY, DOCS)
    prefix_ids = loaded.tokenizer.encode(PREFIX, add_special_tokens=False)
    # The shared part covers the system prompt, the instruction and the query.
    assert engine.last_stats["prefix"] > len(prefix_ids) + 15


def test_duplicates_scored_once(loaded: LoadedModel) -> None:
    docs = [DOCS[0], DOCS[1], DOCS[0], DOCS[2], DOCS[1], DOCS[0]]
    want, got, engine = both(loaded, QUERY, docs)
    assert_close(want, got)
    assert engine.last_stats["prompts"] == 3
    assert got[0] == got[2] == got[5] and got[1] == got[4]


def test_all_duplicates(loaded: LoadedModel) -> None:
    want, got, engine = both(loaded, QUERY, [DOCS[3]] * 5)
    assert_close(want, got)
    assert engine.last_stats["prompts"] == 1
    assert len(set(got)) == 1


def test_first_token_merges_with_document_label(loaded: LoadedModel) -> None:
    tok = loaded.tokenizer
    label = tok.encode(format_body(None, QUERY, ""), add_special_tokens=False)
    merged = [
        d
        for d in MERGING
        if tok.encode(format_body(None, QUERY, d), add_special_tokens=False)[: len(label)] != label
    ]
    assert merged, "expected some documents to merge across the '<Document>: ' boundary"
    want, got, engine = both(loaded, QUERY, MERGING)
    assert_close(want, got)
    # The shared part stops before the merged token instead of assuming the boundary.
    assert engine.last_stats["prefix"] < len(loaded.prefix_ids) + len(label)


@pytest.mark.parametrize("max_length", [80, 96, 128])
def test_truncation_small_max_length(loaded: LoadedModel, max_length: int) -> None:
    want, got, _ = both(loaded, QUERY, DOCS + CJK_EMOJI, max_length=max_length)
    assert_close(want, got)


@pytest.mark.parametrize("engine", [PaddedBatchEngine, PrefixCacheEngine])
def test_max_length_below_the_fixed_prompt(loaded: LoadedModel, engine: Any) -> None:
    # 64 tokens cannot hold the card's fixed prompt with its default instruction. The
    # instruction is never cut (it used to be, every prompt the same tokens and every
    # document the same score): both engines refuse it.
    with pytest.raises(InstructionTooLongError):
        engine(loaded, batch_size=16, max_length=64).score(QUERY, DOCS, None)


def test_query_longer_than_the_budget(loaded: LoadedModel) -> None:
    # The card's truncation would end inside the query, every prompt the same tokens and
    # every document the same score. The query is held to its budget (half the room) instead:
    # the documents stay in their prompts, both engines agree, and the shared part ends
    # inside the (cut) query's prompt, not beyond it.
    query = "Tell me everything about the user's travel plans and preferences. " * 20
    want, got, engine = both(loaded, query, DOCS, max_length=128)
    assert_close(want, got)
    assert len(set(got)) == len(set(DOCS))
    assert engine.last_stats["prompts"] == len(set(DOCS))


def test_budget_ending_right_after_the_query(loaded: LoadedModel) -> None:
    # The query takes exactly its budget, half of the room: documents up to that many tokens
    # fit whole, longer ones are cut right after the query's half.
    tok = loaded.tokenizer
    query = "Where does the sister live? " * 4
    q = len(tok.encode(query, add_special_tokens=False))
    fixed = len(tok.encode(format_body(None, "", ""), add_special_tokens=False))
    max_length = len(loaded.prefix_ids) + len(loaded.suffix_ids) + fixed + 2 * q
    want, got, engine = both(loaded, query, DOCS + MERGING, max_length=max_length)
    assert_close(want, got)
    prompts = engine.encode(query, DOCS + MERGING, None)
    assert max(len(p) for p in prompts) == max_length
    assert len(set(got)) > len(DOCS)  # long and short documents alike kept their own tokens


def test_cjk_and_emoji(loaded: LoadedModel) -> None:
    want, got, _ = both(loaded, "用户有什么兴趣爱好 🎉?", CJK_EMOJI + DOCS[:3])
    assert_close(want, got)


def test_single_document(loaded: LoadedModel) -> None:
    for doc in (DOCS[0], "", "🎉"):
        want, got, engine = both(loaded, QUERY, [doc])
        assert_close(want, got)
        assert engine.last_stats["forwards"] == 1


def test_two_documents_one_a_prefix_of_the_other(loaded: LoadedModel) -> None:
    docs = ["The user likes tea", "The user likes tea and coffee", "The user likes tea"]
    want, got, _ = both(loaded, QUERY, docs)
    assert_close(want, got)


def test_custom_instruction(loaded: LoadedModel) -> None:
    instruction = "Given a user question, find the memory that answers it"
    want, got, _ = both(loaded, QUERY, DOCS, instruction)
    assert_close(want, got)
    _, default, _ = both(loaded, QUERY, DOCS)
    assert got != default


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7, 8, 9])
def test_batch_boundaries(loaded: LoadedModel, batch_size: int) -> None:
    docs = (DOCS + CJK_EMOJI + MERGING)[:17]
    want, got, engine = both(loaded, QUERY, docs, batch_size=batch_size)
    assert_close(want, got)
    assert engine.last_stats["forwards"] >= 1 + -(-engine.last_stats["prompts"] // batch_size)


@pytest.mark.parametrize(
    ("max_batch_tokens", "overhead_tokens"), [(1, 0), (40, 0), (10_000, 0), (10_000, 10**6)]
)
def test_batch_planning_does_not_change_scores(
    loaded: LoadedModel, max_batch_tokens: int, overhead_tokens: int
) -> None:
    want, got, _ = both(
        loaded,
        QUERY,
        DOCS + CJK_EMOJI,
        max_batch_tokens=max_batch_tokens,
        overhead_tokens=overhead_tokens,
    )
    assert_close(want, got)


def test_empty(loaded: LoadedModel) -> None:
    engine = PrefixCacheEngine(loaded, batch_size=4, max_length=8192)
    assert engine.score(QUERY, [], None) == []


def test_bfloat16_runs_and_stays_close(tiny_model: Path) -> None:
    bf16 = load_model(str(tiny_model), device="cpu", dtype="bfloat16")
    want, got, _ = both(bf16, QUERY, DOCS)
    assert_close(want, got, tol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bfloat16(tiny_model: Path, loaded: LoadedModel) -> None:
    cuda = load_model(str(tiny_model), device="cuda", dtype="bfloat16")
    engine = PrefixCacheEngine(cuda, batch_size=16, max_length=8192)
    reference = PaddedBatchEngine(loaded, batch_size=16, max_length=8192)
    assert_close(reference.score(QUERY, DOCS, None), engine.score(QUERY, DOCS, None), tol=0.05)


def test_inference_mode_and_no_grad_state(loaded: LoadedModel) -> None:
    engine = PrefixCacheEngine(loaded, batch_size=4, max_length=8192)
    engine.score(QUERY, DOCS, None)
    assert torch.is_grad_enabled()


# Pure helpers ---------------------------------------------------------------------------


def test_common_prefix_length() -> None:
    assert common_prefix_length([[1, 2, 3]]) == 0
    assert common_prefix_length([[1, 2, 3], [1, 2, 4]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # leaves one token
    assert common_prefix_length([[1, 2], [3, 4]]) == 0
    assert common_prefix_length([[5, 1, 9], [5, 1, 2, 3], [5, 2]]) == 1


@pytest.mark.parametrize("overhead", [0, 4, 1000])
@pytest.mark.parametrize("max_rows", [1, 3, 16])
def test_plan_batches_properties(overhead: int, max_rows: int) -> None:
    rng = random.Random(overhead * 31 + max_rows)
    lengths = sorted(rng.randint(1, 60) for _ in range(50))
    plan = plan_batches(lengths, max_rows=max_rows, max_tokens=200, overhead_tokens=overhead)
    assert plan[0][0] == 0 and plan[-1][1] == len(lengths)
    for (_, end), (start, _) in itertools.pairwise(plan):
        assert end == start
    for start, end in plan:
        rows = end - start
        assert 1 <= rows <= max_rows
        assert rows == 1 or rows * lengths[end - 1] <= 200


def test_plan_batches_without_overhead_never_pads() -> None:
    lengths = [3, 3, 4, 4, 4, 9]
    plan = plan_batches(lengths, max_rows=16, max_tokens=1000, overhead_tokens=0)
    for start, end in plan:
        assert len(set(lengths[start:end])) == 1


def test_plan_batches_with_large_overhead_fills_batches() -> None:
    lengths = list(range(1, 33))
    plan = plan_batches(lengths, max_rows=16, max_tokens=10_000, overhead_tokens=10**6)
    assert len(plan) == 2


# Wiring ---------------------------------------------------------------------------------


def engine_of(reranker: MemReranker) -> object:
    return reranker.backend.load()  # type: ignore[attr-defined]


def test_prefix_is_the_default_engine(tiny_model: Path) -> None:
    reranker = MemReranker(model=str(tiny_model))
    assert reranker.settings.engine == "prefix"
    assert isinstance(engine_of(reranker), PrefixCacheEngine)


def test_batched_engine_is_selectable(tiny_model: Path) -> None:
    prefix = MemReranker(model=str(tiny_model), on_error="raise")
    batched = MemReranker(model=str(tiny_model), engine="batched", on_error="raise")
    assert isinstance(engine_of(batched), PaddedBatchEngine)
    a = {r.index: r.score for r in prefix.rerank(QUERY, DOCS)}
    b = {r.index: r.score for r in batched.rerank(QUERY, DOCS)}
    assert max(abs(a[i] - b[i]) for i in a) <= TOL


def test_unknown_engine_is_rejected() -> None:
    with pytest.raises(ValueError):
        MemReranker(model="x", engine="fast")


def test_self_check(loaded: LoadedModel) -> None:
    engine = PrefixCacheEngine(loaded, batch_size=2, max_length=8192)
    assert engine.self_check() <= TOL


def test_failed_self_check_falls_back_to_batched(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A mismatch cannot be produced with the transformers this was written against (that
    # is the point of the check), so the check's verdict is forced here to test the wiring.
    def broken(self: PrefixCacheEngine) -> float:
        raise PrefixEngineMismatch("prefix engine self-check failed: scores differ")

    monkeypatch.setattr(PrefixCacheEngine, "self_check", broken)
    reranker = MemReranker(model=str(tiny_model), on_error="raise")
    with caplog.at_level("WARNING", logger="memreranker"):
        engine = engine_of(reranker)
    assert isinstance(engine, PaddedBatchEngine)
    assert "using the batched engine" in caplog.text
