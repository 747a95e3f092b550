"""``--reranker SPEC``: a compact way to name a reranker on the command line.

``[NAME=]local:PATH_OR_HUB_ID``, ``[NAME=]memos:MODEL`` (``memos:`` alone: the default
model), ``[NAME=]vllm:MODEL@URL`` and ``[NAME=]tei:URL``. Each builds an ordinary
:class:`memreranker.MemReranker`; ``NAME`` (default: the spec itself, with the credentials of
its URL, if any, shown as ``***``) labels it in reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from memreranker.http.protocol import redact_urls
from memreranker.reranker import MemReranker

BASELINE = "first-stage"
"""The name of the first-stage order in every report; no reranker may take it."""

SPEC_FORMS = "local:PATH_OR_HUB_ID, memos:MODEL, vllm:MODEL@URL or tei:URL"

_NAME = re.compile(r"[^\s=:/@]+")


@dataclass(frozen=True)
class RerankerSpec:
    """A parsed spec: what to pass to :class:`MemReranker`."""

    name: str
    backend: str
    model: str | None = None
    base_url: str | None = None

    def build(self, **options: Any) -> MemReranker:
        """The reranker, with ``options`` (any :class:`RerankerSettings` field) added."""
        if self.base_url is not None:
            options["base_url"] = self.base_url
        return MemReranker(self.backend, self.model, **options)


def parse_spec(spec: str) -> RerankerSpec:
    """Parse ``[NAME=]BACKEND:ARGUMENT``; a ``ValueError`` says which part is wrong (quoting
    the spec without the credentials of its URL)."""
    if not isinstance(spec, str):
        raise TypeError(f"a reranker spec must be a string, got {type(spec).__name__}")
    try:
        return _parse(spec)
    except ValueError as exc:
        raise ValueError(redact_urls(str(exc))) from None


def _parse(spec: str) -> RerankerSpec:
    name, body = None, spec.strip()
    head, sep, rest = body.partition("=")
    if sep and _NAME.fullmatch(head):
        name, body = head, rest
    backend, sep, argument = body.partition(":")
    if not sep:
        raise ValueError(f"reranker spec {spec!r}: expected {SPEC_FORMS}")
    name = name or redact_urls(body)  # a name is printed: reports, plots, stderr
    if name == BASELINE:
        raise ValueError(f"reranker spec {spec!r}: the name {BASELINE!r} is the baseline's")
    if backend == "local":
        if not argument:
            raise ValueError(f"reranker spec {spec!r}: local: needs a directory or Hub id")
        return RerankerSpec(name, "local", model=argument)
    if backend == "memos":
        return RerankerSpec(name, "memos", model=argument or None)
    if backend == "vllm":
        model, at, url = argument.partition("@")
        if not at or not model or not _is_url(url):
            raise ValueError(
                f"reranker spec {spec!r}: expected vllm:MODEL@URL, e.g. "
                "vllm:MemReranker-4B@http://localhost:8000"
            )
        return RerankerSpec(name, "vllm", model=model, base_url=url)
    if backend == "tei":
        if not _is_url(argument):
            raise ValueError(
                f"reranker spec {spec!r}: expected tei:URL, e.g. tei:http://localhost:8080"
            )
        return RerankerSpec(name, "tei", base_url=argument)
    raise ValueError(f"reranker spec {spec!r}: unknown backend {backend!r}; expected {SPEC_FORMS}")


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://")) and len(text.split("://", 1)[1]) > 0
