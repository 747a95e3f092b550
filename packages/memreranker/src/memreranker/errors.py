"""The MemRerankerError hierarchy.

Caller mistakes are plain ``TypeError``/``ValueError`` and never land here: these are the
failures to *score*, the ones ``on_error="fallback"`` absorbs.
"""

from __future__ import annotations


class InputTooLongError(ValueError):
    """A query or document over a service's documented limit, with truncation turned off.

    A caller mistake, not an outage: it propagates in every ``on_error`` mode.
    """


class MemRerankerError(Exception):
    """Base class of every failure to score documents."""


class ModelLoadError(MemRerankerError):
    """Local weights or tokenizer could not be loaded, or are no reranker this package can
    score faithfully (a yes/no causal LM or a one-label cross-encoder, head and tokenizer
    present)."""


class UnsupportedRuntimeError(ModelLoadError, ValueError):
    """``runtime="onnx"`` asked of a checkpoint that only torch can score (a yes/no causal LM).

    Found when the checkpoint is inspected at load; a ``ValueError`` as well, since the
    setting, not the checkpoint, is at fault.
    """


class InferenceError(MemRerankerError):
    """The backend failed while scoring (a runtime error in the model, for example)."""


class InstructionTooLongError(MemRerankerError, ValueError):
    """The instruction (with the prompt template) leaves no room for the query or the
    documents within the limits (``max_query_tokens`` / ``max_document_tokens`` for a served
    model, ``max_length`` locally).

    An instruction is never cut, whatever ``truncate`` says: it is the task the model is
    asked to judge, and a prefix of it can ask something else ("... unless it is about work"
    cut before "unless"). A configured instruction that cannot fit fails at construction; a
    per-call one fails the call like any other failure to score: ``on_error="fallback"``
    gives the input order with one warning, and a fallback chain hands over to the next
    reranker (whose limits may hold it). It is also a ``ValueError``: the caller's text is
    the cause.
    """


class ServiceError(MemRerankerError):
    """A rerank service answered with an error.

    Attributes:
        status: HTTP status, or ``None`` when no response arrived.
        code: The service's own error code (MemOS ``code``, vLLM ``error.code``), if any.
        message: The service's message. Never contains the API key.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        parts = [message]
        if status is not None:
            parts.append(f"HTTP {status}")
        if code is not None:
            parts.append(f"code {code}")
        super().__init__(" | ".join(parts) if len(parts) > 1 else message)


class AuthenticationError(ServiceError):
    """The API key is missing, invalid or expired."""


class RateLimitError(ServiceError):
    """The service refused the call for rate or quota reasons."""


class RequestTooLargeError(ServiceError):
    """The service refused the request as too large: HTTP 413 (TEI: more texts than its
    ``--max-client-batch-size``, or an input over the model's length with truncation off),
    or MemOS code 40305. Lower ``max_documents_per_request`` / ``max_tokens_per_request``
    or the input limits; retrying the same request cannot help."""


class ServedModelError(ServiceError):
    """The server is up but its model failed on the request: HTTP 424 (TEI's "backend"
    errors, a NaN score, a model that is not a reranker). Not retried."""


class RerankTimeoutError(ServiceError):
    """The service did not answer within the timeout or the call's deadline."""


class ServiceConnectionError(ServiceError):
    """No connection could be made to the service."""


class InvalidResponseError(ServiceError):
    """The service answered, but the reply cannot be trusted (bad JSON, bad indices...)."""


class CircuitOpenError(ServiceError):
    """The service failed too often in a row: the call was refused without contacting it.

    Raised while a hosted backend's circuit breaker is open (or half-open with its probe call
    in flight); ``status`` and ``code`` are ``None``. See ``circuit_failure_threshold``.
    """
