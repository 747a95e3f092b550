"""The rerank wire protocols, without any I/O.

Both transports (``requests`` for sync calls, ``httpx`` for async ones) only move bytes:
everything they send is built by :func:`build_request` and everything they receive is judged
by :func:`parse_reply`, so the two paths cannot drift apart.

Three dialects are spoken:

``memos``
    The hosted MemOS API: ``POST {base}/rerank``, ``Authorization: Token <key>``. Replies
    either carry ``results`` at the top level (the documented, vLLM-shaped reply) or wrap them
    as ``{"code": 0, "message": "ok", "data": {"results": [...]}}``; a ``code`` outside
    {0, 200} is an error even with HTTP 200.
``vllm``
    Any server speaking vLLM's rerank protocol (``/v1/rerank``) or Cohere v2's (results with
    ``index`` and ``relevance_score`` only). ``Authorization: Bearer <key>`` only when a key
    is set.
``tei``
    Hugging Face text-embeddings-inference: ``POST {base}/rerank`` with ``{"query", "texts",
    "truncate", "raw_scores": false}``; the reply is a bare JSON list of ``{"index",
    "score"}`` in any order (every text, there is no ``top_n``); errors are ``{"error",
    "error_type"}`` (413 too large, 422 tokenizer, 424 model, 429 overloaded, 503
    unhealthy). ``Authorization: Bearer <key>`` only when a key is set.

What the texts say (plain, or wrapped in the model card's template) is decided before a
request is built: see :mod:`~memreranker.http.templates`.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from memreranker.backend_table import BUILTIN_BACKENDS
from memreranker.backend_table import Dialect as Dialect
from memreranker.errors import InvalidResponseError, ServiceError
from memreranker.http.error_policy import OK_CODES, rule_for
from memreranker.ranking import Scored

_MEMOS = BUILTIN_BACKENDS["memos"]
assert _MEMOS.default_base_url is not None
DEFAULT_MEMOS_BASE_URL: str = _MEMOS.default_base_url
KNOWN_MEMOS_MODELS = _MEMOS.known_models


_MAX_MESSAGE = 500  # characters of server text kept in an error message
_REDACTED = "***"


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call one rerank service. The key never shows in ``repr``."""

    dialect: Dialect
    url: str
    model: str | None
    api_key: str | None = field(default=None, repr=False)
    truncate: bool = True
    """tei: the ``truncate`` flag sent (the server cuts inputs over the model's length)."""

    def scrub(self, text: str) -> str:
        """``text`` with the API key replaced by ``***``."""
        return scrub(text, self.api_key)


@dataclass(frozen=True)
class HTTPRequest:
    """A request ready to send. ``headers`` hold the key: never log or format them."""

    url: str
    headers: Mapping[str, str] = field(repr=False)
    json: dict[str, Any]
    content: bytes = field(repr=False)
    """``json`` encoded once (UTF-8), so both transports send the same bytes."""
    n_documents: int
    top_n: int | None
    """The ``top_n`` actually sent (``None``: omitted, every document must come back)."""


@dataclass(frozen=True)
class HTTPReply:
    """What a transport received: status, headers (lower-case names) and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


# --- Endpoints -------------------------------------------------------------------------------


def check_base_url(base_url: str) -> str:
    """Validate an http(s) URL with a host; returns it without trailing slashes."""
    if not isinstance(base_url, str) or not base_url.strip():
        raise ValueError("base_url must be a non-empty http:// or https:// URL")
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"base_url must be an http:// or https:// URL with a host, got {redact_url(url)!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError("base_url must not carry a query string or fragment")
    return url


def memos_url(base_url: str) -> str:
    """``{base}/rerank`` (a base that already ends with ``/rerank`` is used as is)."""
    base = check_base_url(base_url)
    return base if base.endswith("/rerank") else f"{base}/rerank"


def tei_url(base_url: str) -> str:
    """TEI's route: ``{base}/rerank`` (a base ending with ``/rerank`` is used as is)."""
    return memos_url(base_url)


def vllm_url(base_url: str) -> str:
    """The rerank endpoint of a vLLM-style server.

    * ``http://host:8000`` -> ``http://host:8000/v1/rerank``
    * a base ending with ``/v1`` or ``/v2`` -> ``{base}/rerank`` (never ``/v1/v1``)
    * a base ending with ``/rerank`` is taken as the full endpoint (``.../v2/rerank``, a proxy)
    """
    base = check_base_url(base_url)
    if base.endswith("/rerank"):
        return base
    if base.endswith(("/v1", "/v2")):
        return f"{base}/rerank"
    return f"{base}/v1/rerank"


def endpoint_url(dialect: Dialect, base_url: str) -> str:
    """The rerank endpoint of ``dialect`` under ``base_url`` (validated)."""
    return _URLS[dialect](base_url)


_URLS = {"memos": memos_url, "vllm": vllm_url, "tei": tei_url}


def is_insecure_remote(url: str) -> bool:
    """True for plain ``http://`` to a host other than loopback (the key travels in clear)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def redact_url(url: str) -> str:
    """The URL without any ``user:password@`` part."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{_REDACTED}@{host}", parts.path, parts.query, ""))


# scheme://userinfo@ (the last "@" before the path: a password may hold a raw "@").
_URL_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#]*@")


def redact_urls(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it replaced by ``***@``
    (names, specs and messages that may quote a URL)."""
    return _URL_CREDENTIALS.sub(rf"\1{_REDACTED}@", text)


def scrub(text: str, secret: str | None) -> str:
    """Replace ``secret`` in ``text`` by ``***``, then cap the length of the text.

    In that order: cut first, a key straddling the cap would escape the replacement and
    show its head. Should the cut text still end with the start of the key (a text that held
    it cut short), that start goes too.
    """
    if secret:
        text = text.replace(secret, _REDACTED)
    if len(text) > _MAX_MESSAGE:
        text = _drop_key_head(text[:_MAX_MESSAGE], secret) + "..."
    return text


def _drop_key_head(text: str, secret: str | None) -> str:
    """``text`` without a tail that is the beginning of ``secret`` (a key cut in two)."""
    if secret:
        for n in range(min(len(secret), len(text)), 0, -1):
            if text.endswith(secret[:n]):
                return text[:-n]
    return text


# --- Requests --------------------------------------------------------------------------------


def build_request(
    endpoint: Endpoint, query: str, documents: Sequence[str], top_n: int | None
) -> HTTPRequest:
    """The request scoring ``documents``; ``top_n`` is sent only when it cuts the list (TEI
    has no ``top_n``: it always scores every text)."""
    n = len(documents)
    body: dict[str, Any] = {}
    if endpoint.dialect == "tei":
        sent_top_n = None
        body["query"] = query
        body["texts"] = list(documents)
        body["truncate"] = endpoint.truncate
        body["raw_scores"] = False  # sigmoid scores, P(yes) for a one-label reranker
    else:
        sent_top_n = top_n if top_n is not None and 0 < top_n < n else None
        if endpoint.model is not None:
            body["model"] = endpoint.model
        body["query"] = query
        body["documents"] = list(documents)
        if sent_top_n is not None:
            body["top_n"] = sent_top_n
    headers = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"}
    if endpoint.api_key:
        scheme = "Token" if endpoint.dialect == "memos" else "Bearer"
        headers["Authorization"] = f"{scheme} {endpoint.api_key}"
    content = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
    return HTTPRequest(
        url=endpoint.url,
        headers=headers,
        json=body,
        content=content,
        n_documents=n,
        top_n=sent_top_n,
    )


# --- Replies ---------------------------------------------------------------------------------


def parse_reply(endpoint: Endpoint, request: HTTPRequest, reply: HTTPReply) -> list[Scored]:
    """``(index, score)`` pairs of a reply, or a typed :class:`ServiceError`.

    Indices are local to the request. Raises:
        AuthenticationError / RateLimitError / ServiceError: the service reported an error
            (HTTP status or MemOS ``code``), with its status, code and message.
        InvalidResponseError: a success reply that cannot be trusted (bad JSON, JSON nested
            too deeply, missing or duplicate indices, scores that are not finite numbers in
            [0, 1]...).
    """
    try:
        return _parse_reply(endpoint, request, reply)
    except RecursionError:  # json, repr and json.dumps give up on very deep nesting
        raise InvalidResponseError(
            "reply is JSON nested too deeply to be read", status=reply.status
        ) from None


def _parse_reply(endpoint: Endpoint, request: HTTPRequest, reply: HTTPReply) -> list[Scored]:
    status = reply.status
    body, json_error = _decode(reply.body)
    if not 200 <= status < 300:
        raise _error_from_body(endpoint, status, body, reply.body)
    if json_error is not None:
        raise InvalidResponseError(
            endpoint.scrub(f"reply is not valid JSON ({json_error}): {_snippet(reply.body)}"),
            status=status,
        )
    if endpoint.dialect == "tei":
        return _parse_tei(endpoint, request, reply, body)
    if not isinstance(body, dict):
        raise InvalidResponseError(
            f"reply is a JSON {type(body).__name__}, expected an object", status=status
        )
    code = _service_code(body)
    if code is not None and code not in OK_CODES:
        raise _error_from_body(endpoint, status, body, reply.body)
    results = _find_results(body)
    if results is None:
        if body.get("error") is not None:  # {"error": ...} with a 2xx status
            raise _error_from_body(endpoint, status, body, reply.body)
        raise InvalidResponseError(
            f"reply has no results list (keys: {sorted(body)[:10]})", status=status
        )
    return validate_results(results, request.n_documents, request.top_n, status=status)


def _parse_tei(
    endpoint: Endpoint, request: HTTPRequest, reply: HTTPReply, body: Any
) -> list[Scored]:
    if isinstance(body, dict) and body.get("error") is not None:  # an error with a 2xx status
        raise _error_from_body(endpoint, reply.status, body, reply.body)
    if not isinstance(body, list):
        raise InvalidResponseError(
            f"reply is a JSON {type(body).__name__}, expected TEI's list of "
            '{"index", "score"} (is base_url a TEI server?)',
            status=reply.status,
        )
    return validate_results(
        body, request.n_documents, request.top_n, status=reply.status, score_key="score"
    )


def validate_results(
    results: Any,
    n_documents: int,
    top_n: int | None,
    *,
    status: int | None = None,
    score_key: str = "relevance_score",
) -> list[Scored]:
    """Check every result; never guess an index or a score."""
    if not isinstance(results, list):
        raise InvalidResponseError(
            f"results is a {type(results).__name__}, expected a list", status=status
        )
    scored: list[Scored] = []
    seen: set[int] = set()
    for position, item in enumerate(results):
        if not isinstance(item, dict):
            raise InvalidResponseError(
                f"results[{position}] is a {type(item).__name__}, expected an object",
                status=status,
            )
        index = item.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise InvalidResponseError(
                f"results[{position}].index is {_describe(index)}, expected an int", status=status
            )
        if not 0 <= index < n_documents:
            raise InvalidResponseError(
                f"results[{position}].index {index} is out of range for {n_documents} documents",
                status=status,
            )
        if index in seen:
            raise InvalidResponseError(
                f"results[{position}].index {index} appears twice", status=status
            )
        seen.add(index)
        score = item.get(score_key)
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise InvalidResponseError(
                f"results[{position}].{score_key} is {_describe(score)}, expected a number",
                status=status,
            )
        value = float(score)
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise InvalidResponseError(
                f"results[{position}].{score_key} {value!r} is not a probability in [0, 1]",
                status=status,
            )
        scored.append((index, value))
    expected = n_documents if top_n is None else min(top_n, n_documents)
    if len(scored) < expected:
        wanted = "every document" if top_n is None else f"top_n={top_n}"
        raise InvalidResponseError(
            f"reply scored {len(scored)} of {n_documents} documents ({wanted} was requested)",
            status=status,
        )
    return scored


def _decode(raw: bytes) -> tuple[Any, str | None]:
    try:
        return json.loads(raw.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError) as exc:
        return None, type(exc).__name__
    except RecursionError:
        return None, "nested too deeply"


def _find_results(body: dict[str, Any]) -> Any:
    if "results" in body:
        return body["results"]
    data = body.get("data")
    if isinstance(data, dict) and "results" in data:
        return data["results"]
    return None


def _service_code(body: Any) -> int | str | None:
    """The MemOS-style top-level ``code`` (ints, or strings of digits, as ints)."""
    if not isinstance(body, dict):
        return None
    code = body.get("code")
    if isinstance(code, bool) or code is None:
        return None
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        return int(code)
    if isinstance(code, (int, str)):
        return code
    return None


def _error_message(body: Any) -> str | None:
    """The message of an error body: vLLM/OpenAI, MemOS, FastAPI or plain text shapes."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        if message is not None:
            return str(message)
        return json.dumps(error)  # cut after scrubbing, by Endpoint.scrub
    if isinstance(error, str):
        return error
    for key in ("message", "msg", "detail"):
        value = body.get(key)
        if value is not None:
            return value if isinstance(value, str) else json.dumps(value)
    return None


def _error_code(body: Any) -> int | str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            if code is not None and not isinstance(code, bool):
                return code if isinstance(code, (int, str)) else str(code)
            kind = error.get("type")
            if isinstance(kind, str):
                return kind
        kind = body.get("error_type")  # TEI: {"error": "...", "error_type": "validation"}
        if isinstance(error, str) and isinstance(kind, str):
            return kind
    return _service_code(body)


def _error_from_body(endpoint: Endpoint, status: int, body: Any, raw: bytes) -> ServiceError:
    code = _error_code(body)
    message = _error_message(body)
    if message is None:
        text = _snippet(raw)
        message = text or f"HTTP {status} with an empty body"
    message = endpoint.scrub(message)
    http_status = None if status == 0 else status
    # Which error a status / service code makes: one table, http/error_policy.py.
    return rule_for(status, code).error(message, status=http_status, code=code)


def _snippet(raw: bytes) -> str:
    # Whole, not cut: only Endpoint.scrub cuts, after taking the key out (a key straddling
    # a cut made here would keep its head). The body is already capped by max_response_bytes.
    return raw.decode("utf-8", errors="replace").strip()


def _describe(value: Any) -> str:
    if value is None:
        return "missing"
    return f"{value!r} ({type(value).__name__})" if len(repr(value)) < 40 else type(value).__name__
