"""mem0's rule for the text of a memory dict, written once in the core."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from memreranker.memory_text import find_memory_text, memory_text


@pytest.mark.parametrize(
    ("item", "text"),
    [
        ({"memory": "m", "text": "t", "content": "c"}, "m"),
        ({"text": "t", "content": "c"}, "t"),
        ({"content": "c"}, "c"),
        ({"memory": None, "text": "t"}, "t"),  # a non-string value is skipped
        ({"memory": 3, "content": "c"}, "c"),
        ({"memory": ""}, ""),  # an empty string is still the memory's text
        (MappingProxyType({"text": "t"}), "t"),
    ],
)
def test_first_string_of_memory_text_content(item: Any, text: str) -> None:
    assert memory_text(item) == text


def test_otherwise_the_dicts_str() -> None:
    item = {"id": "7", "data": "no text key"}
    assert memory_text(item) == str(item)


def test_langmem_nested_content() -> None:
    """LangMem's store value: the text one level down, not the dict's str."""
    item = {"kind": "Memory", "content": {"content": "User likes tea."}}
    assert memory_text(item) == "User likes tea."
    assert find_memory_text(item) == "User likes tea."


def test_a_string_key_wins_over_a_nested_one() -> None:
    assert memory_text({"memory": {"text": "nested"}, "content": "flat"}) == "flat"
    assert memory_text({"memory": {"x": 1}, "text": {"memory": "inner"}}) == "inner"


def test_nesting_is_followed_one_level_only() -> None:
    item = {"content": {"content": {"content": "too deep"}}}
    assert find_memory_text(item) is None
    assert memory_text(item) == str(item)
    assert find_memory_text({"id": "7"}) is None
