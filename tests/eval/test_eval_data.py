"""Reading evaluation data (JSONL, LOCOMO's layout) and choosing candidates (BM25, top-k)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_kit import DATA, LOCOMO_SAMPLE, paper_metrics

from memreranker.eval import SAMPLE_DATA, DatasetError, evaluate, load_dataset, read_jsonl

GOOD = {"query": "q?", "documents": ["a", "b", "c"], "relevant": [1]}


def jsonl(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
        encoding="utf-8",
    )
    return path


def test_jsonl_reads_queries_ids_and_grades() -> None:
    dataset = load_dataset(DATA / "small.jsonl")
    assert [q.id for q in dataset.queries] == ["drink", "sister", "hobby", "trip"]
    hobby = dataset.queries[2]
    assert hobby.doc_ids == ("0", "1", "2", "3")
    assert hobby.relevance == {"1": 1, "3": 2}
    assert dataset.queries[0].relevance == {"1": 1, "3": 1}
    assert dataset.first_stage == "file order" and dataset.pairs == 19


def test_ids_default_to_the_line_number() -> None:
    dataset = read_jsonl(json.dumps(GOOD) + "\n\n" + json.dumps(GOOD))
    assert [q.id for q in dataset.queries] == ["1", "3"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "q", "documents": ["a"], "relevant": [0]', r"data\.jsonl:2: not valid JSON"),
        ("[1, 2]", r":2: expected a JSON object"),
        ({**GOOD, "query": " "}, r':2: "query" must be a non-empty string'),
        ({**GOOD, "documents": []}, r':2: "documents" must be a non-empty list'),
        ({**GOOD, "documents": ["a", 3]}, r':2: "documents" must be a non-empty list'),
        ({**GOOD, "relevant": [3]}, r':2: "relevant" index 3 is out of range for 3'),
        ({**GOOD, "relevant": [True]}, r':2: "relevant" must be a list of document indices'),
        ({**GOOD, "relevant": [1, 1]}, r':2: "relevant" lists an index twice'),
        ({**GOOD, "relevance": [0, 1]}, r':2: "relevance" must be a list of 3'),
        ({**GOOD, "relevance": [0, -1, 0]}, r':2: "relevance" must be a list of 3'),
        ({**GOOD, "relevance": [1, 1, 0]}, r':2: "relevance" and "relevant" disagree'),
        ({**GOOD, "id": "1"}, r":2: duplicate id '1'"),
        ({**GOOD, "id": [1]}, r':2: "id" must be a string or an integer'),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path: Path, line: object, message: str) -> None:
    path = jsonl(tmp_path, {**GOOD, "id": 1}, line)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_queries_without_a_relevant_document_are_skipped_and_counted(tmp_path: Path) -> None:
    dataset = load_dataset(jsonl(tmp_path, GOOD, {**GOOD, "relevant": []}))
    assert len(dataset.queries) == 1
    assert dataset.skipped == {"no relevant document": 1}
    with pytest.raises(DatasetError, match="no query to evaluate"):
        load_dataset(jsonl(tmp_path, {**GOOD, "relevant": []}))


def test_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.jsonl: no such file"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="categories select LOCOMO"):
        load_dataset(DATA / "small.jsonl", categories={1})
    with pytest.raises(ValueError, match="candidates"):
        load_dataset(DATA / "small.jsonl", candidates=0)
    with pytest.raises(ValueError, match="first_stage"):
        load_dataset(DATA / "small.jsonl", first_stage="dense")  # type: ignore[arg-type]


def test_the_bundled_sample_is_a_dozen_graded_queries() -> None:
    dataset = load_dataset(SAMPLE_DATA)
    assert len(dataset.queries) == 12 and not dataset.skipped
    assert all(len(q.documents) == 8 for q in dataset.queries)
    assert any(2 in q.relevance.values() for q in dataset.queries)


# --- LOCOMO ----------------------------------------------------------------------------------


def test_locomo_candidates_are_the_conversation_turns_with_dates() -> None:
    dataset = load_dataset(LOCOMO_SAMPLE)
    assert dataset.first_stage == "conversation order"
    assert [q.id for q in dataset.queries] == [
        "conv-a/0", "conv-a/1", "conv-a/2", "conv-a/3", "conv-b/0", "conv-b/1",
    ]
    first = dataset.queries[0]
    assert first.doc_ids == ("D1:1", "D1:2", "D1:3", "D1:4", "D2:1", "D2:2", "D2:3")
    # The session's date is a field of the turn, not part of its text (see test_eval_dates).
    assert first.documents[2] == (
        "Caroline: I went to a LGBTQ support group yesterday and it was so powerful."
    )
    assert first.documents[5].endswith(
        "Melanie: I finally finished the painting of the lake! "
        "[shares a photo: a painting of a sunrise over a lake]"
    )
    assert first.relevance == {"D1:3": 1} and first.category == 2
    # session_10 comes after session_2 (numeric order, not text order)
    assert dataset.queries[4].doc_ids == ("D1:1", "D1:2", "D2:1", "D2:2", "D10:1", "D10:2")


def test_locomo_evidence_quirks_and_skips() -> None:
    dataset = load_dataset(LOCOMO_SAMPLE)
    by_id = {q.id: q for q in dataset.queries}
    assert by_id["conv-a/2"].relevance == {"D2:1": 1, "D1:3": 1}  # "D2:1; D1:3" in one entry
    assert by_id["conv-b/1"].relevance == {"D1:2": 1, "D2:1": 1}
    assert by_id["conv-a/3"].category == 5  # adversarial: no "answer", still retrievable
    # qa 4 cites a turn that does not exist, qa 5 cites none: neither can be scored.
    assert dataset.skipped == {
        "evidence ids naming no turn (dropped)": 1,
        "questions without evidence": 2,
    }


def test_locomo_category_filter() -> None:
    no_adversarial = load_dataset(LOCOMO_SAMPLE, categories={1, 2, 3, 4})
    assert [q.category for q in no_adversarial.queries] == [2, 4, 1, 4, 1]
    only = load_dataset(LOCOMO_SAMPLE, categories=[5])
    assert [q.id for q in only.queries] == ["conv-a/3"]
    with pytest.raises(DatasetError, match="no query to evaluate"):
        load_dataset(LOCOMO_SAMPLE, categories={7})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"a": 1}, "a JSON list of samples"),
        ([{"qa": []}], 'sample 0: expected an object with a "conversation"'),
        ([{"sample_id": "x", "conversation": {}}], "sample x: the conversation has no session"),
        (
            [{"sample_id": "x", "conversation": {"session_1": [{"speaker": "A", "text": "t"}]}}],
            'sample x: session_1 turn 0 needs "speaker", "dia_id" and "text"',
        ),
        (
            [{"sample_id": "x", "conversation": {"session_1": [
                {"speaker": "A", "dia_id": "D1:1", "text": "t"}]}, "qa": [{"q": 1}]}],
            'sample x, qa 0: expected an object with a "question"',
        ),
    ],
)
def test_malformed_locomo_is_named(tmp_path: Path, data: object, message: str) -> None:
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_dataset(path, format="locomo")


# --- first stages ----------------------------------------------------------------------------


def test_bm25_orders_candidates_and_top_k_cuts_them() -> None:
    full = load_dataset(LOCOMO_SAMPLE)
    bm25 = load_dataset(LOCOMO_SAMPLE, first_stage="bm25", candidates=2)
    assert bm25.first_stage == "bm25 top-2"
    painting = {q.id: q for q in bm25.queries}["conv-a/1"]  # "What painting did Melanie finish?"
    assert painting.doc_ids[0] == "D2:2"  # the only turn that says "painting"
    assert len(painting.doc_ids) == 2
    for q_full, q in zip(full.queries, bm25.queries, strict=True):
        assert set(q.doc_ids) <= set(q_full.doc_ids)
        assert q.relevance == q_full.relevance  # evidence cut off still counts
        assert q.documents == tuple(q_full.documents[q_full.doc_ids.index(d)] for d in q.doc_ids)


def test_bm25_without_tokens_keeps_the_order(tmp_path: Path) -> None:
    words = ["User drinks tea.", "User plays badminton.", "User drinks wine."]
    path = jsonl(
        tmp_path,
        {**GOOD, "query": "what is the", "documents": words},  # only stop words: no match
        {**GOOD, "id": "x", "documents": ["a", "b", "c"]},  # no document has a token
        {**GOOD, "id": "y", "query": "wine?", "documents": words},
    )
    stop, empty, wine = load_dataset(path, first_stage="bm25").queries
    assert stop.doc_ids == ("0", "1", "2") and empty.doc_ids == ("0", "1", "2")
    assert wine.doc_ids == ("2", "0", "1")  # equal (zero) scores keep the file order


def test_missed_evidence_counts_against_the_first_stage() -> None:
    bm25 = load_dataset(LOCOMO_SAMPLE, first_stage="bm25", candidates=2)
    report = evaluate(bm25)
    rankings = [list(q.doc_ids) for q in bm25.queries]
    expected = paper_metrics(rankings, [dict(q.relevance) for q in bm25.queries])
    assert expected["R@20"] < 1.0  # some evidence is outside the top 2...
    for name, value in expected.items():  # ...and the report says so
        assert report.results["first-stage"][name] == pytest.approx(value, abs=1e-9), name
    assert (
        "Skipped: 1 evidence ids naming no turn (dropped), 2 questions without evidence."
        in report.to_markdown()
    )


# --- Inputs that must be refused, and valid ones that must not be -----------------------------


def locomo_sample(sample_id: object, question: str) -> dict[str, object]:
    sample: dict[str, object] = {
        "conversation": {"session_1": [
            {"speaker": "A", "dia_id": "D1:1", "text": "I drink tea."},
            {"speaker": "B", "dia_id": "D1:2", "text": "I play chess."},
        ]},
        "qa": [{"question": question, "evidence": ["D1:1"], "category": 1}],
    }  # fmt: skip
    if sample_id is not None:
        sample["sample_id"] = sample_id
    return sample


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (["s1", "s1"], r"locomo\.json: sample 1: duplicate sample_id 's1'"),
        (["1", None], r"locomo\.json: sample 1: duplicate sample_id '1'"),  # missing id: "1"
    ],
)
def test_locomo_samples_with_one_id_are_refused(
    tmp_path: Path, ids: list[object], message: str
) -> None:
    """Two samples with one id would give the same query ids (``s1/0``): one of them would
    vanish from the metrics while the report still counted both."""
    path = tmp_path / "locomo.json"
    samples = [locomo_sample(ids[0], "What does A drink?"), locomo_sample(ids[1], "Who?")]
    path.write_text(json.dumps(samples), encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)
    samples[1]["sample_id"] = "s2"  # distinct ids: both samples count
    path.write_text(json.dumps(samples), encoding="utf-8")
    assert len(load_dataset(path).queries) == 2


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085"])
def test_jsonl_documents_may_hold_unicode_line_separators(tmp_path: Path, separator: str) -> None:
    """json.dumps(ensure_ascii=False) writes U+2028 and U+0085 as they are; only "\\n" ends
    a JSONL line (a "\\r" before it too)."""
    docs = [f"User drinks tea{separator}every morning.", "User plays chess."]
    item = {"id": "q", "query": "What does the user drink?", "documents": docs, "relevant": [0]}
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(item, ensure_ascii=False) + "\r\n", encoding="utf-8")
    [query] = load_dataset(path).queries
    assert query.documents == tuple(docs)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    jsonl_path = tmp_path / "data.jsonl"
    jsonl_path.write_bytes(b"\xef\xbb\xbf" + (DATA / "small.jsonl").read_bytes())
    assert len(load_dataset(jsonl_path).queries) == 4
    locomo_path = tmp_path / "locomo.json"
    locomo_path.write_bytes(b"\xef\xbb\xbf" + LOCOMO_SAMPLE.read_bytes())
    assert load_dataset(locomo_path).first_stage == "conversation order"  # auto: LOCOMO


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    lines = [json.dumps(GOOD), json.dumps({**GOOD, "id": "x"}), '{"query": "caf\xe9"}']
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value) == f"{path}:3: not UTF-8 text"


@pytest.mark.parametrize("layout", ["jsonl", "locomo"])
def test_deeply_nested_json_is_a_dataset_error(tmp_path: Path, layout: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    path = tmp_path / "deep.json"
    if layout == "jsonl":
        text = json.dumps(GOOD) + "\n" + '{"query": "q", "documents": ' + deep + "}\n"
        message = r"deep\.json:2: JSON nested too deeply"
    else:
        text = deep
        message = r"deep\.json: JSON nested too deeply"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_dataset(path, format=layout)  # type: ignore[arg-type]
