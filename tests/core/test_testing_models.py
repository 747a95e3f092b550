"""The offline test checkpoints of ``memreranker.testing``: deterministic, and not flat."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from memreranker.testing import build_test_cross_encoder

PAIRS = [
    ("What does the user drink?", "User prefers Jiangxiang-flavored baijiu, like Moutai."),
    ("What does the user drink?", "I don't drink alcohol."),
    ("Where does the sister live?", "The user's sister Anna lives in Berlin."),
    ("q", "用户喜欢打羽毛球 🎉"),
    ("q", ""),
]


def probabilities(path: Path) -> list[float]:
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    queries, docs = [q for q, _ in PAIRS], [d for _, d in PAIRS]
    batch = tokenizer(queries, docs, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return torch.sigmoid(model(**batch).logits[:, 0]).tolist()


def test_cross_encoder_is_deterministic_by_seed_and_spreads(tmp_path: Path) -> None:
    first = build_test_cross_encoder(tmp_path / "a", seed=0)
    again = build_test_cross_encoder(tmp_path / "b", seed=0)
    other = build_test_cross_encoder(tmp_path / "c", seed=1)
    a, b, c = probabilities(first), probabilities(again), probabilities(other)
    assert a == b
    assert a != c
    assert max(a) - min(a) > 0.3  # scores spread over (0, 1), not stuck at 0.5
    config = AutoModelForSequenceClassification.from_pretrained(first).config
    assert config.num_labels == 1 and config.architectures == ["BertForSequenceClassification"]


def test_qwen3_cross_encoder_is_the_seq_cls_conversion(
    tmp_path: Path, tiny_model: Path, tiny_qwen3_cross_encoder: Path
) -> None:
    import json

    from safetensors.torch import load_file

    from memreranker.testing import build_test_qwen3_cross_encoder

    # Built from scratch with the same seed: the same checkpoint as the converted fixture.
    fresh = build_test_qwen3_cross_encoder(tmp_path / "fresh", seed=0)
    converted = load_file(tiny_qwen3_cross_encoder / "model.safetensors")
    rebuilt = load_file(fresh / "model.safetensors")
    assert converted.keys() == rebuilt.keys()
    assert all(torch.equal(converted[k], rebuilt[k]) for k in converted)

    causal = load_file(tiny_model / "model.safetensors")
    yes, no = 9693, 2152
    assert torch.equal(
        converted["score.weight"][0], causal["lm_head.weight"][yes] - causal["lm_head.weight"][no]
    )
    assert torch.equal(converted["model.norm.weight"], causal["model.norm.weight"])
    config = json.loads((fresh / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForSequenceClassification"]
    assert config.get("num_labels", len(config.get("id2label", {0: 0}))) == 1
    st = json.loads((fresh / "config_sentence_transformers.json").read_text())
    assert st["default_prompt_name"] == "query" and st["prompts"]["query"].startswith("Given a")
