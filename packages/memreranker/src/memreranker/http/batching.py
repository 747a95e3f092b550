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

from memreranker.errors import InputTooLongError, InstructionTooLongError
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
            max_documents_per_request=settings.resolved_max_documents_per_request(),
            max_tokens_per_request=settings.max_tokens_per_request,
            max_query_tokens=settings.max_query_tokens,
            max_document_tokens=settings.max_document_tokens,
            truncate=settings.truncate,
        )


def fit_inputs(
    query: str,
    documents: Sequence[str],
    limits: Limits,
    *,
    where: str,
    query_overhead: int = 0,
    document_overhead: int = 0,
) -> tuple[str, list[str]]:
    """Truncate (with a warning) or reject a query or documents over their token limits;
    :class:`InstructionTooLongError` if the template and instruction leave them no room.

    The limits apply to the texts as sent: ``query_overhead`` / ``document_overhead`` are
    the estimated tokens a prompt template will add around them, so the caller's own text
    gets what is left (and only the caller's text is ever cut, never the template).
    """
    query_room = limits.max_query_tokens - query_overhead
    document_room = limits.max_document_tokens - document_overhead
    if query_room < 1 or document_room < 1:
        # Never cut the instruction (see InstructionTooLongError), with or without truncate.
        raise InstructionTooLongError(
            f"the prompt template (and instruction) take about {query_overhead} tokens of "
            f"max_query_tokens={limits.max_query_tokens} and {document_overhead} of "
            f"max_document_tokens={limits.max_document_tokens}, leaving no room for the "
            "text: raise the limits, shorten the instruction or use prompt_format='plain'"
        )
    added = " with the prompt template" if query_overhead or document_overhead else ""
    if estimate_tokens(query) > query_room:
        size = estimate_tokens(query) + query_overhead
        if not limits.truncate:
            raise InputTooLongError(
                f"the query is about {size} tokens{added}, over max_query_tokens="
                f"{limits.max_query_tokens}; shorten it or set truncate=True"
            )
        logger.warning(
            "%s: query over max_query_tokens=%d (about %d tokens%s), truncated",
            where,
            limits.max_query_tokens,
            size,
            added,
        )
        query = truncate_text(query, query_room)
    docs = list(documents)
    long = [i for i, d in enumerate(docs) if estimate_tokens(d) > document_room]
    if long:
        if not limits.truncate:
            raise InputTooLongError(
                f"documents {long[:10]} are over max_document_tokens="
                f"{limits.max_document_tokens}{added}; shorten them or set truncate=True"
            )
        logger.warning(
            "%s: %d document(s) over max_document_tokens=%d%s truncated (indices %s)",
            where,
            len(long),
            limits.max_document_tokens,
            added,
            long[:10],
        )
        for i in long:
            docs[i] = truncate_text(docs[i], document_room)
    return query, docs


def plan_batches(documents: Sequence[str], limits: Limits) -> list[range]:
    """Consecutive slices of ``documents`` (as sent: templated, if they are), each within the
    per-request count and token budget.

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
