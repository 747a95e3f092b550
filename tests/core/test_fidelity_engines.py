"""The fidelity check, engine by engine: each local engine, pinned, gives the model card's
scores (the independent recipe of ``test_fidelity.py``), and the default is the fast one.

``test_fidelity.py`` compares whatever engine ran; if the prefix engine were silently replaced
by the batched one (a self-check misfiring, a capability check always false), it would still
pass. Here the engine that ran is part of the assertion.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from test_fidelity import DOCS, QUERY, card_recipe, other_model  # noqa: F401

from memreranker import MemReranker
from memreranker.local.engines import PaddedBatchEngine
from memreranker.local.prefix_engine import PrefixCacheEngine

pytestmark = pytest.mark.filterwarnings("ignore:`max_length` is ignored:UserWarning")

ENGINES = {"prefix": PrefixCacheEngine, "batched": PaddedBatchEngine}


@pytest.fixture(scope="module")
def card_scores(other_model: Path) -> dict[int, list[float]]:  # noqa: F811
    return {
        max_length: card_recipe(other_model, [(QUERY, d) for d in DOCS], None, max_length)
        for max_length in (8192, 128)
    }


@pytest.mark.parametrize("max_length", [8192, 128], ids=["full", "truncated"])
@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_engine_matches_model_card(
    other_model: Path,  # noqa: F811
    card_scores: dict[int, list[float]],
    engine: str,
    max_length: int,
) -> None:
    reranker = MemReranker(
        model=str(other_model), engine=engine, max_length=max_length, on_error="raise"
    )
    ran = reranker.backend.load()  # type: ignore[attr-defined]
    assert type(ran) is ENGINES[engine], f"engine={engine!r} ran {type(ran).__name__}"
    by_index = {r.index: r.score for r in reranker.rerank(QUERY, DOCS)}
    got = [by_index[i] for i in range(len(DOCS))]
    worst = max(abs(g - w) for g, w in zip(got, card_scores[max_length], strict=True))
    assert worst <= 1e-5, f"max |diff| {worst:.3g}"


def test_the_default_engine_is_the_prefix_engine(other_model: Path) -> None:  # noqa: F811
    reranker = MemReranker(model=str(other_model))
    assert type(reranker.backend.load()) is PrefixCacheEngine  # type: ignore[attr-defined]
