"""The text a memory is scored as: its own text, or ``document_template`` rendered over its
text, its date and its fields. Written once here; every surface (the core's ``metadata=``,
the LangChain and LlamaIndex shells, the mem0 provider, the CLI, eval) renders through it.

A template is a ``str.format`` string over named fields: ``{text}`` (the memory's own text,
exactly once, no conversion or format spec), ``{date}`` (its date as ``YYYY-MM-DD``) and any
field of the memory by name (``{source}``, ``{speaker}``...). ``{date}`` is read from the first
of ``date_fields`` (default :data:`DEFAULT_DATE_FIELDS`) that holds a date: a ``datetime``,
a ``date`` or an ISO 8601 string (``"2026-10-01T09:30:00+00:00"``, ``"2026-10-01"``,
``"...Z"``). The date shown is the calendar date as written (a mem0 timestamp in US/Pacific
shows its Pacific date).

A memory that lacks a field the template needs (absent, ``None``, or a value its format spec
rejects) is scored as its plain text: never ``"None"``, never an exception; one warning per
call says how many were.

Rendered texts are :class:`RenderedText`, a ``str`` that remembers which part is the memory's
own text, so that truncation (local engines, HTTP limits) cuts that part only and never the
date or the template around it.
"""

from __future__ import annotations

import logging
import math
import string
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

logger = logging.getLogger("memreranker")

DEFAULT_DATE_FIELDS: tuple[str, ...] = ("date", "created_at", "updated_at")
"""Fields ``{date}`` and recency read a memory's date from, first match wins: an explicit
``date`` (eval data, your own metadata), then mem0's and LangGraph's ``created_at`` (when the
memory was made), then ``updated_at``."""

TEXT_FIELD = "text"
DATE_FIELD = "date"


class RenderedText(str):
    """A rendered document: ``head + text + tail``, where only ``text`` is the memory's own.

    Truncation cuts :attr:`text` (see :meth:`with_text`); ``head`` and ``tail`` (the template's
    literal parts and the rendered fields, the date among them) are kept whole.
    """

    head: str
    text: str
    tail: str

    def __new__(cls, head: str, text: str, tail: str) -> RenderedText:
        self = super().__new__(cls, head + text + tail)
        self.head, self.text, self.tail = head, text, tail
        return self

    def with_text(self, text: str) -> RenderedText:
        """The same head and tail around another (cut) text."""
        return RenderedText(self.head, text, self.tail)

    def __reduce__(self) -> Any:
        return (RenderedText, (self.head, self.text, self.tail))


def fixed_parts(document: str) -> tuple[str, str, str]:
    """``(head, text, tail)`` of a document: a plain string is all text."""
    if isinstance(document, RenderedText):
        return document.head, document.text, document.tail
    return "", document, ""


def check_document_template(template: Any) -> str | None:
    """``template`` if it is a usable ``document_template``, else ``ValueError`` saying why."""
    if template is None:
        return None
    if not isinstance(template, str):
        raise TypeError(f"document_template must be a str or None, got {type(template).__name__}")
    _parse(template)
    return template


def _parse(template: str) -> list[tuple[str, str | None, str, str | None]]:
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"document_template {template!r} is not a valid format: {exc}") from None
    texts = 0
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name or name.isdigit():
            raise ValueError(
                f"document_template {template!r}: fields must be named ({{text}}, {{date}}, "
                "{source}...), not positional"
            )
        if "." in name or "[" in name:
            raise ValueError(
                f"document_template {template!r}: field {name!r}: attribute and index access "
                "are not supported; name a field of the memory"
            )
        if spec and "{" in spec:
            raise ValueError(f"document_template {template!r}: nested fields are not supported")
        if conversion not in (None, "r", "s", "a"):
            raise ValueError(f"document_template {template!r}: unknown conversion !{conversion}")
        if name == TEXT_FIELD:
            texts += 1
            if spec or conversion:
                raise ValueError(
                    f"document_template {template!r}: {{text}} takes no conversion or format "
                    "spec (it is the part truncation may cut)"
                )
    if texts != 1:
        raise ValueError(
            f"document_template {template!r} must contain {{text}} exactly once (found {texts})"
        )
    return parts


def _as_datetime(value: Any) -> datetime | None:
    """A datetime for a date-like value (``None`` for anything else). Naive stays naive."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str) and value.strip():
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def memory_datetime(
    fields: Mapping[str, Any] | None, date_fields: Sequence[str] = DEFAULT_DATE_FIELDS
) -> datetime | None:
    """The memory's date: the first of ``date_fields`` holding a date (as given: a naive value
    stays naive, an ISO string's offset is kept), or ``None``."""
    if not fields:
        return None
    for name in date_fields:
        found = _as_datetime(fields.get(name))
        if found is not None:
            return found
    return None


def memory_date(
    fields: Mapping[str, Any] | None, date_fields: Sequence[str] = DEFAULT_DATE_FIELDS
) -> str | None:
    """``{date}``: the memory's calendar date as ``YYYY-MM-DD``, or ``None``."""
    found = memory_datetime(fields, date_fields)
    return None if found is None else found.date().isoformat()


class DocumentTemplate:
    """A checked ``document_template`` with the fields ``{date}`` is read from."""

    def __init__(self, template: str, date_fields: Sequence[str] = DEFAULT_DATE_FIELDS) -> None:
        self.template = template
        self.date_fields = tuple(date_fields)
        self._parts = _parse(template)

    def render(self, text: str, fields: Mapping[str, Any] | None) -> RenderedText | None:
        """The template over ``text`` and ``fields``; ``None`` if a needed field is missing."""
        fields = fields or {}
        head: list[str] = []
        tail: list[str] = []
        out = head
        for literal, name, spec, conversion in self._parts:
            out.append(literal)
            if name is None:
                continue
            if name == TEXT_FIELD:
                out = tail
                continue
            if name == DATE_FIELD:
                value: Any = memory_date(fields, self.date_fields)
            else:
                value = fields.get(name)
            if value is None:
                return None
            if conversion == "r":
                value = repr(value)
            elif conversion == "s":
                value = str(value)
            elif conversion == "a":
                value = ascii(value)
            try:
                out.append(format(value, spec or ""))
            except (TypeError, ValueError):
                return None
        return RenderedText("".join(head), text, "".join(tail))


def render_documents(
    template: DocumentTemplate | None,
    documents: Sequence[str],
    metadata: Sequence[Mapping[str, Any] | None] | None,
    *,
    where: str = "memreranker",
) -> list[str]:
    """The texts to score: ``documents`` themselves without a template (the same objects),
    else each rendered, plain where a field is missing (one warning with the count)."""
    if template is None:
        return list(documents)
    rendered: list[str] = []
    plain = 0
    for i, text in enumerate(documents):
        out = template.render(text, None if metadata is None else metadata[i])
        if out is None:
            plain += 1
            rendered.append(text)
        else:
            rendered.append(out)
    if plain:
        logger.warning(
            "%s: %d of %d document(s) lack a field of document_template %r: scored as their "
            "plain text",
            where,
            plain,
            len(documents),
            template.template,
        )
    return rendered


def as_utc(moment: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken to be UTC already."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def recency(
    fields: Mapping[str, Any] | None,
    *,
    now: datetime,
    half_life: timedelta,
    date_fields: Sequence[str] = DEFAULT_DATE_FIELDS,
) -> float:
    """``0.5 ** (age / half_life)`` with the age clamped at 0 (a date after ``now`` counts as
    now); 0.0 for a memory without a date. Naive datetimes are taken as UTC."""
    found = memory_datetime(fields, date_fields)
    if found is None:
        return 0.0
    age = (as_utc(now) - as_utc(found)).total_seconds()
    value = 0.5 ** (max(age, 0.0) / half_life.total_seconds())
    return value if math.isfinite(value) else 0.0
