"""Property-based: for any documents, ``top_n`` and threshold, the output of a rerank is the
input's best documents, sorted, each once, ties in input order, within ``top_n`` and the
threshold, scores in [0, 1]. HTTP backend on the loopback server, replies shuffled and scores
rounded to one decimal (so that ties are common).

The server ranks and cuts to ``top_n`` by the scores it reports, breaking ties by index as
vLLM does: when the client sends ``top_n``, ties at the cut are the service's to break.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import RerankServer, Score, deterministic_score, running_server, untemplate

from memreranker import MemReranker, RerankResult

pytestmark = pytest.mark.timeout(120)

QUERY = "tea with Anna in Berlin"
WORDS = ["tea", "Anna", "Berlin", "coffee", "用户", "🍵", "", " ", "with", "in"]


def rounded(body: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """A consistent server whose scores have one decimal: it ranks and cuts to ``top_n`` by
    the scores it reports, ties by index (as vLLM does), then shuffles the reply."""
    docs = untemplate(request["query"], request["documents"]).documents  # the caller's texts
    results = [
        {"index": i, "document": {"text": d}, "relevance_score": score_of(d)}
        for i, d in enumerate(docs)
    ]
    results.sort(key=lambda r: (-r["relevance_score"], r["index"]))
    if request.get("top_n"):
        results = results[: request["top_n"]]
    random.Random(len(docs)).shuffle(results)
    body["results"] = results
    return body


def score_of(document: str) -> float:
    return round(deterministic_score(QUERY, document), 1)


@pytest.fixture(scope="module")
def server() -> Iterator[RerankServer]:
    with running_server() as started:
        started.default = Score(shuffle=True, mutate=rounded)
        yield started


@pytest.fixture(scope="module")
def reranker(server: RerankServer) -> Iterator[MemReranker]:
    # Small batches, so that lists over 7 documents are split and merged too.
    rr = MemReranker("vllm", base_url=server.url, on_error="raise", max_documents_per_request=7)
    yield rr
    rr.close()


documents = st.lists(
    st.lists(st.sampled_from(WORDS), min_size=0, max_size=4).map(" ".join) | st.text(max_size=12),
    min_size=0,
    max_size=25,
)
top_ns = st.none() | st.integers(min_value=0, max_value=30)
thresholds = st.none() | st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def check(
    docs: list[str], top_n: int | None, threshold: float | None, out: list[RerankResult]
) -> None:
    indices = [r.index for r in out]
    assert len(set(indices)) == len(indices)  # each document at most once
    assert all(
        0 <= i < len(docs) and docs[i] == r.document for i, r in zip(indices, out, strict=True)
    )
    assert all(not r.is_fallback and 0.0 <= r.score <= 1.0 for r in out)
    # Sorted by score, ties in input order.
    assert [(-r.score, r.index) for r in out] == sorted((-r.score, r.index) for r in out)
    if top_n is not None:
        assert len(out) <= top_n
    if threshold is not None:
        assert all(r.score >= threshold for r in out)
    # And exactly the best ones: the expected prefix of the full ranking.
    ranked = sorted(((i, score_of(d)) for i, d in enumerate(docs)), key=lambda p: (-p[1], p[0]))
    if threshold is not None:
        ranked = [p for p in ranked if p[1] >= threshold]
    if top_n is not None:
        ranked = ranked[:top_n]
    assert [(r.index, r.score) for r in out] == ranked


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(docs=documents, top_n=top_ns, threshold=thresholds)
def test_sync_output_is_a_sorted_subset(
    reranker: MemReranker, docs: list[str], top_n: int | None, threshold: float | None
) -> None:
    check(
        docs, top_n, threshold, reranker.rerank(QUERY, docs, top_n=top_n, score_threshold=threshold)
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(docs=documents, top_n=top_ns, threshold=thresholds)
def test_async_output_is_a_sorted_subset(
    reranker: MemReranker, docs: list[str], top_n: int | None, threshold: float | None
) -> None:
    out = asyncio.run(reranker.arerank(QUERY, docs, top_n=top_n, score_threshold=threshold))
    check(docs, top_n, threshold, out)
