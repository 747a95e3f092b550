"""A scriptable loopback rerank server speaking the MemOS, vLLM (and Cohere v2) and TEI protocols.

A real HTTP/1.1 server (``ThreadingHTTPServer`` on 127.0.0.1, a free port, in a thread)
so that clients are tested through their real transports, connection pools and timeouts.

Routes (POST, JSON):

* ``/api/openmem/v1/rerank`` (any path under ``/api/openmem/``): MemOS. Auth
  ``Authorization: Token <key>``; a wrong key gets HTTP 200 ``{"code": 40132, ...}``.
* ``/rerank`` and ``/v1/rerank``: vLLM. Auth ``Bearer``; a wrong key gets HTTP 401.
* ``/v2/rerank``: Cohere v2 (results carry ``index`` and ``relevance_score`` only).
* ``/tei/rerank``: Hugging Face text-embeddings-inference (``{"query", "texts", ...}`` in, a
  bare list of ``{"index", "score"}`` out, best first). Auth ``Bearer``; a wrong key gets
  HTTP 401 with an empty body, a malformed body HTTP 422 ``{"error", "error_type"}``.

Texts wrapped in the MemReranker prompt template (``prompt_format="qwen3"``: the query as
``PREFIX + <Instruct>/<Query> lines``, each document as ``<Document> line + SUFFIX``) are
scored on the pair they wrap, as a served reranker would read them, so that a test's
expected scores do not depend on the prompt format; :attr:`RecordedRequest.query` and
:attr:`RecordedRequest.documents` give that pair, :attr:`RecordedRequest.body` what was
sent. A request whose query and documents disagree about the template gets HTTP 400.

Every request is recorded (:attr:`RerankServer.requests`). What the server does is a queue
of behaviours (:meth:`RerankServer.script`), one per request; when the queue is empty it
scores normally (:attr:`RerankServer.default`). Scores are deterministic
(:func:`deterministic_score`), so a test can compute the expected ranking itself.

Example::

    server.script(Reply(503, {"error": {"message": "busy"}}), Score(shuffle=True))
    ...call the client...
    assert [r.path for r in server.requests] == ["/v1/rerank", "/v1/rerank"]
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from memreranker.prompt import PREFIX, SUFFIX

MEMOS_PREFIX = "/api/openmem/"
MEMOS_BASE_PATH = "/api/openmem/v1"
TEI_BASE_PATH = "/tei"
_QUERY_HEAD = "<Instruct>: "
_QUERY_SEP = "\n<Query>: "
_DOCUMENT_HEAD = "<Document>: "

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Pair:
    """What a request asks to score, with the prompt template (if any) taken off."""

    query: str
    documents: list[str]
    instruction: str | None
    """The ``<Instruct>`` line of a templated request; ``None`` for plain texts."""

    @property
    def templated(self) -> bool:
        return self.instruction is not None


def untemplate(query: str, documents: list[str]) -> Pair:
    """The caller's query and documents inside the MemReranker template, or the texts as
    they are when the request is plain. ``ValueError`` when only some texts are templated,
    or the template is malformed (a client bug a real server would score silently)."""
    docs_templated = [d.startswith(_DOCUMENT_HEAD) and d.endswith(SUFFIX) for d in documents]
    if not query.startswith(PREFIX):
        if any(docs_templated):
            raise ValueError("documents are templated but the query is not")
        return Pair(query, list(documents), None)
    if not all(docs_templated):
        raise ValueError("the query is templated but not every document is")
    body = query[len(PREFIX) :]
    if not (body.startswith(_QUERY_HEAD) and _QUERY_SEP in body and body.endswith("\n")):
        raise ValueError(f"malformed templated query: {body[:80]!r}")
    instruction, inner = body[len(_QUERY_HEAD) : -1].split(_QUERY_SEP, 1)
    inner_docs = [d[len(_DOCUMENT_HEAD) : len(d) - len(SUFFIX)] for d in documents]
    return Pair(inner, inner_docs, instruction)


def deterministic_score(query: str, document: str) -> float:
    """A score in [0, 1]: word overlap with the query (0.8) plus a stable hash part (0.2)."""
    q = {w.lower() for w in _WORD.findall(query)}
    d = {w.lower() for w in _WORD.findall(document)}
    overlap = len(q & d) / len(q) if q else 0.0
    digest = hashlib.sha256(f"{query}\x00{document}".encode()).digest()
    noise = int.from_bytes(digest[:4], "big") / 0xFFFFFFFF
    return round(0.8 * overlap + 0.2 * noise, 6)


# --- Behaviours ------------------------------------------------------------------------------

Body = Mapping[str, Any] | list[Any] | bytes | str | None


@dataclass
class Score:
    """Score normally.

    Args:
        shuffle: Return results in a random (seeded) order instead of best first.
        envelope: ``"plain"`` (top-level ``results``) or ``"data"``
            (``{"code": 0, "message": "ok", "data": {...}}``). Default: plain.
        code: The ``code`` of the ``data`` envelope (0 or 200 mean success).
        echo: Include ``document.text`` in results (Cohere v2 routes never do).
        delay: Seconds to wait before replying (to observe concurrency).
        mutate: Gets the reply body (a dict) and the request body; returns the body to send
            (tamper with indices, scores, the envelope...).
        headers: Extra response headers.
        model: Scores the strings exactly as sent, ``model(query, document)``, instead of
            :func:`deterministic_score` on the pair inside the template: a stand-in for a
            real served model (which reads what it is sent, template or not).
    """

    shuffle: bool = False
    envelope: str = "plain"
    code: int = 0
    echo: bool = True
    delay: float = 0.0
    mutate: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    model: Callable[[str, str], float] | None = None


@dataclass
class Reply:
    """Send exactly this: a status, a body (dict/list as JSON, str/bytes raw) and headers."""

    status: int
    body: Body = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Hang:
    """Wait ``seconds`` (interrupted when the server stops), then do ``then``."""

    seconds: float
    then: Score | Reply | None = None


@dataclass
class Drop:
    """Start a 200 reply announcing more bytes than it sends, then close the connection."""

    partial: bytes = b'{"results": [{"index": 0, "relev'


@dataclass
class Close:
    """Close the connection without answering at all."""


@dataclass
class Trickle:
    """Answer as ``then`` would, but one byte every ``interval`` seconds.

    The reply is correct and complete in the end: only its pace is hostile. With
    ``headers=True`` the status line and headers trickle too (else they go at once and only
    the body trickles). A client whose timeout bounds each read, not the request, waits for
    the whole reply (``len(reply) * interval`` seconds). With ``close`` the headers say
    ``Connection: close`` (as many servers and proxies do), which makes ``http.client`` hand
    the socket over to the response: a client watching the connection's socket loses it.
    """

    interval: float = 0.1
    then: Score | Reply | None = None
    headers: bool = False
    close: bool = False


@dataclass
class Flood:
    """A reply padded to ``size`` bytes: ``then``'s (a valid ranking by default) followed by
    whitespace, which JSON allows, so a client that reads it all finds a valid reply at the
    end. Sent as fast as the client reads it, in ``chunk``-byte writes.

    With ``declare_length`` it announces ``Content-Length: size``; without, it uses chunked
    transfer encoding (no length known in advance). How many body bytes were written before
    the client went away is appended to :attr:`RerankServer.flooded`.
    """

    size: int
    declare_length: bool = True
    then: Score | Reply | None = None
    chunk: int = 64 * 1024


Behaviour = Score | Reply | Hang | Drop | Close | Trickle | Flood


def memos_error(code: int, message: str = "error", status: int = 200) -> Reply:
    """A MemOS error envelope, by default with HTTP 200 as the MemOS cloud does."""
    return Reply(status, {"code": code, "message": message, "data": None})


def tei_error(status: int, message: str = "error", error_type: str = "backend") -> Reply:
    """A TEI error body: ``{"error": message, "error_type": ...}``."""
    return Reply(status, {"error": message, "error_type": error_type})


def vllm_error(
    status: int, message: str = "error", kind: str = "BadRequestError", code: Any = None
) -> Reply:
    """A vLLM/OpenAI-style error body."""
    return Reply(
        status,
        {
            "error": {
                "message": message,
                "type": kind,
                "param": None,
                "code": status if code is None else code,
            }
        },
    )


def retry_after(seconds: float | str, status: int = 429) -> Reply:
    """A 429 (or another status) carrying ``Retry-After``."""
    return Reply(
        status,
        {
            "error": {
                "message": "slow down",
                "type": "RateLimitError",
                "param": None,
                "code": status,
            }
        },
        headers={"Retry-After": str(seconds)},
    )


def malformed_json() -> Reply:
    return Reply(
        200,
        b'{"results": [{"index": 0, "relevance_score": 0.5},',
        {"Content-Type": "application/json"},
    )


def _results(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, list):  # TEI
        return body
    return body["data"]["results"] if "data" in body else body["results"]


def _score_key(item: dict[str, Any]) -> str:
    return "score" if "score" in item else "relevance_score"


def _tamper(fn: Callable[[list[dict[str, Any]], int], None]) -> Score:
    def mutate(body: Any, request: dict[str, Any]) -> Any:
        fn(_results(body), len(request.get("documents", request.get("texts", []))))
        return body

    return Score(mutate=mutate)


def index_out_of_range() -> Score:
    def fn(results: list[dict[str, Any]], n: int) -> None:
        results[0]["index"] = n

    return _tamper(fn)


def negative_index() -> Score:
    def fn(results: list[dict[str, Any]], n: int) -> None:
        results[-1]["index"] = -1

    return _tamper(fn)


def duplicate_index() -> Score:
    def fn(results: list[dict[str, Any]], n: int) -> None:
        results[-1]["index"] = results[0]["index"]

    return _tamper(fn)


def reversed_ranking() -> Score:
    """Score the i-th of n documents ``(i + 1) / (n + 1)``: the last document best, a ranking
    that is the input order reversed (a test that maps results back by position, not by
    index, passes by coincidence against the default scores far too easily)."""

    def fn(results: list[dict[str, Any]], n: int) -> None:
        for item in results:
            item[_score_key(item)] = (item["index"] + 1) / (n + 1)
        results.sort(key=lambda item: -item[_score_key(item)])

    return _tamper(fn)


def nan_score() -> Score:
    def fn(results: list[dict[str, Any]], n: int) -> None:
        results[0][_score_key(results[0])] = float("nan")

    return _tamper(fn)


def set_score(value: Any) -> Score:
    """Replace the first result's score (inf, 1.5, "0.3", True...)."""

    def fn(results: list[dict[str, Any]], n: int) -> None:
        results[0][_score_key(results[0])] = value

    return _tamper(fn)


def drop_result() -> Score:
    """Leave one document out of the results."""

    def fn(results: list[dict[str, Any]], n: int) -> None:
        results.pop()

    return _tamper(fn)


def missing_results() -> Reply:
    return Reply(200, {"id": "x", "model": "m", "usage": {}})


def wrong_envelope() -> Score:
    """Results under an unknown key."""

    def mutate(body: Any, request: dict[str, Any]) -> dict[str, Any]:
        return {"output": {"ranking": _results(body)}}

    return Score(mutate=mutate)


# --- Server ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: Any
    """The parsed JSON body, or ``None`` when it was not JSON."""
    raw: bytes
    received_at: float
    client_address: tuple[str, int] | None = None
    """The client's ``(host, port)``: one port for several requests means one kept-alive
    connection (a reused pool); ``None`` when unknown."""

    @property
    def pair(self) -> Pair:
        """The texts to score, template taken off (:func:`untemplate`)."""
        assert isinstance(self.body, dict), f"not a JSON object: {self.raw[:80]!r}"
        return untemplate(self.sent_query, self.sent_documents)

    @property
    def query(self) -> str:
        """The caller's query, as the client had it before any template."""
        return self.pair.query

    @property
    def sent_query(self) -> str:
        """The query string as sent (templated, if it was)."""
        return str(self.body["query"])

    @property
    def sent_documents(self) -> list[str]:
        """The document strings as sent (``documents``, or TEI's ``texts``)."""
        body = self.body
        return list(body["texts"] if "texts" in body else body["documents"])

    @property
    def documents(self) -> list[str]:
        """The caller's documents (TEI ``texts`` too), before any template."""
        return self.pair.documents


class RerankServer:
    """See the module docstring. Use as a context manager or through the pytest fixture."""

    def __init__(self, *, api_key: str | None = None, seed: int = 0) -> None:
        self.api_key = api_key
        """When set, requests must carry it (``Token`` on MemOS routes, ``Bearer`` otherwise)."""
        self.default: Behaviour = Score()
        self.requests: list[RecordedRequest] = []
        self.peak_in_flight = 0
        self.flooded: list[int] = []
        """Body bytes written by each :class:`Flood` reply before the client went away."""
        self._in_flight = 0
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._random = random.Random(seed)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> RerankServer:
        handler = type("Handler", (_Handler,), {"rerank_server": self})
        httpd = _Server(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> RerankServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the vLLM ``base_url``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def memos_base_url(self) -> str:
        """The MemOS ``base_url`` (``.../api/openmem/v1``)."""
        return self.url + MEMOS_BASE_PATH

    @property
    def tei_base_url(self) -> str:
        """The TEI ``base_url`` (``.../tei``; the client appends ``/rerank``)."""
        return self.url + TEI_BASE_PATH

    def base_url(self, dialect: str) -> str:
        """The ``base_url`` of ``dialect`` ("memos", "vllm" or "tei") on this server."""
        return {"memos": self.memos_base_url, "vllm": self.url, "tei": self.tei_base_url}[dialect]

    # -- scripting ---------------------------------------------------------------------------

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours, one per coming request; then :attr:`default` applies."""
        with self._lock:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.default = Score()
            self.peak_in_flight = 0
            self.flooded.clear()

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    @property
    def pending(self) -> int:
        """Scripted behaviours not used yet."""
        with self._lock:
            return len(self._queue)

    # -- used by the handler ----------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> Behaviour:
        with self._lock:
            self.requests.append(request)
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            return self._queue.popleft() if self._queue else self.default

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _shuffle(self, items: list[Any]) -> None:
        with self._lock:
            self._random.shuffle(items)

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; True if the server is stopping (cut the wait short)."""
        return self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops bursts of connects (1 s SYN retries)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle kept-alive connection is closed after this many seconds
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    rerank_server: RerankServer

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    def do_GET(self) -> None:
        self._send_json(405, {"error": {"message": "Method Not Allowed", "type": "NotAllowed"}})

    def do_POST(self) -> None:
        server = self.rerank_server
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            body = None
        path = self.path.split("?", 1)[0]
        request = RecordedRequest(
            method="POST",
            path=path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw=raw,
            received_at=time.monotonic(),
            client_address=(str(self.client_address[0]), int(self.client_address[1])),
        )
        behaviour = server._record(request)
        try:
            self._act(behaviour, request)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            server._done()

    # -- behaviours --------------------------------------------------------------------------

    def _act(self, behaviour: Behaviour, request: RecordedRequest) -> None:
        if isinstance(behaviour, Hang):
            self.rerank_server._wait(behaviour.seconds)
            behaviour = behaviour.then or Score()
        if isinstance(behaviour, Close):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(behaviour, Drop):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(behaviour.partial) + 500))
            self.end_headers()
            self.wfile.write(behaviour.partial)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(behaviour, Flood):
            self._flood(behaviour, request)
            return
        if isinstance(behaviour, Trickle):
            status, body, headers = self._answer(behaviour.then or Score(), request)
            self._trickle(behaviour, status, body, headers)
            return
        self._send(*self._answer(behaviour, request))

    def _answer(
        self, behaviour: Score | Reply, request: RecordedRequest
    ) -> tuple[int, Body, Mapping[str, str]]:
        """The status, body and headers ``behaviour`` replies with."""
        if isinstance(behaviour, Reply):
            return behaviour.status, behaviour.body, behaviour.headers
        return self._score(behaviour, request)

    def _score(
        self, behaviour: Score, request: RecordedRequest
    ) -> tuple[int, Body, Mapping[str, str]]:
        server = self.rerank_server
        path = request.path
        if path == TEI_BASE_PATH + "/rerank":
            return self._score_tei(behaviour, request)
        memos = path.startswith(MEMOS_PREFIX)
        if not (
            path.endswith("/rerank") and (memos or path in ("/rerank", "/v1/rerank", "/v2/rerank"))
        ):
            return 404, {"error": {"message": f"no route {path}", "type": "NotFound"}}, {}
        if server.api_key is not None:
            scheme = "Token" if memos else "Bearer"
            if request.headers.get("authorization") != f"{scheme} {server.api_key}":
                if memos:
                    return 200, {"code": 40132, "message": "API key invalid", "data": None}, {}
                return 401, {"error": "Unauthorized"}, {}
        body = request.body
        try:
            pair = self._pair(request, "documents")
        except ValueError as exc:
            return 400, {"error": {"message": str(exc), "type": "BadRequestError"}}, {}
        if pair is None:
            if memos:
                return 200, {"code": 40002, "message": "query and documents are required"}, {}
            return (
                400,
                {
                    "error": {
                        "message": "bad request",
                        "type": "BadRequestError",
                        "param": None,
                        "code": 400,
                    }
                },
                {},
            )
        assert isinstance(body, dict)
        documents = body["documents"]
        cohere = path == "/v2/rerank"
        results = []
        for i, doc in enumerate(documents):
            item: dict[str, Any] = {"index": i}
            if behaviour.echo and not cohere:
                item["document"] = {"text": doc}
            item["relevance_score"] = (
                behaviour.model(body["query"], doc)
                if behaviour.model is not None
                else deterministic_score(pair.query, pair.documents[i])
            )
            results.append(item)
        results.sort(key=lambda r: (-r["relevance_score"], r["index"]))
        top_n = body.get("top_n")
        if isinstance(top_n, int) and not isinstance(top_n, bool) and top_n > 0:
            results = results[:top_n]
        if behaviour.shuffle:
            server._shuffle(results)
        if behaviour.delay:
            server._wait(behaviour.delay)
        if cohere:
            reply: dict[str, Any] = {"id": "rerank-test", "results": results, "meta": {}}
        else:
            reply = {
                "id": "rerank-test",
                "model": body.get("model", "served-model"),
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
                "results": results,
            }
        if behaviour.envelope == "data":
            reply = {"code": behaviour.code, "message": "ok", "data": reply}
        sent = behaviour.mutate(reply, body) if behaviour.mutate is not None else reply
        return 200, sent, behaviour.headers

    def _score_tei(
        self, behaviour: Score, request: RecordedRequest
    ) -> tuple[int, Body, Mapping[str, str]]:
        server = self.rerank_server
        if server.api_key is not None:
            if request.headers.get("authorization") != f"Bearer {server.api_key}":
                return 401, None, {}  # TEI's auth layer: a bare 401
        body = request.body
        try:
            pair = self._pair(request, "texts")
        except ValueError as exc:
            return 400, {"error": str(exc), "error_type": "validation"}, {}
        if pair is None or not isinstance(body, dict):
            return (
                422,
                {"error": "missing field `query` or `texts`", "error_type": "validation"},
                {},
            )
        if not pair.documents:
            return 413, {"error": "`texts` cannot be empty", "error_type": "validation"}, {}
        sent = body["texts"]
        results = [
            {
                "index": i,
                "score": behaviour.model(body["query"], sent[i])
                if behaviour.model is not None
                else deterministic_score(pair.query, doc),
            }
            for i, doc in enumerate(pair.documents)
        ]
        results.sort(key=lambda r: (-r["score"], r["index"]))
        if body.get("return_text"):
            for item in results:
                item["text"] = body["texts"][item["index"]]
        if behaviour.shuffle:
            server._shuffle(results)
        if behaviour.delay:
            server._wait(behaviour.delay)
        sent = behaviour.mutate(results, body) if behaviour.mutate is not None else results
        return 200, sent, behaviour.headers

    def _pair(self, request: RecordedRequest, field: str) -> Pair | None:
        """The texts of a well-formed request, ``None`` for a malformed one. ``ValueError``
        when the query and documents disagree about the template."""
        body = request.body
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("query"), str)
            or not isinstance(body.get(field), list)
            or not all(isinstance(d, str) for d in body[field])
        ):
            return None
        return untemplate(body["query"], body[field])

    # -- writing -----------------------------------------------------------------------------

    def _send(self, status: int, body: Body, headers: Mapping[str, str]) -> None:
        data, all_headers = _encode(body, headers)
        self.send_response(status)
        for name, value in all_headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _trickle(
        self, behaviour: Trickle, status: int, body: Body, headers: Mapping[str, str]
    ) -> None:
        data, all_headers = _encode(body, headers)
        head = f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in all_headers)
        head += ("Connection: close\r\n" if behaviour.close else "") + "\r\n"
        if behaviour.headers:
            data = head.encode("latin-1") + data
        else:
            self.wfile.write(head.encode("latin-1"))
            self.wfile.flush()
        server = self.rerank_server
        for i in range(len(data)):
            if server._wait(behaviour.interval):
                break
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()
        self.close_connection = True

    def _flood(self, behaviour: Flood, request: RecordedRequest) -> None:
        status, body, headers = self._answer(behaviour.then or Score(), request)
        data, all_headers = _encode(body, headers)
        self.send_response(status)
        for name, value in all_headers:
            if name != "Content-Length":
                self.send_header(name, value)
        if behaviour.declare_length:
            self.send_header("Content-Length", str(max(behaviour.size, len(data))))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        # Said, not only done: a client that kept the connection for its next request would
        # race the close (and fail that request, which has nothing to do with the flood).
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sent = 0
        try:
            while sent < max(behaviour.size, len(data)):
                piece = data[sent : sent + behaviour.chunk]
                piece += b" " * min(
                    behaviour.chunk - len(piece), behaviour.size - sent - len(piece)
                )
                if behaviour.declare_length:
                    self.wfile.write(piece)
                else:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            if not behaviour.declare_length:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            with self.rerank_server._lock:
                self.rerank_server.flooded.append(sent)

    def _send_json(self, status: int, body: Any) -> None:
        self._send(status, body, {})


def _encode(body: Body, headers: Mapping[str, str]) -> tuple[bytes, list[tuple[str, str]]]:
    """The bytes of ``body`` (dict/list as JSON, str/bytes raw) and every header to send."""
    if isinstance(body, bytes):
        data, ctype = body, "application/octet-stream"
    elif isinstance(body, str):
        data, ctype = body.encode("utf-8"), "text/plain; charset=utf-8"
    elif body is None:
        data, ctype = b"", "text/plain"
    else:
        data, ctype = json.dumps(body).encode("utf-8"), "application/json"
    out = [] if any(k.lower() == "content-type" for k in headers) else [("Content-Type", ctype)]
    out += list(headers.items())
    out.append(("Content-Length", str(len(data))))
    return data, out


@contextmanager
def running_server(**kwargs: Any) -> Iterator[RerankServer]:
    """``with running_server() as server:`` outside pytest."""
    server = RerankServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def refused_port() -> int:
    """A loopback port that was just bound and released: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
