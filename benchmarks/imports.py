#!/usr/bin/env python
"""Import time of the packages, each in a fresh interpreter, and whether torch came along.

Usage::

    python benchmarks/imports.py [--runs 7]

Each run starts ``python -c "import <module>"`` and times the import with
``time.perf_counter`` inside the child (interpreter start-up excluded); the table shows the
median and the minimum over the runs, and whether ``torch`` / ``transformers`` ended up in
``sys.modules``. A package that is not installed is reported as such.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and benchmarks/http.py would shadow the
# standard library's ``http`` package (imported by requests, httpx, huggingface_hub).
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402

MODULES = (
    "memreranker",
    "langchain_memreranker",
    "llama_index.postprocessor.memreranker",
)
REFERENCE = ("torch", "requests", "httpx")

CHILD = """
import importlib.util, json, sys, time
name = sys.argv[1]
try:
    found = importlib.util.find_spec(name) is not None
except ModuleNotFoundError:
    found = False
if not found:
    print(json.dumps({"missing": True}))
    raise SystemExit
start = time.perf_counter()
importlib.import_module(name)
elapsed = time.perf_counter() - start
print(json.dumps({
    "seconds": elapsed,
    "torch": "torch" in sys.modules,
    "transformers": "transformers" in sys.modules,
    "modules": len(sys.modules),
}))
"""


def measure(module: str, runs: int) -> dict[str, object]:
    samples = []
    last: dict[str, object] = {}
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, module], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            return {"error": tail}
        last = json.loads(proc.stdout.strip().splitlines()[-1])
        if last.get("missing"):
            return {"missing": True}
        samples.append(float(last["seconds"]))  # type: ignore[arg-type]
    return {**last, "median": statistics.median(samples), "min": min(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-reference", action="store_true", help="skip torch/requests/httpx")
    args = parser.parse_args()

    from tqdm import tqdm

    modules = list(MODULES) + ([] if args.no_reference else list(REFERENCE))
    results = {m: measure(m, args.runs) for m in tqdm(modules, desc="imports", unit="module")}
    print(f"\nFresh interpreter per run, median of {args.runs} runs ({sys.executable}).\n")
    print(
        "| import | median ms | min ms | modules loaded | torch imported | transformers imported |"
    )
    print("|---|---:|---:|---:|---|---|")
    for module, r in results.items():
        label = f"{module} (reference)" if module in REFERENCE else module
        if r.get("missing"):
            print(f"| {label} | not installed | | | | |")
        elif "error" in r:
            print(f"| {label} | error: {r['error']} | | | | |")
        else:
            print(
                f"| {label} | {1000 * r['median']:.0f} | {1000 * r['min']:.0f} "  # type: ignore[operator]
                f"| {r['modules']} | {'yes' if r['torch'] else 'no'} "
                f"| {'yes' if r['transformers'] else 'no'} |"
            )


if __name__ == "__main__":
    main()
