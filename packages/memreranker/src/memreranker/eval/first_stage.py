"""First stages: how each query's candidates are chosen and ordered before any reranker."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from memreranker.eval.dataset import Dataset, EvalQuery


def bm25_order(dataset: Dataset) -> Dataset:
    """Every query's documents re-ordered by BM25 (bm25s, English stop words), best first;
    equal scores keep the previous order. Queries sharing one document list (the questions
    of one LOCOMO conversation) share one index."""
    import numpy as np

    bm25s = _bm25s()
    indexes: dict[int, Any] = {}
    queries: list[EvalQuery] = []
    for q in dataset.queries:
        if id(q.documents) not in indexes:
            corpus = bm25s.tokenize(list(q.documents), stopwords="en", show_progress=False)
            index = None
            if corpus.vocab:  # bm25s cannot index documents that are all stop words
                index = bm25s.BM25()
                index.index(corpus, show_progress=False)
            indexes[id(q.documents)] = index
        index = indexes[id(q.documents)]
        tokens = bm25s.tokenize(q.query, stopwords="en", return_ids=False, show_progress=False)[0]
        # Nor score a query with no token left: then nothing matches, the order stays.
        if index is None or not tokens:
            scores = np.zeros(len(q.documents))
        else:
            scores = index.get_scores(tokens)
        order = np.argsort(-np.asarray(scores), kind="stable")
        queries.append(_reordered(q, [int(i) for i in order]))
    return replace(dataset, queries=tuple(queries), first_stage="bm25")


def _bm25s() -> Any:
    global _bm25s_imported
    import bm25s

    if not _bm25s_imported:
        # bm25s sets its own logger to DEBUG when imported, so that any root handler prints
        # its debug lines; hand the level back to the application's configuration.
        logger = logging.getLogger("bm25s")
        if logger.level == logging.DEBUG:
            logger.setLevel(logging.NOTSET)
        _bm25s_imported = True
    return bm25s


_bm25s_imported = False


def top_k(dataset: Dataset, k: int) -> Dataset:
    """Each query's first ``k`` candidates (relevant documents cut off still count as
    relevant: recall then shows what the first stage missed)."""
    queries = tuple(_reordered(q, list(range(min(k, len(q.documents))))) for q in dataset.queries)
    return replace(dataset, queries=queries, first_stage=f"{dataset.first_stage} top-{k}")


def _reordered(query: EvalQuery, positions: list[int]) -> EvalQuery:
    return replace(
        query,
        documents=tuple(query.documents[i] for i in positions),
        doc_ids=tuple(query.doc_ids[i] for i in positions),
        metadata=None if query.metadata is None else tuple(query.metadata[i] for i in positions),
    )
