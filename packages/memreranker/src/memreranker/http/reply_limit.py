"""The cap on the size of a reply, checked the same way by both transports.

A rerank reply for 100 short documents is a few kilobytes; even with every document echoed
back at its 32k-token limit it stays well under a megabyte. A reply that announces (or turns
out to be) larger than ``max_response_bytes`` is not a ranking anyone asked for: it is refused
as soon as that is known, without reading the rest of it into memory.
"""

from __future__ import annotations

from memreranker.errors import InvalidResponseError
from memreranker.http.protocol import redact_url


def too_large(
    url: str, limit: int, status: int, *, declared: int | None = None
) -> InvalidResponseError:
    """The error of a reply over ``limit`` bytes (``declared``: its ``Content-Length``)."""
    how = f"Content-Length {declared}" if declared is not None else "stopped reading there"
    return InvalidResponseError(
        f"reply from {redact_url(url)} is larger than max_response_bytes={limit} ({how}); "
        "raise max_response_bytes if such replies are expected",
        status=status,
    )


def check_declared_length(value: str | None, *, limit: int, url: str, status: int) -> None:
    """Refuse a reply whose ``Content-Length`` header is over ``limit``, before reading it."""
    if value is None:
        return
    try:
        declared = int(value.strip())
    except ValueError:
        return  # the HTTP client rejects a malformed length itself
    if declared > limit:
        raise too_large(url, limit, status, declared=declared)


class BodyBuffer:
    """Collects body chunks; raises as soon as they add up to more than ``limit`` bytes."""

    def __init__(self, *, limit: int, url: str, status: int) -> None:
        self._limit = limit
        self._url = url
        self._status = status
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise too_large(self._url, self._limit, self._status)
        self._chunks.append(chunk)

    def getvalue(self) -> bytes:
        return b"".join(self._chunks)
