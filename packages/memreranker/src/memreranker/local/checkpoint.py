"""What kind of reranker a checkpoint is, read from its config once, before any weights load.

Two kinds can be scored:

* ``"yes_no"``: a causal LM (``...ForCausalLM``) scored with the model card's yes/no-logit
  recipe (Qwen3-Reranker, MemReranker);
* ``"cross_encoder"``: a ``...ForSequenceClassification`` checkpoint with exactly one label
  (BERT / XLM-R / DeBERTa cross-encoders, bge-reranker, seq-cls conversions of
  Qwen3-Reranker), scored with ``sentence_transformers.CrossEncoder``.

Everything else is refused with :class:`~memreranker.errors.ModelLoadError`, and so is a
checkpoint whose weights lack any parameter (its scoring head, its pooler, one layer) or whose
tokenizer is missing: transformers would fill the gap with random values (and build an empty
tokenizer) with only a warning, and such a model returns confident nonsense.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from memreranker.errors import ModelLoadError
from memreranker.hub import looks_like_path

logger = logging.getLogger("memreranker")

CheckpointKind = Literal["yes_no", "cross_encoder"]

_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's name (Hub id or resolved directory), kind and config."""

    name: str
    kind: CheckpointKind
    config: Any  # transformers PretrainedConfig

    @property
    def architectures(self) -> list[str]:
        return list(getattr(self.config, "architectures", None) or [])

    @property
    def max_positions(self) -> int | None:
        """The model's position limit from its config, if it declares a usable one."""
        value = getattr(self.config, "max_position_embeddings", None)
        return value if isinstance(value, int) and value > 0 else None


def resolve_name(name: str) -> str:
    """A directory with ``~`` expanded, a Hub id unchanged; a missing directory is a
    :class:`ModelLoadError`."""
    if not looks_like_path(name):
        return name
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"model directory {name!r} does not exist")
    return str(path)


def inspect_checkpoint(name: str) -> Checkpoint:
    """Read ``name``'s config and say which kind of reranker it is, or refuse it."""
    from transformers import AutoConfig

    name = resolve_name(name)
    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as exc:
        raise ModelLoadError(f"cannot load model {name!r}: {exc}") from exc
    architectures = list(getattr(config, "architectures", None) or [])
    if not architectures or any(a.endswith("ForCausalLM") for a in architectures):
        # No declared architecture: the yes/no loader finds out (missing weights are refused).
        return Checkpoint(name, "yes_no", config)
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        labels = config.num_labels
        if labels != 1:
            raise ModelLoadError(
                f"{name!r} is a {', '.join(architectures)} checkpoint with {labels} labels "
                f"({', '.join(map(str, config.id2label.values()))}): a reranker has exactly one "
                "output (its relevance logit); refusing to pick a label to score with"
            )
        return Checkpoint(name, "cross_encoder", config)
    raise ModelLoadError(
        f"{name!r} is a {', '.join(architectures)} checkpoint: neither a cross-encoder "
        "(...ForSequenceClassification with one label) nor a causal LM with a yes/no head "
        "(Qwen3-Reranker recipe); refusing to score with a head it does not have"
    )


def checkpoint_file(name: str, filename: str) -> Path | None:
    """The local path of one file of a checkpoint (directory or Hub cache), or None if absent.

    For a Hub id this is the copy transformers downloaded (or downloads now, if allowed).
    """
    if looks_like_path(name):
        path = Path(name) / filename
        return path if path.is_file() else None
    from transformers.utils import cached_file

    try:
        found = cached_file(
            name,
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except Exception:
        return None
    return Path(found) if found else None


def stored_tensor_names(name: str) -> set[str] | None:
    """Names of the tensors a checkpoint's weight files hold, or None if none were found.

    Reads only safetensors headers and shard indexes; a ``pytorch_model.bin`` is memory-mapped.
    """
    for index in _WEIGHT_INDEXES:
        path = checkpoint_file(name, index)
        if path is not None:
            return set(json.loads(path.read_text(encoding="utf-8"))["weight_map"])
    for filename in _WEIGHT_FILES:
        path = checkpoint_file(name, filename)
        if path is None:
            continue
        if filename.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                return set(handle.keys())
        import torch

        return set(torch.load(path, map_location="cpu", mmap=True, weights_only=True))
    return None


def head_parameter_names(model: Any) -> list[str]:
    """The parameters outside the model's base transformer: its scoring head.

    Parameters tied to the base model (an LM head sharing the input embeddings) are not
    listed: they are stored, and checked, under the base model's name.
    """
    prefix = getattr(model, "base_model_prefix", "") or ""
    base = getattr(model, prefix, None) if prefix else None
    if base is None:
        return [name for name, _ in model.named_parameters()]
    shared = {id(p) for p in base.parameters()}
    return [
        name
        for name, param in model.named_parameters()
        if not name.startswith(prefix + ".") and id(param) not in shared
    ]


def missing_from(wanted: Iterable[str], stored: set[str], prefix: str = "") -> list[str]:
    """The names in ``wanted`` that no stored tensor carries.

    A stored name may carry an extra leading prefix, and a base model saved on its own lacks
    ``prefix`` (the model's ``base_model_prefix``): transformers loads both.
    """
    suffixes = {key.split(".", i)[-1] for key in stored for i in range(key.count(".") + 1)}
    lead = prefix + "." if prefix else ""
    return [
        name
        for name in wanted
        if name not in suffixes
        and not (lead and name.startswith(lead) and name[len(lead) :] in stored)
    ]


def refuse_missing(name: str, missing: Sequence[str]) -> ModelLoadError:
    """The error for a checkpoint whose weights lack ``missing`` (parameter names)."""
    shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
    return ModelLoadError(
        f"{name!r} lacks {len(missing)} weight(s) ({shown}); refusing to score with "
        "randomly initialised parameters"
    )


def check_weights_are_stored(model: Any, name: str) -> None:
    """Raise :class:`ModelLoadError` unless every parameter of the loaded ``model`` was read
    from the checkpoint's weight files.

    transformers initialises missing weights at random and only logs a warning: a BERT
    without its pooler, or a transformer without one layer, then scores every pair with
    random projections, differently on every load. The check compares the model's parameter
    names (tied ones once) with the tensor names in the weight files' headers, which costs
    milliseconds. Only when names seem missing is transformers asked for its own answer
    (a second load with ``output_loading_info``), so that a checkpoint it renames on loading
    (legacy ``LayerNorm.gamma``, say) is never refused for its names.
    """
    stored = stored_tensor_names(name)
    if stored is None:
        raise ModelLoadError(
            f"cannot find the weight files of {name!r} (model.safetensors, pytorch_model.bin or "
            "their shard index) to check that its weights were trained; refusing to score"
        )
    prefix = getattr(model, "base_model_prefix", "") or ""
    missing = missing_from([n for n, _ in model.named_parameters()], stored, prefix)
    if missing:
        missing = _confirmed_missing(model, name, missing)
    if not missing:
        return
    head = [n for n in head_parameter_names(model) if n in set(missing)]
    if head:
        shown = ", ".join(head[:5]) + (" ..." if len(head) > 5 else "")
        raise ModelLoadError(
            f"{name!r} has no trained scoring head: its weights lack {shown}, which "
            "transformers would initialise at random; refusing to score with a random head"
        )
    raise refuse_missing(name, missing)


def _confirmed_missing(model: Any, name: str, candidates: list[str]) -> list[str]:
    """transformers' own list of the weights it did not find, loading ``name`` again."""
    try:
        dtype = next(model.parameters()).dtype
        _, info = type(model).from_pretrained(name, dtype=dtype, output_loading_info=True)
    except Exception as exc:  # cannot ask: trust the names
        logger.debug("%s: cannot confirm the missing weights: %s", name, exc)
        return candidates
    return sorted(info.get("missing_keys") or [])


def check_tokenizer(tokenizer: Any, name: str) -> None:
    """Raise :class:`ModelLoadError` if the checkpoint brought no real tokenizer.

    Without tokenizer files transformers builds one that knows only its special tokens, so
    every word becomes the unknown token and every pair scores alike.
    """
    if tokenizer is None:
        raise ModelLoadError(f"{name!r} has no tokenizer; refusing to score")
    try:
        vocab = tokenizer.get_vocab()
    except Exception:  # a tokenizer that cannot list its vocabulary: trust it
        return
    specials = set(getattr(tokenizer, "all_special_tokens", ()) or ())
    if not set(vocab) - specials:
        raise ModelLoadError(
            f"{name!r} has no tokenizer (no tokenizer files: its vocabulary holds only special "
            "tokens); refusing to score"
        )
