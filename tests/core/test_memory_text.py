"""mem0's rule for the text of a memory dict, written once in the core."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from memreranker.memory_text import memory_text


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
