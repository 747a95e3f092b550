"""A scriptable loopback rerank server speaking the MemOS and vLLM (and Cohere v2) protocols.

A real HTTP/1.1 server (``ThreadingHTTPServer`` on 127.0.0.1, a free port, in a thread)
so that clients are tested through their real transports, connection pools and timeouts.

Routes (POST, JSON):

* ``/api/openmem/v1/rerank`` (any path under ``/api/openmem/``): MemOS. Auth
  ``Authorization: Token <key>``; a wrong key gets HTTP 200 ``{"code": 40132, ...}``.
* ``/rerank`` and ``/v1/rerank``: vLLM. Auth ``Bearer``; a wrong key gets HTTP 401.
* ``/v2/rerank``: Cohere v2 (results carry ``index`` and ``relevance_score`` only).

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

MEMOS_PREFIX = "/api/openmem/"
MEMOS_BASE_PATH = "/api/openmem/v1"

_WORD = re.compile(r"\w+", re.UNICODE)


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
    """

    shuffle: bool = False
    envelope: str = "plain"
    code: int = 0
    echo: bool = True
    delay: float = 0.0
    mutate: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


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
    the whole reply (``len(reply) * interval`` seconds).
    """

    interval: float = 0.1
    then: Score | Reply | None = None
    headers: bool = False


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


def _results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return body["data"]["results"] if "data" in body else body["results"]


def _tamper(fn: Callable[[list[dict[str, Any]], int], None]) -> Score:
    def mutate(body: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        fn(_results(body), len(request["documents"]))
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


def nan_score() -> Score:
    def fn(results: list[dict[str, Any]], n: int) -> None:
        results[0]["relevance_score"] = float("nan")

    return _tamper(fn)


def set_score(value: Any) -> Score:
    """Replace the first result's score (inf, 1.5, "0.3", True...)."""

    def fn(results: list[dict[str, Any]], n: int) -> None:
        results[0]["relevance_score"] = value

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

    def mutate(body: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
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
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("query"), str)
            or not isinstance(body.get("documents"), list)
        ):
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
        query, documents = body["query"], body["documents"]
        cohere = path == "/v2/rerank"
        results = []
        for i, doc in enumerate(documents):
            item: dict[str, Any] = {"index": i}
            if behaviour.echo and not cohere:
                item["document"] = {"text": doc}
            item["relevance_score"] = deterministic_score(query, str(doc))
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
        head += "".join(f"{name}: {value}\r\n" for name, value in all_headers) + "\r\n"
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
