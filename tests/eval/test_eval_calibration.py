"""``calibrate=True`` / ``--calibrate``: the F1-best threshold, checked against a sweep
written out plainly here (every candidate threshold, every pair, ``score >= threshold``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from eval_kit import LOCOMO_SAMPLE, pair_f1
from servers import Reply, RerankServer
from servers.clients import FAST

from memreranker import MemReranker
from memreranker.cli import main
from memreranker.eval import Dataset, EvalQuery, evaluate, load_dataset
from memreranker.eval.calibration import calibrate
from memreranker.eval.runner import Ranking, RunResult


def plain_sweep(
    scores: Sequence[Mapping[str, float]],
    qrels: Sequence[Mapping[str, int]],
    judged: Sequence[bool],
) -> dict[float, tuple[float, float, float]]:
    """Threshold -> (precision, recall, F1) for every distinct score of a judged query; a
    query that was not judged predicts nothing and misses its relevant documents."""
    thresholds = {s for by_doc, j in zip(scores, judged, strict=True) if j for s in by_doc.values()}
    out = {}
    for t in thresholds:
        tp = fp = fn = 0
        for by_doc, grades, j in zip(scores, qrels, judged, strict=True):
            for doc, score in by_doc.items():
                relevant = grades.get(doc, 0) > 0
                predicted = j and score >= t
                tp += relevant and predicted
                fp += predicted and not relevant
                fn += relevant and not predicted
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        out[t] = (precision, recall, 2 * tp / (2 * tp + fp + fn))
    return out


def empty_share(scores: Sequence[Mapping[str, float]], judged: Sequence[bool], t: float) -> float:
    pairs = zip(scores, judged, strict=True)
    kept = [j and any(s >= t for s in by_doc.values()) for by_doc, j in pairs]
    return kept.count(False) / len(kept)


def scored_by(reranker: MemReranker, dataset: Dataset) -> list[dict[str, float]]:
    """Each query's P(yes) by document id, straight from the reranker."""
    out = []
    for q in dataset.queries:
        out.append({q.doc_ids[r.index]: r.score for r in reranker.rerank(q.query, q.documents)})
    return out


def assert_calibration_is_the_sweeps_best(
    cal: dict, scores: list[dict[str, float]], qrels: list[dict[str, int]], judged: list[bool]
) -> None:
    sweep = plain_sweep(scores, qrels, judged)
    if not sweep:  # nothing judged: no threshold, every query without a memory
        assert (cal["threshold"], cal["f1"], cal["empty_queries"]) == (None, 0.0, 1.0)
        return
    best_f1 = max(f1 for _, _, f1 in sweep.values())
    assert cal["f1"] == pytest.approx(best_f1, abs=1e-12)
    precision, recall, f1 = sweep[cal["threshold"]]  # a score that was swept ...
    assert f1 == pytest.approx(best_f1, abs=1e-12)  # ... and that achieves the best F1
    assert (cal["precision"], cal["recall"]) == pytest.approx((precision, recall), abs=1e-12)
    assert cal["empty_queries"] == pytest.approx(empty_share(scores, judged, cal["threshold"]))


def ties_dataset(tmp_path: Path) -> Path:
    """Equal scores within a query (a duplicated memory, one copy labelled relevant) and
    across queries (the same question and memories twice, labelled differently)."""
    docs = [
        "The user's sister Anna lives in Berlin.",
        "The user's sister Anna lives in Berlin.",
        "User likes playing badminton.",
        "Anna, the user's sister, moved to Berlin in 2024.",
        "User drinks green tea every morning.",
    ]
    lines = [
        {
            "id": "a",
            "query": "Where does the user's sister live?",
            "documents": docs,
            "relevant": [0, 3],
        },
        {
            "id": "b",
            "query": "Where does the user's sister live?",
            "documents": docs,
            "relevant": [3],
        },
        {"id": "c", "query": "What does the user drink?", "documents": docs[2:], "relevant": [2]},
        {
            "id": "d",
            "query": "What sport does the user play?",
            "documents": docs[1:4],
            "relevant": [1],
        },
    ]
    path = tmp_path / "ties.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_cli_calibrate_json_reports_the_best_f1_of_a_plain_sweep(
    capsys: pytest.CaptureFixture[str], rerank_server: RerankServer, tmp_path: Path
) -> None:
    path = ties_dataset(tmp_path)
    plot = tmp_path / "chart.png"
    code = main(
        [
            "eval",
            str(path),
            "--reranker",
            f"served=vllm:m@{rerank_server.url}",
            "--calibrate",
            "--json",
            "--no-progress",
            "--plot",
            str(plot),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert set(report["calibration"]) == {"served"}  # per reranker, not the first stage
    cal = report["calibration"]["served"]
    assert set(cal) == {"threshold", "f1", "precision", "recall", "empty_queries", "queries"}

    dataset = load_dataset(path)
    with MemReranker("vllm", base_url=rerank_server.url, model="m") as rr:
        scores = scored_by(rr, dataset)
    qrels = [dict(q.relevance) for q in dataset.queries]
    assert len(set(scores[0].values())) < len(scores[0])  # the ties are there
    assert scores[0] == scores[1]
    assert_calibration_is_the_sweeps_best(cal, scores, qrels, [True] * 4)
    # The F1 at the fixed threshold is still the report's F1 column, unchanged.
    assert report["results"]["served"]["F1"] == pytest.approx(pair_f1(scores, qrels, 0.5))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_threshold_at_a_score_counts_that_score_as_kept() -> None:
    """Worked on paper: the best threshold is a score held by a relevant pair (q4's only
    one), so ``>`` in place of ``>=`` moves it and empties q4."""
    q = [
        EvalQuery("q1", "q", ("a", "b", "c"), ("a", "b", "c"), {"a": 1}, category=2),
        EvalQuery("q2", "q", ("a", "b", "c"), ("a", "b", "c"), {"a": 1, "b": 1}, category=2),
        EvalQuery("q3", "q", ("a", "b"), ("a", "b"), {"a": 1}, category=1),
        EvalQuery("q4", "q", ("x",), ("x",), {"x": 1}, category=1),
    ]
    dataset = Dataset("hand", tuple(q), "file order")
    run = RunResult(
        "r",
        [
            Ranking([0, 1, 2], [0.8, 0.8, 0.1]),
            Ranking([2, 0, 1], [0.6, 0.3, 0.8]),
            Ranking([0, 1], [0.0, 0.0], "ServiceError: down"),  # fell back: judges nothing
            Ranking([0], [0.3]),
        ],
        latencies=[0.1] * 4,
    )
    cal = calibrate(dataset, run)
    assert cal is not None
    # 0.8: TP 1 FP 2 FN 4; 0.6: 2/2/3; 0.3: 4/2/1 (F1 8/11); 0.1: 4/3/1 (F1 8/12)
    assert cal.threshold == 0.3 and cal.f1 == pytest.approx(8 / 11)
    assert (cal.precision, cal.recall) == pytest.approx((4 / 6, 4 / 5))
    assert cal.empty_queries == pytest.approx(1 / 4)  # only the fallback: q4's 0.3 is kept
    assert [round(t, 6) for t, *_ in cal.curve] == [0.8, 0.6, 0.3, 0.1]
    # Each category is swept alone.
    assert set(cal.categories) == {1, 2}
    two, one = cal.categories[2], cal.categories[1]
    assert (two.threshold, two.f1, two.recall, two.empty_queries) == (0.3, 0.75, 1.0, 0.0)
    assert (one.threshold, one.precision, one.recall) == (0.3, 1.0, 0.5)
    assert one.f1 == pytest.approx(2 / 3) and one.empty_queries == 0.5
    scores = [
        dict(zip(x.doc_ids, r.scores, strict=True)) for x, r in zip(q, run.rankings, strict=True)
    ]
    assert_calibration_is_the_sweeps_best(
        cal.to_dict(), scores, [dict(x.relevance) for x in q], [True, True, False, True]
    )
    # No probabilities (the first stage): nothing to calibrate.
    assert calibrate(dataset, RunResult("fs", [Ranking([0], None)] * 4)) is None
    # Every call fell back: no threshold, nothing kept.
    down = RunResult(
        "r", [Ranking(list(range(len(x.documents))), [0.0] * len(x.documents), "down") for x in q]
    )
    none = calibrate(dataset, down)
    assert none is not None and none.threshold is None
    assert (none.f1, none.empty_queries) == (0.0, 1.0)


def test_locomo_calibration_per_category_with_a_fallback_query(
    rerank_server: RerankServer,
) -> None:
    dataset = load_dataset(LOCOMO_SAMPLE)
    rerank_server.script(Reply(503, {"error": {"message": "overloaded"}}))
    with MemReranker(
        "vllm", base_url=rerank_server.url, model="m", **{**FAST, "max_retries": 0}
    ) as rr:
        report = evaluate(dataset, {"served": rr}, calibrate=True)
        scores = scored_by(rr, dataset)
    row = report.systems["served"]
    assert row.fallback_queries == 1 and report.systems["first-stage"].calibration is None
    judged = [True] * len(dataset.queries)
    judged[0] = False
    qrels = [dict(q.relevance) for q in dataset.queries]
    data = report.to_dict()["calibration"]["served"]
    assert_calibration_is_the_sweeps_best(data, scores, qrels, judged)
    categories = sorted({q.category for q in dataset.queries})
    assert list(data["categories"]) == [str(c) for c in categories]
    for c in categories:
        keep = [i for i, q in enumerate(dataset.queries) if q.category == c]
        assert_calibration_is_the_sweeps_best(
            data["categories"][str(c)],
            [scores[i] for i in keep],
            [qrels[i] for i in keep],
            [judged[i] for i in keep],
        )
    # Markdown: beside the F1 column, and a table with a row per category.
    table = report.to_markdown()
    header = table.splitlines()[0]
    assert "| F1 | best F1 | at >= | pairs/s |" in header
    assert f"| served, category {categories[0]} |" in table
    served = next(line for line in table.splitlines() if line.startswith("| served |"))
    assert f"| {row.calibration.f1:.3f} |" in served


def test_without_calibrate_the_report_is_unchanged(rerank_server: RerankServer) -> None:
    dataset = load_dataset(LOCOMO_SAMPLE)
    with MemReranker("vllm", base_url=rerank_server.url, model="m") as rr:
        report = evaluate(dataset, {"served": rr})
    assert "calibration" not in report.to_dict()
    assert "best F1" not in report.to_markdown()
    with pytest.raises(TypeError, match="calibrate"):
        evaluate(dataset, {}, calibrate="yes")  # type: ignore[arg-type]
