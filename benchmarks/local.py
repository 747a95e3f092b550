#!/usr/bin/env python
"""Local scoring: this project vs ``CrossEncoder.predict`` vs the model card's transformers code.

Three model families (``--family``), each a random model of a realistic shape scored by every
method of the family on the same pairs:

* ``yes-no`` (default): a random Qwen3 yes/no reranker (``build_test_model``: the real Qwen3
  tokenizer, Qwen3-0.6B's width by default, fewer layers), like MemReranker;
* ``cross-encoder``: a random BERT cross-encoder of ``cross-encoder/ms-marco-MiniLM-L6-v2``'s
  shape (hidden 384, 6 layers, 12 heads, one label; ``build_test_cross_encoder`` with the
  benchmark's words in its vocabulary);
* ``seq-cls``: the seq-cls conversion of the ``yes-no`` model
  (``build_test_qwen3_cross_encoder``), like ``tomaarsen/Qwen3-Reranker-0.6B-seq-cls``.

Two workloads:

* memory: 1 query of ~16 tokens, 64 memories of 8 to 48 tokens (an agent's recall);
* rag: 1 query, 32 chunks of ~256 tokens.

Methods (``--methods``, default all of the family):

* yes-no: ``prefix``: ``MemReranker(engine="prefix")``, the default (shared prefix run once);
  ``batched``: ``MemReranker(engine="batched")``, the model card's recipe, batched;
  ``st-engine``: ``MemReranker(engine="crossencoder")``, this project through
  sentence-transformers; ``crossencoder``: ``sentence_transformers.CrossEncoder.predict``
  (native ``LogitScore`` loading, ``activation_fn=Sigmoid``, its default batch size 32), given
  the reranker prompt as a chat template and the instruction as its default prompt, like the
  published checkpoint; ``recipe``: the model card's transformers code as written
  (full-vocabulary logits), run under ``torch.inference_mode`` in chunks of ``--batch-size``.
* cross-encoder: ``memreranker``: ``MemReranker(model=...)`` (sentence-transformers path);
  ``onnx`` / ``onnx-int8``: ``MemReranker(model=..., runtime="onnx")``, fp32 / with
  ``quantize="int8"`` (ONNX Runtime, ``--threads`` intra-op threads);
  ``predict``: ``CrossEncoder(path).predict(pairs)``, as a user would call it;
  ``flashrank`` / ``flashrank-int8``: FlashRank's ``Ranker.rerank`` on the very ONNX files the
  ``onnx`` methods score with (exported once by the parent into $MEMRERANKER_CACHE, placed in
  FlashRank's offline cache layout with the checkpoint's tokenizer and config files), its
  session rebuilt with ``--threads`` intra-op threads (its other session options its own).
  sentence-transformers' ``backend="onnx"`` is not a method: it needs optimum-onnx, which
  installs only with transformers 4.x (pip downgrades transformers 5 to 4.57.6).
* seq-cls: ``prefix``: ``MemReranker(model=...)``, served by the prefix engine;
  ``st-engine``: ``MemReranker(engine="crossencoder")``; ``predict``: ``CrossEncoder.predict``
  with the checkpoint's own prompt.

Usage::

    python benchmarks/local.py                                  # CPU, float32, 4 layers
    python benchmarks/local.py --family cross-encoder
    python benchmarks/local.py --device cuda --dtype bfloat16 --hidden 2560 --layers 4

Timing: all methods load in one process and their calls are interleaved round-robin (the
order rotating each round) after one warm-up call each, so that a change in machine load hits
every method alike; the table shows the median per call.

Memory: a fresh process per method (warm-up call, then one call): peak RSS (``VmHWM``, reset
after loading) on CPU, ``torch.cuda.max_memory_allocated`` on CUDA; "delta" is that peak minus
the memory after loading. On CPU the weights are memory-mapped, so RSS counts only the weight
pages a method touches. Token counts are the tokens fed to the transformer per call, padding
included. That process then times three more calls: "ms/call alone" is the fastest, each
method alone in its process (interleaved, torch's calls were measured up to 30% slower than
alone beside ONNX Runtime's sessions; ONNX Runtime's within 7%).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and benchmarks/http.py would shadow the
# standard library's ``http`` package (imported by requests, httpx, huggingface_hub).
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAMILIES: dict[str, dict[str, Any]] = {
    "yes-no": {
        "methods": ("prefix", "batched", "st-engine", "crossencoder", "recipe"),
        "baseline": "crossencoder",
    },
    "cross-encoder": {
        "methods": (
            "memreranker",
            "onnx",
            "onnx-int8",
            "predict",
            "flashrank",
            "flashrank-int8",
        ),
        "baseline": "predict",
        # Also compared round by round: the targets of the ONNX runtime (issue 24).
        "pairs": (("onnx", "flashrank"), ("onnx-int8", "flashrank-int8"), ("onnx", "memreranker")),
    },
    "seq-cls": {"methods": ("prefix", "st-engine", "predict"), "baseline": "predict"},
}
ALONE_CALLS = 3
"""Calls timed in each method's own process after its memory run (the fastest is shown)."""
MINILM = {"hidden_size": 384, "num_layers": 6, "num_heads": 12, "intermediate_size": 1536}
WORKLOADS = ("memory", "rag")
HEAD_DIM = 128
INTERMEDIATE = {1024: 3072, 2560: 9728}  # Qwen3-0.6B, Qwen3-4B
HEADS = {1024: 16, 2560: 32}

QUERY = "What did the user tell me about their sister's trip to Berlin next month?"
WORDS = (
    "user sister Anna Berlin flight booked May June trip hotel near park said likes tea "
    "coffee baijiu dinner friday meeting Bob moved office Hangzhou backend developer dog "
    "Biscuit walk twice day birthday passport expires window seat allergic peanuts train "
    "museum weekend rain cancelled rescheduled visit parents Shanghai gift book concert "
    "remember prefers spicy noodles late evening call mother plans holiday budget cheap"
).split()


# Workloads ------------------------------------------------------------------------------


def _sentence(rng: random.Random, tokenizer: Any, target: int) -> str:
    words: list[str] = []
    while True:
        words.append(rng.choice(WORDS))
        text = " ".join(words).capitalize() + "."
        if len(tokenizer.encode(text, add_special_tokens=False)) >= target:
            return text


def make_workloads(tokenizer: Any) -> dict[str, dict[str, Any]]:
    rng = random.Random(1234)
    memories = [_sentence(rng, tokenizer, rng.randint(8, 48)) for _ in range(64)]
    chunks = [_sentence(rng, tokenizer, 256) for _ in range(32)]
    assert len(set(memories)) == 64 and len(set(chunks)) == 32
    return {
        "memory": {"query": QUERY, "documents": memories},
        "rag": {"query": QUERY, "documents": chunks},
    }


# The model ------------------------------------------------------------------------------


def build_model(path: Path, *, hidden: int, layers: int, heads: int, kv_heads: int) -> Path:
    """``build_test_model`` with Qwen3's head_dim of 128 (hidden / heads may differ)."""
    from memreranker.testing import build_test_model

    kwargs: dict[str, Any] = dict(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        intermediate_size=INTERMEDIATE.get(hidden, 3 * hidden),
    )
    if "head_dim" in inspect.signature(build_test_model).parameters:
        return build_test_model(path, head_dim=HEAD_DIM, **kwargs)
    if hidden // heads == HEAD_DIM:
        return build_test_model(path, **kwargs)
    # build_test_model derives head_dim = hidden // heads; Qwen3 decouples them.
    import transformers

    base = transformers.Qwen3Config

    class Qwen3ConfigWithHeadDim(base):  # type: ignore[misc, valid-type]
        def __init__(self, **kw: Any) -> None:
            kw["head_dim"] = HEAD_DIM
            super().__init__(**kw)

    transformers.Qwen3Config = Qwen3ConfigWithHeadDim
    try:
        return build_test_model(path, **kwargs)
    finally:
        transformers.Qwen3Config = base


# Child process: one method, one workload ------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def chat_template() -> str:
    """The reranker prompt as a chat template for CrossEncoder's query/document roles."""
    from memreranker.local.crossencoder import CARD_CHAT_TEMPLATE

    return CARD_CHAT_TEMPLATE


def _embedded_model(reranker: Any) -> Any:
    """The transformers model a MemReranker feeds (its input embeddings count the tokens)."""
    engine = reranker._backend.load()
    loaded = getattr(engine, "loaded", None)
    return loaded.decoder if loaded is not None else engine.model.model


FLASHRANK_NAME = "ms-marco-MiniLM-L-12-v2"
"""The model name FlashRank is given: any name of its ``model_file_map`` loads offline from
``cache_dir/<name>/<its file>``; the file placed there is this benchmark's export."""
FLASHRANK_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "config.json",
    "special_tokens_map.json",
)


def flashrank_file() -> str:
    from flashrank.Config import model_file_map

    return str(model_file_map[FLASHRANK_NAME])


class _TokenCounter:
    """Tokens fed to an ONNX session (the methods without a torch embedding layer to hook)."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, n: int) -> None:
        self.count += n


def prepare_onnx(model_dir: Path, cache: Path, threads: int | None) -> dict[str, str]:
    """Export (or find) the fp32 and int8 ONNX files as ``runtime="onnx"`` does, and lay each
    out for FlashRank offline; returns the FlashRank cache dir of each FlashRank method."""
    import shutil

    from memreranker import MemReranker

    dirs = {}
    for method, quantize in (("flashrank", None), ("flashrank-int8", "int8")):
        reranker = MemReranker(
            model=str(model_dir), runtime="onnx", quantize=quantize, on_error="raise"
        )
        engine = reranker._backend.load()  # type: ignore[attr-defined]
        if engine.runtime != "onnx":
            raise SystemExit("the ONNX export failed (see the warning above)")
        source = Path(engine.forward.path)
        reranker.close()
        root = cache / f"bench-flashrank-{source.parent.name}"
        target = root / FLASHRANK_NAME
        target.mkdir(parents=True, exist_ok=True)
        link = target / flashrank_file()
        if not link.exists():
            link.symlink_to(source)
        for name in FLASHRANK_FILES:
            if (target / name).exists():
                continue
            if (model_dir / name).exists():
                shutil.copyfile(model_dir / name, target / name)
            elif name == "special_tokens_map.json":  # transformers 5 no longer writes it
                from transformers import AutoTokenizer

                specials = AutoTokenizer.from_pretrained(str(model_dir)).special_tokens_map
                (target / name).write_text(json.dumps(specials))
        dirs[method] = str(root)
    return dirs


def _make_runner(
    family: str,
    method: str,
    model_dir: str,
    device: str,
    dtype: str,
    batch_size: int | None,
    threads: int | None = None,
    flashrank_dirs: dict[str, str] | None = None,
) -> Any:
    flashrank_dirs = flashrank_dirs or {}
    import torch

    torch_dtype = getattr(torch, dtype)
    engines = {"prefix": "prefix", "batched": "batched", "st-engine": "crossencoder"}
    if method in engines or method == "memreranker":
        from memreranker import MemReranker

        reranker = MemReranker(
            model=model_dir,
            engine=engines.get(method, "prefix"),
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            on_error="raise",
        )
        reranker.load()
        served = reranker._backend.load().name  # type: ignore[attr-defined]
        wanted = engines.get(method, "crossencoder")
        if served != wanted:
            raise SystemExit(f"{method}: MemReranker chose the {served} engine, not {wanted}")

        def run(query: str, docs: list[str]) -> list[float]:
            by_index = {r.index: r.score for r in reranker.rerank(query, docs)}
            return [by_index[i] for i in range(len(docs))]

        return run, _embedded_model(reranker)

    if method in ("onnx", "onnx-int8"):
        from memreranker import MemReranker

        reranker = MemReranker(
            model=model_dir,
            runtime="onnx",
            quantize="int8" if method == "onnx-int8" else None,
            threads=threads,
            batch_size=batch_size,
            on_error="raise",
        )
        engine = reranker._backend.load()  # type: ignore[attr-defined]
        if engine.runtime != "onnx":
            raise SystemExit(f"{method}: MemReranker fell back to torch")
        fed = _TokenCounter()
        forward = engine.forward

        def counted(features: dict[str, Any]) -> Any:
            fed.add(int(features["input_ids"].numel()))
            return forward(features)

        engine.forward = counted

        def run(query: str, docs: list[str]) -> list[float]:
            by_index = {r.index: r.score for r in reranker.rerank(query, docs)}
            return [by_index[i] for i in range(len(docs))]

        return run, fed

    if method in ("flashrank", "flashrank-int8"):
        import onnxruntime as ort
        from flashrank import Ranker, RerankRequest

        ranker = Ranker(
            model_name=FLASHRANK_NAME,
            cache_dir=flashrank_dirs[method],
            max_length=512,
            log_level="WARNING",
        )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        model_file = ranker.model_dir / flashrank_file()
        ranker.session = ort.InferenceSession(str(model_file), sess_options=options)
        fed = _TokenCounter()
        session_run = ranker.session.run

        class CountingSession:
            def run(self, names: Any, feed: dict[str, Any]) -> Any:
                fed.add(int(feed["input_ids"].size))
                return session_run(names, feed)

        ranker.session = CountingSession()

        def run(query: str, docs: list[str]) -> list[float]:
            passages = [{"id": i, "text": d} for i, d in enumerate(docs)]
            ranked = ranker.rerank(RerankRequest(query=query, passages=passages))
            by_id = {p["id"]: float(p["score"]) for p in ranked}
            return [by_id[i] for i in range(len(docs))]

        return run, fed

    if method == "predict":
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(model_dir, device=device, model_kwargs={"dtype": torch_dtype})

        def run(query: str, docs: list[str]) -> list[float]:
            return [float(s) for s in ce.predict([(query, d) for d in docs])]

        return run, ce.model

    if method == "crossencoder":
        from sentence_transformers import CrossEncoder
        from sentence_transformers.cross_encoder.modules import LogitScore

        from memreranker.local.prompt import DEFAULT_INSTRUCTION

        ce = CrossEncoder(
            model_dir,
            device=device,
            model_kwargs={"dtype": torch_dtype, "attn_implementation": "sdpa"},
            processor_kwargs={"chat_template": chat_template()},
            prompts={"query": DEFAULT_INSTRUCTION},
            default_prompt_name="query",
        )
        modules = list(ce)
        hf_model = ce.model
        ok = (
            len(modules) == 2
            and isinstance(modules[1], LogitScore)
            and getattr(modules[0], "transformer_task", None) == "text-generation"
            and type(hf_model).__name__.endswith("ForCausalLM")
            and (modules[1].true_token_id, modules[1].false_token_id) == (9693, 2152)
        )
        if not ok:
            names = [type(m).__name__ for m in modules]
            raise SystemExit(
                f"CrossEncoder did not load the yes/no LogitScore head (modules {names}, "
                f"model {type(hf_model).__name__}): it may have attached a random "
                "classification head; refusing to benchmark it"
            )
        sigmoid = torch.nn.Sigmoid()

        def run(query: str, docs: list[str]) -> list[float]:
            scores = ce.predict([(query, d) for d in docs], activation_fn=sigmoid)
            return [float(s) for s in scores]

        return run, hf_model.base_model

    if method == "recipe":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from memreranker.local.prompt import DEFAULT_INSTRUCTION, PREFIX, SUFFIX

        tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch_dtype, attn_implementation="sdpa"
        )
        model = model.to(device).eval()
        token_false_id = tokenizer.convert_tokens_to_ids("no")
        token_true_id = tokenizer.convert_tokens_to_ids("yes")
        max_length = 8192
        prefix_tokens = tokenizer.encode(PREFIX, add_special_tokens=False)
        suffix_tokens = tokenizer.encode(SUFFIX, add_special_tokens=False)

        def format_instruction(instruction: str | None, query: str, doc: str) -> str:
            if instruction is None:
                instruction = DEFAULT_INSTRUCTION
            return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}"

        def process_inputs(pairs: list[str]) -> Any:
            inputs = tokenizer(
                pairs,
                padding=False,
                truncation="longest_first",
                return_attention_mask=False,
                max_length=max_length - len(prefix_tokens) - len(suffix_tokens),
            )
            for i, ele in enumerate(inputs["input_ids"]):
                inputs["input_ids"][i] = prefix_tokens + ele + suffix_tokens
            inputs = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
            for key in inputs:
                inputs[key] = inputs[key].to(model.device)
            return inputs

        def compute_logits(inputs: Any) -> list[float]:
            batch_scores = model(**inputs).logits[:, -1, :]
            true_vector = batch_scores[:, token_true_id]
            false_vector = batch_scores[:, token_false_id]
            batch_scores = torch.stack([false_vector, true_vector], dim=1)
            batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
            return batch_scores[:, 1].exp().tolist()

        def run(query: str, docs: list[str]) -> list[float]:
            pairs = [format_instruction(None, query, d) for d in docs]
            scores: list[float] = []
            step = batch_size or 16
            with torch.inference_mode():
                for start in range(0, len(pairs), step):
                    scores += compute_logits(process_inputs(pairs[start : start + step]))
            return scores

        return run, model.base_model

    raise SystemExit(f"unknown method {method!r}")


def _setup_child(spec: dict[str, Any]) -> Any:
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    return torch


def child_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """One method in a fresh process: peak memory of scoring, tokens fed, scores."""
    torch = _setup_child(spec)
    device = spec["device"]
    cuda = device.startswith("cuda")
    run, decoder = _make_runner(
        spec["family"],
        spec["method"],
        spec["model_dir"],
        device,
        spec["dtype"],
        spec["batch_size"],
        spec["threads"],
        spec.get("flashrank_dirs"),
    )
    counter = decoder if isinstance(decoder, _TokenCounter) else _TokenCounter()

    def count(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = args[0] if args else kwargs.get("input")
        counter.add(int(ids.numel()))

    if not isinstance(decoder, _TokenCounter):
        decoder.get_input_embeddings().register_forward_pre_hook(count, with_kwargs=True)
    query, docs = spec["query"], spec["documents"]
    rss_loaded = _status_kb("VmRSS") / 1024
    hwm_reset = _reset_peak_rss()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        rss_loaded = torch.cuda.memory_allocated() / 2**20
    run(query, docs)  # warm-up
    counter.count = 0
    scores = run(query, docs)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = _status_kb("VmHWM") / 1024 if hwm_reset else float("nan")
    fed = counter.count
    # The same calls again, alone in this process (no other method's threads or caches
    # beside them): a check on the interleaved timing, which is the one the ratios use.
    alone = []
    for _ in range(ALONE_CALLS):
        start = time.perf_counter()
        run(query, docs)
        if cuda:
            torch.cuda.synchronize()
        alone.append(time.perf_counter() - start)
    return {
        "scores": scores,
        "fed_tokens": fed,
        "loaded_mb": rss_loaded,
        "peak_mb": peak,
        "alone_s": min(alone),
    }


def child_timing(spec: dict[str, Any]) -> dict[str, Any]:
    """Every method in one process, calls interleaved round-robin (rotating the order), so
    that a change in machine load hits all methods alike. Progress lines go to stderr."""
    torch = _setup_child(spec)
    device = spec["device"]
    cuda = device.startswith("cuda")
    methods = spec["methods"]
    runners = {}
    for method in methods:
        runners[method], _ = _make_runner(
            spec["family"],
            method,
            spec["model_dir"],
            device,
            spec["dtype"],
            spec["batch_size"],
            spec["threads"],
            spec.get("flashrank_dirs"),
        )
    query, docs = spec["query"], spec["documents"]
    for method in methods:
        runners[method](query, docs)  # warm-up
        print(f"PROGRESS warm {method}", file=sys.stderr, flush=True)
    times: dict[str, list[float]] = {m: [] for m in methods}
    active = list(methods)
    for round_ in range(spec["repeats"]):
        shift = round_ % len(active)
        for method in active[shift:] + active[:shift]:
            start = time.perf_counter()
            runners[method](query, docs)
            if cuda:
                torch.cuda.synchronize()
            times[method].append(time.perf_counter() - start)
        print(f"PROGRESS round {round_}", file=sys.stderr, flush=True)
        # A very slow method stops after max_seconds (with at least 2 timed calls).
        active = [m for m in active if len(times[m]) < 2 or sum(times[m]) < spec["max_seconds"]]
    return {"times": times, "threads": torch.get_num_threads()}


# Parent ---------------------------------------------------------------------------------


def ideal_tokens(tokenizer: Any, query: str, docs: list[str]) -> tuple[int, int]:
    """(tokens of the full prompts, tokens of the shared prefix once + every tail)."""
    from memreranker.local.prefix_engine import common_prefix_length
    from memreranker.local.prompt import PREFIX, SUFFIX, format_body

    prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    bodies = tokenizer(
        [format_body(None, query, d) for d in docs],
        truncation="longest_first",
        max_length=8192 - len(prefix) - len(suffix),
    )["input_ids"]
    prompts = [prefix + b + suffix for b in bodies]
    shared = common_prefix_length(prompts)
    full = sum(len(p) for p in prompts)
    return full, full - shared * (len(prompts) - 1)


def run_child(spec: dict[str, Any], progress: Any = None) -> dict[str, Any]:
    """Run ``spec`` in a fresh interpreter; stderr lines starting PROGRESS tick ``progress``."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", f.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "ORT_DISABLE_TELEMETRY": "1",  # else onnxruntime writes /tmp/.ses
            },
        )
        errors: list[str] = []
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:
            if line.startswith("PROGRESS"):
                if progress is not None:
                    progress.update()
            else:
                errors.append(line.rstrip())
        out = proc.stdout.read()
        proc.wait()
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        return {"error": (errors or out.strip().splitlines() or ["failed"])[-1:]}
    return json.loads(out.strip().splitlines()[-1])


def median_memory(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's memory runs folded into one: the median peak (and its delta); the first
    error if any run failed."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    ordered = sorted(runs, key=lambda r: r["peak_mb"])
    middle = ordered[(len(ordered) - 1) // 2]
    alone = min(r["alone_s"] for r in runs)
    return {**middle, "peak_runs_mb": [r["peak_mb"] for r in runs], "alone_s": alone}


def fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x != x else f"{x:,.{digits}f}"


def report(
    workload: str,
    n_docs: int,
    results: dict[str, dict[str, Any]],
    ideal: tuple[int, int] | None,
    cuda: bool,
    baseline: str,
    pairs: tuple[tuple[str, str], ...] = (),
) -> None:
    ok = {m: r for m, r in results.items() if "error" not in r}
    base = ok.get(baseline)
    mem = "peak GPU MB" if cuda else "peak RSS MB"
    print(f"\n### {workload}: {n_docs} documents per call\n")
    print(
        f"| method | pairs/s | median ms/call | calls | ms/call alone | {mem} | delta MB "
        f"| tokens/call | pairs/s vs {baseline} | alone vs {baseline} | memory vs {baseline} |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rate: dict[str, float] = {}
    for method, r in results.items():
        if "error" in r:
            print(f"| {method} | error: {' '.join(r['error'])[:80]} | | | | | | | | | |")
            continue
        median = statistics.median(r["times"])
        rate[method] = n_docs / median
        delta = r["peak_mb"] - r["loaded_mb"]
        vs = rate[method] / (n_docs / statistics.median(base["times"])) if base else float("nan")
        mem_vs = r["peak_mb"] / base["peak_mb"] if base else float("nan")
        alone_vs = base["alone_s"] / r["alone_s"] if base else float("nan")
        print(
            f"| {method} | {fmt(rate[method])} | {fmt(median * 1000)} | {len(r['times'])} "
            f"| {fmt(r['alone_s'] * 1000)} | {fmt(r['peak_mb'], 0)} | {fmt(delta, 0)} "
            f"| {fmt(r['fed_tokens'], 0)} | {fmt(vs, 2)}x | {fmt(alone_vs, 2)}x "
            f"| {fmt(mem_vs, 2)}x |"
        )
    if ideal is not None:
        full, once = ideal
        ceiling = full / once
        print(
            f"\nTokens per call: full prompts {full:,}, shared prefix once {once:,}; "
            f"ceiling {ceiling:.2f}x."
        )
        if "prefix" in rate:
            for other in (baseline, "batched"):
                if other in rate:
                    speedup = rate["prefix"] / rate[other]
                    print(
                        f"prefix vs {other}: {speedup:.2f}x = {100 * speedup / ceiling:.0f}% of "
                        "the token ceiling."
                    )
    paired = [m for m in results if m in ok and m in rate]
    if base is not None:
        # Per-round ratios: each round timed every method back to back, so this ratio is the
        # least sensitive to the machine's load changing during the run.
        for method in paired:
            if method == baseline:
                continue
            rounds = [b / m for m, b in zip(ok[method]["times"], base["times"], strict=False)]
            best = min(base["times"]) / min(ok[method]["times"])
            print(
                f"{method} vs {baseline}, pairs/s per round: median "
                f"{statistics.median(rounds):.3f}x, min {min(rounds):.3f}x, "
                f"max {max(rounds):.3f}x ({len(rounds)} rounds); "
                f"fastest call vs fastest call: {best:.3f}x."
            )
    for method, other in pairs:
        if method in ok and other in ok:
            rounds = [b / m for m, b in zip(ok[method]["times"], ok[other]["times"], strict=False)]
            print(
                f"{method} vs {other}, pairs/s per round: median "
                f"{statistics.median(rounds):.3f}x, min {min(rounds):.3f}x, "
                f"max {max(rounds):.3f}x ({len(rounds)} rounds)."
            )
    memory_runs = {
        m: r["peak_runs_mb"] for m, r in ok.items() if len(r.get("peak_runs_mb", [])) > 1
    }
    if memory_runs:
        shown = "; ".join(
            f"{m} {', '.join(f'{x:,.0f}' for x in v)}" for m, v in memory_runs.items()
        )
        print(f"Peak memory of each fresh process (MB; the table shows the median): {shown}.")
    diffs = []
    for i, a in enumerate(paired):
        for b in paired[i + 1 :]:
            d = max(abs(x - y) for x, y in zip(ok[a]["scores"], ok[b]["scores"], strict=True))
            diffs.append(f"{a}/{b} {d:.1e}")
    if diffs:
        print("Max |score difference|: " + ", ".join(diffs) + ".")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=1024, help="1024: 0.6B width, 2560: 4B")
    parser.add_argument("--heads", type=int, default=None, help="16 for 1024, 32 for 2560")
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (1 call/method)")
    parser.add_argument(
        "--max-seconds", type=float, default=300, help="stop timing a method after this long"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="MemReranker and recipe; default: MemReranker's own (16 yes/no, 32 cross-encoder), "
        "16 for the recipe",
    )
    parser.add_argument("--family", choices=sorted(FAMILIES), default="yes-no")
    parser.add_argument("--methods", default=None, help="comma-separated; default: the family's")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--model-dir", type=Path, default=None, help="reuse or build here")
    parser.add_argument(
        "--memory-runs", type=int, default=1, help="fresh processes per method for memory (median)"
    )
    parser.add_argument("--save-json", type=Path, default=None, help="also write raw results")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        spec = json.loads(Path(args.child).read_text())
        result = child_timing(spec) if spec["kind"] == "timing" else child_memory(spec)
        print(json.dumps(result))
        return

    from tqdm import tqdm
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    cuda = args.device.startswith("cuda")
    dtype = args.dtype or ("bfloat16" if cuda else "float32")
    heads = args.heads or HEADS.get(args.hidden, args.hidden // HEAD_DIM)
    family = FAMILIES[args.family]
    from memreranker.stand_in import cache_dir

    # Reused across runs (the models are deterministic), in memreranker's cache directory
    # ($MEMRERANKER_CACHE, default ~/.cache/memreranker), never in the system temp dir.
    cache = cache_dir()
    yes_no_dir = cache / f"bench-h{args.hidden}-l{args.layers}-a{heads}-kv{args.kv_heads}"
    if args.family == "cross-encoder":
        model_dir = args.model_dir or cache / "bench-minilm-l6"
        if not (model_dir / "config.json").exists():
            print(f"building the random cross-encoder in {model_dir} ...", file=sys.stderr)
            from memreranker.testing import build_test_cross_encoder

            build_test_cross_encoder(model_dir, words=[*WORDS, *QUERY.split()], **MINILM)
    else:
        causal_dir = args.model_dir if args.family == "yes-no" and args.model_dir else yes_no_dir
        if not (causal_dir / "config.json").exists():
            print(f"building the random model in {causal_dir} ...", file=sys.stderr)
            build_model(
                causal_dir,
                hidden=args.hidden,
                layers=args.layers,
                heads=heads,
                kv_heads=args.kv_heads,
            )
        model_dir = causal_dir
        if args.family == "seq-cls":
            model_dir = args.model_dir or cache / f"{yes_no_dir.name}-seq-cls"
            if not (model_dir / "config_sentence_transformers.json").exists():
                print(f"converting {causal_dir} to seq-cls in {model_dir} ...", file=sys.stderr)
                from memreranker.testing import build_test_qwen3_cross_encoder

                build_test_qwen3_cross_encoder(model_dir, causal=causal_dir)
    flashrank_dirs = None
    if args.family == "cross-encoder":
        print("exporting to ONNX (once; cached) ...", file=sys.stderr)
        flashrank_dirs = prepare_onnx(model_dir, cache, args.threads)
    config = json.loads((model_dir / "config.json").read_text())
    from memreranker.testing import qwen3_tokenizer_dir

    # Workloads are sized in Qwen3 tokens for every family, so that all see the same texts.
    tokenizer = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    workloads = make_workloads(tokenizer)
    methods = [m for m in (args.methods or ",".join(family["methods"])).split(",") if m]
    unknown = sorted(set(methods) - set(family["methods"]))
    if unknown:
        parser.error(f"--family {args.family} has no method(s) {', '.join(unknown)}")
    chosen = [w for w in args.workloads.split(",") if w]

    base = {
        "family": args.family,
        "model_dir": str(model_dir),
        "device": args.device,
        "dtype": dtype,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "flashrank_dirs": flashrank_dirs,
    }
    results: dict[str, dict[str, dict[str, Any]]] = {w: {} for w in chosen}
    steps = len(chosen) * ((1 + args.memory_runs) * len(methods) + args.repeats)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    load_before = os.getloadavg()
    with tqdm(total=steps, desc="benchmark", unit="step") as progress:
        for workload in chosen:
            for _ in range(args.memory_runs):
                for method in methods:  # a fresh process per method: its own peak memory
                    spec = {"kind": "memory", "method": method, **base, **workloads[workload]}
                    runs.setdefault((workload, method), []).append(run_child(spec))
                    progress.update()
            for method in methods:
                results[workload][method] = median_memory(runs[(workload, method)])
            ok = [m for m in methods if "error" not in results[workload][m]]
            spec = {
                "kind": "timing",
                "methods": ok,
                "repeats": args.repeats,
                "max_seconds": args.max_seconds,
                **base,
                **workloads[workload],
            }
            timing = run_child(spec, progress) if ok else {"times": {}}
            for method in ok:
                if "error" in timing:
                    results[workload][method] = {"error": timing["error"]}
                else:
                    results[workload][method]["times"] = timing["times"][method]
    load_after = os.getloadavg()
    if args.save_json:
        args.save_json.write_text(json.dumps(results, indent=1))

    import platform

    import torch

    device_name = (
        torch.cuda.get_device_name(0)
        if cuda
        else f"{platform.processor() or 'CPU'}, {args.threads or torch.get_num_threads()} threads"
    )
    architecture = config["architectures"][0]
    if args.family == "cross-encoder":
        shape = (
            f"hidden {config['hidden_size']}, {config['num_hidden_layers']} layers, "
            f"{config['num_attention_heads']} heads, intermediate {config['intermediate_size']}, "
            f"WordPiece vocabulary of {config['vocab_size']} tokens"
        )
    else:
        shape = (
            f"hidden {config['hidden_size']}, {config['num_hidden_layers']} layers, "
            f"{config['num_attention_heads']} heads ({config['num_key_value_heads']} kv, "
            f"head_dim {config['head_dim']}), intermediate {config['intermediate_size']}, real "
            "Qwen3 tokenizer"
        )
    import sentence_transformers

    print(
        f"\nModel: random {architecture}, {shape}; {dtype} on {args.device} ({device_name}); "
        f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}. "
        f"Load average before/after: {load_before[0]:.2f}/{load_after[0]:.2f}."
    )
    for workload in chosen:
        docs = workloads[workload]["documents"]
        ideal = None
        if args.family != "cross-encoder":
            ideal = ideal_tokens(tokenizer, workloads[workload]["query"], docs)
        report(
            workload,
            len(docs),
            results[workload],
            ideal,
            cuda,
            family["baseline"],
            family.get("pairs", ()),
        )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "packages" / "memreranker" / "src"))
    main()
