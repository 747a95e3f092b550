"""memreranker.stand_in: the demo's and examples' tiny model, built once into a reused cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memreranker import stand_in
from memreranker.settings import DEFAULT_LOCAL_MODEL


def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMRERANKER_CACHE", str(tmp_path / "explicit"))
    assert stand_in.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("MEMRERANKER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert stand_in.cache_dir() == tmp_path / "xdg" / "memreranker"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert stand_in.cache_dir() == tmp_path / "home" / ".cache" / "memreranker"


def test_built_once_then_reused(stand_in_dir: Path) -> None:
    """The session's cache (``$MEMRERANKER_CACHE``) holds the model the fixture built, and
    nothing else: no build directory left behind. Asking again rebuilds nothing.
    (tests/test_demo.py builds into an empty cache and replaces a stale entry.)"""
    cache = stand_in.cache_dir()
    assert stand_in_dir.parent == cache
    # Other tests share the session's cache (runtime="onnx" keeps its exports under onnx/):
    # what the stand-in leaves is its model and no build directory (".<name>.XXXX").
    mine = sorted(p.name for p in cache.iterdir() if stand_in_dir.name in p.name)
    assert mine == [stand_in_dir.name]
    files = {p.name: p.stat().st_mtime_ns for p in stand_in_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files.keys()

    assert stand_in.stand_in_model() == stand_in_dir
    assert {p.name: p.stat().st_mtime_ns for p in stand_in_dir.iterdir()} == files
    # Other tests share the session's cache (runtime="onnx" keeps its exports under onnx/):
    # what the stand-in leaves is its model and no build directory (".<name>.XXXX").
    mine = sorted(p.name for p in cache.iterdir() if stand_in_dir.name in p.name)
    assert mine == [stand_in_dir.name]


def test_load_or_stand_in(stand_in_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    said: list[str] = []
    reranker, meaningful = stand_in.load_or_stand_in(str(tiny_model), announce=said.append)
    assert meaningful and said == [] and reranker.settings.model == str(tiny_model)
    reranker.close()

    missing = str(tmp_path / "no-such-model")
    reranker, meaningful = stand_in.load_or_stand_in(missing, announce=said.append)
    assert not meaningful
    assert reranker.settings.model == str(stand_in_dir)  # the cached one, not a new temp dir
    assert len(said) == 1 and "does not exist" in said[0] and "meaningless" in said[0]
    assert reranker.rerank("drinks?", ["tea", "chess"])[0].is_fallback is False
    reranker.close()


def test_default_model_is_the_model_card(
    monkeypatch: pytest.MonkeyPatch, stand_in_dir: Path
) -> None:
    """``None`` means the Hub checkpoint (offline here: announced, then the stand-in)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    said: list[str] = []
    reranker, meaningful = stand_in.load_or_stand_in(None, announce=said.append)
    assert not meaningful and len(said) == 1 and DEFAULT_LOCAL_MODEL in said[0]
    assert os.path.samefile(str(reranker.settings.model), stand_in_dir)
    reranker.close()
