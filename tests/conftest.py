"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# rerank_server, refused_url (tests/servers); deprecated calls from our code are errors.
pytest_plugins = ["servers.fixtures", "our_deprecations"]

# Redirected for the whole session (the programs the tests start inherit them).
_SESSION_ENV = ("TMPDIR", "TEMP", "TMP", "MEMRERANKER_CACHE", "TORCHINDUCTOR_CACHE_DIR")
# torch's own cache directory (torchinductor_<user>), made in the temp directory on import
# when TORCHINDUCTOR_CACHE_DIR does not say where: not ours, and reused rather than growing.
_NOT_OURS = "torchinductor_"


@pytest.fixture(scope="session", autouse=True)
def session_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The temp directory of the tests and of every program they start: a folder inside
    pytest's base temp directory, which must be empty when the session ends.

    Nothing the suite runs may leave files in the system temp directory run after run;
    this both keeps it so and catches a leak (the session then ends with an error naming
    what was left). The stand-in model cache (``$MEMRERANKER_CACHE``) and torch's inductor
    cache also live inside pytest's base temp directory for the session.
    """
    base = tmp_path_factory.getbasetemp()
    temp = base / "tmp"
    temp.mkdir()
    saved = {name: os.environ.get(name) for name in _SESSION_ENV}
    os.environ.update(
        TMPDIR=str(temp),
        TEMP=str(temp),
        TMP=str(temp),
        MEMRERANKER_CACHE=str(base / "memreranker-cache"),
        TORCHINDUCTOR_CACHE_DIR=str(base / "torchinductor"),
    )
    tempfile.tempdir = None  # computed afresh from $TMPDIR
    try:
        yield temp
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        tempfile.tempdir = None
    left = sorted(p.name for p in temp.iterdir() if not p.name.startswith(_NOT_OURS))
    if left:
        pytest.fail(f"the tests left {left} in the temp directory ({temp})", pytrace=False)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3 reranker with the real Qwen3 tokenizer, on disk (seed 0)."""
    from memreranker.testing import build_test_model

    return build_test_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT cross-encoder (one label, WordPiece tokenizer), on disk (seed 0)."""
    from memreranker.testing import build_test_cross_encoder

    return build_test_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"), seed=0)


@pytest.fixture(scope="session")
def stand_in_dir(session_temp_dir: Path, tiny_model: Path) -> Path:
    """The demo's and the examples' stand-in model in the session's ``$MEMRERANKER_CACHE``,
    so that the example programs started by tests find it there. The same builder and seed
    as ``tiny_model``, so a copy of it rather than a second build (tests/test_demo.py
    exercises the build)."""
    from memreranker.stand_in import stand_in_model, stand_in_path

    target = stand_in_path()
    shutil.copytree(tiny_model, target)
    assert stand_in_model() == target  # found complete: not rebuilt
    return target


@pytest.fixture(scope="session")
def tiny_qwen3_cross_encoder(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The seq-cls conversion of ``tiny_model`` (Qwen3ForSequenceClassification, one label,
    head row = yes row - no row), prepared for sentence-transformers with the card's prompt."""
    from memreranker.testing import build_test_qwen3_cross_encoder

    return build_test_qwen3_cross_encoder(
        tmp_path_factory.mktemp("tiny-qwen3-cross-encoder"), causal=tiny_model
    )
