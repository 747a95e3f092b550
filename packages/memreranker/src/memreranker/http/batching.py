"""Fitting a rerank call into a service's limits: truncation, batches and merging.

Token counts are estimates (no tokenizer is loaded for a hosted backend): an ASCII character
counts a third of a token and any other character a whole one. That over-counts English
(about four characters a token) and matches CJK text (a character is a token or more), so
the estimate errs on the safe side of the documented limits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memreranker.errors import InputTooLongError
from memreranker.ranking import Scored
from memreranker.settings import RerankerSettings

logger = logging.getLogger("memreranker")


def estimate_tokens(text: str) -> int:
    """A cheap, conservative token count: ceil(ASCII chars / 3) + non-ASCII chars."""
    n_ascii = len(text.encode("ascii", "ignore")) if not text.isascii() else len(text)
    return -(-n_ascii // 3) + (len(text) - n_ascii)


def truncate_text(text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` whose estimate fits in ``max_tokens``."""
    if estimate_tokens(text) <= max_tokens:
        return text
    lo, hi = 0, len(text)  # the prefix of length lo fits, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if estimate_tokens(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid
    return text[:lo]


@dataclass(frozen=True)
class Limits:
    max_documents_per_request: int
    max_tokens_per_request: int
    max_query_tokens: int
    max_document_tokens: int
    truncate: bool

    @classmethod
    def from_settings(cls, settings: RerankerSettings) -> Limits:
        return cls(
            max_documents_per_request=settings.max_documents_per_request,
            max_tokens_per_request=settings.max_tokens_per_request,
            max_query_tokens=settings.max_query_tokens,
            max_document_tokens=settings.max_document_tokens,
            truncate=settings.truncate,
        )


def fit_inputs(
    query: str, documents: Sequence[str], limits: Limits, *, where: str
) -> tuple[str, list[str]]:
    """Truncate (with a warning) or reject a query or documents over their token limits."""
    if estimate_tokens(query) > limits.max_query_tokens:
        if not limits.truncate:
            raise InputTooLongError(
                f"the query is about {estimate_tokens(query)} tokens, over max_query_tokens="
                f"{limits.max_query_tokens}; shorten it or set truncate=True"
            )
        logger.warning(
            "%s: query over max_query_tokens=%d (about %d tokens), truncated",
            where,
            limits.max_query_tokens,
            estimate_tokens(query),
        )
        query = truncate_text(query, limits.max_query_tokens)
    docs = list(documents)
    long = [i for i, d in enumerate(docs) if estimate_tokens(d) > limits.max_document_tokens]
    if long:
        if not limits.truncate:
            raise InputTooLongError(
                f"documents {long[:10]} are over max_document_tokens="
                f"{limits.max_document_tokens}; shorten them or set truncate=True"
            )
        logger.warning(
            "%s: %d document(s) over max_document_tokens=%d truncated (indices %s)",
            where,
            len(long),
            limits.max_document_tokens,
            long[:10],
        )
        for i in long:
            docs[i] = truncate_text(docs[i], limits.max_document_tokens)
    return query, docs


def plan_batches(documents: Sequence[str], limits: Limits) -> list[range]:
    """Consecutive slices of ``documents``, each within the per-request count and token budget.

    A single document larger than the token budget travels alone.
    """
    batches: list[range] = []
    start, tokens = 0, 0
    for i, doc in enumerate(documents):
        cost = max(1, estimate_tokens(doc))
        full = i - start >= limits.max_documents_per_request
        over = i > start and tokens + cost > limits.max_tokens_per_request
        if full or over:
            batches.append(range(start, i))
            start, tokens = i, 0
        tokens += cost
    if start < len(documents):
        batches.append(range(start, len(documents)))
    return batches


def merge(parts: Iterable[tuple[range, list[Scored]]]) -> list[Scored]:
    """Scores of every batch with indices shifted back to the caller's list."""
    merged: list[Scored] = []
    for batch, scored in parts:
        merged.extend((batch.start + index, score) for index, score in scored)
    return merged
