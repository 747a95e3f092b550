"""Helpers of the LlamaIndex integration tests (a uniquely named module, importable by name).

Not named ``llama_index*``: no ``__init__.py`` here, and a module of that name on
``sys.path`` could hide the real namespace package.
"""

from __future__ import annotations

from collections.abc import Callable

from memreranker import MemReranker

SERVED_MODEL = "served-reranker"
"""The model name the ``hosted_core`` fixture's reranker sends; its name is ``vllm:<this>``."""

HostedCore = Callable[..., MemReranker]
"""The ``hosted_core`` fixture: ``hosted_core(**options)`` builds a real ``MemReranker`` on the
vLLM backend of the test's rerank server (conftest.py)."""
