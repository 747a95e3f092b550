"""Identical documents are scored once: the one place that removes and restores them.

Scores are pointwise (P(yes) of one document does not depend on the others), so a document
that appears several times in a call needs one forward pass. The local backend (every
engine) and the score cache go through :class:`Distinct`; the prefix engine also merges
prompts whose token ids coincide after truncation, which only it can see.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item", bound=Hashable)


class Distinct(Generic[Item]):
    """The distinct items of a sequence, in first-seen order, and where each one went."""

    def __init__(self, items: Sequence[Item]) -> None:
        slot: dict[Item, int] = {}
        self.index = [slot.setdefault(item, len(slot)) for item in items]
        """For each input position, its item's position in :attr:`items`."""
        self.items: list[Item] = list(slot)

    @property
    def has_duplicates(self) -> bool:
        return len(self.items) < len(self.index)

    def expand(self, values: Sequence[float]) -> list[float]:
        """Per-input values from one value per distinct item."""
        if len(values) != len(self.items):
            raise ValueError(f"got {len(values)} values for {len(self.items)} distinct items")
        return [values[i] for i in self.index]
