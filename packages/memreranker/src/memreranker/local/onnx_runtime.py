"""ONNX Runtime for local cross-encoders (``runtime="onnx"``): the export, its cache, the session.

Why a direct export rather than sentence-transformers' ``backend="onnx"``: that path needs
``optimum-onnx``, which requires transformers 4.x (pip downgrades transformers 5 to 4.57 to
install it). ``torch.onnx.export`` (TorchScript exporter, opset 17) of the checkpoint's own
``...ForSequenceClassification`` works with the transformers this package supports, and an
``onnxruntime.InferenceSession`` on it gives the torch logits within float rounding
(encoders are traced with eager attention: see :func:`export_onnx`).

The export happens once, at the first load, into ``$MEMRERANKER_CACHE/onnx/<key>/`` where the
key is a digest of the checkpoint's content (weights, config, tokenizer files) and of the
export parameters (opset, quantization, :data:`EXPORTER_VERSION`): a changed checkpoint is
exported again, an unchanged one is loaded from the cache by every later process. A
checkpoint that ships ``onnx/model.onnx`` (as many Hub cross-encoders do) is used as it is
(and is the source of its int8 file). Each entry is built in a private directory inside the
cache directory and renamed into place, so that a reader never sees half a file and nothing
is written to the system temp directory.

Only tokenization and the forward pass change: :class:`~memreranker.local.crossencoder.
CrossEncoderEngine` still runs ``CrossEncoder.preprocess`` (prompts, chat templates and
truncation exactly as ``CrossEncoder.predict``), length-sorted batches padded to each batch's
longest pair, identical documents scored once, progress per batch.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memreranker.cache_dir import cache_dir
from memreranker.errors import ModelLoadError
from memreranker.local.checkpoint import Checkpoint, checkpoint_file

logger = logging.getLogger("memreranker")

# onnxruntime's telemetry (on by default in its Linux wheels since 1.2x) writes a session file
# ".ses" into the system temp directory when it is imported; nothing of ours may land there.
# A user's own setting of the variable is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

EXPORTER_VERSION = 5
"""Part of the cache key: raise it when the export changes, so old entries are not reused."""
OPSET = 17
SHIPPED_ONNX = "onnx/model.onnx"
"""Where Hub cross-encoders keep their fp32 ONNX export (sentence-transformers' layout)."""
MODEL_FILE = "model.onnx"
MAX_RUN_TOKENS = 256
"""Tokens (rows x padded length) per session run: a batch runs in slices of rows, which stay
in the CPU's caches, on worker threads (see :class:`OnnxForward`). Measured on a
MiniLM-L6-shaped BERT with 2 threads (``benchmarks/local.py`` workloads, fp32 and int8):
slices of 128 to 384 tokens are within 3% of each other; 640 tokens is 4-12% slower, 2,048
tokens 9-29%."""

# The files whose content defines the model's scores: weights (with their shard index), config
# and tokenizer. A change in any of them gives another cache key.
_CONTENT_FILES = (
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "chat_template.jinja",
    "config_sentence_transformers.json",
)
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def file_digest(path: Path) -> str:
    """sha256 of a file, or the Hub cache's own content name for it (no reading needed).

    Files of a Hub snapshot are links to ``blobs/<sha256 or git sha1 of the content>``.
    """
    real = path.resolve()
    if real.parent.name == "blobs" and len(real.name) in (40, 64):
        return real.name
    digest = hashlib.sha256()
    with open(real, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_digest(name: str) -> str:
    """A digest of what the checkpoint's scores depend on (see ``_CONTENT_FILES``)."""
    files = list(_CONTENT_FILES)
    for index in _INDEXES:
        path = checkpoint_file(name, index)
        if path is not None:
            shards = json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()
            files += sorted(set(shards))
    digest = hashlib.sha256()
    found = 0
    for filename in files:
        path = checkpoint_file(name, filename)
        if path is None:
            continue
        found += 1
        digest.update(f"{filename}\0{file_digest(path)}\n".encode())
    if not found:
        raise ModelLoadError(f"{name!r}: no checkpoint files found to export to ONNX")
    return digest.hexdigest()


def cache_root() -> Path:
    """``$MEMRERANKER_CACHE/onnx`` (see :mod:`memreranker.cache_dir`)."""
    return cache_dir() / "onnx"


def _entry_name(source_digest: str, quantize: str | None, shipped: bool) -> str:
    params = f"opset{OPSET}-{quantize or 'fp32'}-v{EXPORTER_VERSION}"
    origin = "shipped" if shipped else "export"
    return f"{source_digest[:24]}-{origin}-{params}"


def _build_entry(target: Path, build: Any) -> Path:
    """``build(directory)`` writes an entry; it is renamed into ``target`` when complete.

    The private directory is inside the cache directory (never the system temp directory),
    so the rename is atomic; when another process finished the same entry first, its copy is
    kept and this one deleted.
    """
    model = target / MODEL_FILE
    if model.is_file():
        return model
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(building)
        try:
            os.replace(building, target)
        except OSError:
            if not model.is_file():  # not another process's finished entry: a real failure
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return model


def input_names(model: Any, features: dict[str, Any]) -> list[str]:
    """The tensors of ``CrossEncoder.preprocess`` that the transformers model takes."""
    accepted = inspect.signature(model.forward).parameters
    return [k for k, v in features.items() if isinstance(v, torch.Tensor) and k in accepted]


class _Logits(torch.nn.Module):
    """The transformers model as a function of positional tensors, returning its logits.

    A decoder (a seq-cls conversion of Qwen3, say) gets its causal + padding mask built here
    from the 2D ``attention_mask``, as a 4D additive mask, which transformers uses as it is:
    transformers 4.x builds that mask with ``torch.vmap``, which the TorchScript exporter
    cannot trace (``RuntimeError: unordered_map::at``). The mask is the one transformers
    builds (key is a real token and not in the future), so the scores do not change.
    """

    def __init__(self, model: Any, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.causal = "attention_mask" in self.names and is_decoder_only(model)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(self.names, tensors, strict=True))
        if self.causal:
            keys = inputs["attention_mask"].bool()[:, None, None, :]
            length = keys.shape[-1]
            # A comparison, not tril(): ONNX Runtime before 1.18 has no boolean Trilu.
            position = torch.arange(length, device=keys.device)
            past = position[None, :] <= position[:, None]
            allowed = keys & past[None, None]
            dtype = self.model.dtype
            inputs["attention_mask"] = torch.zeros(allowed.shape, dtype=dtype).masked_fill(
                ~allowed, torch.finfo(dtype).min
            )
        return self.model(**inputs).logits


def is_decoder_only(model: Any) -> bool:
    """Whether ``model`` is a decoder-only architecture (causal attention): it has a causal
    LM and no masked LM in transformers' auto mappings (BERT and XLM-R have both)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    kind = getattr(model.config, "model_type", None)
    causal, masked = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return kind in causal and kind not in masked


def export_onnx(model: Any, features: dict[str, Any], directory: Path) -> None:
    """Write ``model`` (a one-label seq-cls transformers model) as ``directory/model.onnx``.

    ``features`` (a preprocessed batch of probe pairs) fixes the input names and traces the
    graph; batch and sequence axes stay dynamic. An encoder (BERT, XLM-R...) is traced with
    transformers' eager attention: traced from SDPA attention (transformers' default), ONNX
    Runtime was 1.16x slower on long pairs (the RAG workload of ``benchmarks/local.py``). A
    decoder is traced as it is.
    """
    names = input_names(model, features)
    traced = model if is_decoder_only(model) else _eager_copy(model)
    wrapper = _Logits(traced, names).eval()
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    with warnings.catch_warnings(), torch.inference_mode():
        # The tracer's warnings are about Python branches it records once; the self-check
        # after loading compares the session with torch on other shapes.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            tuple(features[n] for n in names),
            str(directory / MODEL_FILE),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _eager_copy(model: Any) -> Any:
    """``model`` with transformers' eager attention, sharing its weights.

    Eager attention traces to MatMul, Softmax, MatMul, which ONNX Runtime runs faster than
    what SDPA traces to (see :func:`export_onnx`). A new instance is built because
    transformers 4.x picks the attention class when the model is built; the weights are then
    assigned to it (its non-persistent buffers, position ids, are the constructor's own).
    """
    config = copy.deepcopy(model.config)
    config._attn_implementation = "eager"
    eager = type(model)(config)
    eager.load_state_dict(model.state_dict(), assign=True)
    return eager.eval()


def quantize_int8(source: Path, directory: Path) -> None:
    """Dynamic int8 quantization of ``source`` (weights QInt8, activations at run time).

    The source is copied into ``directory`` first: the quantizer writes a shape-inferred copy
    beside its input, which must not land in another cache entry. (Fusing the graph first
    with onnxruntime's transformer optimizer, so that attention quantizes into
    ``QAttention``, was measured too: within 3% of this on both workloads of
    ``benchmarks/local.py``, so the graph is quantized as exported.)
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    copy = directory / "fp32.onnx"
    shutil.copyfile(source, copy)
    quiet = _QuantizerLogs()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        quantize_dynamic(str(copy), str(directory / MODEL_FILE), weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(quiet)
    copy.unlink()


class _QuantizerLogs(logging.Filter):
    """Drops what onnxruntime's quantizer logs on the root logger while it runs: a warning
    advising pre-processing (not needed for dynamic quantization of these graphs) and a line
    per tensor, which would reach users' consoles through logging's last-resort handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/onnxruntime/quantization/" not in record.pathname.replace("\\", "/")


def onnx_model_file(
    checkpoint: Checkpoint, model: Any, features: dict[str, Any], quantize: str | None
) -> Path:
    """The ONNX file to score ``checkpoint`` with: shipped, cached, or exported now; its
    int8 copy with ``quantize="int8"``."""
    name = checkpoint.name
    shipped = checkpoint_file(name, SHIPPED_ONNX)
    if shipped is not None and shipped.stat().st_size > 0:
        if quantize is None:
            logger.info("%s: scoring with its own ONNX file %s", name, shipped)
            return shipped
        source = shipped
        digest = file_digest(shipped)
    else:
        digest = content_digest(name)
        entry = cache_root() / _entry_name(digest, None, shipped=False)
        source = entry / MODEL_FILE
        if source.is_file():
            logger.info("%s: ONNX export found in the cache: %s", name, source)
        else:
            started = time.perf_counter()
            _build_entry(entry, lambda d: export_onnx(model, features, d))
            logger.info(
                "%s: exported to ONNX in %.1f s: %s", name, time.perf_counter() - started, source
            )
        if quantize is None:
            return source
    entry = cache_root() / _entry_name(digest, quantize, shipped=shipped is not None)
    target = entry / MODEL_FILE
    if target.is_file():
        logger.info("%s: int8 ONNX file found in the cache: %s", name, target)
        return target
    started = time.perf_counter()
    _build_entry(entry, lambda d: quantize_int8(source, d))
    logger.info(
        "%s: quantized the ONNX file to int8 in %.1f s: %s",
        name,
        time.perf_counter() - started,
        target,
    )
    return target


def default_threads() -> int:
    """torch's intra-op thread count: the physical cores, or what the user set for torch
    (``torch.set_num_threads``, ``OMP_NUM_THREADS``)."""
    return max(1, torch.get_num_threads())


class OnnxForward:
    """An ``onnxruntime.InferenceSession`` called like the torch forward of the engine:
    preprocessed features in, one logit per pair out (a float32 tensor).

    A batch runs as slices of rows (at most :data:`MAX_RUN_TOKENS` tokens, and at least as
    many slices as ``threads``), each slice a single-threaded session run, ``threads`` of
    them at once on worker threads. Measured against one run at a time on ``threads``
    intra-op threads (2 threads, ``benchmarks/local.py``): RAG workload fp32 0.61 s instead
    of 0.71 s, int8 0.34 s instead of 0.40 s; memory workload 2-9% faster. The scores are the
    same: a row's logits do not depend on the rows beside it (fp32); int8 activations are
    quantized per run, as before. The cost: a call of a single pair runs on one thread (one
    260-token pair: 38 ms instead of 26 ms on 2 intra-op threads; ``CrossEncoder.predict``:
    26 ms; two such pairs: 41 ms, ``predict`` 46 ms). Concurrent runs on a session with an
    intra-op pool were measured too: 5-11% slower than this on both workloads (the runs
    contend for the pool)."""

    def __init__(self, path: Path, *, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread per run; the parallelism is across runs (see the class docstring), so
        # there is no intra-op pool whose idle threads would spin or wait to be woken.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # its warnings about unused initialisers are noise
        self.path = path
        self.threads = threads
        self.session: Any = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.output = self.session.get_outputs()[0].name
        # Its threads start on the first call that has more than one slice.
        self._workers: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="memreranker-onnx")
            if threads > 1
            else None
        )

    def __call__(self, features: dict[str, Any]) -> torch.Tensor:
        session, workers = self.session, self._workers
        if session is None:
            raise RuntimeError("the ONNX Runtime session was closed")
        arrays = {}
        for name in self.inputs:
            value = features.get(name)
            if not isinstance(value, torch.Tensor):
                raise RuntimeError(f"the ONNX model takes {name!r}, which the tokenizer lacks")
            arrays[name] = value.numpy()
        mask = arrays.get("attention_mask")
        rows, width = next(iter(arrays.values())).shape
        step = max(1, min(MAX_RUN_TOKENS // max(1, width), -(-rows // self.threads)))
        feeds = []
        for start in range(0, rows, step):
            feed = {name: a[start : start + step] for name, a in arrays.items()}
            if mask is not None:
                # Trailing columns that are padding in every row of this slice are dropped:
                # masked, they change no score (the pairs are sorted, so slices pad less).
                used = int(mask[start : start + step].any(axis=0).nonzero()[0].max(initial=0)) + 1
                if used < width:
                    feed = {name: a[:, :used] for name, a in feed.items()}
            feeds.append(feed)

        def run(feed: dict[str, np.ndarray]) -> np.ndarray:
            return session.run([self.output], feed)[0]

        if len(feeds) == 1 or workers is None:
            out = [run(feed) for feed in feeds]
        else:
            out = list(workers.map(run, feeds))
        return torch.from_numpy(out[0] if len(out) == 1 else np.concatenate(out))

    def close(self) -> None:
        """Drop the session (its memory is freed once no one else holds it) and stop the
        worker threads. (The local backend calls it under the lock its calls hold, so no call
        is scoring meanwhile.)"""
        self.session = None
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=False)


# Probe pairs: the export traces two, the check after loading runs four others (another batch
# size and other lengths, an empty document, non-ASCII text).
_TRACE_PAIRS = (
    ("Where does the user's sister live?", "The user's sister Anna lives in Berlin."),
    ("q", "Flight to Berlin booked for May."),
)
_CHECK_PAIRS = (
    ("Where does the user's sister live?", "The user's sister Anna lives in Berlin."),
    ("q", ""),
    ("用户喜欢什么", "用户喜欢打羽毛球 🎉"),
    ("What does the user drink?", "The user drinks green tea every morning. " * 12),
)


def load_onnx_forward(
    checkpoint: Checkpoint, model: Any, *, quantize: str | None, threads: int | None
) -> OnnxForward:
    """The session for ``checkpoint`` (exported from ``model``, a ``CrossEncoder``, or found),
    checked against torch on probe pairs of other shapes than the traced ones: an fp32 session
    must give torch's logits within 1e-4, an int8 one finite logits, one per pair.

    Raises:
        ModelLoadError: onnxruntime is missing (``memreranker[onnx]``), or the export, the
            session or the check failed.
    """
    from memreranker.local.crossencoder import default_prompt

    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(
            f'runtime="onnx" needs onnxruntime ({exc}): pip install "memreranker[onnx]"'
        ) from exc
    hf_model = model.model
    prompt = default_prompt(model)
    trace = model.preprocess(list(_TRACE_PAIRS), prompt=prompt)
    check = model.preprocess(list(_CHECK_PAIRS), prompt=prompt)
    path = onnx_model_file(checkpoint, hf_model, trace, quantize)
    forward = OnnxForward(path, threads=threads or default_threads())
    names = input_names(hf_model, check)
    with torch.inference_mode():
        want = hf_model(**{n: check[n] for n in names}).logits.float().reshape(-1)
    got = forward(check).float().reshape(-1)
    if got.shape != want.shape or not bool(torch.isfinite(got).all()):
        raise ModelLoadError(
            f"{path}: the ONNX model gives {tuple(got.shape)} logits, not one per pair"
        )
    if quantize is None:
        worst = float((got - want).abs().max())
        if worst > 1e-4:
            raise ModelLoadError(f"{path}: its logits differ from torch's by {worst:.3g}")
    return forward
