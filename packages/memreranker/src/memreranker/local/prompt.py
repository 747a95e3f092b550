"""Moved to :mod:`memreranker.prompt` (torch-free, shared with ``http/``); kept for imports
written before the move."""

from memreranker.prompt import (  # noqa: F401
    DEFAULT_INSTRUCTION,
    PREFIX,
    SUFFIX,
    document_block,
    format_body,
    format_document,
    format_query,
    query_block,
)
