"""Checks of caller input. Caller mistakes are bugs, not outages: they raise in every mode."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any


def check_query(query: Any) -> str:
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    if not query.strip():
        raise ValueError("query must not be empty or whitespace")
    return query


def check_documents(documents: Any) -> list[str]:
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise TypeError(
            f"documents must be a sequence of str (a list, say), got {type(documents).__name__}"
        )
    docs = list(documents)
    for i, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise TypeError(f"documents[{i}] must be a str, got {type(doc).__name__}")
    return docs


def check_top_n(top_n: Any) -> int | None:
    if top_n is None:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, int):
        raise TypeError(f"top_n must be an int or None, got {type(top_n).__name__}")
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0 or None, got {top_n}")
    return top_n


def check_score_threshold(score_threshold: Any) -> float | None:
    if score_threshold is None:
        return None
    if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)):
        raise TypeError(
            f"score_threshold must be a float or None, got {type(score_threshold).__name__}"
        )
    if math.isnan(score_threshold) or not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be within [0, 1], got {score_threshold}")
    return float(score_threshold)


def check_instruction(instruction: Any) -> str | None:
    if instruction is not None and not isinstance(instruction, str):
        raise TypeError(f"instruction must be a str or None, got {type(instruction).__name__}")
    return instruction


def check_metadata(metadata: Any, n_documents: int) -> list[Mapping[str, Any] | None] | None:
    """``None``, or one Mapping (or ``None``) per document, aligned by index."""
    if metadata is None:
        return None
    if isinstance(metadata, (str, bytes, Mapping)) or not isinstance(metadata, Sequence):
        raise TypeError(
            "metadata must be None or a sequence (a list, say) of one dict per document, "
            f"got {type(metadata).__name__}"
        )
    items = list(metadata)
    if len(items) != n_documents:
        raise ValueError(
            f"metadata must have one item per document: got {len(items)} for {n_documents} "
            "document(s)"
        )
    for i, item in enumerate(items):
        if item is not None and not isinstance(item, Mapping):
            raise TypeError(f"metadata[{i}] must be a dict or None, got {type(item).__name__}")
    return items


def check_now(now: Any) -> datetime | None:
    if now is not None and not isinstance(now, datetime):
        raise TypeError(f"now must be a datetime or None, got {type(now).__name__}")
    return now
