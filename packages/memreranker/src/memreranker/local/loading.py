"""Load a yes/no reranker checkpoint (Hub id or directory) and refuse anything unusable."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from memreranker.errors import ModelLoadError
from memreranker.local.checkpoint import (
    Checkpoint,
    check_tokenizer,
    inspect_checkpoint,
    refuse_missing,
)
from memreranker.prompt import PREFIX, SUFFIX

logger = logging.getLogger("memreranker")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint ready to score: the pieces every engine needs, computed once."""

    name: str
    model: Any  # transformers PreTrainedModel (a causal LM, or a one-label seq-cls conversion)
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    yes_id: int
    no_id: int
    pad_id: int
    prefix_ids: list[int]
    suffix_ids: list[int]
    head: torch.Tensor
    """Rows ``[no, yes]`` of the LM head, float32, shape (2, hidden). For a seq-cls conversion
    (one row = yes - no) the rows are ``[0, row]``: the same logit difference."""
    head_bias: torch.Tensor | None

    @property
    def decoder(self) -> Any:
        """The transformer without its head: only two of an LM head's ~150k logits are needed."""
        return self.model.base_model


def resolve_device(device: str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype is not None:
        return _DTYPES[dtype]
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_model(
    name: str | Checkpoint, *, device: str | None = None, dtype: str | None = None
) -> LoadedModel:
    """Load a yes/no reranker's tokenizer and weights; :class:`ModelLoadError` if unusable."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = name if isinstance(name, Checkpoint) else inspect_checkpoint(name)
    name = checkpoint.name
    if checkpoint.kind != "yes_no":
        raise ModelLoadError(
            f"{name!r} is a {', '.join(checkpoint.architectures)} checkpoint, not a causal LM "
            "with a yes/no head (Qwen3-Reranker recipe)"
        )
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, padding_side="left")
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {name!r}: {exc}") from exc
    check_tokenizer(tokenizer, name)
    yes_id = tokenizer.convert_tokens_to_ids("yes")
    no_id = tokenizer.convert_tokens_to_ids("no")
    unk = tokenizer.unk_token_id
    if not isinstance(yes_id, int) or not isinstance(no_id, int) or unk in (yes_id, no_id):
        raise ModelLoadError(f"the tokenizer of {name!r} has no single 'yes'/'no' tokens")
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    if pad_id is None:
        raise ModelLoadError(f"the tokenizer of {name!r} has neither a pad nor an eos token")

    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            name, dtype=torch_dtype, attn_implementation="sdpa", output_loading_info=True
        )
    except Exception as exc:
        raise ModelLoadError(f"cannot load the weights of {name!r}: {exc}") from exc
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        # transformers fills missing weights with random values and only warns: a model
        # scored that way returns confident nonsense, so it is an error here.
        raise refuse_missing(name, missing)

    lm_head = model.get_output_embeddings()
    if lm_head is None or max(yes_id, no_id) >= lm_head.weight.shape[0]:
        raise ModelLoadError(f"{name!r} has no LM head covering the 'yes'/'no' token ids")
    model.to(torch_device).eval()
    head = lm_head.weight.detach()[[no_id, yes_id]].to(torch.float32).clone()
    bias = getattr(lm_head, "bias", None)
    head_bias = None if bias is None else bias.detach()[[no_id, yes_id]].to(torch.float32).clone()

    logger.info("loaded %s on %s (%s)", name, torch_device, torch_dtype)
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        device=torch_device,
        dtype=torch_dtype,
        yes_id=yes_id,
        no_id=no_id,
        pad_id=pad_id,
        prefix_ids=tokenizer.encode(PREFIX, add_special_tokens=False),
        suffix_ids=tokenizer.encode(SUFFIX, add_special_tokens=False),
        head=head,
        head_bias=head_bias,
    )
