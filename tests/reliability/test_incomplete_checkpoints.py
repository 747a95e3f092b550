"""Local weights are complete or refused, on every local path.

transformers fills any weight a checkpoint lacks with random values and only logs a warning;
such a model scores every pair with random projections, differently on every load. Each
broken checkpoint here is a tiny real one with tensors dropped from its safetensors file
(or no weight file at all); the reranker must refuse it with a ``ModelLoadError`` naming
what is missing, and with the default fallback return the input order with one warning.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from memreranker import MemReranker, ModelLoadError

QUERY = "When is the user flying to Berlin?"
DOCS = ["Flight to Berlin booked for 14 May.", "User prefers window seats.", "x", ""]


def dropped(source: Path, target: Path, part: str | None) -> Path:
    """A copy of ``source`` without the tensors whose names contain ``part`` (None: without
    any weight file)."""
    shutil.copytree(source, target)
    if part is None:
        (target / "model.safetensors").unlink()
        return target
    weights = load_file(target / "model.safetensors")
    gone = [key for key in weights if part in key]
    assert gone
    for key in gone:
        del weights[key]
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return target


# (checkpoint fixture, tensors dropped, engine, what the error must name)
CASES = {
    "bert without pooler": (
        "tiny_cross_encoder",
        "bert.pooler.",
        None,
        r"lacks 2 weight\(s\) \(bert\.pooler\.dense\.bias, bert\.pooler\.dense\.weight\)",
    ),
    "bert without word embeddings": (
        "tiny_cross_encoder",
        "word_embeddings",
        None,
        r"lacks 1 weight\(s\) \(bert\.embeddings\.word_embeddings\.weight\)",
    ),
    "bert without one attention layer": (
        "tiny_cross_encoder",
        "layer.1.attention.self.query.",
        "crossencoder",
        r"lacks 2 weight\(s\) \(bert\.encoder\.layer\.1\.attention\.self\.query\.bias",
    ),
    "bert without weight file": ("tiny_cross_encoder", None, None, "model.safetensors"),
    "qwen3 without a layer, crossencoder engine": (
        "tiny_model",
        "layers.1.",
        "crossencoder",
        r"lacks 11 weight\(s\) \(model\.layers\.1\.",
    ),
    "qwen3 without weight file, crossencoder engine": (
        "tiny_model",
        None,
        "crossencoder",
        "model.safetensors",
    ),
    "qwen3 seq-cls without a layer": (
        "tiny_qwen3_cross_encoder",
        "layers.1.",
        None,
        r"lacks 11 weight\(s\) \(model\.layers\.1\.",
    ),
    "qwen3 seq-cls without a layer, crossencoder engine": (
        "tiny_qwen3_cross_encoder",
        "layers.1.",
        "crossencoder",
        r"lacks 11 weight\(s\) \(model\.layers\.1\.",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_incomplete_checkpoint_is_refused(
    case: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fixture, part, engine, message = CASES[case]
    broken = dropped(request.getfixturevalue(fixture), tmp_path / "broken", part)
    options = {} if engine is None else {"engine": engine}
    # With the default fallback: the input order, flagged, one warning naming what is missing.
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        results = MemReranker(model=str(broken), **options).rerank(QUERY, DOCS)
    assert [r.index for r in results] == list(range(len(DOCS)))
    assert all(r.is_fallback and r.score == 0.0 for r in results)
    ours = [r for r in caplog.records if r.name == "memreranker" and r.levelno == logging.WARNING]
    assert len(ours) == 1
    assert "ModelLoadError" in ours[0].getMessage()
    assert re.search(message, ours[0].getMessage())


def test_incomplete_checkpoint_raises_with_on_error_raise(
    tiny_cross_encoder: Path, tmp_path: Path
) -> None:
    broken = dropped(tiny_cross_encoder, tmp_path / "broken", "bert.pooler.")
    with pytest.raises(ModelLoadError, match=r"bert\.pooler\.dense\.bias.*randomly initialised"):
        MemReranker(model=str(broken), on_error="raise").load()


def test_renamed_weights_are_not_refused(tiny_cross_encoder: Path, tmp_path: Path) -> None:
    """A checkpoint whose tensors transformers renames on loading (legacy ``LayerNorm.gamma``
    / ``beta``) is complete: it loads, and scores exactly as the original."""
    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_cross_encoder, legacy)
    weights = load_file(legacy / "model.safetensors")
    legacy_name = {".LayerNorm.weight": ".LayerNorm.gamma", ".LayerNorm.bias": ".LayerNorm.beta"}
    renamed = {}
    for key, value in weights.items():
        for new, old in legacy_name.items():
            key = key.replace(new, old)
        renamed[key] = value
    assert renamed.keys() != weights.keys()
    save_file(renamed, legacy / "model.safetensors", metadata={"format": "pt"})

    def ranked(path: Path) -> list[tuple[int, float]]:
        results = MemReranker(model=str(path), on_error="raise").rerank(QUERY, DOCS)
        return [(r.index, r.score) for r in results]

    assert ranked(legacy) == ranked(tiny_cross_encoder)
