"""End to end: a real ``mem0.Memory`` / ``AsyncMemory`` (local Qdrant, offline embedder, no
LLM call) searching with ``rerank=True`` through the ``"memreranker"`` provider."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mem0_kit import QUERY, MemoryFactory, search_kwargs
from servers import Reply, RerankServer, deterministic_score

from memreranker import MemReranker

pytestmark = pytest.mark.timeout(120)

KEY = "sk-mem0-e2e-secret-77"


def ids(results: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in results]


def expected_ranking(
    core: MemReranker, first_stage: list[dict[str, Any]], top_k: int
) -> list[tuple[str, float]]:
    """(id, score) in this project's order for the memories mem0 retrieved."""
    results = core.rerank(QUERY, [item["memory"] for item in first_stage], top_n=top_k)
    assert not any(r.is_fallback for r in results)
    return [(first_stage[r.index]["id"], r.score) for r in results]


def same_memory(item: dict[str, Any], original: dict[str, Any], added: tuple[str, ...]) -> bool:
    """``item`` is ``original`` plus the ``added`` keys. mem0's vector score may differ in
    the last float32 digits from one search to the next, so it is compared approximately."""
    rest = {k: v for k, v in item.items() if k not in added}
    return {**rest, "score": pytest.approx(original["score"], rel=1e-5)} == original


def assert_reranked(
    reranked: list[dict[str, Any]],
    first_stage: list[dict[str, Any]],
    want: list[tuple[str, float]],
) -> None:
    assert ids(reranked) == [i for i, _ in want]
    assert [item["rerank_score"] for item in reranked] == pytest.approx([s for _, s in want])
    by_id = {item["id"]: item for item in first_stage}
    for item in reranked:  # every key mem0 returned is kept, unchanged
        assert same_memory(item, by_id[item["id"]], ("rerank_score",))


def mem0_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("mem0") and "erank" in r.getMessage()
    ]


def memreranker_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.split(".")[0] == "memreranker"
    ]


@pytest.fixture(scope="module")
def memory(make_memory: MemoryFactory, tiny_model: Path) -> Any:
    """One Memory whose reranker comes from mem0's config, built by mem0's factory."""
    config = {"provider": "memreranker", "config": {"model": str(tiny_model), "top_k": 3}}
    return make_memory(config)


def test_memory_builds_the_provider_from_its_config(memory: Any, provider: Any) -> None:
    from mem0.reranker.base import BaseReranker

    assert isinstance(memory.reranker, provider.MemRerankerMem0)
    assert isinstance(memory.reranker, BaseReranker)
    assert memory.reranker.config.top_k == 3


@pytest.mark.parametrize("top_k", [5, 12])
def test_search_returns_this_projects_order(memory: Any, top_k: int) -> None:
    first = memory.search(QUERY, **search_kwargs(top_k, rerank=False))["results"]
    reranked = memory.search(QUERY, **search_kwargs(top_k, rerank=True))["results"]
    assert len(first) == top_k
    assert all("rerank_score" not in item for item in first)
    want = expected_ranking(memory.reranker.reranker, first, top_k)
    # The point of reranking: here the order differs from the vector search's.
    assert [i for i, _ in want] != ids(first)
    # mem0 passes its own top_k to the reranker, which wins over the config's top_k (3).
    assert_reranked(reranked, first, want)


async def test_async_memory_search(make_async_memory: MemoryFactory, tiny_model: Path) -> None:
    """AsyncMemory builds the provider from the same config and runs its (sync) rerank in a
    worker thread."""
    config = {"provider": "memreranker", "config": {"model": str(tiny_model), "top_k": 3}}
    amemory = await make_async_memory(config)
    first = (await amemory.search(QUERY, **search_kwargs(6, rerank=False)))["results"]
    reranked = (await amemory.search(QUERY, **search_kwargs(6, rerank=True)))["results"]
    assert_reranked(reranked, first, expected_ranking(amemory.reranker.reranker, first, 6))


def test_assigned_reranker(make_memory: MemoryFactory, memory: Any, provider: Any) -> None:
    """Without register() or a config: a MemRerankerMem0 put in ``memory.reranker``, here
    sharing the weights ``memory`` loaded."""
    plain = make_memory(None)
    assert plain.reranker is None
    plain.reranker = provider.MemRerankerMem0({"top_k": 3}, reranker=memory.reranker.reranker)
    first = plain.search(QUERY, **search_kwargs(6, rerank=False))["results"]
    reranked = plain.search(QUERY, **search_kwargs(6, rerank=True))["results"]
    assert_reranked(reranked, first, expected_ranking(memory.reranker.reranker, first, 6))


def assert_fallback(
    reranked: list[dict[str, Any]],
    first_stage: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    error: str,
) -> None:
    """mem0's fallback: the vector-search order, rerank_score 0.0, flagged, one warning,
    and mem0 never had to catch an exception."""
    assert ids(reranked) == ids(first_stage)
    assert all(item["rerank_score"] == 0.0 for item in reranked)
    assert all(item["rerank_fallback"] is True for item in reranked)
    for item, original in zip(reranked, first_stage, strict=True):
        assert same_memory(item, original, ("rerank_score", "rerank_fallback"))
    warnings = memreranker_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "falling back to original order" in warnings[0] and error in warnings[0]
    assert mem0_warnings(caplog) == []
    assert KEY not in caplog.text


def test_broken_model_falls_back(
    make_memory: MemoryFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = {"provider": "memreranker", "config": {"model": str(tmp_path / "gone"), "top_k": 3}}
    memory = make_memory(config)
    first = memory.search(QUERY, **search_kwargs(5, rerank=False))["results"]
    caplog.set_level(logging.WARNING)
    caplog.clear()
    reranked = memory.search(QUERY, **search_kwargs(5, rerank=True))["results"]
    assert_fallback(reranked, first, caplog, "ModelLoadError")


async def test_broken_model_falls_back_async(
    make_async_memory: MemoryFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = {"provider": "memreranker", "config": {"model": str(tmp_path / "gone")}}
    memory = await make_async_memory(config)
    first = (await memory.search(QUERY, **search_kwargs(4, rerank=False)))["results"]
    caplog.set_level(logging.WARNING)
    caplog.clear()
    reranked = (await memory.search(QUERY, **search_kwargs(4, rerank=True)))["results"]
    assert_fallback(reranked, first, caplog, "ModelLoadError")


def test_on_error_raise_lets_mem0_keep_its_results(
    make_memory: MemoryFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With on_error="raise" the typed error leaves the provider; Memory.search catches it
    (its own guard) and answers with the vector-search results, without rerank_score."""
    settings = {"model": str(tmp_path / "gone"), "on_error": "raise"}
    memory = make_memory({"provider": "memreranker", "config": settings})
    first = memory.search(QUERY, **search_kwargs(4, rerank=False))["results"]
    caplog.set_level(logging.WARNING)
    caplog.clear()
    results = memory.search(QUERY, **search_kwargs(4, rerank=True))["results"]
    assert ids(results) == ids(first)
    for item, original in zip(results, first, strict=True):
        assert same_memory(item, original, ())
    assert any("ModelLoadError" in m or "does not exist" in m for m in mem0_warnings(caplog))


# --- the hosted MemOS backend, configured exactly as in the issue --------------------------


@pytest.fixture
def memos(monkeypatch: pytest.MonkeyPatch) -> Iterator[RerankServer]:
    """A loopback MemOS server requiring KEY; key and URL in the environment only."""
    with RerankServer(api_key=KEY) as server:
        monkeypatch.setenv("MEMOS_API_KEY", KEY)
        monkeypatch.setenv("MEMOS_BASE_URL", server.memos_base_url)
        yield server


HOSTED = {"provider": "memreranker", "config": {"backend": "memos", "top_k": 5}}


def hosted_ranking(first_stage: list[dict[str, Any]]) -> list[tuple[str, float]]:
    scored = [(item["id"], deterministic_score(QUERY, item["memory"])) for item in first_stage]
    order = sorted(range(len(scored)), key=lambda i: (-scored[i][1], i))
    return [scored[i] for i in order]


def test_hosted_memos_search(make_memory: MemoryFactory, memos: RerankServer) -> None:
    memory = make_memory(HOSTED)
    first = memory.search(QUERY, **search_kwargs(8, rerank=False))["results"]
    reranked = memory.search(QUERY, **search_kwargs(8, rerank=True))["results"]
    assert_reranked(reranked, first, hosted_ranking(first))
    request = memos.last
    assert request.headers["authorization"] == f"Token {KEY}"
    assert request.body["documents"] == [item["memory"] for item in first]
    assert request.body["query"] == QUERY
    assert KEY not in repr(memory.reranker) + repr(memory.reranker.config)


async def test_hosted_memos_search_async(
    make_async_memory: MemoryFactory, memos: RerankServer
) -> None:
    memory = await make_async_memory(HOSTED)
    first = (await memory.search(QUERY, **search_kwargs(7, rerank=False)))["results"]
    reranked = (await memory.search(QUERY, **search_kwargs(7, rerank=True)))["results"]
    assert_reranked(reranked, first, hosted_ranking(first))


def test_hosted_outage_falls_back(
    make_memory: MemoryFactory, memos: RerankServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = {"provider": "memreranker", "config": {"backend": "memos", "max_retries": 0}}
    memory = make_memory(config)
    first = memory.search(QUERY, **search_kwargs(6, rerank=False))["results"]
    memos.script(Reply(503, {"error": {"message": f"overloaded, key {KEY}"}}))
    caplog.set_level(logging.WARNING)
    caplog.clear()
    reranked = memory.search(QUERY, **search_kwargs(6, rerank=True))["results"]
    assert_fallback(reranked, first, caplog, "503")


def test_a_users_backend_ranks_a_real_memory(make_memory: MemoryFactory, provider: Any) -> None:
    """The README's "Writing a backend" example as the mem0 provider's scorer."""
    from custom_backend import keyword_backend

    core = MemReranker(backend=keyword_backend(), on_error="raise")
    memory = make_memory(None)
    memory.reranker = provider.MemRerankerMem0({"top_k": 3}, reranker=core)
    first = memory.search(QUERY, **search_kwargs(6, rerank=False))["results"]
    reranked = memory.search(QUERY, **search_kwargs(6, rerank=True))["results"]
    assert_reranked(reranked, first, expected_ranking(core, first, 6))
    assert ids(reranked) != ids(first)  # the keyword order, not the vector order
