"""Fixtures of the LangChain integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from lc_testkit import BackendFactory, BagOfWords, FakeBackend, memory_documents


@pytest.fixture
def vectorstore() -> InMemoryVectorStore:
    store = InMemoryVectorStore(embedding=BagOfWords())
    store.add_documents(memory_documents())
    return store


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> BackendFactory:
    """Every MemReranker built in the test gets the same scripted backend."""
    factory = BackendFactory(FakeBackend())
    monkeypatch.setattr("memreranker.reranker.create_backend", factory)
    return factory


@pytest.fixture
def missing_model(tmp_path: Path) -> str:
    """A model directory that does not exist: loading it fails (a real outage)."""
    return str(tmp_path / "no-such-model")
