"""``evaluate``'s numbers against hand computations (eval_kit), for every system it reports."""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eval_kit import DATA, pair_f1, paper_metrics, per_query
from scipy.stats import ttest_rel
from servers import Reply, RerankServer
from servers.clients import FAST

from memreranker import MemReranker
from memreranker.eval import METRICS, Dataset, evaluate, load_dataset

SMALL = DATA / "small.jsonl"
L3, L5, L7 = math.log2(3), math.log2(5), math.log2(7)

# small.jsonl in first-stage (file) order, query by query, worked out on paper:
#   drink:  relevant at ranks 2 and 4 of 5      sister: relevant at rank 1 of 3
#   hobby:  grade 1 at rank 2, grade 2 at rank 4 (ideal: 2 then 1)
#   trip:   relevant at rank 6 of 7
FIRST_STAGE = {
    "MAP": (1 / 2 + 1 + 1 / 2 + 1 / 6) / 4,
    "MRR": (1 / 2 + 1 + 1 / 2 + 1 / 6) / 4,
    "NDCG@1": (0 + 1 + 0 + 0) / 4,
    "NDCG@3": ((1 / L3) / (1 + 1 / L3) + 1 + (1 / L3) / (2 + 1 / L3) + 0) / 4,
    "NDCG@10": (
        (1 / L3 + 1 / L5) / (1 + 1 / L3) + 1 + (1 / L3 + 2 / L5) / (2 + 1 / L3) + 1 / L7
    ) / 4,
    "NDCG": (
        (1 / L3 + 1 / L5) / (1 + 1 / L3) + 1 + (1 / L3 + 2 / L5) / (2 + 1 / L3) + 1 / L7
    ) / 4,
    "R@3": (1 / 2 + 1 + 1 / 2 + 0) / 4,
    "R@5": (1 + 1 + 1 + 0) / 4,
    "R@20": (1 + 1 + 1 + 1) / 4,
}


@pytest.fixture(scope="module")
def small() -> Dataset:
    return load_dataset(SMALL)


@pytest.fixture(scope="module")
def tiny(tiny_model: Path) -> Iterator[MemReranker]:
    with MemReranker(model=str(tiny_model), on_error="raise") as reranker:
        yield reranker


def qrels(dataset: Dataset) -> list[dict[str, int]]:
    return [dict(q.relevance) for q in dataset.queries]


def ranked_by(reranker: MemReranker, dataset: Dataset) -> tuple[list[list[str]], list[dict]]:
    """Each query's ranking (document ids) and scores, straight from the reranker."""
    rankings, scores = [], []
    for q in dataset.queries:
        results = reranker.rerank(q.query, list(q.documents))
        rankings.append([q.doc_ids[r.index] for r in results])
        scores.append({q.doc_ids[r.index]: r.score for r in results})
    return rankings, scores


def assert_metrics(actual: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert actual[name] == pytest.approx(value, abs=1e-9), name


def test_the_hand_computation_is_the_paper_arithmetic(small: Dataset) -> None:
    file_order = [list(q.doc_ids) for q in small.queries]
    assert_metrics(paper_metrics(file_order, qrels(small)), FIRST_STAGE)


def test_first_stage_and_tiny_model_match_hand_computations(
    small: Dataset, tiny: MemReranker
) -> None:
    report = evaluate(small, {"tiny": tiny}, threshold=0.5)
    assert list(report.systems) == ["first-stage", "tiny"]
    assert (report.queries, report.pairs) == (4, 19)

    baseline = report.results["first-stage"]
    assert_metrics(baseline, FIRST_STAGE)
    assert baseline["F1"] is None  # no probabilities in a first-stage order

    rankings, scores = ranked_by(tiny, small)
    assert rankings != [list(q.doc_ids) for q in small.queries]  # it did reorder
    expected = paper_metrics(rankings, qrels(small))
    assert expected != pytest.approx({k: FIRST_STAGE[k] for k in expected})
    assert_metrics(report.results["tiny"], expected)
    f1 = pair_f1(scores, qrels(small), 0.5)
    assert report.results["tiny"]["F1"] == pytest.approx(f1, abs=1e-12)
    assert report.results["tiny"]["F1"] != pytest.approx(
        pair_f1(scores, qrels(small), 0.9), abs=1e-9
    )  # the threshold matters

    row = report.systems["tiny"]
    assert row.fallback_queries == 0 and row.fallback_reasons == {}
    assert row.pairs_per_second > 0 and row.median_latency_ms > 0
    assert row.spec == tiny.name

    # The paired test pairs the same queries: scipy on the hand-made per-query values.
    base_q = per_query([list(q.doc_ids) for q in small.queries], qrels(small))
    tiny_q = per_query(rankings, qrels(small))
    for metric in ("MAP", "NDCG@10", "R@3"):
        p = ttest_rel(base_q[metric], tiny_q[metric]).pvalue
        expected_p = None if math.isnan(p) else p
        assert row.p_values[metric] == pytest.approx(expected_p), metric
    assert set(row.p_values) == set(METRICS) - {"F1"}


def test_threshold_changes_only_f1(small: Dataset, tiny: MemReranker) -> None:
    low = evaluate(small, {"tiny": tiny}, threshold=0.0).results["tiny"]
    rankings, scores = ranked_by(tiny, small)
    assert low["F1"] == pytest.approx(pair_f1(scores, qrels(small), 0.0))
    assert low["MAP"] == pytest.approx(paper_metrics(rankings, qrels(small))["MAP"])


def test_unreachable_service_counts_as_first_stage_and_is_reported(
    small: Dataset, refused_url: str
) -> None:
    dead = MemReranker("vllm", base_url=refused_url, model="m", **{**FAST, "max_retries": 0})
    report = evaluate(small, {"dead": dead})
    row = report.systems["dead"]
    assert row.fallback_queries == 4
    assert report.fallbacks == {"dead": 4}
    [reason] = row.fallback_reasons
    assert "ServiceConnectionError" in reason and row.fallback_reasons[reason] == 4
    assert_metrics(row.metrics, FIRST_STAGE)  # the first-stage order, not a crash, not a gap
    assert row.metrics["F1"] == 0.0  # score 0.0 everywhere: nothing judged relevant
    assert all(p is None for p in row.p_values.values())  # identical rankings: no test
    json.dumps(report.to_dict(), allow_nan=False)
    assert "| dead |" in report.to_markdown() and "| 4/4 |" in report.to_markdown()


def test_a_long_fallback_keeps_the_first_stage_order(tmp_path: Path, refused_url: str) -> None:
    """300 candidates, all scored 0.0 by the fallback: the metrics library must see the
    first-stage order, not its own order of equal scores."""
    path = tmp_path / "long.jsonl"
    docs = [f"memory {i}" for i in range(300)]
    path.write_text(json.dumps({"query": "q?", "documents": docs, "relevant": [5, 250]}) + "\n")
    dead = MemReranker("vllm", base_url=refused_url, model="m", **{**FAST, "max_retries": 0})
    row = evaluate(load_dataset(path), {"dead": dead}).systems["dead"]
    assert row.fallback_queries == 1
    assert row.metrics["MRR"] == pytest.approx(1 / 6)
    assert row.metrics["MAP"] == pytest.approx((1 / 6 + 2 / 251) / 2)
    assert row.metrics["R@20"] == pytest.approx(1 / 2)


def test_a_query_that_falls_back_ranks_in_first_stage_order(
    small: Dataset, rerank_server: RerankServer
) -> None:
    seen: list[tuple[str, int, int]] = []
    rerank_server.script(Reply(503, {"error": {"message": "overloaded"}}))
    options = {**FAST, "max_retries": 0}
    with MemReranker("vllm", base_url=rerank_server.url, model="m", **options) as rr:
        report = evaluate(small, {"served": rr}, progress=lambda *a: seen.append(a))
        # One rerank call per query, never split by the evaluation.
        assert [len(r.body["documents"]) for r in rerank_server.requests] == [5, 3, 4, 7]
        rankings, scores = ranked_by(rr, small)  # the server's scores are deterministic
    rankings[0] = list(small.queries[0].doc_ids)  # the first call failed: file order
    scores[0] = dict.fromkeys(small.queries[0].doc_ids, 0.0)
    row = report.systems["served"]
    assert row.fallback_queries == 1
    assert_metrics(row.metrics, paper_metrics(rankings, qrels(small)))
    assert row.metrics["F1"] == pytest.approx(pair_f1(scores, qrels(small), 0.5))
    # Progress: the core's callbacks, per reranker, in pairs, ending at the dataset's 19.
    assert {name for name, _, _ in seen} == {"served"}
    assert {total for _, _, total in seen} == {19}
    done = [d for _, d, _ in seen]
    assert done == sorted(done) and done[-1] == 19


def exact_randomization_p(control: list[float], treatment: list[float]) -> float:
    """Fisher's randomization test, exactly: every one of the 2^n ways of swapping the two
    systems' values query by query (ranx samples 1000 of them)."""
    observed = abs(sum(control) - sum(treatment))
    pairs = list(zip(control, treatment, strict=True))
    extreme = 0
    for swaps in itertools.product((False, True), repeat=len(pairs)):
        diff = sum((t - c) if s else (c - t) for (c, t), s in zip(pairs, swaps, strict=True))
        extreme += abs(diff) >= observed - 1e-12
    return extreme / 2 ** len(pairs)


def test_fisher_randomization_test(small: Dataset, tiny: MemReranker) -> None:
    """stat_test="fisher" computes another test than the default: each p-value is the exact
    randomization test's (within ranx's sampling error), which Student's t-test is not."""
    report = evaluate(small, {"tiny": tiny}, stat_test="fisher")
    assert report.to_dict()["stat_test"] == "fisher"
    fisher = report.systems["tiny"].p_values
    student = evaluate(small, {"tiny": tiny}).systems["tiny"].p_values
    rankings, _ = ranked_by(tiny, small)
    base_q = per_query([list(q.doc_ids) for q in small.queries], qrels(small))
    tiny_q = per_query(rankings, qrels(small))
    compared = 0
    for metric in ("MAP", "MRR", "NDCG@10", "R@3"):
        if base_q[metric] == tiny_q[metric]:
            continue  # identical per query: no test
        exact = exact_randomization_p(base_q[metric], tiny_q[metric])
        assert fisher[metric] == pytest.approx(exact, abs=0.06), metric
        assert student[metric] == pytest.approx(ttest_rel(base_q[metric], tiny_q[metric]).pvalue)
        compared += abs(student[metric] - exact) > 0.1
    assert compared  # the two tests disagree somewhere: the option is not just echoed


def test_report_marks_the_best_of_each_column(small: Dataset, tiny: MemReranker) -> None:
    report = evaluate(small, {"tiny": tiny})
    table = report.to_markdown()
    header, _, *rows = table.splitlines()[:4]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[1 : 1 + len(METRICS)] == list(METRICS)
    cells = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in rows}
    for k, metric in enumerate(METRICS, 1):
        values = {n: report.results[n][metric] for n in ("first-stage", "tiny")}
        top = max(v for v in values.values() if v is not None)
        for name, value in values.items():
            bold = cells[name][k].startswith("**")
            assert bold == (value == top), (metric, name)
    data = report.to_dict()
    assert data["results"] == report.results and data["queries"] == 4
    assert set(data["p_values"]) == {"tiny"} and set(data["rerankers"]) == {"tiny"}


def test_spec_strings_and_instances_mix(
    small: Dataset, tiny: MemReranker, tiny_model: Path
) -> None:
    report = evaluate(small, [f"spec=local:{tiny_model}", tiny])
    assert list(report.systems) == ["first-stage", "spec", tiny.name]
    assert report.results["spec"] == pytest.approx(report.results[tiny.name])
    assert report.systems["spec"].spec == f"local:{tiny_model}"


@pytest.mark.parametrize(
    ("rerankers", "kwargs", "message"),
    [
        (["local:/x", "local:/x"], {}, "two rerankers are named 'local:/x'"),
        ({"first-stage": "local:/x"}, {}, "baseline"),
        (["nonsense"], {}, "expected local:PATH_OR_HUB_ID"),
        ([], {"threshold": 1.5}, "threshold"),
        ([], {"stat_test": "wilcoxon"}, "stat_test"),
    ],
)
def test_bad_arguments_are_named(
    small: Dataset, rerankers: object, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(small, rerankers, **kwargs)  # type: ignore[arg-type]


def test_rerankers_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="rerankers"):
        evaluate(SMALL, [42])  # type: ignore[list-item]


def test_f1_counts_a_score_at_the_threshold_as_relevant_and_fallbacks_as_nothing() -> None:
    from memreranker.eval.metrics import threshold_f1
    from memreranker.eval.runner import Ranking, RunResult

    data = load_dataset(SMALL)
    sister = Dataset("x", (data.queries[1],), "file order")  # relevant: document 0 of 3
    at = RunResult("r", [Ranking([0, 1, 2], [0.5, 0.2, 0.1])])
    assert threshold_f1(sister, at, 0.5) == 1.0  # 0.5 >= 0.5: TP, nothing else predicted
    assert threshold_f1(sister, at, 0.6) == 0.0
    fell_back = RunResult("r", [Ranking([0, 1, 2], [0.0, 0.0, 0.0], "ServiceError: down")])
    assert threshold_f1(sister, fell_back, 0.0) == 0.0  # judged nothing, even at 0.0
    scored = RunResult("r", [Ranking([0, 1, 2], [0.0, 0.0, 0.0])])
    assert threshold_f1(sister, scored, 0.0) == pytest.approx(2 / (2 + 2))  # 1 TP, 2 FP


def test_a_users_backend_is_measured_like_ours(small: Dataset) -> None:
    """The README's "Writing a backend" example through ``evaluate()``."""
    from custom_backend import keyword_backend

    keywords = MemReranker(backend=keyword_backend(), on_error="raise")
    report = evaluate(small, [keywords], threshold=0.5)
    assert list(report.systems) == ["first-stage", "keywords"]
    rankings, scores = ranked_by(keywords, small)
    assert_metrics(report.results["keywords"], paper_metrics(rankings, qrels(small)))
    assert report.results["keywords"]["F1"] == pytest.approx(pair_f1(scores, qrels(small), 0.5))

def test_recall_at_20_counts_a_relevant_document_at_ranks_11_to_20(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    docs = [f"memory {i}" for i in range(30)]
    lines = [
        {"id": "r11", "query": "q?", "documents": docs, "relevant": [10, 25]},  # ranks 11, 26
        {"id": "r20", "query": "q?", "documents": docs, "relevant": [19]},  # rank 20
        {"id": "r21", "query": "q?", "documents": docs, "relevant": [20]},  # rank 21
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    metrics = evaluate(load_dataset(path)).results["first-stage"]
    assert metrics["R@20"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert metrics["R@5"] == 0.0


def test_the_significance_mark_is_placed_below_p_0_05_only() -> None:
    from memreranker.eval.report import Report, SystemResult

    values = dict.fromkeys(METRICS, 0.5)
    p_values = {"MAP": 0.049, "MRR": 0.05, "NDCG@1": 0.06, "NDCG@3": None, "R@3": 0.001}
    report = Report(
        dataset="d", first_stage="file order", queries=2, pairs=4, threshold=0.5,
        stat_test="student",
        systems={
            "first-stage": SystemResult("first-stage", {**values, "F1": None}),
            "r": SystemResult("r", values, spec="x", p_values=p_values),
        },
    )  # fmt: skip
    header, _, _, row = report.to_markdown().splitlines()[:4]
    columns = [c.strip() for c in header.strip("|").split("|")]
    cells = dict(zip(columns, (c.strip() for c in row.strip("|").split("|")), strict=True))
    marked = {metric for metric in METRICS if cells[metric].endswith("†")}
    assert marked == {"MAP", "R@3"}  # 0.049 and 0.001; not 0.05, 0.06 or undefined


def test_rerankers_built_from_specs_are_closed_and_given_ones_are_not(
    small: Dataset, rerank_server: RerankServer
) -> None:
    """Observed with a profile hook on the real ``MemReranker.close`` (nothing replaced)."""
    closed: list[str] = []

    def watch(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is MemReranker.close.__code__:
            closed.append(frame.f_locals["self"].settings.model)

    with MemReranker("vllm", base_url=rerank_server.url, model="given", **FAST) as given:
        sys.setprofile(watch)
        try:
            report = evaluate(small, [f"vllm:built@{rerank_server.url}", given])
        finally:
            sys.setprofile(None)
        assert closed == ["built"]
        assert report.systems["vllm:given"].fallback_queries == 0
    assert len(rerank_server.requests) == 2 * len(small.queries)
