"""How many candidates a "fetch N, rerank, keep k" search draws: one rule for every surface.

``MemRerankStore`` (LangGraph) and :func:`memreranker.mem0.search` (mem0) both widen a
search to a pool, rerank it and keep the best; the pool's size is decided here.

Without ``candidates`` the pool is ``max(20, 3 * kept)``, ``kept`` being what the search
returns (``offset + limit``, or ``top_k``). 20 is the pool of the usual "fetch 20, keep 3 to
5" recipe (mem0's default search ``top_k``, LlamaIndex's rerank examples); the factor keeps
three candidates per kept item as searches grow (LangMem's search tool asks for 10: 30).
Scoring cost is linear in the pool, so it stays a small multiple rather than "everything".
A ``candidates`` given is used as is, but never below ``kept``: a search always gets the
items it asked for when the store holds them.
"""

from __future__ import annotations

from typing import Any

DEFAULT_CANDIDATES = 20
"""The smallest pool drawn when ``candidates`` is not set."""

POOL_FACTOR = 3
"""Without ``candidates``, the pool holds this many candidates per item kept (at least 20)."""


def check_candidates(candidates: Any) -> int | None:
    """``candidates`` as given (``None`` or a positive int), else ``TypeError``/``ValueError``."""
    if candidates is None:
        return None
    if isinstance(candidates, bool) or not isinstance(candidates, int):
        raise TypeError(f"candidates must be a positive int or None, got {candidates!r}")
    if candidates < 1:
        raise ValueError(f"candidates must be a positive int or None, got {candidates}")
    return candidates


def pool_size(kept: int, candidates: int | None) -> int:
    """How many candidates to fetch for a search keeping ``kept`` items."""
    if candidates is None:
        return max(DEFAULT_CANDIDATES, POOL_FACTOR * kept)
    return max(candidates, kept)
