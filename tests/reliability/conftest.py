"""Fixtures of the reliability suite (the loopback servers come from tests/servers)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from memreranker import MemReranker


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Local inference on one intra-op thread while this suite runs: on a small, shared CI
    machine torch's default (a thread per core, spinning) runs the tiny model several times
    slower from the main thread than from worker threads. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def nan_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with every weight overwritten by NaN: it loads (shapes, names and
    tokenizer are intact) and runs, but every score it computes is NaN. A checkpoint
    corrupted on disk, as a bad conversion or a flipped file leaves it."""
    import torch
    from safetensors.torch import load_file, save_file

    target = tmp_path_factory.mktemp("nan-model")
    for item in tiny_model.iterdir():
        if item.is_file() and item.name != "model.safetensors":
            shutil.copy(item, target / item.name)
    weights = load_file(tiny_model / "model.safetensors")
    corrupted = {name: torch.full_like(t, float("nan")) for name, t in weights.items()}
    save_file(corrupted, target / "model.safetensors", metadata={"format": "pt"})
    return target


@pytest.fixture(scope="session")
def tiny_reranker(tiny_model: Path) -> Iterator[MemReranker]:
    """One loaded tiny model for the whole suite (loading the tokenizer takes seconds);
    ``max_length`` small so that long inputs stay quick. Errors raise: a test that expects
    scores must not pass on a silent fallback."""
    reranker = MemReranker(model=str(tiny_model), max_length=256, on_error="raise")
    reranker.load()
    yield reranker
    reranker.close()
