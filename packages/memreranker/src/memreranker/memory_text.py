"""The text of a memory given as a dict, read the way mem0 reads it.

mem0's rerankers score ``doc["memory"]``, else ``"text"``, else ``"content"``, else
``str(doc)``. The mem0 provider, the LangChain shell's ``rerank`` (which takes mem0-style
dicts) and ``MemRerankStore`` (LangGraph store values) all read dicts through this module, so
the rule is written once.

LangMem keeps a memory in a LangGraph store as ``{"kind": "Memory", "content": {"content":
"..."}}``: a text key holding a dict is read by the same rule, one level down, so that such a
value is scored by its text rather than by its ``str``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TEXT_KEYS: tuple[str, ...] = ("memory", "text", "content")
"""Keys tried in order; the first whose value is a string is the text."""

_MAX_DEPTH = 2
"""How far nested text keys are followed: LangMem nests once; deeper is not a memory shape."""


def find_memory_text(item: Mapping[str, Any]) -> str | None:
    """The text of one memory dict, or ``None`` when none of :data:`TEXT_KEYS` holds one.

    The first key holding a string wins; then, in the same key order, a key holding a dict
    is read by the same rule (LangMem's ``{"content": {"content": "..."}}``).
    """
    return _find(item, _MAX_DEPTH)


def memory_text(item: Mapping[str, Any]) -> str:
    """The text to score for one memory dict.

    A key holding something other than a string (``{"memory": None, "text": "..."}``) is
    skipped rather than scored as ``"None"``; with none of the keys (nor a nested one, see
    :func:`find_memory_text`), the dict's ``str`` is scored, as mem0 does.
    """
    text = find_memory_text(item)
    return str(item) if text is None else text


def _find(item: Mapping[str, Any], depth: int) -> str | None:
    for key in TEXT_KEYS:
        value = item.get(key)
        if isinstance(value, str):
            return value
    if depth > 1:
        for key in TEXT_KEYS:
            value = item.get(key)
            if isinstance(value, Mapping):
                text = _find(value, depth - 1)
                if text is not None:
                    return text
    return None
