"""Load a yes/no reranker checkpoint (Hub id or directory) and refuse anything else."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from memreranker.errors import ModelLoadError
from memreranker.hub import looks_like_path as _looks_like_path
from memreranker.local.prompt import PREFIX, SUFFIX

logger = logging.getLogger("memreranker")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint ready to score: the pieces every engine needs, computed once."""

    name: str
    model: Any  # transformers PreTrainedModel (causal LM)
    tokenizer: Any  # transformers PreTrainedTokenizerBase, left padding
    device: torch.device
    dtype: torch.dtype
    yes_id: int
    no_id: int
    pad_id: int
    prefix_ids: list[int]
    suffix_ids: list[int]
    head: torch.Tensor
    """Rows ``[no, yes]`` of the LM head, float32, shape (2, hidden)."""
    head_bias: torch.Tensor | None

    @property
    def decoder(self) -> Any:
        """The transformer without its LM head: only two of its ~150k logits are needed."""
        return self.model.base_model


def resolve_device(device: str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype is not None:
        return _DTYPES[dtype]
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_model(name: str, *, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Load tokenizer and weights; raise :class:`ModelLoadError` for anything unusable."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if _looks_like_path(name) and not Path(name).expanduser().is_dir():
        raise ModelLoadError(f"model directory {name!r} does not exist")
    name = str(Path(name).expanduser()) if _looks_like_path(name) else name
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as exc:
        raise ModelLoadError(f"cannot load model {name!r}: {exc}") from exc

    architectures = list(getattr(config, "architectures", None) or [])
    if architectures and not any(a.endswith("ForCausalLM") for a in architectures):
        raise ModelLoadError(
            f"{name!r} is a {', '.join(architectures)} checkpoint, not a causal LM with a "
            "yes/no head (Qwen3-Reranker recipe); refusing to score with another head"
        )

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, padding_side="left")
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {name!r}: {exc}") from exc
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
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ModelLoadError(
            f"{name!r} lacks {len(missing)} weight(s) ({shown}); refusing to score with "
            "randomly initialised parameters"
        )

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
