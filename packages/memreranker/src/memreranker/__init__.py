"""MemReranker: rerank an agent's memories with MemReranker models, local or hosted.

Importing this package never imports torch; local inference loads it on first use.
"""

from __future__ import annotations

import logging

from memreranker.backends.base import Backend
from memreranker.errors import (
    AuthenticationError,
    CircuitOpenError,
    InferenceError,
    InputTooLongError,
    InstructionTooLongError,
    InvalidResponseError,
    MemRerankerError,
    ModelLoadError,
    RateLimitError,
    RequestTooLargeError,
    RerankTimeoutError,
    ServedModelError,
    ServiceConnectionError,
    ServiceError,
    UnsupportedRuntimeError,
)
from memreranker.reranker import MemReranker
from memreranker.settings import RerankerSettings
from memreranker.types import RerankResult

logging.getLogger("memreranker").addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Backend",
    "CircuitOpenError",
    "InferenceError",
    "InputTooLongError",
    "InstructionTooLongError",
    "InvalidResponseError",
    "MemReranker",
    "MemRerankerError",
    "ModelLoadError",
    "RateLimitError",
    "RequestTooLargeError",
    "RerankResult",
    "RerankTimeoutError",
    "RerankerSettings",
    "ServedModelError",
    "ServiceConnectionError",
    "ServiceError",
    "UnsupportedRuntimeError",
    "__version__",
]
