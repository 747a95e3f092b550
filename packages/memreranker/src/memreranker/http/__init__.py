"""Hosted rerank backends over HTTP: the MemOS cloud API (``memos``), vLLM-style servers
(``vllm``, Cohere-v2-shaped replies accepted) and text-embeddings-inference (``tei``).

Layout (httpx-style: the protocol knows nothing of sockets, the transports nothing of rerank):

* :mod:`~memreranker.http.protocol`: endpoints, request building, reply parsing and
  validation, error mapping. Pure functions.
* :mod:`~memreranker.http.retry`: the retry policy and the attempt loop as a generator of
  send/sleep steps, shared by both transports.
* :mod:`~memreranker.http.templates`: what the texts say on the wire (``prompt_format``:
  the model card's template, from :mod:`memreranker.prompt`, or plain).
* :mod:`~memreranker.http.batching`: token estimates, truncation, splitting and merging.
* :mod:`~memreranker.http.sync_transport` (``requests``) and
  :mod:`~memreranker.http.async_transport` (``httpx``, one client per event loop).
* :mod:`~memreranker.http.circuit`: the circuit breaker that fails calls fast while the
  service keeps failing.
* :mod:`~memreranker.http.backend`: :class:`HTTPBackend`, which puts them together.

Importing this package imports ``requests`` and ``httpx`` (never torch).
"""

from __future__ import annotations

from memreranker.http.backend import HTTPBackend

__all__ = ["HTTPBackend"]
