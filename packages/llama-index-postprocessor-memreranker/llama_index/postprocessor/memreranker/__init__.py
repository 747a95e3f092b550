"""LlamaIndex node postprocessor for MemReranker."""

from llama_index.postprocessor.memreranker.base import MemRerank

__all__ = ["MemRerank"]
