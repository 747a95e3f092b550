"""LangChain integration of MemReranker: ``MemRerank``, a document compressor.

Use it as the ``base_compressor`` of a ``ContextualCompressionRetriever``. Importing this
package never imports torch.
"""

from __future__ import annotations

from langchain_memreranker.rerank import FALLBACK_KEY, RELEVANCE_SCORE_KEY, MemRerank

__version__ = "0.1.0"

__all__ = ["FALLBACK_KEY", "RELEVANCE_SCORE_KEY", "MemRerank", "__version__"]
