"""The error policy of the hosted backends, in one table.

For each HTTP status and each MemOS service code: the error type a reply carrying it
becomes, whether the request is retried, and whether the failure counts against the circuit
breaker. :mod:`~memreranker.http.protocol` (which error), :mod:`~memreranker.http.retry`
(retried?) and :mod:`~memreranker.http.circuit` (counted?) all read it.

A reply may carry both a status and a code (MemOS answers errors with HTTP 200 and a
``code``, or with an HTTP error status and a code). The two rows combine so:

* the error type is the more specific of the two (authentication over rate limit over
  "too large" over "served model" over a plain :class:`ServiceError`);
* it is retried if either row retries, except an authentication error (never retried);
* it counts against the circuit if both rows count (a status or code saying "this request
  is malformed" is the caller's problem, not the service's health), except authentication
  and rate-limit errors, which always count (the service refuses every call alike).

A status or code not in the table is a plain ``ServiceError``, not retried, counted.
Transport failures (connection errors, timeouts) are retried and counted; a success reply
that fails validation (``InvalidResponseError``) is counted, not retried; an open circuit
(``CircuitOpenError``) is neither.

MemOS 40304 (quota exceeded) is a ``RateLimitError`` that is **not retried** (waiting a few
seconds does not restore a quota; an HTTP 429 status next to it would be) and **counts
against the circuit** (every call fails alike until the quota is raised, so failing fast
is right), unlike 40300 (rate limit exceeded), which is retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from memreranker.errors import (
    AuthenticationError,
    CircuitOpenError,
    InvalidResponseError,
    RateLimitError,
    RequestTooLargeError,
    RerankTimeoutError,
    ServedModelError,
    ServiceConnectionError,
    ServiceError,
)


@dataclass(frozen=True)
class Rule:
    error: type[ServiceError]
    retried: bool
    counts: bool
    """Counts against the circuit breaker (the service is unhealthy or refusing us)."""


_REQUEST = Rule(ServiceError, retried=False, counts=False)  # the request's fault
_TRANSIENT = Rule(ServiceError, retried=True, counts=True)
_AUTH = Rule(AuthenticationError, retried=False, counts=True)

BY_STATUS: Mapping[int, Rule] = {
    400: _REQUEST,
    401: _AUTH,
    403: _AUTH,
    413: Rule(RequestTooLargeError, retried=False, counts=False),
    422: _REQUEST,  # TEI: the tokenizer refused an input
    424: Rule(ServedModelError, retried=False, counts=True),  # TEI: the model failed
    429: Rule(RateLimitError, retried=True, counts=True),
    500: _TRANSIENT,
    502: _TRANSIENT,
    503: _TRANSIENT,
    504: _TRANSIENT,
}

BY_CODE: Mapping[int, Rule] = {  # MemOS cloud codes (CONTRACTS section 2)
    40000: _REQUEST,  # invalid parameters
    40002: _REQUEST,  # missing parameter
    40100: _AUTH,
    40130: _AUTH,
    40132: _AUTH,
    40300: Rule(RateLimitError, retried=True, counts=True),  # rate limit exceeded
    40304: Rule(RateLimitError, retried=False, counts=True),  # quota exceeded
    40305: Rule(RequestTooLargeError, retried=False, counts=False),  # input too large
    50000: _TRANSIENT,  # internal error
}

OK_CODES = frozenset({0, 200})
"""MemOS codes of a successful reply."""

UNLISTED = Rule(ServiceError, retried=False, counts=True)

_SPECIFICITY = (
    ServiceError,
    ServedModelError,
    RequestTooLargeError,
    RateLimitError,
    AuthenticationError,
)

BY_TYPE: Mapping[type[ServiceError], Rule] = {
    ServiceConnectionError: Rule(ServiceConnectionError, retried=True, counts=True),
    RerankTimeoutError: Rule(RerankTimeoutError, retried=True, counts=True),
    InvalidResponseError: Rule(InvalidResponseError, retried=False, counts=True),
    CircuitOpenError: Rule(CircuitOpenError, retried=False, counts=False),
}
"""Failures whose policy is their type's, whatever status they carry."""


def rule_for(
    status: int | None, code: int | str | None, kind: type[ServiceError] = ServiceError
) -> Rule:
    """The combined rule of a reply's HTTP status and service code (module docstring);
    ``kind``: the type of an error already made, which the rule never makes less specific."""
    rows = [BY_STATUS.get(status, UNLISTED) if status is not None else None]
    rows.append(BY_CODE.get(code) if isinstance(code, int) else None)
    found = [row for row in rows if row is not None] or [UNLISTED]
    kinds = [row.error for row in found]
    if kind in _SPECIFICITY:
        kinds.append(kind)
    error = max(kinds, key=_SPECIFICITY.index)
    if error is AuthenticationError:
        return _AUTH
    always_counts = error is RateLimitError
    return Rule(
        error,
        retried=any(row.retried for row in found),
        counts=always_counts or all(row.counts for row in found),
    )


def rule_of(error: BaseException) -> Rule | None:
    """The rule a raised error was made under (``None``: not a service failure at all)."""
    if not isinstance(error, ServiceError):
        return None
    for kind, rule in BY_TYPE.items():
        if isinstance(error, kind):
            return rule
    return rule_for(error.status, error.code, type(error))


def is_retried(error: ServiceError) -> bool:
    rule = rule_of(error)
    return rule is not None and rule.retried


def counts_against_circuit(error: BaseException) -> bool:
    rule = rule_of(error)
    return rule is not None and rule.counts
