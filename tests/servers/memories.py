"""Hand-made memories for the document_template and recency tests of every surface.

Each memory has a P(yes) the loopback server gives it (:func:`by_text`, a
``Score(model=...)`` stand-in that finds the memory's text in whatever string it is sent)
and an age, so that a test computes the expected recency order from the formula itself
(:func:`expected_order`), independently of the package.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

MEMORY = "User stopped drinking."
CREATED = "2026-10-01T09:30:00+00:00"
RENDERED = "[2026-10-01] User stopped drinking."
TEMPLATE = "[{date}] {text}"
QUERY = "Does the user drink?"

HALF_LIFE = timedelta(days=2)
WEIGHT = 0.4

# text: (P(yes) the server gives, age at "now"; None: no date; negative: in the future)
MEMORIES: dict[str, tuple[float, timedelta | None]] = {
    "old but very relevant": (0.9, timedelta(days=12)),
    "fresh and relevant": (0.7, timedelta(hours=6)),
    "fresh, less relevant": (0.5, timedelta(hours=1)),
    "undated and relevant": (0.8, None),
    "from the future": (0.2, -timedelta(days=3)),  # age clamped at 0: recency 1
    "week old": (0.6, timedelta(days=7)),
}
TEXTS = list(MEMORIES)


def by_text(query: str, document: str) -> float:
    for text, (score, _) in MEMORIES.items():
        if text in document:
            return score
    raise AssertionError(f"not a known memory: {document!r}")


def dates(now: datetime) -> list[datetime | None]:
    return [None if age is None else now - age for _, age in MEMORIES.values()]


def fields(now: datetime, key: str = "created_at") -> list[dict[str, Any] | None]:
    """Each memory's fields: its date as an ISO string under ``key`` (None: undated)."""
    return [None if when is None else {key: when.isoformat()} for when in dates(now)]


def expected_order(
    weight: float, now: datetime, threshold: float | None = None
) -> list[tuple[str, float, float]]:
    """(text, P(yes), rank score) best first: (1 - w) * P(yes) + w * 0.5 ** (age / half_life),
    age clamped at 0, recency 0 without a date, ties in input order."""
    rows = []
    for position, ((text, (score, _)), when) in enumerate(
        zip(MEMORIES.items(), dates(now), strict=True)
    ):
        if when is None:
            recency = 0.0
        else:
            age = max((now - when).total_seconds(), 0.0)
            recency = 0.5 ** (age / HALF_LIFE.total_seconds())
        if threshold is None or score >= threshold:
            rows.append((position, text, score, (1 - weight) * score + weight * recency))
    rows.sort(key=lambda row: (-row[3], row[0]))
    return [(text, score, key) for _, text, score, key in rows]
