"""The hosted backends: ``memos`` (the MemOS cloud API), ``vllm`` (vLLM/Cohere-style servers)
and ``tei`` (Hugging Face text-embeddings-inference).

One :class:`HTTPBackend` serves all three; the dialect decides the URL, the auth header, the
wire format and the defaults. Per call it fits the input into the service's limits (counting
the prompt template of ``prompt_format``, vllm and tei: :mod:`~memreranker.http.templates`),
wraps it in that template, splits long lists into requests, runs each request through the
shared retry loop (sync: one after the other over a ``requests`` pool; async: concurrently, at
most ``max_concurrency`` at a time, over the running loop's ``httpx`` pool), and merges the
scores back onto the caller's indices (the facade
sorts and cuts, as for every backend). Each call goes through the backend's circuit breaker
(:mod:`~memreranker.http.circuit`): after repeated failures it fails fast for a cool-down.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from memreranker.backend_table import BUILTIN_BACKENDS
from memreranker.backends.base import Backend
from memreranker.http import batching, protocol
from memreranker.http.async_transport import AsyncTransport
from memreranker.http.async_transport import run as run_async
from memreranker.http.circuit import CircuitBreaker
from memreranker.http.protocol import Endpoint
from memreranker.http.retry import RetryPolicy, exchange
from memreranker.http.sync_transport import SyncTransport
from memreranker.http.sync_transport import run as run_sync
from memreranker.http.templates import Template
from memreranker.progress import Advance
from memreranker.ranking import Scored
from memreranker.settings import RerankerSettings

logger = logging.getLogger("memreranker")

MEMOS_API_KEY_ENV = BUILTIN_BACKENDS["memos"].api_key_env
MEMOS_BASE_URL_ENV = BUILTIN_BACKENDS["memos"].base_url_env


def resolve_endpoint(settings: RerankerSettings) -> Endpoint:
    """Where to call, from the settings, the backend's row of
    :data:`~memreranker.backend_table.BUILTIN_BACKENDS` and (for ``memos``) the environment.

    Raises:
        ValueError: a missing key (memos), a missing ``base_url`` (vllm, tei), a malformed
            URL or a key with whitespace or control characters inside. The key is never
            echoed.
    """
    spec = BUILTIN_BACKENDS.get(settings.backend_name)
    if spec is None or spec.dialect is None:
        raise ValueError(f"backend {settings.backend_name!r} is not an HTTP backend")
    dialect = spec.dialect
    key = _key(settings, env=spec.api_key_env)
    if key is None and spec.needs_api_key:
        raise ValueError(
            f"the {spec.name} backend needs an API key: pass api_key=... or set the "
            f"{spec.api_key_env} environment variable"
        )
    base = (
        settings.base_url
        or (os.environ.get(spec.base_url_env, "").strip() if spec.base_url_env else "")
        or spec.default_base_url
    )
    if not base:
        raise ValueError(
            f"backend={dialect!r} needs base_url, the server root (e.g. {spec.example_base_url}; "
            f"{spec.route} is appended) or the full rerank endpoint URL"
        )
    url = protocol.endpoint_url(dialect, base)
    model = settings.resolved_model()
    if spec.known_models and model not in spec.known_models:
        logger.warning(
            "%s: model %r is not one of the documented %s; sending it anyway",
            spec.name,
            model,
            ", ".join(spec.known_models),
        )
    if protocol.is_insecure_remote(url):
        logger.warning(
            "%s: base_url %s is plain http to a non-loopback host: the documents%s travel "
            "unencrypted; use https",
            dialect,
            protocol.redact_url(url),
            " and the API key" if key else "",
        )
    return Endpoint(dialect=dialect, url=url, model=model, api_key=key, truncate=settings.truncate)


def _key(settings: RerankerSettings, *, env: str | None) -> str | None:
    raw = settings.api_key.get_secret_value() if settings.api_key is not None else None
    if raw is None and env is not None:
        raw = os.environ.get(env)
    if raw is None:
        return None
    key = raw.strip()
    if not key:
        return None
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ValueError("the API key contains whitespace or control characters")
    if not key.isascii():  # ${env} too: it goes into an HTTP header
        raise ValueError("the API key has a character outside ASCII (it goes into an HTTP header)")
    return key


class HTTPBackend(Backend):
    """Scores through a rerank HTTP service (see the module docstring)."""

    def __init__(self, settings: RerankerSettings) -> None:
        self._endpoint = resolve_endpoint(settings)
        self._policy = RetryPolicy.from_settings(settings)
        self._limits = batching.Limits.from_settings(settings)
        self._template = Template(settings.resolved_prompt_format() or "plain")
        # Settings that leave no room for any text fail now, not at the first call.
        batching.fit_inputs(
            "", [], self._limits, where=self.name, **self._overhead(settings.instruction)
        )
        self._max_concurrency = settings.max_concurrency
        # Shared by every call of this instance: concurrent arerank calls (64 at once, say)
        # each take a connection. httpcore's pool bookkeeping costs CPU in (requests in
        # flight x connections), so far more connections cost more than they save
        # (benchmarks/http.py).
        pool_size = max(24, settings.max_concurrency)
        secret, cap = self._endpoint.api_key, settings.max_response_bytes
        self._sync = SyncTransport(pool_size=pool_size, secret=secret, max_reply_bytes=cap)
        self._async = AsyncTransport(pool_size=pool_size, secret=secret, max_reply_bytes=cap)
        self._warned_instruction = False
        self._circuit = CircuitBreaker(
            name=f"{self.name} {protocol.redact_url(self._endpoint.url)}",
            failure_threshold=settings.circuit_failure_threshold,
            cooldown=settings.circuit_cooldown,
        )

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self._endpoint.dialect}:{self._endpoint.model or 'default'}"

    @property
    def circuit(self) -> CircuitBreaker:  # type: ignore[override]
        """The circuit breaker (``circuit.state``: "closed", "open" or "half_open")."""
        return self._circuit

    @property
    def endpoint_url(self) -> str:
        return self._endpoint.url

    def __repr__(self) -> str:
        return (
            f"HTTPBackend(dialect={self._endpoint.dialect!r}, "
            f"url={protocol.redact_url(self._endpoint.url)!r}, model={self._endpoint.model!r})"
        )

    # -- scoring ---------------------------------------------------------------------------

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        if top_n == 0:
            return []
        query, docs, batches = self._plan(query, documents, instruction)
        return self._circuit.call(lambda: self._score(query, docs, batches, top_n, progress))

    def _score(
        self,
        query: str,
        docs: list[str],
        batches: list[range],
        top_n: int | None,
        progress: Advance | None,
    ) -> list[Scored]:
        parts = []
        for batch in batches:
            request = protocol.build_request(
                self._endpoint, query, docs[batch.start : batch.stop], top_n
            )
            parts.append(
                (batch, run_sync(exchange(self._endpoint, request, self._policy), self._sync))
            )
            if progress is not None:
                progress(len(batch))
        return _merge(parts)

    async def ascore(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        if top_n == 0:
            return []
        query, docs, batches = self._plan(query, documents, instruction)
        return await self._circuit.acall(
            lambda: self._ascore(query, docs, batches, top_n, progress)
        )

    async def _ascore(
        self,
        query: str,
        docs: list[str],
        batches: list[range],
        top_n: int | None,
        progress: Advance | None,
    ) -> list[Scored]:
        transport = self._async

        async def one(batch: range) -> tuple[range, list[Scored]]:
            request = protocol.build_request(
                self._endpoint, query, docs[batch.start : batch.stop], top_n
            )
            scored = await run_async(exchange(self._endpoint, request, self._policy), transport)
            if progress is not None:
                progress(len(batch))
            return batch, scored

        if len(batches) == 1:
            return _merge([await one(batches[0])])
        limit = asyncio.Semaphore(self._max_concurrency)

        async def bounded(batch: range) -> tuple[range, list[Scored]]:
            async with limit:
                return await one(batch)

        tasks = [asyncio.ensure_future(bounded(batch)) for batch in batches]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return _merge(parts)

    def _plan(
        self, query: str, documents: Sequence[str], instruction: str | None
    ) -> tuple[str, list[str], list[range]]:
        """The query and documents as sent (fitted, then templated) and their batches."""
        template = self._template
        if instruction is not None and not template.uses_instruction:
            if not self._warned_instruction:
                self._warned_instruction = True
                logger.warning(
                    "%s: %s; the instruction is ignored",
                    self.name,
                    "the MemOS API takes no instruction"
                    if self._endpoint.dialect == "memos"
                    else 'prompt_format="plain" sends the texts as given',
                )
        query, docs = batching.fit_inputs(
            query, documents, self._limits, where=self.name, **self._overhead(instruction)
        )
        query = template.query(instruction, query)
        docs = [template.document(doc) for doc in docs]
        return query, docs, batching.plan_batches(docs, self._limits)

    def _overhead(self, instruction: str | None) -> dict[str, int]:
        template = self._template
        return {
            "query_overhead": template.query_overhead(instruction),
            "document_overhead": template.document_overhead,
        }

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pools. Safe to call twice; a later call reopens them."""
        self._sync.close()
        self._async.close()

    async def aclose(self) -> None:
        """Close the pools, awaiting the running loop's async client."""
        self._sync.close()
        await self._async.aclose()
        self._async.close()


def _merge(parts: Sequence[tuple[range, list[Scored]]]) -> list[Scored]:
    """Batch scores on the caller's indices. With ``top_n`` each batch sent its own best
    ``top_n``, a superset of the global best; the facade sorts and cuts once, for all backends.
    """
    return list(batching.merge(parts))
