"""Identical documents are scored once: the one place that removes and restores them.

Scores are pointwise (P(yes) of one document does not depend on the others), so a document
that appears several times in a call needs one forward pass or one place in a request.
``MemReranker`` removes them before any backend sees the call (local engines, the hosted
services, the score cache, a user's own :class:`~memreranker.Backend`) and gives every copy
its document's score; the prefix engine also merges prompts whose token ids coincide after
truncation, which only it can see.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Distinct(Generic[Item]):
    """The distinct items of a sequence, in first-seen order, and where each one went.

    ``key`` says when two items are the same (default: the item itself, which must then be
    hashable); the first item of each key is kept.
    """

    def __init__(
        self, items: Sequence[Item], key: Callable[[Item], Hashable] | None = None
    ) -> None:
        slot: dict[Hashable, int] = {}
        self.items: list[Item] = []
        self.index: list[int] = []
        """For each input position, its item's position in :attr:`items`."""
        for item in items:
            position = slot.setdefault(item if key is None else key(item), len(self.items))
            if position == len(self.items):
                self.items.append(item)
            self.index.append(position)

    @property
    def has_duplicates(self) -> bool:
        return len(self.items) < len(self.index)

    def expand_scored(self, scored: Iterable[tuple[int, float]]) -> list[tuple[int, float]]:
        """``(input position, score)`` for every copy of each ``(distinct position, score)``:
        a distinct item scored (or left out by ``top_n``) stands for all its copies."""
        if not self.has_duplicates:
            return list(scored)
        copies: list[list[int]] = [[] for _ in self.items]
        for position, distinct in enumerate(self.index):
            copies[distinct].append(position)
        return [(position, score) for distinct, score in scored for position in copies[distinct]]
