"""Guards of the local yes/no path that agreeing scores alone cannot show.

Each test builds the situation its guard exists for (a prefix engine that really disagrees, a
sliding-window model, an LM head with a bias, a tokenizer without single "yes"/"no" tokens),
so that a guard that stopped guarding fails here, not silently in the field.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import weakref
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from memreranker import MemReranker, ModelLoadError  # noqa: E402
from memreranker.local import prefix_engine  # noqa: E402
from memreranker.local.engines import PaddedBatchEngine  # noqa: E402
from memreranker.local.loading import LoadedModel, load_model  # noqa: E402
from memreranker.local.prefix_engine import (  # noqa: E402
    PrefixCacheEngine,
    PrefixEngineMismatch,
    supports_prefix_cache,
)
from memreranker.prompt import PREFIX, SUFFIX, format_body  # noqa: E402
from memreranker.testing import TOKENIZER_FILES, qwen3_tokenizer_dir  # noqa: E402

QUERY = "What does the user like to drink?"
DOCS = [
    "User prefers Jiangxiang-flavored baijiu, like Moutai.",
    "I don't drink alcohol.",
    "The user's sister Anna lives in Berlin.",
    "Meeting with Bob moved to Friday 🎉",
]


def engine_of(reranker: MemReranker) -> Any:
    return reranker.backend.load()  # type: ignore[attr-defined]


def copy_model(source: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file():
            shutil.copy(item, target / item.name)
    return target


@pytest.fixture(scope="module")
def loaded(tiny_model: Path) -> LoadedModel:
    return load_model(str(tiny_model), device="cpu", dtype="float32")


# --- The prefix engine's self-check ------------------------------------------------------------


def _layer_zero_everywhere(
    self: Any, key_states: Any, value_states: Any, layer_idx: int, *args: Any, **kwargs: Any
) -> tuple[Any, Any]:
    """A cache that hands every layer the first layer's prefix keys and values: what a
    transformers version indexing caches differently would do. Shapes fit, scores are wrong."""
    if self.prefix is None:
        self.recorded.append((key_states, value_states))
        return key_states, value_states
    keys, values = self.prefix[0]
    batch = key_states.shape[0]
    keys = torch.cat([keys.expand(batch, -1, -1, -1), key_states], dim=2)
    values = torch.cat([values.expand(batch, -1, -1, -1), value_states], dim=2)
    return keys, values


def test_self_check_reports_a_real_mismatch(
    loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = PrefixCacheEngine(loaded, batch_size=4, max_length=8192)
    assert engine.self_check() <= 1e-4
    monkeypatch.setattr(prefix_engine._SharedPrefixKV, "update", _layer_zero_everywhere)
    with pytest.raises(PrefixEngineMismatch, match="differ from the recipe"):
        engine.self_check()


def test_mismatching_prefix_engine_is_replaced_by_the_recipe(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The real check, not a stub: the engine computes wrong scores, the check sees it at load.
    monkeypatch.setattr(prefix_engine._SharedPrefixKV, "update", _layer_zero_everywhere)
    reranker = MemReranker(model=str(tiny_model), on_error="raise")
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        engine = engine_of(reranker)
    assert isinstance(engine, PaddedBatchEngine)
    assert "self-check failed" in caplog.text and "using the batched engine" in caplog.text
    batched = MemReranker(model=str(tiny_model), engine="batched", on_error="raise")
    assert reranker.rerank(QUERY, DOCS) == batched.rerank(QUERY, DOCS)


# --- Sliding-window attention ----------------------------------------------------------------


def test_sliding_window_model_never_gets_the_prefix_engine(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The prefix engine gives every layer one causal mask; a sliding-window layer needs its
    # own. Such a model must be recognised and scored by the recipe.
    target = copy_model(tiny_model, tmp_path / "sliding")
    config = json.loads((target / "config.json").read_text())
    config.update(
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=1,
        layer_types=["full_attention", "sliding_attention"],
    )
    (target / "config.json").write_text(json.dumps(config))
    sliding = load_model(str(target), device="cpu", dtype="float32")
    assert "sliding_attention" in sliding.model.config.layer_types
    assert supports_prefix_cache(sliding) is False
    with pytest.raises(ValueError, match="full causal attention"):
        PrefixCacheEngine(sliding, batch_size=4, max_length=8192)
    reranker = MemReranker(model=str(target), on_error="raise")
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        assert isinstance(engine_of(reranker), PaddedBatchEngine)
    assert "sliding-window" in caplog.text


def test_full_attention_model_gets_the_prefix_engine(loaded: LoadedModel) -> None:
    assert supports_prefix_cache(loaded) is True


# --- An LM head with a bias ------------------------------------------------------------------


@pytest.fixture(scope="module")
def biased_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Phi causal LM (its LM head has a bias) with the Qwen3 tokenizer, the
    bias of "yes" and "no" set far apart so that its sign shows in every score."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    config = transformers.PhiConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=8192,
        pad_token_id=tokenizer.pad_token_id,
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(3)
    model = transformers.PhiForCausalLM(config)
    torch.random.set_rng_state(state)
    yes, no = tokenizer.convert_tokens_to_ids(["yes", "no"])
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and "embed" not in name:
                param.normal_(0.0, 1.0 / param.shape[1] ** 0.5)
        model.lm_head.bias.zero_()
        model.lm_head.bias[yes] = 1.5
        model.lm_head.bias[no] = -1.0
    target = tmp_path_factory.mktemp("biased-model")
    model.save_pretrained(target)
    for name in TOKENIZER_FILES:
        shutil.copy(qwen3_tokenizer_dir() / name, target / name)
    return target


def reference_scores(model_dir: Path, query: str, docs: list[str]) -> list[float]:
    """P(yes) from the full vocabulary logits of a plain forward, one pair at a time."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    yes, no = tokenizer.convert_tokens_to_ids(["yes", "no"])
    scores = []
    for doc in docs:
        ids = tokenizer.encode(PREFIX + format_body(None, query, doc) + SUFFIX)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        scores.append(torch.softmax(logits[[no, yes]], dim=0)[1].item())
    return scores


@pytest.mark.parametrize("engine", ["batched", "prefix"])
def test_lm_head_bias_is_added_to_the_yes_no_logits(biased_model: Path, engine: str) -> None:
    reranker = MemReranker(model=str(biased_model), engine=engine, on_error="raise")
    loaded_model = engine_of(reranker).loaded
    assert loaded_model.head_bias is not None
    assert loaded_model.head_bias.tolist() == [-1.0, 1.5]  # rows [no, yes]
    results = reranker.rerank(QUERY, DOCS)
    got = [s for _, s in sorted((r.index, r.score) for r in results)]
    want = reference_scores(biased_model, QUERY, DOCS)
    assert max(abs(g - w) for g, w in zip(got, want, strict=True)) <= 1e-5


# --- Single "yes" / "no" tokens ----------------------------------------------------------------


def test_tokenizer_without_single_yes_no_tokens_is_refused(
    tiny_model: Path, tmp_path: Path
) -> None:
    # The score is read from the logits of the "yes" and "no" tokens: a tokenizer that has no
    # such single tokens (here a word-level one without them) has nothing to read.
    from tokenizers import Tokenizer, models, pre_tokenizers

    target = copy_model(tiny_model, tmp_path / "no-yes-no")
    for name in TOKENIZER_FILES:
        (target / name).unlink(missing_ok=True)
    vocab = {"[UNK]": 0, "[PAD]": 1, "<|im_end|>": 2, "user": 3, "drink": 4, "maybe": 5}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", eos_token="<|im_end|>"
    )
    fast.save_pretrained(target)
    with pytest.raises(ModelLoadError, match="no single 'yes'/'no' tokens"):
        load_model(str(target), device="cpu")
    with pytest.raises(ModelLoadError, match="'yes'/'no'"):
        MemReranker(model=str(target), on_error="raise").rerank(QUERY, DOCS)


# --- close() ---------------------------------------------------------------------------------


def test_close_releases_the_weights(tiny_model: Path) -> None:
    reranker = MemReranker(model=str(tiny_model), on_error="raise")
    before = reranker.rerank(QUERY, DOCS)
    weights = weakref.ref(engine_of(reranker).loaded.model)
    reranker.close()
    gc.collect()
    assert weights() is None, "close() kept the weights in memory"
    assert reranker.rerank(QUERY, DOCS) == before  # loads again on the next call
    reranker.close()
