"""One calling convention over the three surfaces (core, LangChain, LlamaIndex), sync or async.

A :class:`Surface` wraps a ``MemReranker``, a LangChain ``MemRerank`` compressor or a
LlamaIndex ``MemRerank`` postprocessor built from the same settings, turns plain texts into
that surface's own inputs (strings, ``Document``s, ``NodeWithScore``s, each carrying its input
position in its id) and its outputs back into :class:`Out` rows, so one test body checks all
three. ``mode`` is ``"sync"`` or ``"async"`` (``asyncio.run`` per call: a fresh event loop).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode

from langchain_memreranker import MemRerank as LangChainRerank
from llama_index.postprocessor.memreranker import MemRerank as LlamaIndexRerank
from memreranker import MemReranker

SURFACES = ("core", "langchain", "llama_index")
MODES = ("sync", "async")

FAST: dict[str, Any] = {
    "timeout": 2.0,
    "max_retries": 1,
    "retry_backoff": 0.001,
    "retry_backoff_max": 0.002,
}
"""Quick retries: every fault is still retried once where it is retryable."""


@dataclass(frozen=True)
class Out:
    """One result row, whatever the surface."""

    index: int
    text: str
    score: float
    fallback: bool


class Surface:
    """A reranker of one kind, called the same way whatever the kind."""

    def __init__(
        self,
        kind: str,
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        reranker: MemReranker | None = None,
        **settings: Any,
    ) -> None:
        self.kind = kind
        self.top_n = top_n
        self.score_threshold = score_threshold
        if kind == "core":
            self.obj: Any = reranker if reranker is not None else MemReranker(**settings)
        elif kind == "langchain":
            extra = {"reranker": reranker} if reranker is not None else settings
            self.obj = LangChainRerank(top_n=top_n, score_threshold=score_threshold, **extra)
        elif kind == "llama_index":
            extra = {"reranker": reranker} if reranker is not None else settings
            self.obj = LlamaIndexRerank(top_n=top_n, score_threshold=score_threshold, **extra)
        else:
            raise ValueError(kind)

    def __repr__(self) -> str:
        return f"Surface({self.kind})"

    @property
    def core(self) -> MemReranker:
        return self.obj if self.kind == "core" else self.obj.reranker

    # -- inputs and outputs ------------------------------------------------------------------

    def inputs(self, texts: Sequence[Any]) -> list[Any]:
        """The surface's own input objects for ``texts`` (ids carry the input position)."""
        if self.kind == "core":
            return list(texts)
        if self.kind == "langchain":
            return [Document(page_content=t, id=f"d{i}") for i, t in enumerate(texts)]
        return [
            NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0 - i / (len(texts) + 1))
            for i, t in enumerate(texts)
        ]

    def outs(self, raw: Sequence[Any]) -> list[Out]:
        if self.kind == "core":
            return [Out(r.index, r.document, r.score, r.is_fallback) for r in raw]
        if self.kind == "langchain":
            return [
                Out(
                    int(d.id[1:]),
                    d.page_content,
                    d.metadata["relevance_score"],
                    bool(d.metadata.get("rerank_fallback", False)),
                )
                for d in raw
            ]
        return [
            Out(
                int(n.node.node_id[1:]),
                n.node.get_content(),
                n.score,
                bool(n.node.metadata.get("rerank_fallback", False)),
            )
            for n in raw
        ]

    # -- calls -------------------------------------------------------------------------------

    def run(self, mode: str, query: Any, texts: Sequence[Any]) -> list[Out]:
        """Rerank ``texts`` (plain strings) and read the results back."""
        return self.outs(self.call(mode, query, self.inputs(texts)))

    def call(self, mode: str, query: Any, documents: Any) -> Any:
        """One call with ``documents`` already in the surface's own type (or malformed)."""
        if mode == "sync":
            return self._sync(query, documents)
        if mode == "async":
            return asyncio.run(self._async(query, documents))
        raise ValueError(mode)

    def _sync(self, query: Any, documents: Any) -> Any:
        if self.kind == "core":
            return self.obj.rerank(
                query, documents, top_n=self.top_n, score_threshold=self.score_threshold
            )
        if self.kind == "langchain":
            return self.obj.compress_documents(documents, query)
        return self.obj.postprocess_nodes(documents, query_str=query)

    async def _async(self, query: Any, documents: Any) -> Any:
        if self.kind == "core":
            return await self.obj.arerank(
                query, documents, top_n=self.top_n, score_threshold=self.score_threshold
            )
        if self.kind == "langchain":
            return await self.obj.acompress_documents(documents, query)
        return await self.obj.apostprocess_nodes(documents, query_str=query)

    def close(self) -> None:
        self.obj.close()


# --- Assertions -------------------------------------------------------------------------------


def memreranker_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.split(".")[0] == "memreranker" and r.levelno >= logging.WARNING
    ]


def assert_fallback(outs: list[Out], texts: Sequence[str]) -> None:
    """mem0's fallback: every input exactly once, input order, score 0.0, flagged."""
    assert [o.index for o in outs] == list(range(len(texts)))
    assert [o.text for o in outs] == list(texts)
    assert all(o.score == 0.0 and o.fallback for o in outs), outs


def assert_ranked(outs: list[Out], expected: Sequence[tuple[int, float]]) -> None:
    """Scored results equal to ``expected`` (index, score) pairs, none flagged."""
    assert [(o.index, o.score) for o in outs] == [(i, pytest.approx(s)) for i, s in expected]
    assert not any(o.fallback for o in outs)


def ranking(scores: Sequence[float]) -> list[tuple[int, float]]:
    """(index, score) best first, ties in input order: the order every surface promises."""
    return sorted(enumerate(scores), key=lambda pair: (-pair[1], pair[0]))


def is_probability(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0
