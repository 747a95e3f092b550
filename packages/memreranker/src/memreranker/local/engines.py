"""Scoring engines: turn (query, documents) into P(yes) with a loaded model.

An engine is the part a faster implementation replaces; loading, locking and error
handling stay in :mod:`memreranker.local.backend`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from memreranker.errors import InstructionTooLongError
from memreranker.local.loading import LoadedModel
from memreranker.local.truncation import fit_query, query_budget, report_truncated_documents
from memreranker.progress import Advance
from memreranker.prompt import format_body


class ScoringEngine(Protocol):
    name: str

    def score(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None,
        *,
        progress: Advance | None = None,
    ) -> list[float]:
        """P(yes) for each document, in input order; ``progress(n)`` after each forward."""
        ...


def yes_probability(loaded: LoadedModel, last_hidden: torch.Tensor) -> torch.Tensor:
    """P(yes) = softmax over the (no, yes) logits of the last position, in float32."""
    logits = last_hidden.to(torch.float32) @ loaded.head.T
    if loaded.head_bias is not None:
        logits = logits + loaded.head_bias
    return torch.sigmoid(logits[:, 1] - logits[:, 0])


class PaddedBatchEngine:
    """The model card's recipe: every pair is a full prompt, batches are left-padded.

    Pairs are sorted by length before batching so that padding stays small; results are
    put back in input order. Prompts are fitted into ``max_length`` as
    :mod:`memreranker.local.truncation` describes: a query over its budget
    (``max_query_tokens``, at most half the room) is cut first, so that documents are never
    cut away entirely; within the limits the token ids are exactly the card's.
    """

    name = "batched"

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        batch_size: int,
        max_length: int,
        max_query_tokens: int = 2000,
        truncate: bool = True,
    ) -> None:
        budget = max_length - len(loaded.prefix_ids) - len(loaded.suffix_ids)
        if budget < 1:
            raise ValueError(
                f"max_length={max_length} leaves no room for the document after the prompt's "
                f"{max_length - budget} fixed tokens"
            )
        self.loaded = loaded
        self.batch_size = batch_size
        self.max_length = max_length
        self.body_budget = budget
        self.max_query_tokens = max_query_tokens
        self.truncate = truncate

    def encode(
        self, query: str, documents: Sequence[str], instruction: str | None
    ) -> list[list[int]]:
        """Token ids of each full prompt: the card's, with the query held to its budget.

        Bodies are tokenized whole, as the card's call does before it truncates; those over
        the budget are then cut exactly as its ``truncation="longest_first"`` would.
        """
        loaded = self.loaded
        tokenizer = loaded.tokenizer
        fixed = len(tokenizer(format_body(instruction, "", ""), verbose=False)["input_ids"])
        if fixed >= self.body_budget:
            # Cutting the body from the right would cut the instruction and leave no query
            # or document in any prompt: every score alike. An instruction is never cut.
            raise InstructionTooLongError(
                f"{loaded.name}: the instruction and the prompt take {fixed} of the "
                f"{self.body_budget} tokens max_length={self.max_length} leaves for them, "
                "leaving no room for the query and the document: shorten the instruction "
                "or raise max_length"
            )
        query = fit_query(
            tokenizer,
            query,
            budget=query_budget(self.body_budget - fixed, self.max_query_tokens),
            max_query_tokens=self.max_query_tokens,
            truncate=self.truncate,
            where=loaded.name,
        )
        bodies = [format_body(instruction, query, doc) for doc in documents]
        encoded = tokenizer(
            bodies, padding=False, truncation=False, return_attention_mask=False, verbose=False
        )["input_ids"]
        cut = [i for i, ids in enumerate(encoded) if len(ids) > self.body_budget]
        if cut:
            report_truncated_documents(
                cut,
                len(bodies),
                max_length=self.max_length,
                truncate=self.truncate,
                where=loaded.name,
            )
            for i, ids in zip(cut, self._truncated([bodies[i] for i in cut]), strict=True):
                encoded[i] = ids
        return [loaded.prefix_ids + ids + loaded.suffix_ids for ids in encoded]

    def _truncated(self, bodies: list[str]) -> list[list[int]]:
        """The card's own call, for the few bodies that need cutting."""
        ids: list[list[int]] = self.loaded.tokenizer(
            bodies,
            padding=False,
            truncation="longest_first",
            return_attention_mask=False,
            max_length=self.body_budget,
        )["input_ids"]
        return ids

    def score(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None,
        *,
        progress: Advance | None = None,
    ) -> list[float]:
        loaded = self.loaded
        prompts = self.encode(query, documents, instruction)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        scores = [0.0] * len(prompts)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                width = max(len(prompts[i]) for i in batch)
                input_ids = torch.full((len(batch), width), loaded.pad_id, dtype=torch.long)
                attention = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids = prompts[i]
                    input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                    attention[row, width - len(ids) :] = 1
                out = loaded.decoder(
                    input_ids=input_ids.to(loaded.device),
                    attention_mask=attention.to(loaded.device),
                )
                probs = yes_probability(loaded, out.last_hidden_state[:, -1, :]).tolist()
                for i, p in zip(batch, probs, strict=True):
                    scores[i] = p
                if progress is not None:
                    progress(len(batch))
        return scores
