"""Cross-encoder checkpoints, scored with ``sentence_transformers.CrossEncoder``.

A one-label ``...ForSequenceClassification`` checkpoint (``cross-encoder/ms-marco-MiniLM-L6-v2``,
``BAAI/bge-reranker-v2-m3``, a seq-cls conversion of Qwen3-Reranker) scores a pair with the
sigmoid of its single logit: what ``CrossEncoder.predict`` returns for one label, a number in
[0, 1]. The same class also loads a yes/no reranker (``engine="crossencoder"``): its
``LogitScore`` module computes ``logit_yes - logit_no`` and the sigmoid of that is P(yes), the
model card's "Sentence Transformers (Recommended)" path.

:class:`CrossEncoderEngine` runs ``CrossEncoder.predict``'s own steps (pairs sorted longest
first, ``preprocess``, forward, sigmoid) so that it can report progress after every batch and
see how many pairs reached ``max_length``; identical documents are scored once
(:mod:`memreranker.dedup`, by the local backend).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from memreranker.document_template import RenderedText
from memreranker.errors import InputTooLongError, ModelLoadError
from memreranker.local.checkpoint import (
    Checkpoint,
    check_tokenizer,
    check_weights_are_stored,
    checkpoint_file,
)
from memreranker.local.loading import LoadedModel, resolve_device, resolve_dtype
from memreranker.local.truncation import cut_memory_text
from memreranker.progress import Advance
from memreranker.prompt import (
    CARD_CHAT_TEMPLATE,
    CARD_PROMPT_NAME,
    CARD_PROMPTS,
    DEFAULT_INSTRUCTION,
    PREFIX,
    SUFFIX,
    format_body,
)

logger = logging.getLogger("memreranker")

ST_CONFIG = "config_sentence_transformers.json"
"""The file a checkpoint prepared for sentence-transformers ships (prompts, activation)."""


def load_cross_encoder(
    checkpoint: Checkpoint,
    *,
    device: str | None = None,
    dtype: str | None = None,
    max_length: int | None = None,
) -> Any:
    """A ``sentence_transformers.CrossEncoder`` for ``checkpoint``, checked before it scores.

    ``max_length`` caps the tokens of one pair; it never raises the model's own limit (the
    tokenizer's ``model_max_length``, itself capped at the config's position embeddings).
    A yes/no causal LM without a sentence-transformers config gets the model card's prompt as
    its chat template and the default instruction as its default prompt, as the published
    MemReranker checkpoint has them.

    Raises:
        ModelLoadError: sentence-transformers is missing or too old, the weights lack a
            parameter (the scoring head, a layer), the tokenizer is missing, or loading fails.
    """
    try:
        import sentence_transformers
        from sentence_transformers import CrossEncoder
    except ImportError as exc:
        raise ModelLoadError(
            f"cross-encoder checkpoints need sentence-transformers ({exc}): "
            'pip install "memreranker[local]"'
        ) from exc
    version = tuple(int(p) for p in sentence_transformers.__version__.split(".")[:2] if p.isdigit())
    if version < (5, 4):
        # Older versions load a yes/no reranker with a randomly initialised classifier.
        raise ModelLoadError(
            f"sentence-transformers {sentence_transformers.__version__} is too old: "
            'memreranker needs >= 5.4 (pip install -U "memreranker[local]")'
        )
    name = checkpoint.name
    torch_device = resolve_device(device)
    options: dict[str, Any] = {
        "device": str(torch_device),
        "model_kwargs": {"dtype": resolve_dtype(dtype, torch_device)},
    }
    limit = checkpoint.max_positions
    if max_length is not None and (limit is None or max_length <= limit):
        options["max_length"] = max_length
    if checkpoint.kind == "yes_no" and checkpoint_file(name, ST_CONFIG) is None:
        options["processor_kwargs"] = {"chat_template": CARD_CHAT_TEMPLATE}
        options["prompts"] = dict(CARD_PROMPTS)
        options["default_prompt_name"] = CARD_PROMPT_NAME
    try:
        model = CrossEncoder(name, **options)
    except Exception as exc:
        raise ModelLoadError(f"cannot load {name!r} with sentence-transformers: {exc}") from exc
    model.eval()
    own_limit = model.max_seq_length
    if max_length is not None and (own_limit is None or own_limit > max_length):
        model.max_seq_length = max_length

    check_tokenizer(model.tokenizer, name)
    hf_model = model.model
    if hf_model is None:
        raise ModelLoadError(f"{name!r}: sentence-transformers loaded no transformers model")
    check_weights_are_stored(hf_model, name)
    if checkpoint.kind == "yes_no":
        _check_logit_score(model, name)
    elif getattr(hf_model.config, "num_labels", 1) != 1 or model.num_labels != 1:
        raise ModelLoadError(f"{name!r} does not produce exactly one score per pair")
    logger.info(
        "loaded %s with sentence-transformers on %s (%s, max_length %s)",
        name,
        torch_device,
        options["model_kwargs"]["dtype"],
        model.max_seq_length,
    )
    return model


def _check_logit_score(model: Any, name: str) -> None:
    """A causal LM must end in a LogitScore over two distinct, known tokens."""
    from sentence_transformers.cross_encoder.modules import LogitScore

    last = list(model)[-1]
    tokenizer = model.tokenizer
    unknown = getattr(tokenizer, "unk_token_id", None)
    if (
        not isinstance(last, LogitScore)
        or last.false_token_id is None
        or last.true_token_id == last.false_token_id
        or unknown in (last.true_token_id, last.false_token_id)
    ):
        raise ModelLoadError(
            f"sentence-transformers did not load {name!r} with a yes/no LogitScore head"
        )


def takes_instruction(model: Any) -> bool:
    """Whether the checkpoint's sentence-transformers config defines prompts (non-empty)."""
    return any(bool(text) for text in (getattr(model, "prompts", None) or {}).values())


def default_prompt(model: Any) -> str | None:
    """The prompt ``CrossEncoder.predict`` applies when none is given."""
    name = getattr(model, "default_prompt_name", None)
    return (getattr(model, "prompts", None) or {}).get(name) if name else None


class CrossEncoderEngine:
    """Scores pairs with a ``CrossEncoder``: sigmoid of its single logit, in [0, 1].

    Exactly ``CrossEncoder.predict(pairs, activation_fn=Sigmoid())`` (same length-sorted
    batches, same preprocessing, same forward), plus ``progress(n)`` after every batch and
    one warning per call when pairs reached ``max_length`` (longer text was cut).

    Args:
        model: The loaded ``CrossEncoder``.
        name: The checkpoint, for messages.
        batch_size: Pairs per forward pass.
        truncate: ``False``: a pair that reaches ``max_length`` raises
            :class:`~memreranker.errors.InputTooLongError` instead of being cut with a
            warning (as the yes/no engines do with ``truncate=False``).
        forward: Preprocessed features to one logit per pair, in place of the torch forward
            (``runtime="onnx"``: an ONNX Runtime session, see
            :mod:`memreranker.local.onnx_runtime`); ``close`` is called on it by :meth:`close`.
    """

    name = "crossencoder"

    def __init__(
        self,
        model: Any,
        *,
        name: str,
        batch_size: int,
        truncate: bool = True,
        forward: Callable[[dict[str, Any]], torch.Tensor] | None = None,
    ) -> None:
        self.model = model
        self.checkpoint_name = name
        self.batch_size = batch_size
        self.truncate = truncate
        self.takes_instruction = takes_instruction(model)
        self._warned_instruction = False
        self.forward = forward
        self.runtime = "torch" if forward is None else "onnx"

    def _torch_forward(self, features: dict[str, Any]) -> torch.Tensor:
        from sentence_transformers.util import batch_to_device

        model = self.model
        logits: torch.Tensor = model(batch_to_device(features, model.device))["scores"]
        return logits

    def close(self) -> None:
        """Release the ONNX Runtime session, if any (the torch weights go with the engine)."""
        close = getattr(self.forward, "close", None)
        if close is not None:
            close()

    @property
    def max_length(self) -> int | None:
        value = self.model.max_seq_length
        return value if isinstance(value, int) else None

    def prompt(self, instruction: str | None) -> str | None:
        """The prompt for ``instruction``: itself where the model takes prompts, else None."""
        if instruction is not None and not self.takes_instruction:
            if not self._warned_instruction:
                self._warned_instruction = True
                logger.warning(
                    "%s takes no instruction (its sentence-transformers config defines no "
                    "prompts): ignoring the instruction for this reranker",
                    self.checkpoint_name,
                )
            return None
        return instruction if instruction is not None else default_prompt(self.model)

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
        prompt = self.prompt(instruction)
        unique = list(documents)  # distinct: MemReranker removes duplicates (dedup.py)
        cut = self._fit_rendered(query, unique, prompt)
        # CrossEncoder.predict's order: longest first by characters, so batches pad little.
        order = sorted(range(len(unique)), key=lambda i: -(len(query) + len(unique[i])))
        scores = [0.0] * len(unique)
        limit = self.max_length
        full = 0
        model = self.model
        forward = self.forward or self._torch_forward
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                features = model.preprocess([(query, unique[i]) for i in rows], prompt=prompt)
                mask = features.get("attention_mask")
                if limit is not None and isinstance(mask, torch.Tensor):
                    reached = (mask.sum(dim=-1) >= limit).tolist()
                    full += sum(
                        1 for i, hit in zip(rows, reached, strict=True) if hit and i not in cut
                    )
                    if full and not self.truncate:
                        raise InputTooLongError(
                            f"{self.checkpoint_name}: a query and document pair reaches "
                            f"max_length={limit} tokens; shorten it or set truncate=True"
                        )
                logits = forward(features)
                probs = torch.sigmoid(logits.float()).reshape(len(rows))
                for i, p in zip(rows, probs.tolist(), strict=True):
                    scores[i] = p
                if progress is not None:
                    progress(len(rows))
        full += len(cut)
        if full:
            logger.warning(
                "%s: %d of %d document(s) filled max_length=%d tokens with the query: "
                "text beyond it was cut (truncation longest_first)",
                self.checkpoint_name,
                full,
                len(unique),
                limit,
            )
        return scores

    def _fit_rendered(self, query: str, documents: list[str], prompt: str | None) -> set[int]:
        """Cut, in place, the ``document_template`` renderings whose pair is over
        ``max_length`` in the memory's own text, so that sentence-transformers' own cut
        (from the right) never reaches the date or the template after the text. Returns
        the indices cut. Only renderings with a part after the text need it."""
        limit = self.max_length
        todo = [i for i, doc in enumerate(documents) if isinstance(doc, RenderedText) and doc.tail]
        cut: set[int] = set()
        if limit is None or not todo:
            return cut
        model = self.model

        def over(doc: str) -> int:
            features = model.preprocess([(query, doc)], prompt=prompt)
            return int(features["attention_mask"].sum()) - limit

        model.max_seq_length = 1 << 20  # count the untruncated pair
        try:
            for i in todo:
                if over(documents[i]) <= 0:
                    continue
                if not self.truncate:
                    raise InputTooLongError(
                        f"{self.checkpoint_name}: a query and document pair is over "
                        f"max_length={limit} tokens; shorten it or set truncate=True"
                    )
                fitted = cut_memory_text(model.tokenizer, documents[i], over)
                if fitted is not None:
                    documents[i] = fitted
                    cut.add(i)
        finally:
            model.max_seq_length = limit
        return cut


# Probe pairs for recognising a checkpoint that renders the model card's prompt.
_PROBES = (
    ("Where does the user's sister live?", "The user's sister Anna lives in Berlin."),
    ("q", ""),
    ("用户喜欢什么", "用户喜欢打羽毛球 🎉"),
)
_PROBE_INSTRUCTION = "Judge whether the memory answers the question"


def _renders_card_prompt(model: Any, prefix_ids: list[int], suffix_ids: list[int]) -> bool:
    """Whether ``model.preprocess`` gives the model card's token ids for the probe pairs."""
    tokenizer = model.tokenizer
    limit = model.max_seq_length
    model.max_seq_length = 1 << 20  # the template is checked here, not the truncation
    try:
        for instruction in (None, _PROBE_INSTRUCTION):
            prompt = instruction if instruction is not None else default_prompt(model)
            features = model.preprocess(list(_PROBES), prompt=prompt)
            ids, mask = features.get("input_ids"), features.get("attention_mask")
            if not isinstance(ids, torch.Tensor) or not isinstance(mask, torch.Tensor):
                return False
            for row, (query, doc) in enumerate(_PROBES):
                body = tokenizer(format_body(instruction, query, doc), add_special_tokens=False)
                card = prefix_ids + body["input_ids"] + suffix_ids
                if ids[row][mask[row].bool()].tolist() != card:
                    return False
    except Exception as exc:  # a template that cannot render the pair is simply not the card's
        logger.debug("prompt probe failed: %s", exc)
        return False
    finally:
        model.max_seq_length = limit
    return True


def yes_no_view(model: Any, checkpoint: Checkpoint) -> LoadedModel | None:
    """The checkpoint as a yes/no reranker for the exact engines, when it is one in disguise.

    A seq-cls conversion of Qwen3-Reranker is the causal transformer with one head row equal
    to (yes row - no row), so sigmoid(its logit) = P(yes) of the model card's recipe, *if*
    its sentence-transformers prompt renders exactly the card's prompt. That is checked here
    on probe pairs, token by token, with the default and a custom instruction. Returns None
    for anything else (BERT-style cross-encoders, other prompts): it then scores through
    sentence-transformers.
    """
    hf_model = model.model
    config = hf_model.config
    head = getattr(hf_model, "score", None)
    if (
        checkpoint.kind != "cross_encoder"
        or not takes_instruction(model)
        or default_prompt(model) != DEFAULT_INSTRUCTION
        or not isinstance(head, torch.nn.Linear)
        or head.out_features != 1
        or head.in_features != getattr(config, "hidden_size", None)
    ):
        return None
    tokenizer = model.tokenizer
    prefix_ids = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix_ids = tokenizer.encode(SUFFIX, add_special_tokens=False)
    if not _renders_card_prompt(model, prefix_ids, suffix_ids):
        return None
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    yes_id = tokenizer.convert_tokens_to_ids("yes")
    no_id = tokenizer.convert_tokens_to_ids("no")
    if not all(isinstance(i, int) for i in (pad_id, yes_id, no_id)):
        return None
    row = head.weight.detach().to(torch.float32)
    bias = None
    if head.bias is not None:
        bias = torch.cat([torch.zeros(1), head.bias.detach().to(torch.float32).cpu()])
        bias = bias.to(row.device)
    return LoadedModel(
        name=checkpoint.name,
        model=hf_model,
        tokenizer=tokenizer,
        device=hf_model.device,
        dtype=next(hf_model.parameters()).dtype,
        yes_id=yes_id,
        no_id=no_id,
        pad_id=pad_id,
        prefix_ids=prefix_ids,
        suffix_ids=suffix_ids,
        head=torch.cat([torch.zeros_like(row), row]).clone(),
        head_bias=bias,
    )
