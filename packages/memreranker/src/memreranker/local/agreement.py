"""Whether two engines give the same scores on one model: the probe pairs and the check,
written once.

Used at load time twice: the prefix engine checks itself against the model card's recipe
(a transformers version that treated shared keys/values differently would give plausible
but wrong scores), and a seq-cls conversion is served by an exact engine only if that
engine agrees with sentence-transformers on the same probes.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

PROBE_QUERY = "Where does the user's sister live?"
PROBE_DOCUMENTS = (
    "The user's sister Anna lives in Berlin and works at a museum near the river.",
    "yes",
    ": starts with a colon",
    "用户喜欢打羽毛球 🎉",
)


class _Scores(Protocol):
    def score(self, query: str, documents: list[str], instruction: str | None) -> list[float]: ...


class ReferenceUnusable(ValueError):
    """The reference engine raised, or its scores are not finite: nothing to compare."""


class CandidateFailed(RuntimeError):
    """The engine under test raised on the probes (``__cause__``: its error)."""


def tolerance(dtype: torch.dtype) -> float:
    """Largest difference two engines may show on one model: float32 rounding, or bf16/fp16."""
    return 1e-4 if dtype == torch.float32 else 5e-2


def reference_scores(reference: _Scores, *, finite: bool = True) -> list[float]:
    """The reference engine's probe scores.

    Raises:
        ReferenceUnusable: it raised (``__cause__``: its error), or (``finite=True``) its
            scores are not all finite.
    """
    try:
        want = reference.score(PROBE_QUERY, list(PROBE_DOCUMENTS), None)
    except Exception as exc:
        raise ReferenceUnusable(f"the reference cannot score: {exc}") from exc
    if finite and not all(math.isfinite(w) for w in want):
        raise ReferenceUnusable("the model's own scores are not finite: nothing to compare")
    return want


def largest_difference(want: list[float], candidate: _Scores) -> float:
    """``max |want - candidate|`` over the probe pairs (NaN if ``want`` is not finite).

    Raises:
        CandidateFailed: see the class.
    """
    try:
        got = candidate.score(PROBE_QUERY, list(PROBE_DOCUMENTS), None)
    except Exception as exc:
        raise CandidateFailed(f"{type(exc).__name__}: {exc}") from exc
    if not all(math.isfinite(w) for w in want):
        return math.nan
    return max(abs(a - b) for a, b in zip(want, got, strict=True))
