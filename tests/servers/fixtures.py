"""pytest fixtures around :class:`servers.RerankServer` (a pytest plugin module).

Registered in ``tests/conftest.py`` with ``pytest_plugins = ["servers.fixtures"]``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servers.rerank_server import RerankServer, refused_port


@pytest.fixture
def rerank_server() -> Iterator[RerankServer]:
    """A started loopback rerank server (MemOS, vLLM and Cohere v2 routes), one per test.

    ``rerank_server.url`` is a vLLM ``base_url``; ``rerank_server.memos_base_url`` the MemOS
    one. Script replies with ``rerank_server.script(...)``; read ``rerank_server.requests``.
    """
    with RerankServer() as server:
        yield server


@pytest.fixture
def refused_url() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens (a port bound, then released)."""
    return f"http://127.0.0.1:{refused_port()}"
