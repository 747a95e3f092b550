"""Non-blocking transport: pooled ``httpx.AsyncClient`` per event loop, and the async driver.

An ``httpx.AsyncClient`` (its connections, really) belongs to the event loop it first ran
in; using it from another loop fails, and a loop that ``asyncio.run`` has closed leaves it
unusable. So clients are kept per loop: a call finds (or lazily creates) the client of the
loop it runs in. Each client is closed cleanly when its loop shuts down (``asyncio.run``
and ``asyncio.Runner`` finalise async generators before closing the loop, and a tiny
generator holding the client does the closing); a client whose loop was closed without
that is dropped on the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import threading
import weakref
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass

import httpx

from memreranker.errors import RerankTimeoutError, ServiceConnectionError, ServiceError
from memreranker.http.protocol import HTTPReply, HTTPRequest, redact_url, scrub
from memreranker.http.reply_limit import BodyBuffer, check_declared_length
from memreranker.http.retry import Send, Step
from memreranker.ranking import Scored


@dataclass
class _LoopClient:
    loop: weakref.ReferenceType[asyncio.AbstractEventLoop]
    client: httpx.AsyncClient
    closer: AsyncGenerator[None, None]
    gate: asyncio.Semaphore
    """At most ``pool_size`` requests inside the client: requests queued inside httpcore's
    pool make it rescan every connection on every state change (quadratic CPU), while
    queued here they wait for free."""


async def _close_at_loop_shutdown(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


def _abandon(closer: AsyncGenerator[None, None]) -> None:
    """Finish a closer whose loop is gone, without a loop (its client cannot be closed
    cleanly any more); a finished generator is never handed to the dead loop's finalizer."""
    step = closer.aclose()
    try:
        step.send(None)
    except BaseException:  # the loop is gone: nothing is left to report to
        pass
    finally:
        step.close()


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once: building it (loading the CA bundle)
    costs tens of milliseconds, too much to repeat for every event loop."""
    return httpx.create_ssl_context()


class AsyncTransport:
    """Sends requests with the ``httpx.AsyncClient`` of the running event loop."""

    def __init__(self, *, pool_size: int, secret: str | None, max_reply_bytes: int) -> None:
        self._pool_size = pool_size
        self._secret = secret
        self._max_reply_bytes = max_reply_bytes
        self._clients: dict[int, _LoopClient] = {}
        self._lock = threading.Lock()
        self._pending: set[object] = set()

    async def _get_client(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._prune()
            entry = self._clients.get(id(loop))
            if entry is not None and entry.loop() is loop:
                return entry
            client = httpx.AsyncClient(
                limits=httpx.Limits(
                    max_connections=self._pool_size, max_keepalive_connections=self._pool_size
                ),
                follow_redirects=False,
                verify=_ssl_context(),
            )
            closer = _close_at_loop_shutdown(client)
            entry = _LoopClient(
                weakref.ref(loop), client, closer, asyncio.Semaphore(self._pool_size)
            )
            self._clients[id(loop)] = entry
        await closer.__anext__()  # registers the generator with this loop's shutdown
        return entry

    def _prune(self) -> None:
        """Drop clients whose loop is closed or gone (caller holds the lock)."""
        for key, entry in list(self._clients.items()):
            loop = entry.loop()
            if loop is None or loop.is_closed():
                del self._clients[key]
                _abandon(entry.closer)

    async def send(self, request: HTTPRequest, timeout: float) -> HTTPReply:
        """POST ``request`` and read the reply, all within ``timeout`` seconds.

        Raises:
            RerankTimeoutError: the reply was not complete in time (however slowly it came).
            ServiceConnectionError: no connection, or it broke.
            InvalidResponseError: the reply is over ``max_reply_bytes``.
        """
        entry = await self._get_client()

        async def post() -> HTTPReply:
            async with (
                entry.gate,  # waiting for a connection counts towards the timeout
                entry.client.stream(
                    "POST",
                    request.url,
                    content=request.content,
                    headers=dict(request.headers),
                    timeout=httpx.Timeout(timeout),
                ) as response,
            ):
                body = await self._read(response, request.url)
                headers = {name.lower(): value for name, value in response.headers.items()}
                return HTTPReply(status=response.status_code, headers=headers, body=body)

        try:
            return await asyncio.wait_for(post(), timeout)
        except (httpx.TimeoutException, asyncio.TimeoutError) as exc:
            raise RerankTimeoutError(
                f"no complete reply from {redact_url(request.url)} within {timeout:.3g}s "
                f"({type(exc).__name__})"
            ) from None
        except httpx.HTTPError as exc:
            raise ServiceConnectionError(
                scrub(
                    f"cannot reach {redact_url(request.url)}: {type(exc).__name__}: {exc}",
                    self._secret,
                )
            ) from None

    async def _read(self, response: httpx.Response, url: str) -> bytes:
        limit, status = self._max_reply_bytes, response.status_code
        check_declared_length(
            response.headers.get("content-length"), limit=limit, url=url, status=status
        )
        buffer = BodyBuffer(limit=limit, url=url, status=status)
        async for chunk in response.aiter_bytes():
            buffer.add(chunk)
        return buffer.getvalue()

    async def aclose(self) -> None:
        """Close the client of the running loop (and drop those of dead loops)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._prune()
            entry = self._clients.pop(id(loop), None)
        if entry is not None:
            await entry.closer.aclose()

    def close(self) -> None:
        """Close every client, from sync code, as well as their loops allow."""
        with self._lock:
            entries = list(self._clients.values())
            self._clients.clear()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for entry in entries:
            loop = entry.loop()
            if loop is None or loop.is_closed():
                _abandon(entry.closer)
            elif loop is current:
                task = loop.create_task(entry.closer.aclose())
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
            elif loop.is_running():
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(entry.closer.aclose(), loop)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.run_until_complete(entry.closer.aclose())


async def run(
    steps: Generator[Step, HTTPReply | ServiceError | None, list[Scored]],
    transport: AsyncTransport,
) -> list[Scored]:
    """Drive :func:`memreranker.http.retry.exchange` with non-blocking I/O."""
    outcome: HTTPReply | ServiceError | None = None
    try:
        step = next(steps)
        while True:
            if isinstance(step, Send):
                try:
                    outcome = await transport.send(step.request, step.timeout)
                except ServiceError as exc:
                    outcome = exc
            else:
                await asyncio.sleep(step.seconds)
                outcome = None
            step = steps.send(outcome)
    except StopIteration as done:
        result: list[Scored] = done.value
        return result
