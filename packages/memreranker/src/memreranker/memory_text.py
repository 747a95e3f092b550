"""The text of a memory given as a dict, read the way mem0 reads it.

mem0's rerankers score ``doc["memory"]``, else ``"text"``, else ``"content"``, else
``str(doc)``. The mem0 provider and the LangChain shell's ``rerank`` (which takes mem0-style
dicts) both read dicts through :func:`memory_text`, so the rule is written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TEXT_KEYS: tuple[str, ...] = ("memory", "text", "content")
"""Keys tried in order; the first whose value is a string is the text."""


def memory_text(item: Mapping[str, Any]) -> str:
    """The text to score for one memory dict.

    A key holding something other than a string (``{"memory": None, "text": "..."}``) is
    skipped rather than scored as ``"None"``; with none of the keys, the dict's ``str`` is
    scored, as mem0 does.
    """
    for key in TEXT_KEYS:
        value = item.get(key)
        if isinstance(value, str):
            return value
    return str(item)


def memory_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of one memory dict for ``document_template`` and recency: its own keys
    (mem0: ``created_at``, ``updated_at``, ``user_id``...) over those of its nested
    ``"metadata"`` dict (what the caller stored with it), so a ``{source}`` kept in mem0's
    metadata renders like a top-level one, and mem0's own keys win a clash."""
    nested = item.get("metadata")
    fields = dict(nested) if isinstance(nested, Mapping) else {}
    fields.update((key, value) for key, value in item.items() if key != "metadata")
    return fields
