"""The built-in backends, described once.

Everything the rest of the package knows about one backend kind is a row of
:data:`BUILTIN_BACKENDS`: its default model and prompt format, its request limits, its
factory and its HTTP dialect. Which settings apply to which backend is
:data:`SETTING_SCOPES`. Settings validation, the backend factory, HTTP endpoint resolution,
the CLI's ``--backend`` choices and the README's tables read these two tables, so adding a
backend is one row here plus its class (README, "Writing a backend").

Pure data, no imports of the implementations: factories are ``module:attribute`` paths,
imported only when a reranker of that kind is built (choosing ``memos`` never imports
torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

BackendName = Literal["local", "memos", "vllm", "tei"]
"""The names ``MemReranker(backend=...)`` accepts besides a ``Backend`` instance."""
PromptFormat = Literal["qwen3", "plain"]
Dialect = Literal["memos", "vllm", "tei"]
"""The HTTP wire formats (``memreranker.http.protocol``)."""

CUSTOM = "custom"
"""The scope name of a user's ``Backend`` instance in :data:`SETTING_SCOPES`."""


@dataclass(frozen=True)
class BackendSpec:
    """One built-in backend kind."""

    name: BackendName
    factory: str
    """``module:class`` of the implementation, called with the ``RerankerSettings``."""
    default_model: str | None = None
    """The model when ``model`` is ``None`` (``None``: the server decides, nothing is sent)."""
    dialect: Dialect | None = None
    """The HTTP dialect, for hosted backends."""
    default_prompt_format: PromptFormat | None = None
    """For servers that score what the client sends (``prompt_format`` applies)."""
    max_documents_per_request: int | None = None
    """Default of ``max_documents_per_request`` (hosted backends)."""
    example_base_url: str | None = None
    """Self-hosted servers: an example root for the error asking for ``base_url``."""
    route: str | None = None
    """Self-hosted servers: the path appended to ``base_url``."""
    default_base_url: str | None = None
    """Hosted services: the root used when neither ``base_url`` nor the environment says."""
    base_url_env: str | None = None
    """Environment variable read when ``base_url`` is not given."""
    api_key_env: str | None = None
    """Environment variable read when ``api_key`` is not given."""
    needs_api_key: bool = False
    known_models: tuple[str, ...] = ()
    """Documented model names (another one is sent anyway, with a warning)."""


BUILTIN_BACKENDS: Mapping[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(
            name="local",
            factory="memreranker.local.backend:LocalBackend",
            default_model="IAAR-Shanghai/MemReranker-4B",
        ),
        BackendSpec(
            name="memos",
            factory="memreranker.http.backend:HTTPBackend",
            default_model="memos-reranker-0.6b",
            dialect="memos",
            max_documents_per_request=100,
            default_base_url="https://memos.memtensor.cn/api/openmem/v1",
            base_url_env="MEMOS_BASE_URL",
            api_key_env="MEMOS_API_KEY",
            needs_api_key=True,
            known_models=("memos-reranker-0.6b", "memos-reranker-4b"),
        ),
        BackendSpec(
            name="vllm",
            factory="memreranker.http.backend:HTTPBackend",
            dialect="vllm",
            default_prompt_format="qwen3",
            max_documents_per_request=100,
            example_base_url="http://localhost:8000",
            route="/v1/rerank",
        ),
        BackendSpec(
            name="tei",
            factory="memreranker.http.backend:HTTPBackend",
            dialect="tei",
            default_prompt_format="plain",
            max_documents_per_request=32,  # TEI's default --max-client-batch-size
            example_base_url="http://localhost:8080",
            route="/rerank",
        ),
    )
}

LOCAL: frozenset[str] = frozenset({"local"})
HOSTED: frozenset[str] = frozenset(n for n, s in BUILTIN_BACKENDS.items() if s.dialect)
SERVED: frozenset[str] = frozenset(
    n for n, s in BUILTIN_BACKENDS.items() if s.default_prompt_format
)
BUILTIN: frozenset[str] = frozenset(BUILTIN_BACKENDS)

SETTING_SCOPES: Mapping[str, frozenset[str]] = {
    # A setting not listed here applies to every backend, a user's Backend instance
    # (CUSTOM) included: instruction, on_error, score_cache_size...
    "model": BUILTIN,
    "prompt_format": SERVED,
    "device": LOCAL,
    "dtype": LOCAL,
    "batch_size": LOCAL,
    "max_length": LOCAL,
    "engine": LOCAL,
    "runtime": LOCAL,
    "quantize": LOCAL,
    "threads": LOCAL,
    "truncate": BUILTIN,
    "max_query_tokens": BUILTIN,
    # The HTTP settings configure the hosted backends only: an API key given to local
    # weights (or to a Backend instance) would be silently unused, so it is refused.
    "max_document_tokens": HOSTED,
    "max_tokens_per_request": HOSTED,
    "max_documents_per_request": HOSTED,
    "api_key": HOSTED,
    "base_url": HOSTED,
    "timeout": HOSTED,
    "max_retries": HOSTED,
    "deadline": HOSTED,
    "retry_backoff": HOSTED,
    "retry_backoff_max": HOSTED,
    "max_response_bytes": HOSTED,
    "max_concurrency": HOSTED,
    "circuit_failure_threshold": HOSTED,
    "circuit_cooldown": HOSTED,
}
"""Setting name -> the backends it applies to. A setting given a value (other than its
default) for a backend outside its scope is a ``ValueError`` naming it."""

SCOPE_NOTES: Mapping[str, str] = {
    "prompt_format": "local weights always use the model card's prompt; the MemOS API "
    "formats its own",
}
"""Why a setting is limited to its scope, where that is not obvious (error messages)."""


def applies(setting: str, backend: str) -> bool:
    """Whether ``setting`` configures ``backend`` (a built-in name, or :data:`CUSTOM`)."""
    scope = SETTING_SCOPES.get(setting)
    return scope is None or backend in scope


def backend_spec(name: str) -> BackendSpec:
    try:
        return BUILTIN_BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"backend {name!r} is not one of {', '.join(map(repr, BUILTIN_BACKENDS))} "
            "(or a memreranker.Backend instance)"
        ) from None
