"""Reading evaluation data: our JSONL format and LOCOMO's ``locomo10.json`` layout.

JSONL, one query a line::

    {"query": str, "documents": [str, ...], "relevant": [int, ...],
     "id": str (optional), "relevance": [int, ...] (optional)}

A document is a string, or an object ``{"text": str, ...}`` whose other keys are the memory's
fields (``{"text": "Flight booked.", "date": "2026-05-14", "source": "email"}``): what a
``document_template`` renders (``[{date}] {text}``) and recency reads the date from. Objects
are read as ``memreranker rerank`` reads them (:mod:`memreranker.memory_text`): the text is
``"memory"``, else ``"text"``, else ``"content"`` (a mem0 memory as exported), the fields are
the object's keys over those of a nested ``"metadata"`` object.
``relevant`` holds indices into ``documents``, which are in first-stage order; ``relevance``
gives a graded label per document (for NDCG) and must agree with ``relevant`` (a label > 0
exactly for the relevant documents). Other keys are ignored.

LOCOMO (the LoCoMo paper's data): a list of samples, each a ``conversation`` of dated
sessions of turns with ``dia_id``s, and ``qa`` items whose ``evidence`` lists the
``dia_id``s that answer them. Each question's candidates are the turns of its conversation
(in conversation order, or a first stage's top-k); its relevant documents are its evidence.
Each turn's fields are its session's ``date`` (a ``datetime`` parsed from
``"1:56 pm on 8 May, 2023"``), that string as ``date_time``, ``speaker``, ``dia_id`` and
``session`` (the number N of ``session_N``).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from memreranker.eval.dataset import Dataset, DatasetError, EvalQuery
from memreranker.memory_text import TEXT_KEYS, memory_fields, memory_text

Format = Literal["auto", "jsonl", "locomo"]
FirstStage = Literal["none", "bm25"]

SAMPLE_DATA = Path(__file__).with_name("data") / "agent_memory.jsonl"
"""The bundled sample: a dozen questions over an agent's memories (the README's example)."""

_EVIDENCE_ID = re.compile(r"D\d+:\d+")
_SESSION_KEY = re.compile(r"session_(\d+)")
# LOCOMO's session dates: "1:56 pm on 8 May, 2023" (the time is optional here).
_LOCOMO_DATE = re.compile(
    r"\s*(?:(\d{1,2}):(\d{2})\s*([ap])\.?m\.?\s+on\s+)?(\d{1,2})\s+([a-z]+)\.?,?\s+(\d{4})\s*",
    re.IGNORECASE,
)
_MONTHS = {
    name: number
    for number, full in enumerate(
        ("january", "february", "march", "april", "may", "june", "july", "august",
         "september", "october", "november", "december"),
        1,
    )
    for name in (full, full[:3], "sept" if full == "september" else full[:3])
}


def load_dataset(
    path: str | os.PathLike[str],
    *,
    format: Format = "auto",
    categories: Collection[int] | None = None,
    first_stage: FirstStage = "none",
    candidates: int | None = None,
) -> Dataset:
    """Read a dataset and choose each query's candidates.

    Args:
        path: A JSONL file or a LOCOMO JSON file.
        format: ``"auto"`` (a file starting with ``[`` is LOCOMO, else JSONL), ``"jsonl"``
            or ``"locomo"``.
        categories: Keep only LOCOMO questions of these categories (e.g. ``{1, 2, 3, 4}``
            leaves out the adversarial category 5). Not allowed for JSONL.
        first_stage: ``"none"``: the file's order (JSONL) or the conversation's (LOCOMO);
            ``"bm25"``: the documents of each query re-ordered by BM25 (bm25s).
        candidates: Keep each query's first ``candidates`` documents after the first stage
            (``None``: all).

    Raises:
        DatasetError: The file is missing or malformed (the message names the file and line).
        ValueError: A bad argument.
    """
    if format not in ("auto", "jsonl", "locomo"):
        raise ValueError(f"format must be 'auto', 'jsonl' or 'locomo', got {format!r}")
    if first_stage not in ("none", "bm25"):
        raise ValueError(f"first_stage must be 'none' or 'bm25', got {first_stage!r}")
    if candidates is not None and (
        isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1
    ):
        raise ValueError(f"candidates must be a positive integer or None, got {candidates!r}")
    path = Path(path)
    text = _read_text(path)
    if format == "auto":
        format = "locomo" if text.lstrip().startswith("[") else "jsonl"
    if format == "jsonl":
        if categories is not None:
            raise ValueError("categories select LOCOMO questions; a JSONL file has none")
        dataset = read_jsonl(text, name=str(path))
    else:
        dataset = read_locomo(text, name=str(path), categories=categories)
    if not dataset.queries:
        raise DatasetError(f"{path}: no query to evaluate{_skipped_note(dataset)}")
    if first_stage == "bm25":
        from memreranker.eval.first_stage import bm25_order

        dataset = bm25_order(dataset)
    if candidates is not None:
        from memreranker.eval.first_stage import top_k

        dataset = top_k(dataset, candidates)
    return dataset


def _read_text(path: Path) -> str:
    """The file as text: UTF-8, with or without a byte-order mark (as ``rerank`` reads it)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text") from None


def _loads(text: str, where: str, *, with_line: bool) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno} column {exc.colno}" if with_line else f"column {exc.colno}"
        raise DatasetError(f"{where}: not valid JSON ({exc.msg}, {at})") from None
    except RecursionError:  # CPython's parser gives up on very deep nesting
        raise DatasetError(f"{where}: JSON nested too deeply") from None


def read_jsonl(text: str, *, name: str = "<jsonl>") -> Dataset:
    """Parse the JSONL format (see the module docstring)."""
    queries: list[EvalQuery] = []
    seen: set[str] = set()
    skipped: Counter[str] = Counter()
    # Lines end at "\n" only (as for `rerank`): str.splitlines() would also split inside a
    # document holding U+2028 or U+0085, which json.dumps(ensure_ascii=False) writes as is.
    for lineno, line in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        item = _loads(line, where, with_line=False)
        query = _jsonl_query(item, where, default_id=str(lineno))
        if query.id in seen:
            raise DatasetError(f"{where}: duplicate id {query.id!r}")
        seen.add(query.id)
        if not query.relevance:
            skipped["no relevant document"] += 1
            continue
        queries.append(query)
    return Dataset(name, tuple(queries), first_stage="file order", skipped=dict(skipped))


def _jsonl_query(item: Any, where: str, *, default_id: str) -> EvalQuery:
    if not isinstance(item, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(item).__name__}")
    query = item.get("query")
    if not isinstance(query, str) or not query.strip():
        raise DatasetError(f'{where}: "query" must be a non-empty string')
    documents = item.get("documents")
    if (
        not isinstance(documents, list)
        or not documents
        or not all(isinstance(d, str) or _is_document_object(d) for d in documents)
    ):
        raise DatasetError(
            f'{where}: "documents" must be a non-empty list of strings or objects with a '
            '"text" string (or "memory" / "content")'
        )
    fields = _document_fields(documents)
    documents = [d if isinstance(d, str) else memory_text(d) for d in documents]
    relevant = item.get("relevant")
    if not isinstance(relevant, list) or not all(_is_int(i) for i in relevant):
        raise DatasetError(f'{where}: "relevant" must be a list of document indices')
    for i in relevant:
        if not 0 <= i < len(documents):
            raise DatasetError(
                f'{where}: "relevant" index {i} is out of range for {len(documents)} documents'
            )
    if len(set(relevant)) != len(relevant):
        raise DatasetError(f'{where}: "relevant" lists an index twice')
    grades = {i: 1 for i in relevant}
    labels = item.get("relevance")
    if labels is not None:
        if (
            not isinstance(labels, list)
            or len(labels) != len(documents)
            or not all(_is_int(g) and g >= 0 for g in labels)
        ):
            raise DatasetError(
                f'{where}: "relevance" must be a list of {len(documents)} non-negative integers '
                "(one label per document)"
            )
        if {i for i, g in enumerate(labels) if g > 0} != set(relevant):
            raise DatasetError(
                f'{where}: "relevance" and "relevant" disagree (a label > 0 must mark exactly '
                "the relevant documents)"
            )
        grades = {i: labels[i] for i in relevant}
    raw_id = item.get("id", default_id)
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        raise DatasetError(f'{where}: "id" must be a string or an integer')
    return EvalQuery(
        id=str(raw_id),
        query=query,
        documents=tuple(documents),
        doc_ids=tuple(str(i) for i in range(len(documents))),
        relevance={str(i): g for i, g in grades.items()},
        metadata=fields,
    )


def _is_document_object(value: Any) -> bool:
    return isinstance(value, dict) and any(isinstance(value.get(k), str) for k in TEXT_KEYS)


def _document_fields(documents: list[Any]) -> tuple[Mapping[str, Any] | None, ...] | None:
    """Each document's fields (``None`` for a plain string), or ``None`` when every document
    is a plain string."""
    if all(isinstance(d, str) for d in documents):
        return None
    return tuple(None if isinstance(d, str) else memory_fields(d) for d in documents)


def parse_locomo_date(text: str) -> datetime | None:
    """LOCOMO's session date (``"1:56 pm on 8 May, 2023"``, or ``"8 May, 2023"``) as a naive
    ``datetime`` (the file gives no time zone), or ``None`` if it is not in that form."""
    match = _LOCOMO_DATE.fullmatch(text)
    if match is None:
        return None
    hour, minute, half, day, month, year = match.groups()
    number = _MONTHS.get(month.lower())
    if number is None:
        return None
    h = m = 0
    if hour is not None:
        h, m = int(hour), int(minute)
        if not 1 <= h <= 12:
            return None
        h = h % 12 + (12 if half.lower() == "p" else 0)
    try:
        return datetime(int(year), number, int(day), h, m)
    except ValueError:  # 31 June, 61 minutes
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_locomo(
    text: str, *, name: str = "<locomo>", categories: Collection[int] | None = None
) -> Dataset:
    """Parse LOCOMO's layout (see the module docstring).

    Each turn becomes the document ``"<speaker>: <text>"``, with ``" [shares a photo:
    <caption>]"`` for a turn that carries an image caption: what an agent would have stored.
    Its session's date is a field (``date``, with ``date_time`` the file's own string), not
    part of the text: ``document_template="[{date}] {text}"`` puts it there, so that one run
    with and one without measure whether dates help (``"[{date_time}] {text}"`` gives the
    dated text of the earlier reader, which put the date in every turn, byte for byte).

    Evidence entries are read for ``D<session>:<turn>`` ids (the public file has entries
    such as ``"D8:6; D9:17"``); ids that are not a turn of the conversation are dropped and a
    question left without evidence is skipped, both counted in :attr:`Dataset.skipped`.
    """
    data = _loads(text.removeprefix("\ufeff"), name, with_line=True)
    if not isinstance(data, list):
        raise DatasetError(f"{name}: a LOCOMO file is a JSON list of samples")
    wanted = None if categories is None else {int(c) for c in categories}
    queries: list[EvalQuery] = []
    skipped: Counter[str] = Counter()
    sample_ids: set[str] = set()
    for s, sample in enumerate(data):
        where = f"{name}: sample {s}"
        if not isinstance(sample, dict) or not isinstance(sample.get("conversation"), dict):
            raise DatasetError(f'{where}: expected an object with a "conversation" object')
        sample_id = str(sample.get("sample_id", s))
        # Query ids are "<sample_id>/<k>": two samples with one id would merge silently.
        if sample_id in sample_ids:
            raise DatasetError(f"{where}: duplicate sample_id {sample_id!r}")
        sample_ids.add(sample_id)
        where = f"{name}: sample {sample_id}"
        turn_ids, turns, fields = _locomo_turns(sample["conversation"], where)
        known = set(turn_ids)
        qa = sample.get("qa", [])
        if not isinstance(qa, list):
            raise DatasetError(f'{where}: "qa" must be a list')
        for k, item in enumerate(qa):
            q_where = f"{where}, qa {k}"
            if not isinstance(item, dict) or not isinstance(item.get("question"), str):
                raise DatasetError(f'{q_where}: expected an object with a "question" string')
            category = item.get("category")
            if category is not None and not _is_int(category):
                raise DatasetError(f'{q_where}: "category" must be an integer')
            if wanted is not None and category not in wanted:
                continue
            evidence = item.get("evidence", [])
            if not isinstance(evidence, list) or not all(isinstance(e, str) for e in evidence):
                raise DatasetError(f'{q_where}: "evidence" must be a list of dia_id strings')
            ids = list(dict.fromkeys(i for e in evidence for i in _EVIDENCE_ID.findall(e)))
            unknown = [i for i in ids if i not in known]
            if unknown:
                skipped["evidence ids naming no turn (dropped)"] += len(unknown)
            relevance = {i: 1 for i in ids if i in known}
            if not relevance:
                skipped["questions without evidence"] += 1
                continue
            queries.append(
                EvalQuery(
                    id=f"{sample_id}/{k}",
                    query=item["question"],
                    documents=turns,
                    doc_ids=turn_ids,
                    relevance=relevance,
                    category=category,
                    metadata=fields,
                )
            )
    return Dataset(name, tuple(queries), first_stage="conversation order", skipped=dict(skipped))


def _locomo_turns(
    conversation: dict[str, Any], where: str
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[Mapping[str, Any], ...]]:
    sessions = sorted(
        (int(m.group(1)), key)
        for key in conversation
        if (m := _SESSION_KEY.fullmatch(key)) is not None
    )
    if not sessions:
        raise DatasetError(f"{where}: the conversation has no session_<N> list")
    ids: dict[str, None] = {}  # ordered, and O(1) duplicate checks
    docs: list[str] = []
    fields: list[Mapping[str, Any]] = []
    for number, key in sessions:
        turns = conversation[key]
        if not isinstance(turns, list):
            raise DatasetError(f"{where}: {key} must be a list of turns")
        session: dict[str, Any] = {"session": number}
        date_time = conversation.get(f"{key}_date_time")
        if isinstance(date_time, str) and date_time.strip():
            session["date_time"] = date_time
            date = parse_locomo_date(date_time)
            if date is not None:
                session["date"] = date
        for t, turn in enumerate(turns):
            if not isinstance(turn, dict) or not all(
                isinstance(turn.get(f), str) for f in ("speaker", "dia_id", "text")
            ):
                raise DatasetError(
                    f'{where}: {key} turn {t} needs "speaker", "dia_id" and "text" strings'
                )
            if turn["dia_id"] in ids:
                raise DatasetError(f"{where}: dia_id {turn['dia_id']!r} appears twice")
            text = f"{turn['speaker']}: {turn['text']}"
            caption = turn.get("blip_caption")
            if isinstance(caption, str) and caption.strip():
                text += f" [shares a photo: {caption}]"
            ids[turn["dia_id"]] = None
            docs.append(text)
            fields.append({**session, "speaker": turn["speaker"], "dia_id": turn["dia_id"]})
    return tuple(ids), tuple(docs), tuple(fields)


def _skipped_note(dataset: Dataset) -> str:
    if not dataset.skipped:
        return ""
    return " (skipped: " + ", ".join(f"{n} {why}" for why, n in dataset.skipped.items()) + ")"
