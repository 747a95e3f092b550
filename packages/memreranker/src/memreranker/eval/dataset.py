"""What an evaluation runs on: queries, their candidate documents, and which are relevant."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class DatasetError(ValueError):
    """A data file that cannot be evaluated; the message names the file and, for JSONL, the
    line (``data.jsonl:7: ...``)."""


@dataclass(frozen=True)
class EvalQuery:
    """One query with its candidates, in first-stage order.

    Attributes:
        id: Unique within the dataset.
        query: The text given to every reranker.
        documents: The candidates, best first by the first stage. This order is the
            ``first-stage`` baseline, and what a reranker that falls back returns.
        doc_ids: One id per candidate (``"0"``, ``"1"``... for JSONL; LOCOMO ``dia_id``s).
        relevance: Graded label (>= 1) of every relevant document by id. It may name documents
            that are not among the candidates (a first stage that missed them): they still
            count in recall, MAP and NDCG, as they must.
        category: LOCOMO's question category (1-5), if any.
        metadata: Each candidate's fields (``date``, ``speaker``, ``source``...), aligned
            with ``documents`` (``None`` for a candidate without any), or ``None`` when no
            candidate has any. Every rerank call gets them as ``metadata=``: what a
            reranker's ``document_template`` renders and its recency reads the date from.
    """

    id: str
    query: str
    documents: tuple[str, ...]
    doc_ids: tuple[str, ...]
    relevance: Mapping[str, int]
    category: int | None = None
    metadata: tuple[Mapping[str, Any] | None, ...] | None = None

    @property
    def relevant_candidates(self) -> int:
        return sum(1 for d in self.doc_ids if d in self.relevance)


@dataclass(frozen=True)
class Dataset:
    """The queries of one evaluation.

    Attributes:
        name: Where the data came from (the file name).
        queries: The queries to evaluate.
        first_stage: How the candidates were chosen and ordered, e.g. ``"file order"``,
            ``"conversation order"`` or ``"bm25 top-20"``.
        skipped: Why queries of the file were left out, with how many (a question without
            any evidence turn cannot be scored by a ranking metric).
    """

    name: str
    queries: tuple[EvalQuery, ...]
    first_stage: str
    skipped: Mapping[str, int] = field(default_factory=dict)

    @property
    def pairs(self) -> int:
        """(query, candidate) pairs: what every reranker scores."""
        return sum(len(q.documents) for q in self.queries)
