"""A circuit breaker for the hosted backends: stop calling a service that keeps failing.

After ``failure_threshold`` consecutive failed calls the circuit *opens*: calls fail at once
with :class:`~memreranker.errors.CircuitOpenError` (so ``MemReranker`` goes straight to its
fallback instead of waiting out timeouts and retries) for ``cooldown`` seconds. The first
call after the cool-down is let through as a *probe* (the circuit is *half-open*; callers
arriving while the probe runs fail fast too): its success *closes* the circuit, its failure
opens it again for another cool-down.

Only service failures count (connection errors, timeouts, 5xx, rate limits and spent quotas,
authentication errors, replies that fail validation). Caller errors (an input over a limit,
a request the service rejects as malformed: HTTP 400/413/422, MemOS codes 40000/40002/40305),
cancellation and programming errors neither count nor reset the count. The table is
:mod:`~memreranker.http.error_policy`. A call is one ``score``/``ascore``
of the backend, whatever the batches and retries inside it.

The breaker holds a ``threading.Lock`` only around a few assignments, never across I/O, so
it is safe to share between threads and to use from coroutines. Each transition is logged on
the ``memreranker`` logger: a warning when the circuit opens, info when it half-opens or
closes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from memreranker.errors import CircuitOpenError
from memreranker.http.error_policy import counts_against_circuit

logger = logging.getLogger("memreranker")

CircuitState = Literal["closed", "open", "half_open"]
T = TypeVar("T")


def is_service_failure(error: BaseException) -> bool:
    """Whether ``error`` says the service is unhealthy (and so counts towards opening):
    :mod:`~memreranker.http.error_policy`'s table."""
    return counts_against_circuit(error)


@dataclass(frozen=True)
class Permit:
    """Leave to make one call. ``probe``: the half-open trial call."""

    probe: bool
    generation: int


_DISABLED = Permit(probe=False, generation=-1)


class CircuitBreaker:
    """See the module docstring.

    Args:
        name: Label in log lines and errors (the backend and its redacted URL).
        failure_threshold: Consecutive failed calls that open the circuit; 0 disables it.
        cooldown: Seconds the circuit stays open before a probe call is let through.
        clock: Monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        name: str,
        failure_threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 0:
            raise ValueError(f"failure_threshold must be >= 0, got {failure_threshold}")
        if cooldown <= 0:
            raise ValueError(f"cooldown must be > 0, got {cooldown}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._state: CircuitState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._generation = 0  # bumped on every transition: late outcomes of older calls
        self._last_error = ""

    # -- monitoring ------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.failure_threshold > 0

    @property
    def state(self) -> CircuitState:
        """``"closed"``, ``"open"`` or ``"half_open"``. An open circuit whose cool-down has
        passed stays ``"open"`` until the next call, which becomes the probe."""
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(name={self.name!r}, state={self._state!r}, "
            f"failures={self._failures}/{self.failure_threshold}, cooldown={self.cooldown})"
        )

    # -- the protocol: acquire, then settle ------------------------------------------------

    def acquire(self) -> Permit:
        """Leave to call, or :class:`CircuitOpenError` while open or while a probe runs."""
        if not self.enabled:
            return _DISABLED
        log: str | None = None
        with self._lock:
            if self._state == "closed":
                return Permit(probe=False, generation=self._generation)
            if self._state == "open":
                remaining = self._opened_at + self.cooldown - self._clock()
                if remaining > 0:
                    raise CircuitOpenError(
                        f"{self.name}: circuit open after {self._failures} consecutive "
                        f"failures, failing fast for another {remaining:.3g}s "
                        f"(last error: {self._last_error})"
                    )
                self._transition("half_open")
                log = f"{self.name}: circuit half-open, letting one probe call through"
            elif self._probing:  # half-open, the probe is still running
                raise CircuitOpenError(
                    f"{self.name}: circuit half-open, a probe call is in flight; failing fast "
                    f"(last error: {self._last_error})"
                )
            self._probing = True
            permit = Permit(probe=True, generation=self._generation)
        if log is not None:
            logger.info(log)
        return permit

    def settle(self, permit: Permit, error: BaseException | None) -> None:
        """Record how the call made under ``permit`` ended (``None``: it succeeded)."""
        if permit is _DISABLED:
            return
        if error is None:
            self._success(permit)
        elif is_service_failure(error):
            self._failure(permit, error)
        else:
            self._neutral(permit)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` under the breaker."""
        permit = self.acquire()
        try:
            result = fn()
        except BaseException as exc:
            self.settle(permit, exc)
            raise
        self.settle(permit, None)
        return result

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` under the breaker (cancellation counts as neither outcome)."""
        permit = self.acquire()
        try:
            result = await fn()
        except BaseException as exc:
            self.settle(permit, exc)
            raise
        self.settle(permit, None)
        return result

    # -- transitions -----------------------------------------------------------------------

    def _success(self, permit: Permit) -> None:
        closed = False
        with self._lock:
            if self._state == "closed":
                self._failures = 0
            elif permit.probe and self._state == "half_open" and self._current(permit):
                self._transition("closed")
                self._failures = 0
                self._probing = False
                closed = True
            # else: a call admitted before the circuit opened; its success proves little.
        if closed:
            logger.info("%s: circuit closed, the probe call succeeded", self.name)

    def _failure(self, permit: Permit, error: BaseException) -> None:
        opened = reopened = False
        with self._lock:
            self._last_error = f"{type(error).__name__}: {error}"
            if self._state == "closed":
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    self._open()
                    opened = True
            elif permit.probe and self._state == "half_open" and self._current(permit):
                self._failures += 1
                self._open()
                reopened = True
            failures, last = self._failures, self._last_error
        if opened:
            logger.warning(
                "%s: circuit opened after %d consecutive failures, failing fast for %.3gs "
                "(last error: %s)",
                self.name,
                failures,
                self.cooldown,
                last,
            )
        elif reopened:
            logger.warning(
                "%s: circuit opened again, the probe call failed; failing fast for %.3gs "
                "(last error: %s)",
                self.name,
                self.cooldown,
                last,
            )

    def _neutral(self, permit: Permit) -> None:
        with self._lock:
            if permit.probe and self._state == "half_open" and self._current(permit):
                self._probing = False  # the next caller probes instead

    def _open(self) -> None:
        self._transition("open")
        self._opened_at = self._clock()
        self._probing = False

    def _transition(self, state: CircuitState) -> None:
        self._state = state
        self._generation += 1

    def _current(self, permit: Permit) -> bool:
        return permit.generation == self._generation
