"""Fixtures shared by every test directory."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["servers.fixtures"]  # rerank_server, refused_url (tests/servers)


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
def tiny_qwen3_cross_encoder(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The seq-cls conversion of ``tiny_model`` (Qwen3ForSequenceClassification, one label,
    head row = yes row - no row), prepared for sentence-transformers with the card's prompt."""
    from memreranker.testing import build_test_qwen3_cross_encoder

    return build_test_qwen3_cross_encoder(
        tmp_path_factory.mktemp("tiny-qwen3-cross-encoder"), causal=tiny_model
    )
