"""Helpers of the LlamaIndex integration tests (a uniquely named module, importable by name).

Not named ``llama_index*``: no ``__init__.py`` here, and a module of that name on
``sys.path`` could hide the real namespace package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from servers import RecordedRequest

from memreranker import MemReranker

SERVED_MODEL = "served-reranker"
"""The model name the ``hosted_core`` fixture's reranker sends; its name is ``vllm:<this>``."""

HostedCore = Callable[..., MemReranker]
"""The ``hosted_core`` fixture: ``hosted_core(**options)`` builds a real ``MemReranker`` on the
vLLM backend of the test's rerank server (conftest.py)."""


def user_agents(requests: Sequence[RecordedRequest]) -> list[str]:
    """The HTTP client library of each request: ``"requests"`` (the core's sync transport)
    or ``"httpx"`` (its async one), from the ``User-Agent`` header."""
    return [r.headers["user-agent"].split("/", 1)[0].removeprefix("python-") for r in requests]


def client_ports(requests: Sequence[RecordedRequest]) -> list[int]:
    """The client port of each request: one port for several requests is one kept-alive
    connection of one connection pool."""
    ports = []
    for request in requests:
        assert request.client_address is not None, "the server did not record the client"
        ports.append(request.client_address[1])
    return ports
