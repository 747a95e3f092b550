"""Blocking transport: a pooled ``requests.Session`` and the sync driver of ``exchange``.

``requests`` (urllib3 underneath) bounds the connect and each socket read by its timeout, not
the request: a server that trickles its reply a byte at a time keeps every read short and the
request alive for as long as it likes. So each request here also runs under a *watch*: when
the attempt's time is up, a watchdog thread shuts the request's socket down, which ends
whatever blocking call (TLS handshake, send, status line, headers, body) it was in. The same
bound as the async transport's ``asyncio.wait_for``: one attempt never outlives its timeout.

The watch finds the request's socket through connection classes that register themselves
with the watch of the thread sending on them; a connection goes back to the pool only after
leaving its watch, so a late timer can never touch a connection another request is using.
"""

from __future__ import annotations

import heapq
import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Generator
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from memreranker.errors import RerankTimeoutError, ServiceConnectionError, ServiceError
from memreranker.http.protocol import HTTPReply, HTTPRequest, redact_url, scrub
from memreranker.http.reply_limit import BodyBuffer, check_declared_length
from memreranker.http.retry import Send, Step
from memreranker.ranking import Scored

_READ_CHUNK = 64 * 1024
_OBJECT_ADDRESS = re.compile(r" object at 0x[0-9a-fA-F]+")
"""urllib3 2.0-2.2 name the connection by its repr: an address that differs on every failure
would make each fallback reason (and each log line) unique."""

# --- The per-request watch -------------------------------------------------------------------

_watch_lock = threading.Lock()
"""Guards every watch's connection and every connection's watch (one lock: both change
together, rarely, and never for long)."""
_current = threading.local()
"""``_current.watch``: the watch of the request this thread is sending, if any."""


class _Watch:
    """Shuts the socket of one request down when its time is up (see :class:`_Watchdog`)."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self.finished = False
        self.connection: Any = None
        self.sock: Any = None
        """The connection's socket, kept: after a ``Connection: close`` reply ``http.client``
        drops ``connection.sock`` and only the response still reads from the socket."""
        self._deadline = time.monotonic() + seconds

    def __enter__(self) -> _Watch:
        _current.watch = self
        _watchdog.arm(self, self._deadline)
        return self

    def __exit__(self, *exc: object) -> None:
        _current.watch = None
        with _watch_lock:
            self.finished = True
            conn, self.connection = self.connection, None
            self.sock = None
            if conn is not None and getattr(conn, "_deadline_watch", None) is self:
                conn._deadline_watch = None
        _watchdog.disarmed()

    def expire(self) -> None:
        with _watch_lock:
            if self.finished:
                return
            self.expired = True
            conn = self.connection
            if conn is not None and getattr(conn, "_deadline_watch", None) is self:
                _shutdown(conn.sock if conn.sock is not None else self.sock)


class _Watchdog:
    """One daemon thread that expires the watches whose time is up.

    A timer thread per request would cost more than a loopback request itself. Finished
    watches stay in the heap until they come up (or until they are most of it, when it is
    rebuilt without them). Restarted after a fork: the child has no thread yet.
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._finished = 0
        self._thread: threading.Thread | None = None

    def arm(self, watch: _Watch, deadline: float) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="memreranker-http-deadlines", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, (deadline, next(self._order), watch))
            if self._heap[0][2] is watch:
                self._cond.notify()

    def disarmed(self) -> None:
        with self._cond:
            self._finished += 1
            if self._finished > 64 and self._finished * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].finished]
                heapq.heapify(self._heap)
                self._finished = 0

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    heap = self._heap
                    while heap and heap[0][2].finished:
                        heapq.heappop(heap)
                        self._finished = max(0, self._finished - 1)
                    now = time.monotonic()
                    if heap and heap[0][0] <= now:
                        watch = heapq.heappop(heap)[2]
                        break
                    self._cond.wait(heap[0][0] - now if heap else None)
            watch.expire()


_watchdog = _Watchdog()


def _claim(conn: Any) -> None:
    """Put ``conn`` under the watch of the request this thread is sending."""
    watch: _Watch | None = getattr(_current, "watch", None)
    if watch is None:
        return
    with _watch_lock:
        conn._deadline_watch = watch
        watch.connection = conn
        if conn.sock is not None:
            watch.sock = conn.sock
        if watch.expired:  # the time ran out while this connection was being set up
            _shutdown(conn.sock)


def _release(conn: Any) -> None:
    if conn is not None:
        with _watch_lock:
            watch = getattr(conn, "_deadline_watch", None)
            if watch is not None:
                watch.sock = None  # the pool's now: another request may send on it
            conn._deadline_watch = None


def _shutdown(sock: Any) -> None:
    """End every blocking call on ``sock`` (from another thread); the owner then closes it.

    ``shutdown`` of the plain socket, even under TLS: ``SSLSocket.shutdown`` would also
    unwrap the TLS object the reading thread is using.
    """
    raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)
    if isinstance(raw, socket.socket):
        try:
            socket.socket.shutdown(raw, socket.SHUT_RDWR)
        except OSError:  # already closed, or never connected
            pass


class _Watched:
    """Connection mixin: each request (and each new socket) joins the thread's watch."""

    def connect(self) -> None:
        _claim(self)
        super().connect()  # type: ignore[misc]
        _claim(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _claim(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _put_conn(self, conn: Any) -> None:
        _release(conn)
        super()._put_conn(conn)


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        _release(conn)
        super()._put_conn(conn)


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}

URLLIB3_TESTED = ">=2,<3"
"""The urllib3 releases the watch was tested with (memreranker's declared range)."""


def check_urllib3() -> None:
    """Raise unless urllib3 has the internals the watch builds on.

    They are not urllib3's public API: a release that renames one would leave requests
    working and the per-attempt deadline silently gone (only per-read timeouts left).

    Raises:
        RuntimeError: naming the installed urllib3 version and what it lacks.
    """
    missing = [
        name
        for name, present in (
            (
                "HTTPConnectionPool._put_conn",
                callable(getattr(HTTPConnectionPool, "_put_conn", None)),
            ),
            ("HTTPConnectionPool.ConnectionCls", hasattr(HTTPConnectionPool, "ConnectionCls")),
            ("HTTPConnection.connect", callable(getattr(HTTPConnection, "connect", None))),
            ("HTTPConnection.request", callable(getattr(HTTPConnection, "request", None))),
            (
                "PoolManager.pool_classes_by_scheme",
                isinstance(getattr(urllib3.PoolManager(), "pool_classes_by_scheme", None), dict),
            ),
        )
        if not present
    ]
    if missing:
        raise RuntimeError(
            f"urllib3 {urllib3.__version__} lacks {', '.join(missing)}, which memreranker's "
            f"request deadline relies on; install urllib3{URLLIB3_TESTED}"
        )


class _DeadlineAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose pools hold watched connections (direct or via an HTTP proxy;
    SOCKS proxies keep their own pools, bounded per read only)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager


# --- The transport ---------------------------------------------------------------------------


class SyncTransport:
    """Sends one request at a time per thread over a shared connection pool.

    ``requests`` does no retries here (the adapter's ``max_retries`` stays 0): retrying is
    the policy's job. The session is created on first use and is safe to share between
    threads for this use (no cookies, no auth handlers, one adapter).
    """

    def __init__(self, *, pool_size: int, secret: str | None, max_reply_bytes: int) -> None:
        check_urllib3()
        self._pool_size = pool_size
        self._secret = secret
        self._max_reply_bytes = max_reply_bytes
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    def _get_session(self) -> requests.Session:
        session = self._session
        if session is None:
            with self._lock:
                if self._session is None:
                    session = requests.Session()
                    adapter = _DeadlineAdapter(pool_connections=4, pool_maxsize=self._pool_size)
                    session.mount("http://", adapter)
                    session.mount("https://", adapter)
                    self._session = session
                session = self._session
        return session

    def send(self, request: HTTPRequest, timeout: float) -> HTTPReply:
        """POST ``request`` and read the reply, all within ``timeout`` seconds.

        Raises:
            RerankTimeoutError: the reply was not complete in time (however slowly it came).
            ServiceConnectionError: no connection, or it broke.
            InvalidResponseError: the reply is over ``max_reply_bytes``.
        """
        session = self._get_session()
        with _Watch(timeout) as watch:
            try:
                response = session.post(
                    request.url,
                    data=request.content,
                    headers=dict(request.headers),
                    timeout=timeout,
                    allow_redirects=False,
                    stream=True,
                )
                try:
                    body = self._read(response, request.url)
                finally:
                    response.close()  # unread rest: the connection is closed, not reused
            except requests.RequestException as exc:
                if not (watch.expired or _is_timeout(exc)):
                    raise ServiceConnectionError(
                        scrub(
                            f"cannot reach {redact_url(request.url)}: {type(exc).__name__}: "
                            + _OBJECT_ADDRESS.sub(" object", str(exc)),
                            self._secret,
                        )
                    ) from None
                raise RerankTimeoutError(
                    f"no complete reply from {redact_url(request.url)} within {timeout:.3g}s "
                    f"({type(exc).__name__})"
                ) from None
        headers = {name.lower(): value for name, value in response.headers.items()}
        return HTTPReply(status=response.status_code, headers=headers, body=body)

    def _read(self, response: requests.Response, url: str) -> bytes:
        limit, status = self._max_reply_bytes, response.status_code
        check_declared_length(
            response.headers.get("content-length"), limit=limit, url=url, status=status
        )
        buffer = BodyBuffer(limit=limit, url=url, status=status)
        for chunk in response.iter_content(chunk_size=_READ_CHUNK):
            buffer.add(chunk)
        return buffer.getvalue()

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()


def _is_timeout(exc: requests.RequestException) -> bool:
    """A timeout, including one while reading the body (which requests reports as a
    ConnectionError wrapping urllib3's ReadTimeoutError)."""
    if isinstance(exc, requests.Timeout):
        return True
    return any(isinstance(arg, urllib3.exceptions.TimeoutError) for arg in exc.args)


def run(
    steps: Generator[Step, HTTPReply | ServiceError | None, list[Scored]], transport: SyncTransport
) -> list[Scored]:
    """Drive :func:`memreranker.http.retry.exchange` with blocking I/O."""
    outcome: HTTPReply | ServiceError | None = None
    try:
        step = next(steps)
        while True:
            if isinstance(step, Send):
                try:
                    outcome = transport.send(step.request, step.timeout)
                except ServiceError as exc:
                    outcome = exc
            else:
                time.sleep(step.seconds)
                outcome = None
            step = steps.send(outcome)
    except StopIteration as done:
        result: list[Scored] = done.value
        return result
