"""Dates and fields in eval data: LOCOMO session dates, JSONL document objects, and
``document_template`` rendering them into exactly the texts a served reranker receives."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from eval_kit import LOCOMO_SAMPLE
from servers import RerankServer

from memreranker import MemReranker
from memreranker.cli import main
from memreranker.eval import DatasetError, evaluate, load_dataset, read_locomo
from memreranker.eval.loading import parse_locomo_date

PLAIN = {"prompt_format": "plain"}  # the server receives the documents as scored


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:56 pm on 8 May, 2023", datetime(2023, 5, 8, 13, 56)),
        ("10:37 am on 27 June, 2023", datetime(2023, 6, 27, 10, 37)),
        ("12:05 am on 1 January, 2024", datetime(2024, 1, 1, 0, 5)),
        ("12:30 pm on 3 Sept, 2023", datetime(2023, 9, 3, 12, 30)),
        ("9:12 AM on 14 Jun 2023", datetime(2023, 6, 14, 9, 12)),
        ("8 May, 2023", datetime(2023, 5, 8)),
        ("yesterday", None),
        ("1:56 pm on 31 June, 2023", None),
        ("13:56 pm on 8 May, 2023", None),
        ("1:56 pm on 8 Mayo, 2023", None),
    ],
)
def test_locomo_dates_are_parsed(text: str, expected: datetime | None) -> None:
    assert parse_locomo_date(text) == expected


def test_locomo_turns_carry_their_session_date_as_fields() -> None:
    dataset = load_dataset(LOCOMO_SAMPLE)
    first = dataset.queries[0]
    assert first.metadata is not None and len(first.metadata) == len(first.documents)
    assert first.metadata[2] == {
        "session": 1,
        "date_time": "1:56 pm on 8 May, 2023",
        "date": datetime(2023, 5, 8, 13, 56),
        "speaker": "Caroline",
        "dia_id": "D1:3",
    }
    assert first.metadata[4]["date"] == datetime(2023, 6, 27, 10, 37)  # D2:1: session 2's
    conv_b = dataset.queries[4]
    assert [m["date"].date().isoformat() for m in conv_b.metadata] == [
        "2023-01-20",
        "2023-01-20",
        "2023-01-29",
        "2023-01-29",
        "2023-06-14",
        "2023-06-14",
    ]  # session_10 (after session_2) has its own date, not its neighbour's


def test_a_session_without_a_readable_date_has_no_date_field() -> None:
    data = json.loads(LOCOMO_SAMPLE.read_text(encoding="utf-8"))
    conversation = data[0]["conversation"]
    conversation["session_1_date_time"] = "the day after the party"
    del conversation["session_2_date_time"]
    dataset = read_locomo(json.dumps(data))
    fields = dataset.queries[0].metadata
    assert fields[0] == {
        "session": 1,
        "date_time": "the day after the party",
        "speaker": "Caroline",
        "dia_id": "D1:1",
    }
    assert "date" not in fields[4] and "date_time" not in fields[4]


def test_jsonl_documents_may_be_objects_with_fields(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    docs = [
        "User drinks green tea.",
        {"text": "User quit coffee.", "date": "2026-10-01", "source": "chat"},
        # a mem0 memory as exported: its text in "memory", the caller's fields in "metadata"
        {
            "memory": "User likes espresso.",
            "created_at": "2025-01-02T08:00:00+00:00",
            "metadata": {"source": "mem0"},
        },
    ]
    path.write_text(json.dumps({"query": "drink?", "documents": docs, "relevant": [1]}) + "\n")
    [q] = load_dataset(path).queries
    assert q.documents == ("User drinks green tea.", "User quit coffee.", "User likes espresso.")
    assert q.metadata == (
        None,
        {"text": "User quit coffee.", "date": "2026-10-01", "source": "chat"},
        {
            "memory": "User likes espresso.",
            "created_at": "2025-01-02T08:00:00+00:00",
            "source": "mem0",
        },
    )
    # Plain strings only: no fields at all, as before.
    path.write_text(json.dumps({"query": "q", "documents": ["a", "b"], "relevant": [0]}) + "\n")
    assert load_dataset(path).queries[0].metadata is None
    # BM25 and top-k move each document's fields with it.
    path.write_text(json.dumps({"query": "espresso?", "documents": docs, "relevant": [1]}))
    [q] = load_dataset(path, first_stage="bm25", candidates=2).queries
    assert q.documents[0] == "User likes espresso." and len(q.metadata) == 2
    by_text = dict(zip(q.documents, q.metadata, strict=True))
    assert by_text["User likes espresso."]["created_at"] == "2025-01-02T08:00:00+00:00"


@pytest.mark.parametrize("bad", [{"date": "2026-10-01"}, {"text": 3}, ["a"]])
def test_a_document_object_needs_a_text_string(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"query": "q", "documents": ["a", bad], "relevant": [0]}) + "\n")
    with pytest.raises(
        DatasetError,
        match=r':1: "documents" must be a non-empty list of '
        r'strings or objects with a "text" string \(or "memory" / "content"\)',
    ):
        load_dataset(path)


def test_document_template_renders_locomo_dates_into_what_the_server_scores(
    rerank_server: RerankServer,
) -> None:
    dataset = load_dataset(LOCOMO_SAMPLE)
    q = dataset.queries[0]
    plain = MemReranker("vllm", base_url=rerank_server.url, model="m", **PLAIN)
    dated = MemReranker(
        "vllm", base_url=rerank_server.url, model="m", **PLAIN, document_template="[{date}] {text}"
    )
    legacy = MemReranker(
        "vllm",
        base_url=rerank_server.url,
        model="m",
        **PLAIN,
        document_template="[{date_time}] {text}",
    )
    with plain, dated, legacy:
        report = evaluate(dataset, {"plain": plain, "dated": dated, "legacy": legacy})
    n = len(dataset.queries)
    sent = [r.body["documents"] for r in rerank_server.requests][::n]  # each one's first query
    assert len(sent) == 3 and len(rerank_server.requests) == 3 * n
    assert sent[0] == list(q.documents)  # no template: the plain text, as before
    assert sent[1][2] == (
        "[2023-05-08] Caroline: I went to a LGBTQ support group yesterday and it was so powerful."
    )
    assert sent[1][4].startswith("[2023-06-27] Caroline: ")
    assert sent[1] == [
        f"[{f['date']:%Y-%m-%d}] {t}" for t, f in zip(q.documents, q.metadata, strict=True)
    ]
    # The dated text of the earlier LOCOMO reader, byte for byte.
    assert sent[2][2] == (
        "[1:56 pm on 8 May, 2023] Caroline: I went to a LGBTQ support group yesterday and it "
        "was so powerful."
    )
    assert sent[2][5].endswith("[shares a photo: a painting of a sunrise over a lake]")
    data = report.to_dict()["rerankers"]
    assert data["plain"]["document_template"] is None
    assert data["dated"]["document_template"] == "[{date}] {text}"
    assert "dated: '[{date}] {text}'" in report.to_markdown()


def test_cli_document_template_over_jsonl_objects(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    rerank_server: RerankServer,
    tmp_path: Path,
) -> None:
    path = tmp_path / "data.jsonl"
    docs = [
        {"text": "User quit coffee.", "date": "2026-10-01", "source": "chat"},
        {"text": "User likes espresso.", "source": "email"},
    ]
    path.write_text(
        json.dumps({"query": "drink?", "documents": docs, "relevant": [0]})
        + "\n"
        + json.dumps({"query": "sport?", "documents": ["User plays chess."], "relevant": [0]})
        + "\n"
    )
    code = main(
        [
            "eval",
            str(path),
            "--reranker",
            f"served=vllm:m@{rerank_server.url}",
            "--document-template",
            "{source} [{date}] {text}",
            "--json",
            "--no-progress",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    first, second = rerank_server.requests
    [chess] = second.body["documents"]
    assert "<Document>: User plays chess.<|im_end|>" in chess  # a plain string stays plain
    sent = first.body["documents"]
    # Default prompt format: the model card's template around each rendered document.
    assert "chat [2026-10-01] User quit coffee." in sent[0]
    # No date: scored as its plain text (never "None"), and one warning says so.
    assert "User likes espresso." in sent[1] and "email" not in sent[1] and "None" not in sent[1]
    [warning] = [r.getMessage() for r in caplog.records if r.name == "memreranker"]
    assert "1 of 2 document(s) lack a field of document_template" in warning
    assert json.loads(out)["rerankers"]["served"]["document_template"] == (
        "{source} [{date}] {text}"
    )


def test_template_errors(capsys: pytest.CaptureFixture[str], rerank_server: RerankServer) -> None:
    code = main(["eval", str(LOCOMO_SAMPLE), "--document-template", "[{date] {text}"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("memreranker: error: document_template") and err.count("\n") == 1
    with pytest.raises(ValueError, match="document_template"):
        evaluate(LOCOMO_SAMPLE, [], document_template="no text field")
    with MemReranker("vllm", base_url=rerank_server.url, model="m") as mine:
        with pytest.raises(ValueError, match="'mine' is a MemReranker with document_template=None"):
            evaluate(LOCOMO_SAMPLE, {"mine": mine}, document_template="[{date}] {text}")
    assert rerank_server.requests == []  # refused before any call
