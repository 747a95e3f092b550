"""A scoring engine that runs the shared prompt prefix once per call.

Every prompt of a call starts with the same tokens: the system prompt, the instruction and
the query. :class:`PaddedBatchEngine` (the model card's recipe) runs them once per document;
:class:`PrefixCacheEngine` runs them once per call, keeps their keys and values, and runs
only each document's remaining tokens (the "tail": document + suffix), in length-bucketed
batches that attend to the shared keys and values.

Exactness: prompts are tokenized and truncated exactly as the recipe does
(:meth:`PaddedBatchEngine.encode`); the shared prefix is the longest common prefix of those
token ids, so a BPE merge across ``"<Document>: "`` and the document, or a truncation that cuts
into the query, only shortens the shared part. Scores equal the recipe's up to float rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from memreranker.local.agreement import (  # noqa: F401  (PROBE_*: re-exported)
    PROBE_DOCUMENTS,
    PROBE_QUERY,
    CandidateFailed,
    ReferenceUnusable,
    largest_difference,
    reference_scores,
    tolerance,
)
from memreranker.local.engines import PaddedBatchEngine, yes_probability
from memreranker.local.loading import LoadedModel
from memreranker.progress import Advance

logger = logging.getLogger("memreranker")

# Per-forward cost expressed in tokens: a batch is worth opening only if it saves at least
# this much padding. Launching a forward on a GPU costs as much as hundreds of tokens of
# compute; on a CPU, compute dominates and small, tightly packed batches win.
_BATCH_OVERHEAD_TOKENS = {"cpu": 32, "cuda": 1024}
_DEFAULT_OVERHEAD_TOKENS = 256


class PrefixEngineMismatch(RuntimeError):
    """The prefix engine's scores differ from the recipe's on the self-check probes."""


def supports_prefix_cache(loaded: LoadedModel) -> bool:
    """Whether the model's layers are all plain causal attention (no sliding windows)."""
    config = loaded.model.config
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return set(layer_types) == {"full_attention"}


class _SharedPrefixKV:
    """A minimal key/value cache for one forward pass; not a ``transformers.Cache``.

    Recording mode (``prefix=None``): keeps the keys/values of each layer (the prefix pass).
    Replay mode: prepends the recorded prefix keys/values, broadcast to the batch, to each
    layer's new ones and returns the concatenation *without storing it*, so a tail batch never
    holds more than one layer's expanded prefix at a time.
    """

    def __init__(self, prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        self.prefix = prefix
        self.recorded: list[tuple[torch.Tensor, torch.Tensor]] = []

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prefix is None:
            self.recorded.append((key_states, value_states))
            return key_states, value_states
        keys, values = self.prefix[layer_idx]
        batch = key_states.shape[0]
        keys = torch.cat([keys.expand(batch, -1, -1, -1), key_states], dim=2)
        values = torch.cat([values.expand(batch, -1, -1, -1), value_states], dim=2)
        return keys, values


def common_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix, leaving at least one token in every prompt."""
    shortest = min(len(p) for p in prompts)
    if len(prompts) == 1:
        return 0  # nothing to share: one forward over the whole prompt is cheapest
    # The common prefix of a set is that of its lexicographic min and max.
    low, high = min(prompts), max(prompts)
    shared = 0
    for a, b in zip(low, high):  # noqa: B905 (stops at the shorter one on purpose)
        if a != b:
            break
        shared += 1
    return min(shared, shortest - 1)


def plan_batches(
    lengths: Sequence[int], *, max_rows: int, max_tokens: int, overhead_tokens: int
) -> list[tuple[int, int]]:
    """Split ascending ``lengths`` into contiguous batches ``[start, end)``.

    Minimises the padded tokens plus ``overhead_tokens`` per batch, with at most ``max_rows``
    rows and ``rows * longest <= max_tokens`` (a single row may exceed it). Dynamic programming
    over the sorted lengths: right-padding a batch to its last (longest) row.
    """
    n = len(lengths)
    inf = float("inf")
    best = [0.0] + [inf] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        width = lengths[end - 1]
        limit = max(1, min(max_rows, max_tokens // max(width, 1)))
        for start in range(end - 1, max(end - limit, 0) - 1, -1):
            cost = best[start] + overhead_tokens + (end - start) * width
            if cost < best[end]:
                best[end] = cost
                cut[end] = start
    batches = []
    end = n
    while end > 0:
        batches.append((cut[end], end))
        end = cut[end]
    batches.reverse()
    return batches


class PrefixCacheEngine:
    """Runs the call's shared prefix once, then only the document tails.

    Args:
        loaded: The model.
        batch_size: At most this many tails per forward pass.
        max_length: Token budget of one prompt, as in the recipe.
        max_query_tokens, truncate: How an over-long query or document is fitted, as in
            :class:`~memreranker.local.engines.PaddedBatchEngine` (the same ``encode``).
        max_batch_tokens: At most this many (padded) tail tokens per forward pass; default
            ``batch_size * 512``.
        overhead_tokens: Per-forward cost in tokens used to trade padding for fewer forwards;
            default by device type.

    Identical prompts (identical documents, or documents that truncate to the same tokens)
    are scored once.
    """

    name = "prefix"

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        batch_size: int,
        max_length: int,
        max_query_tokens: int = 2000,
        truncate: bool = True,
        max_batch_tokens: int | None = None,
        overhead_tokens: int | None = None,
    ) -> None:
        if not supports_prefix_cache(loaded):
            raise ValueError(
                "the prefix engine needs a model whose layers all use full causal attention"
            )
        self._recipe = PaddedBatchEngine(
            loaded,
            batch_size=batch_size,
            max_length=max_length,
            max_query_tokens=max_query_tokens,
            truncate=truncate,
        )
        self.loaded = loaded
        self.batch_size = batch_size
        self.max_length = max_length
        self.max_batch_tokens = max_batch_tokens or batch_size * 512
        if overhead_tokens is None:
            overhead_tokens = _BATCH_OVERHEAD_TOKENS.get(
                loaded.device.type, _DEFAULT_OVERHEAD_TOKENS
            )
        self.overhead_tokens = overhead_tokens
        self.layer_types = sorted(
            set(getattr(loaded.model.config, "layer_types", None) or ["full_attention"])
        )
        self.last_stats: dict[str, int] = {}
        """Counts of the last call: ``prompts`` (distinct), ``prefix`` (shared tokens),
        ``tail_tokens``, ``padded_tail_tokens``, ``forwards`` (for benchmarks and logs)."""

    def self_check(self) -> float:
        """Score a few probe pairs with this engine and with the recipe; raise if they differ.

        Guards against a transformers version that would treat the shared keys/values, the
        mask or the positions differently from the version this was written against: a
        silent mismatch would give plausible but wrong scores. Returns the largest difference.

        Raises:
            PrefixEngineMismatch: the recipe computed finite scores and this engine either
                computed others or could not run at all (an architecture whose attention
                takes no per-layer masks or shared keys, say).
            Exception: the model cannot compute at all (recipe included); nothing to compare.
        """
        try:
            want = reference_scores(self._recipe)
        except ReferenceUnusable as exc:
            raise exc.__cause__ or exc from None  # the recipe's own error, or not finite
        try:
            worst = largest_difference(want, self)
        except CandidateFailed as exc:
            raise PrefixEngineMismatch(
                f"prefix engine self-check failed: it cannot run on this model ({exc})"
            ) from exc.__cause__
        if not worst <= tolerance(self.loaded.dtype):
            raise PrefixEngineMismatch(
                f"prefix engine self-check failed: scores differ from the recipe by {worst:.3g}"
            )
        return worst

    def encode(
        self, query: str, documents: Sequence[str], instruction: str | None
    ) -> list[list[int]]:
        """Full prompt ids, tokenized and fitted exactly as the recipe engine does."""
        return self._recipe.encode(query, documents, instruction)

    def score(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None,
        *,
        progress: Advance | None = None,
    ) -> list[float]:
        if not documents:
            return []
        prompts = self.encode(query, documents, instruction)
        slot: dict[tuple[int, ...], int] = {}
        index = [slot.setdefault(tuple(ids), len(slot)) for ids in prompts]
        unique = list(slot)
        scores = self.score_prompts(unique, progress=progress)
        return [scores[i] for i in index]

    def score_prompts(
        self, prompts: Sequence[Sequence[int]], *, progress: Advance | None = None
    ) -> list[float]:
        """P(yes) of each full prompt (token ids), sharing their common prefix.

        ``progress(n)`` is called after each tail batch with its number of prompts.
        """
        if not prompts:
            return []
        shared = common_prefix_length(prompts)
        tails = [p[shared:] for p in prompts]
        order = sorted(range(len(tails)), key=lambda i: len(tails[i]))
        lengths = [len(tails[i]) for i in order]
        batches = plan_batches(
            lengths,
            max_rows=self.batch_size,
            max_tokens=self.max_batch_tokens,
            overhead_tokens=self.overhead_tokens,
        )
        scores = [0.0] * len(prompts)
        padded = 0
        with torch.inference_mode():
            prefix_kv = self._run_prefix(prompts[0][:shared]) if shared else None
            for start, end in batches:
                rows = order[start:end]
                width = lengths[end - 1]
                padded += width * len(rows)
                probs = self._run_tails([tails[i] for i in rows], width, shared, prefix_kv)
                for i, p in zip(rows, probs.tolist(), strict=True):
                    scores[i] = p
                if progress is not None:
                    progress(len(rows))
        self.last_stats = {
            "prompts": len(prompts),
            "prefix": shared,
            "tail_tokens": sum(lengths),
            "padded_tail_tokens": padded,
            "forwards": len(batches) + (1 if shared else 0),
        }
        logger.debug("prefix engine: %s", self.last_stats)
        return scores

    def _masks(self, mask: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
        return {layer_type: mask for layer_type in self.layer_types}

    def _run_prefix(self, ids: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loaded = self.loaded
        device = loaded.device
        recorder = _SharedPrefixKV()
        loaded.decoder(
            input_ids=torch.tensor([list(ids)], dtype=torch.long, device=device),
            # No mask: a square causal block, SDPA's is_causal fast path.
            attention_mask=self._masks(None),
            position_ids=torch.arange(len(ids), device=device).unsqueeze(0),
            past_key_values=recorder,
            use_cache=False,
        )
        return recorder.recorded

    def _run_tails(
        self,
        tails: Sequence[Sequence[int]],
        width: int,
        shared: int,
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> torch.Tensor:
        """P(yes) of right-padded tails that continue a shared prefix of ``shared`` tokens.

        Right padding puts every pad after the real tokens of its row, so the causal mask alone
        keeps pads out of every real token's attention; positions run on from the prefix.
        """
        loaded = self.loaded
        device = loaded.device
        pad = loaded.pad_id
        input_ids = torch.tensor(
            [list(t) + [pad] * (width - len(t)) for t in tails], dtype=torch.long, device=device
        )
        positions = torch.arange(shared, shared + width, device=device).unsqueeze(0)
        if prefix_kv is None:
            mask = None  # square causal block
        else:
            # Query j (absolute position shared + j) sees keys 0 .. shared + j.
            keys = torch.arange(shared + width, device=device)
            mask = (keys.unsqueeze(0) <= positions.transpose(0, 1))[None, None]
        hidden = loaded.decoder(
            input_ids=input_ids,
            attention_mask=self._masks(mask),
            position_ids=positions,
            past_key_values=_SharedPrefixKV(prefix_kv) if prefix_kv is not None else None,
            use_cache=False,
        ).last_hidden_state
        last = torch.tensor([len(t) - 1 for t in tails], device=device)
        rows = torch.arange(len(tails), device=device)
        return yes_probability(loaded, hidden[rows, last])
