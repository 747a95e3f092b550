"""The model card's prompt, verbatim. Pure strings: no torch, shared by every engine.

A prompt is ``PREFIX + format_body(instruction, query, document) + SUFFIX``. A rerank server
that scores the concatenation of a query string and a document string (vLLM serving the
original Qwen3-Reranker checkpoint, TEI serving a seq-cls conversion) gets the same text
when the query is sent as :func:`format_query` and each document as :func:`format_document`:
the four functions below are built from the same two pieces, so the local and the served
prompts cannot drift apart.
"""

from __future__ import annotations

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def format_body(instruction: str | None, query: str, document: str) -> str:
    """The text between PREFIX and SUFFIX for one pair."""
    return query_block(instruction, query) + document_block(document)


def query_block(instruction: str | None, query: str) -> str:
    """The body's first part: the ``<Instruct>`` and ``<Query>`` lines (None: the default
    instruction)."""
    if instruction is None:
        instruction = DEFAULT_INSTRUCTION
    return f"<Instruct>: {instruction}\n<Query>: {query}\n"


def document_block(document: str) -> str:
    """The body's last part: the ``<Document>`` line."""
    return f"<Document>: {document}"


def format_query(instruction: str | None, query: str) -> str:
    """The query string a served reranker gets: PREFIX + the ``<Instruct>``/``<Query>`` lines."""
    return PREFIX + query_block(instruction, query)


def format_document(document: str) -> str:
    """A document string a served reranker gets: the ``<Document>`` line + SUFFIX."""
    return document_block(document) + SUFFIX
