"""``MemRerank``: a LangChain document compressor backed by :class:`memreranker.MemReranker`.

A thin translation layer. Every option, check, the sorting, ``top_n`` cutting, the score
threshold and the fallback live in the core package; this module only maps LangChain
``Document`` objects (or strings and dicts) to texts and the core's results back.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.load.serializable import (
    Serializable,
    SerializedConstructor,
    SerializedNotImplemented,
    to_json_not_implemented,
)
from pydantic import ConfigDict, Field

from memreranker import RerankResult
from memreranker.integration import FALLBACK_KEY, RerankerShell, detached_copy, flag_fallback
from memreranker.memory_text import memory_text

RELEVANCE_SCORE_KEY = "relevance_score"
"""Metadata key of the score, P(yes) in [0, 1], as other LangChain rerankers write it."""

"""Metadata key set to ``True`` when scoring failed and the documents keep their order."""


class _Unset(enum.Enum):
    """Marks an argument left out: use the compressor's own ``top_n``/``score_threshold``."""

    TOKEN = 0


_UNSET = _Unset.TOKEN


class MemRerank(BaseDocumentCompressor, Serializable, RerankerShell):
    """Rerank LangChain documents with MemReranker (local weights or a hosted API).

    Give either the core's settings, from which one ``MemReranker`` is built when the
    compressor is constructed and reused for every call::

        MemRerank(backend="memos", top_n=5)  # key from $MEMOS_API_KEY
        MemRerank(model="/models/MemReranker-4B", device="cuda", on_error="raise")

    or a ready ``reranker`` (to share one loaded model, or to use a fallback chain)::

        MemRerank(reranker=MemReranker("memos", fallback=MemReranker(model=...)), top_n=5)

    but core settings that contradict a given ``reranker`` raise ``ValueError`` naming them,
    since one of the two would silently be ignored. ``top_n`` and ``score_threshold``
    belong to this compressor and go with either. The core settings are fixed after
    construction: assigning one raises ``AttributeError``; build a new ``MemRerank``
    instead. With a ready ``reranker`` the core fields mirror its settings (see
    :class:`memreranker.integration.RerankerShell`).

    Results are new ``Document`` objects (same ``id``, same content, a deep copy of the
    metadata: nothing mutable is shared with the input) with
    ``metadata["relevance_score"]``, best first. When scoring fails and ``on_error``
    is ``"fallback"`` (the default), the documents come back in their original order, cut
    to ``top_n``, with ``relevance_score`` 0.0 and ``metadata["rerank_fallback"] = True``,
    and the core logs one warning: the chain keeps running.

    ``api_key`` left as ``None`` lets the memos backend read ``$MEMOS_API_KEY`` when the
    compressor is built, so the key is never copied into this object nor serialised; an
    explicit key is a ``SecretStr``, absent from ``repr``, ``model_dump`` and ``dumps``
    (which writes a ``MEMOS_API_KEY`` secret reference instead).
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        arbitrary_types_allowed=True,
        # Validation errors must never echo inputs: they may hold the API key.
        hide_input_in_errors=True,
    )

    top_n: int | None = Field(
        default=3,
        description="Keep at most this many documents (None: all; more than given: all).",
    )

    # -- LangChain serialisation ------------------------------------------------------

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "MEMOS_API_KEY"}

    def to_json(self) -> SerializedConstructor | SerializedNotImplemented:
        # A ready MemReranker is a live object, not a constructor argument.
        if not self.owns_reranker:
            return to_json_not_implemented(self)
        return super().to_json()

    # -- BaseDocumentCompressor -------------------------------------------------------

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` by relevance to ``query``; see the class docstring.

        The caller's documents are never modified. An empty list returns ``[]`` without
        calling the backend.
        """
        texts = _document_texts(documents)
        return _to_documents(documents, self._rerank_texts(query, texts))

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`, through the core's native ``arerank``."""
        texts = _document_texts(documents)
        return _to_documents(documents, await self._arerank_texts(query, texts))

    # -- the reranker API of other LangChain rerankers (CohereRerank.rerank) ----------

    def rerank(
        self,
        documents: Sequence[str | Mapping[str, Any] | Document],
        query: str,
        *,
        top_n: int | _Unset | None = _UNSET,
        score_threshold: float | _Unset | None = _UNSET,
    ) -> list[dict[str, Any]]:
        """Score ``documents`` and return ``{"index", "relevance_score"}`` dicts, best first.

        Args:
            documents: Strings, ``Document`` objects, or dicts whose text is read as mem0
                does: ``"memory"``, else ``"text"``, else ``"content"``, else ``str(doc)``.
            query: The query.
            top_n: Overrides the compressor's ``top_n`` (``None``: all).
            score_threshold: Overrides the compressor's ``score_threshold``.

        Returns:
            One dict per kept document; ``index`` points into ``documents``. Fallback
            results (original order, score 0.0) also carry ``"rerank_fallback": True``.
        """
        texts = _any_texts(documents)
        results = self.reranker.rerank(query, texts, **self._call_options(top_n, score_threshold))
        return [_to_dict(result) for result in results]

    async def arerank(
        self,
        documents: Sequence[str | Mapping[str, Any] | Document],
        query: str,
        *,
        top_n: int | _Unset | None = _UNSET,
        score_threshold: float | _Unset | None = _UNSET,
    ) -> list[dict[str, Any]]:
        """Async :meth:`rerank`, through the core's native ``arerank``."""
        texts = _any_texts(documents)
        results = await self.reranker.arerank(
            query, texts, **self._call_options(top_n, score_threshold)
        )
        return [_to_dict(result) for result in results]

    def _call_options(
        self, top_n: int | _Unset | None, score_threshold: float | _Unset | None
    ) -> dict[str, Any]:
        return {
            "top_n": self.top_n if top_n is _UNSET else top_n,
            "score_threshold": (
                self.score_threshold if score_threshold is _UNSET else score_threshold
            ),
        }


def _check_sequence(documents: Any) -> None:
    if isinstance(documents, (str, bytes, Mapping, Document)) or not isinstance(
        documents, Sequence
    ):
        raise TypeError(
            f"documents must be a sequence (a list, say), got {type(documents).__name__}"
        )


def _document_texts(documents: Sequence[Document]) -> list[str]:
    _check_sequence(documents)
    texts = []
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise TypeError(f"documents[{i}] must be a Document, got {type(doc).__name__}")
        texts.append(doc.page_content)
    return texts


def _any_texts(documents: Sequence[str | Mapping[str, Any] | Document]) -> list[str]:
    _check_sequence(documents)
    return [_text_of(doc, i) for i, doc in enumerate(documents)]


def _text_of(doc: Any, i: int) -> str:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, Document):
        return doc.page_content
    if isinstance(doc, Mapping):
        return memory_text(doc)
    raise TypeError(f"documents[{i}] must be a str, a dict or a Document, got {type(doc).__name__}")


def _to_documents(documents: Sequence[Document], results: list[RerankResult]) -> list[Document]:
    out = []
    for result in results:
        document = detached_copy(documents[result.index])  # by index, never by position
        metadata = document.metadata
        metadata[RELEVANCE_SCORE_KEY] = result.score
        flag_fallback(metadata, result)
        out.append(document)
    return out


def _to_dict(result: RerankResult) -> dict[str, Any]:
    item: dict[str, Any] = {"index": result.index, RELEVANCE_SCORE_KEY: result.score}
    if result.is_fallback:
        item[FALLBACK_KEY] = True
    return item
