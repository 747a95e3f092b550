"""The retry policy and the attempt loop, written once for both transports.

:func:`exchange` is a generator that holds the whole life of one request (attempts,
backoff waits, the deadline, giving up) without doing any I/O: it yields :class:`Send` and
:class:`Sleep` steps, and a driver (``sync_transport.run`` with ``requests`` and
``time.sleep``, ``async_transport.run`` with ``httpx`` and ``asyncio.sleep``) performs them
and sends back what happened.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

from memreranker.errors import (
    ServiceError,
)
from memreranker.http.error_policy import is_retried
from memreranker.http.protocol import Endpoint, HTTPReply, HTTPRequest, parse_reply, redact_url
from memreranker.ranking import Scored
from memreranker.settings import RerankerSettings

logger = logging.getLogger("memreranker")

_MIN_ATTEMPT = 0.01  # seconds: an attempt shorter than this is not worth starting


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry, how long to wait, and when to give up.

    Which failures are retried is :mod:`~memreranker.http.error_policy`'s table: connection
    errors, per-attempt timeouts, HTTP 429/500/502/503/504 and the MemOS codes 40300 (rate
    limit) and 50000 (internal error); never authentication errors, replies that fail
    validation, a spent quota (40304) or other client errors. Waits use exponential backoff
    with full jitter unless the reply carries ``Retry-After``, which is honoured as long as it
    fits in the deadline (a longer one gives up at once instead of sleeping in vain).
    """

    timeout: float
    max_retries: int
    backoff: float
    backoff_max: float
    deadline: float

    @classmethod
    def from_settings(cls, settings: RerankerSettings) -> RetryPolicy:
        deadline = settings.deadline
        if deadline is None:
            waits = sum(
                min(settings.retry_backoff_max, settings.retry_backoff * 2**i)
                for i in range(settings.max_retries)
            )
            deadline = settings.timeout * (settings.max_retries + 1) + waits
        return cls(
            timeout=settings.timeout,
            max_retries=settings.max_retries,
            backoff=settings.retry_backoff,
            backoff_max=settings.retry_backoff_max,
            deadline=deadline,
        )

    def is_retryable(self, error: ServiceError) -> bool:
        """What :mod:`~memreranker.http.error_policy` says of ``error``."""
        return is_retried(error)

    def backoff_delay(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(backoff_max, backoff * 2**retry)]."""
        ceiling = min(self.backoff_max, self.backoff * 2.0**retry)
        return rng() * ceiling


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # HTTP dates are GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class Send:
    """Send ``request``; give up on this attempt after ``timeout`` seconds."""

    request: HTTPRequest
    timeout: float


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Send | Sleep
Outcome = HTTPReply | ServiceError | None
"""What a driver sends back: the reply of a :class:`Send`, the transport's typed error
(connection, timeout), or ``None`` after a :class:`Sleep`."""


def exchange(
    endpoint: Endpoint,
    request: HTTPRequest,
    policy: RetryPolicy,
    *,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
) -> Generator[Step, Outcome, list[Scored]]:
    """One request with its retries; returns the parsed scores or raises a typed error."""
    deadline_at = clock() + policy.deadline
    where = f"{endpoint.dialect} {redact_url(endpoint.url)}"
    attempt = 0
    error: ServiceError | None = None
    # Giving up is logged at info: the error propagates, and MemReranker logs the one
    # warning of the failed call (or raises it).
    while True:
        remaining = deadline_at - clock()
        if error is not None and remaining < _MIN_ATTEMPT:
            logger.info("%s: giving up, the deadline has passed: %s", where, error)
            raise error
        outcome = yield Send(request, max(min(policy.timeout, remaining), _MIN_ATTEMPT))
        retry_after: float | None = None
        if isinstance(outcome, HTTPReply):
            try:
                return parse_reply(endpoint, request, outcome)
            except ServiceError as exc:
                error = _scrubbed(endpoint, exc)
            retry_after = parse_retry_after(outcome.header("retry-after"))
        elif isinstance(outcome, ServiceError):
            error = _scrubbed(endpoint, outcome)
        else:  # a driver bug, not a service failure
            raise TypeError(f"exchange expected a reply or a ServiceError, got {outcome!r}")
        if not policy.is_retryable(error):
            raise error
        if attempt >= policy.max_retries:
            logger.info("%s: giving up after %d attempts: %s", where, attempt + 1, error)
            raise error
        delay = retry_after if retry_after is not None else policy.backoff_delay(attempt, rng)
        remaining = deadline_at - clock()
        if delay + _MIN_ATTEMPT > remaining:
            logger.info(
                "%s: giving up, a %.2fs wait does not fit in the %.2fs left of the deadline: %s",
                where,
                delay,
                max(remaining, 0.0),
                error,
            )
            raise error
        attempt += 1
        logger.info("%s: attempt %d failed (%s), retrying in %.2fs", where, attempt, error, delay)
        if delay > 0:
            yield Sleep(delay)


def _scrubbed(endpoint: Endpoint, error: ServiceError) -> ServiceError:
    """The same error with the key removed from its message (a no-op when absent)."""
    if not endpoint.api_key or endpoint.api_key not in str(error):
        return error
    clean = type(error)(endpoint.scrub(error.message), status=error.status, code=error.code)
    clean.__cause__ = None
    return clean
