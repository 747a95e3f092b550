"""LangChain integration of MemReranker: ``MemRerank``, a document compressor, and
``MemRerankStore``, a LangGraph store whose searches are reranked.

Use ``MemRerank`` as the ``base_compressor`` of a ``ContextualCompressionRetriever``, and
``MemRerankStore`` around the store an agent keeps its memories in (extra ``[langgraph]``).
Importing this package never imports torch, nor langgraph: ``MemRerankStore`` is loaded on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_memreranker.rerank import FALLBACK_KEY, RELEVANCE_SCORE_KEY, MemRerank

if TYPE_CHECKING:
    from langchain_memreranker.store import MemRerankStore, RerankedSearchItem

__version__ = "0.1.0"

__all__ = [
    "FALLBACK_KEY",
    "RELEVANCE_SCORE_KEY",
    "MemRerank",
    "MemRerankStore",
    "RerankedSearchItem",
    "__version__",
]

_LAZY = {"MemRerankStore", "RerankedSearchItem"}


def __getattr__(name: str) -> Any:
    # langgraph is an optional extra: imported only when the store is asked for.
    if name in _LAZY:
        try:
            from langchain_memreranker import store
        except ImportError as exc:
            if exc.name is None or not exc.name.startswith("langgraph"):
                raise
            raise ImportError(
                f"{name} needs langgraph's store: pip install 'langchain-memreranker[langgraph]'"
            ) from exc
        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
