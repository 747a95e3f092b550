"""The model card's prompt, verbatim. Pure strings: no torch, shared by every engine.

A prompt is ``PREFIX + format_body(instruction, query, document) + SUFFIX``. A rerank server
that scores the concatenation of a query string and a document string (vLLM serving the
original Qwen3-Reranker checkpoint, TEI serving a seq-cls conversion) gets the same text
when the query is sent as :func:`format_query` and each document as :func:`format_document`:
the four functions below are built from the same two pieces, so the local and the served
prompts cannot drift apart. :data:`CARD_CHAT_TEMPLATE`, the same prompt as a Jinja chat
template for sentence-transformers' ``CrossEncoder``, is generated from them too.

Pure strings: ``local/`` (torch) and ``http/`` (no torch) both import this module.
"""

from __future__ import annotations

import json
import re

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def format_body(instruction: str | None, query: str, document: str) -> str:
    """The text between PREFIX and SUFFIX for one pair."""
    return query_block(instruction, query) + document_block(document)


def query_block(instruction: str | None, query: str) -> str:
    """The body's first part: the ``<Instruct>`` and ``<Query>`` lines (None: the default
    instruction)."""
    if instruction is None:
        instruction = DEFAULT_INSTRUCTION
    return f"<Instruct>: {instruction}\n<Query>: {query}\n"


def document_block(document: str) -> str:
    """The body's last part: the ``<Document>`` line."""
    return f"<Document>: {document}"


def format_query(instruction: str | None, query: str) -> str:
    """The query string a served reranker gets: PREFIX + the ``<Instruct>``/``<Query>`` lines."""
    return PREFIX + query_block(instruction, query)


def format_document(document: str) -> str:
    """A document string a served reranker gets: the ``<Document>`` line + SUFFIX."""
    return document_block(document) + SUFFIX


CARD_PROMPT_NAME = "query"

_MARKS = {"instruction": "\x00I\x00", "query": "\x00Q\x00", "document": "\x00D\x00"}


def _card_prompt_expression() -> str:
    """The card's prompt as one Jinja expression over ``ns.instruction/query/document``:
    :func:`query_block` and :func:`document_block` rendered with markers, each marker
    replaced by its variable and every literal piece quoted."""
    text = (
        PREFIX
        + query_block(_MARKS["instruction"], _MARKS["query"])
        + document_block(_MARKS["document"])
        + SUFFIX
    )
    variables = {mark: f"ns.{name}" for name, mark in _MARKS.items()}
    pieces = re.split("(\x00[IQD]\x00)", text)
    return " + ".join(variables.get(p) or json.dumps(p) for p in pieces if p)


CARD_CHAT_TEMPLATE = (
    "{%- set ns = namespace(instruction=" + json.dumps(DEFAULT_INSTRUCTION) + ", "
    "query='', document='') -%}"
    "{%- for m in messages -%}"
    "{%- if m.content is string -%}{%- set text = m.content -%}"
    "{%- else -%}{%- set text = m.content | map(attribute='text') | join('') -%}{%- endif -%}"
    "{%- if m.role == 'system' -%}{%- set ns.instruction = text -%}"
    "{%- elif m.role == 'query' -%}{%- set ns.query = text -%}"
    "{%- elif m.role == 'document' -%}{%- set ns.document = text -%}{%- endif -%}"
    "{%- endfor -%}"
    "{{ " + _card_prompt_expression() + " }}"
)
"""The model card's prompt as a chat template for CrossEncoder's roles: the prompt (an
instruction) arrives as the ``system`` message, the pair as ``query`` and ``document``."""

CARD_PROMPTS = {CARD_PROMPT_NAME: DEFAULT_INSTRUCTION}
"""CrossEncoder prompts of the model card: the default instruction under the name "query"."""
