"""Progress comes from the core, per scored batch, inside one all-or-nothing call."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from servers import Reply, RerankServer, Score
from servers.clients import FAST, MODES, rerank

from memreranker import MemReranker, ServiceError

QUERY = "What does the user like to drink?"
DOCS = [f"memory number {i}: the user drinks {'tea' if i % 3 else 'coffee'}" for i in range(35)]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


def http(server: RerankServer, **options: object) -> MemReranker:
    return MemReranker(
        "vllm", base_url=server.url, max_documents_per_request=10, **{**FAST, **options}
    )


@pytest.mark.parametrize("mode", MODES)
def test_http_batches_report_progress(rerank_server: RerankServer, mode: str) -> None:
    seen = Recorder()
    with http(rerank_server) as rr:
        results = rerank(rr, mode, QUERY, DOCS, progress=seen)
    assert len(rerank_server.requests) == 4  # one call, split by the core, not by the caller
    assert len(results) == len(DOCS) and not any(r.is_fallback for r in results)
    done = [d for d, _ in seen.calls]
    assert {t for _, t in seen.calls} == {35}
    assert done == sorted(done) and done[-1] == 35
    # One report per request (the async batches finish in any order, so sizes vary).
    assert len(seen.calls) == 4


@pytest.mark.parametrize("mode", MODES)
def test_failed_batch_fails_the_call_and_never_completes_progress(
    rerank_server: RerankServer, mode: str
) -> None:
    seen = Recorder()
    rerank_server.script(Score(), Reply(400, {"error": {"message": "bad batch"}}))
    with http(rerank_server, max_concurrency=1) as rr:
        results = rerank(rr, mode, QUERY, DOCS, progress=seen)
    assert all(r.is_fallback for r in results) and [r.index for r in results] == list(range(35))
    assert all(done < 35 for done, _ in seen.calls)


def test_local_progress_per_forward(tiny_model: Path) -> None:
    seen = Recorder()
    with MemReranker(model=str(tiny_model), batch_size=4, engine="batched") as rr:
        plain = rr.rerank(QUERY, DOCS[:10])
        results = rr.rerank(QUERY, DOCS[:10], progress=seen)
    assert results == plain  # progress changes nothing about the scores
    assert seen.calls == [(4, 10), (8, 10), (10, 10)]


def test_local_batched_engine_scores_duplicates_once(tiny_model: Path) -> None:
    seen = Recorder()
    with MemReranker(model=str(tiny_model), batch_size=4, engine="batched") as rr:
        results = rr.rerank(QUERY, DOCS[:5] + DOCS[:5], progress=seen)
    assert seen.calls == [(4, 10), (5, 10), (10, 10)]  # 5 distinct documents forwarded
    by_index = {r.index: r.score for r in results}
    assert [by_index[i] for i in range(5)] == [by_index[i + 5] for i in range(5)]


def test_local_prefix_engine_reports_progress(tiny_model: Path) -> None:
    seen = Recorder()
    with MemReranker(model=str(tiny_model), batch_size=2) as rr:
        rr.rerank(QUERY, DOCS[:7] + DOCS[:2], progress=seen)  # two duplicates, scored once
    done = [d for d, _ in seen.calls]
    assert len(done) >= 3 and done == sorted(done) and done[-1] == 9


def test_fallback_chain_restarts_progress(rerank_server: RerankServer, tiny_model: Path) -> None:
    seen = Recorder()
    rerank_server.default = Reply(400, {"error": {"message": "down"}})
    local = MemReranker(model=str(tiny_model), batch_size=5, engine="batched")
    with http(rerank_server, max_retries=0, fallback=local) as rr:
        # First batch fails at once: nothing was reported before the handover.
        results = rr.rerank(QUERY, DOCS[:10], progress=seen)
    assert not any(r.is_fallback for r in results)
    assert seen.calls == [(5, 10), (10, 10)]


def test_fallback_chain_restart_after_partial_progress(
    rerank_server: RerankServer, tiny_model: Path
) -> None:
    seen = Recorder()
    rerank_server.script(Score(), Reply(400, {"error": {"message": "down"}}))
    local = MemReranker(model=str(tiny_model), batch_size=20, engine="batched")
    with http(rerank_server, max_retries=0, fallback=local) as rr:
        rr.rerank(QUERY, DOCS[:20], progress=seen)
    assert seen.calls == [(10, 20), (0, 20), (20, 20)]


def test_score_cache_hits_complete_the_count(tiny_model: Path) -> None:
    seen = Recorder()
    with MemReranker(model=str(tiny_model), score_cache_size=100, engine="batched") as rr:
        rr.rerank(QUERY, DOCS[:6])
        rr.rerank(QUERY, DOCS[:8], progress=seen)
    assert seen.calls[-1] == (8, 8)


def test_progress_bar_on_stderr(rerank_server: RerankServer, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("tqdm")
    rerank_server.default = Score(delay=0.15)  # slow enough for tqdm to redraw each batch
    with http(rerank_server) as rr:
        results = rr.rerank(QUERY, DOCS, progress=True)
    assert len(results) == 35
    err = capsys.readouterr().err
    assert "vllm:default" in err and "20/35" in err and "30/35" in err


def test_progress_bar_without_tqdm_degrades_to_none(
    rerank_server: RerankServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A core-only install has no tqdm: the bar is simply absent.
    for name in [m for m in sys.modules if m == "tqdm" or m.startswith("tqdm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with http(rerank_server) as rr:
        results = rr.rerank(QUERY, DOCS, progress=True)
    assert len(results) == 35 and not any(r.is_fallback for r in results)


def test_bad_progress_is_a_type_error(rerank_server: RerankServer) -> None:
    with http(rerank_server, on_error="fallback") as rr, pytest.raises(TypeError, match="progress"):
        rr.rerank(QUERY, DOCS, progress="yes")  # type: ignore[arg-type]
    assert rerank_server.requests == []


def test_raise_mode_leaves_progress_short(rerank_server: RerankServer) -> None:
    seen = Recorder()
    rerank_server.script(Score(), Reply(400, {"error": {"message": "bad"}}))
    with http(rerank_server, on_error="raise", max_concurrency=1) as rr:
        with pytest.raises(ServiceError):
            asyncio.run(rr.arerank(QUERY, DOCS, progress=seen))
    assert all(done < 35 for done, _ in seen.calls)
