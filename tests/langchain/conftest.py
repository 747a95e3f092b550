"""Fixtures of the LangChain integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from lc_testkit import BagOfWords, Hosted, memory_documents
from servers import RerankServer
from servers.clients import FAST

from langchain_memreranker import MemRerank


@pytest.fixture
def vectorstore() -> InMemoryVectorStore:
    store = InMemoryVectorStore(embedding=BagOfWords())
    store.add_documents(memory_documents())
    return store


@pytest.fixture
def hosted(rerank_server: RerankServer) -> Iterator[Hosted]:
    """Builds compressors that score through ``rerank_server`` (vllm backend, quick retries);
    script the server to script the scores. Every compressor is closed after the test."""
    built: list[MemRerank] = []

    def make(**options: Any) -> MemRerank:
        settings: dict[str, Any] = {"backend": "vllm", "base_url": rerank_server.url, **FAST}
        compressor = MemRerank(**{**settings, **options})
        built.append(compressor)
        return compressor

    yield make
    for compressor in built:
        compressor.close()


@pytest.fixture
def missing_model(tmp_path: Path) -> str:
    """A model directory that does not exist: loading it fails (a real outage)."""
    return str(tmp_path / "no-such-model")
