"""Blocking transport: a pooled ``requests.Session`` and the sync driver of ``exchange``."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

import requests
import urllib3
from requests.adapters import HTTPAdapter

from memreranker.errors import RerankTimeoutError, ServiceConnectionError, ServiceError
from memreranker.http.protocol import HTTPReply, HTTPRequest, redact_url, scrub
from memreranker.http.retry import Send, Step
from memreranker.ranking import Scored


class SyncTransport:
    """Sends one request at a time per thread over a shared connection pool.

    ``requests`` does no retries here (the adapter's ``max_retries`` stays 0): retrying is
    the policy's job. The session is created on first use and is safe to share between
    threads for this use (no cookies, no auth handlers, one adapter).
    """

    def __init__(self, *, pool_size: int, secret: str | None) -> None:
        self._pool_size = pool_size
        self._secret = secret
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    def _get_session(self) -> requests.Session:
        session = self._session
        if session is None:
            with self._lock:
                if self._session is None:
                    session = requests.Session()
                    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self._pool_size)
                    session.mount("http://", adapter)
                    session.mount("https://", adapter)
                    self._session = session
                session = self._session
        return session

    def send(self, request: HTTPRequest, timeout: float) -> HTTPReply:
        """POST ``request``; a connection failure or timeout becomes a typed error."""
        session = self._get_session()
        try:
            response = session.post(
                request.url,
                data=request.content,
                headers=dict(request.headers),
                timeout=timeout,
                allow_redirects=False,
            )
            body = response.content
        except requests.RequestException as exc:
            if not _is_timeout(exc):
                raise ServiceConnectionError(
                    scrub(
                        f"cannot reach {redact_url(request.url)}: {type(exc).__name__}: {exc}",
                        self._secret,
                    )
                ) from None
            raise RerankTimeoutError(
                f"no reply from {redact_url(request.url)} within {timeout:.3g}s "
                f"({type(exc).__name__})"
            ) from None
        headers = {name.lower(): value for name, value in response.headers.items()}
        return HTTPReply(status=response.status_code, headers=headers, body=body)

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
