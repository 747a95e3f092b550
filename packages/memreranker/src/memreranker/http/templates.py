"""What a served reranker is sent: the texts as given, or wrapped in the model card's template.

A server in Qwen3-Reranker mode (vLLM with ``is_original_qwen3_reranker``, TEI serving a
seq-cls conversion) scores the query string followed by each document string. With
``prompt_format="qwen3"`` the query goes out as ``PREFIX + <Instruct>/<Query> lines`` and each
document as ``<Document> line + SUFFIX`` (:mod:`memreranker.prompt`, the same functions
the local backend builds its prompts from), so the concatenation the server scores is the
model card's prompt, instruction included. ``"plain"`` sends the texts untouched.

The template costs tokens on every request (about 75 real tokens on the query, a dozen on
each document), so limits and batches are planned on the texts as sent: :class:`Template`
says how much room the wrapping leaves for the caller's own text.
"""

from __future__ import annotations

from dataclasses import dataclass

from memreranker.http.batching import estimate_tokens
from memreranker.prompt import format_document, format_query
from memreranker.settings import PromptFormat


@dataclass(frozen=True)
class Template:
    """Wraps a call's query and documents for the wire. Pure strings; never imports torch."""

    format: PromptFormat

    @property
    def uses_instruction(self) -> bool:
        return self.format == "qwen3"

    def query(self, instruction: str | None, query: str) -> str:
        """The query as sent (``instruction=None``: the model card's default)."""
        return format_query(instruction, query) if self.format == "qwen3" else query

    def document(self, document: str) -> str:
        return format_document(document) if self.format == "qwen3" else document

    def query_overhead(self, instruction: str | None) -> int:
        """Estimated tokens the wrapping adds to the query (an upper bound: estimates of two
        strings add up to at least the estimate of their concatenation)."""
        return estimate_tokens(self.query(instruction, "")) if self.format == "qwen3" else 0

    @property
    def document_overhead(self) -> int:
        """Estimated tokens the wrapping adds to each document."""
        return estimate_tokens(self.document("")) if self.format == "qwen3" else 0
