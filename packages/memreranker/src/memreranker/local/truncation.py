"""How a local prompt is fitted into ``max_length`` without ever hiding the documents.

The model card truncates the whole ``query + document`` body from the right. Within the limits
that changes nothing, and the token ids stay exactly the card's. Past them it would cut the
document first and then the query, so a long enough query leaves no document in any prompt:
every document gets the same score, a ranking that is really the input order. Here the query
gets a budget instead, and documents keep the rest:

* the **query** may use at most ``max_query_tokens`` tokens (the setting the hosted backends
  use too) and at most half of the *room*: what ``max_length`` leaves once the fixed prompt
  (system prompt, instruction, labels, suffix) is in. A longer query is cut to its budget with
  one warning, or refused with :class:`~memreranker.errors.InputTooLongError` when
  ``truncate=False``;
* a **document** that does not fit in what is left is cut from the right, as the card does,
  with one warning per call saying how many were cut (or ``InputTooLongError`` with
  ``truncate=False``). A document rendered through ``document_template`` (a
  :class:`~memreranker.document_template.RenderedText`) loses the end of the memory's own
  text instead, so that its date and the template's other parts stay whole
  (:func:`cut_memory_text`).

Pure functions over a Hugging Face tokenizer (no torch), for any local engine to call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from memreranker.document_template import RenderedText
from memreranker.errors import InputTooLongError

logger = logging.getLogger("memreranker")


def query_budget(room: int, max_query_tokens: int) -> int:
    """Tokens the query may use out of ``room`` (the tokens ``max_length`` leaves for query
    and document): ``max_query_tokens``, and never more than half of ``room``, so that the
    document always keeps at least as many as the query may take."""
    return max(0, min(max_query_tokens, room // 2))


def fit_query(
    tokenizer: Any,
    query: str,
    *,
    budget: int,
    max_query_tokens: int,
    truncate: bool,
    where: str,
) -> str:
    """``query`` itself when it fits in ``budget`` tokens; else its longest prefix that does
    (with one warning), or ``InputTooLongError`` when ``truncate`` is false."""
    fast = bool(getattr(tokenizer, "is_fast", False))  # fast tokenizers give char offsets
    encoded = tokenizer(query, add_special_tokens=False, return_offsets_mapping=fast, verbose=False)
    ids = encoded["input_ids"]
    if len(ids) <= budget:
        return query
    why = (
        f"the query is {len(ids)} tokens, over its budget of {budget} "
        f"(max_query_tokens={max_query_tokens}, and at most half of what max_length leaves "
        "for query and document)"
    )
    if not truncate:
        raise InputTooLongError(
            f"{why}; shorten it, raise max_query_tokens or max_length, or set truncate=True"
        )
    logger.warning("%s: %s; truncated to %d tokens", where, why, budget)
    if budget == 0:
        return ""
    if fast:
        return query[: encoded["offset_mapping"][budget - 1][1]]  # a prefix of the text
    return str(tokenizer.decode(ids[:budget]))


def report_truncated_documents(
    cut: Sequence[int],
    total: int,
    *,
    max_length: int,
    truncate: bool,
    where: str,
) -> None:
    """One warning for the documents of a call (indices ``cut`` of ``total``) that had to be
    cut to fit ``max_length``, or ``InputTooLongError`` when ``truncate`` is false."""
    if not cut:
        return
    shown = list(cut[:10])
    if not truncate:
        raise InputTooLongError(
            f"documents {shown} do not fit in max_length={max_length} tokens with the prompt "
            "and the query; shorten them, raise max_length, or set truncate=True"
        )
    logger.warning(
        "%s: %d of %d document(s) over max_length=%d with the prompt and the query, "
        "truncated (indices %s)",
        where,
        len(cut),
        total,
        max_length,
        shown,
    )


def cut_memory_text(
    tokenizer: Any, document: RenderedText, over: Callable[[str], int]
) -> RenderedText | None:
    """``document`` with the end of its own text cut until ``over(candidate)`` (tokens over
    the budget) is at most 0; ``None`` when even an empty text is over (the template's fixed
    parts alone do not fit: the caller then cuts the whole string)."""
    if over(document.with_text("")) > 0:
        return None
    text = document.text
    fast = bool(getattr(tokenizer, "is_fast", False))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=fast, verbose=False)
    ids = encoded["input_ids"]

    def prefix(keep: int) -> str:
        if keep <= 0:
            return ""
        if fast:
            return text[: encoded["offset_mapping"][keep - 1][1]]
        return str(tokenizer.decode(ids[:keep]))

    keep = len(ids)
    candidate = document
    # Tokens do not add up exactly across the cut (merges), so a few rounds may be needed;
    # each drops at least one token, and an empty text is known to fit.
    for _ in range(8):
        excess = over(candidate)
        if excess <= 0:
            return candidate
        keep = max(0, keep - excess)
        candidate = document.with_text(prefix(keep))
    while keep > 0 and over(candidate) > 0:
        keep -= 1
        candidate = document.with_text(prefix(keep))
    return candidate
