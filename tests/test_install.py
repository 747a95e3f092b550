"""Install from a clone, as a user outside the monorepo would: the wheels of the three
packages into a fresh virtual environment, then the CLI and a hosted rerank through each.

The project's own packages come only from the wheels built here (the index does not know
them); third-party dependencies come from the package index. First the core alone (no
torch, no tqdm: the CLI runs without a progress bar and without crashing); and the two
integrations, with the core, in one pip command (in a second venv, meanwhile). The slowest
test of the suite (mostly pip).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from runkit import ROOT
from servers import RerankServer, deterministic_score

PACKAGES = ("memreranker", "langchain-memreranker", "llama-index-postprocessor-memreranker")
QUERY = "What does the user like to drink?"

CORE_CHECK = """
import importlib.metadata as md, importlib.util, json, sys
import memreranker
from memreranker import MemReranker

url, wheels = sys.argv[1], sys.argv[2]
assert memreranker.__file__.startswith(sys.prefix), memreranker.__file__  # not the clone
dist = md.distribution("memreranker")
assert wheels in json.loads(dist.read_text("direct_url.json"))["url"]  # from our wheel
assert any(str(f).endswith("licenses/LICENSE") for f in dist.files)
for absent in ("torch", "transformers", "tqdm", "onnxruntime"):
    assert importlib.util.find_spec(absent) is None, absent  # a core-only install
with MemReranker("memos", base_url=url + "/api/openmem/v1", api_key="k", timeout=5) as r:
    results = r.rerank("What does the user like to drink?", ["User likes tea.", "User rows."])
assert not any(x.is_fallback for x in results), results
assert "torch" not in sys.modules
print(json.dumps([[x.index, x.score] for x in results]))
"""

INTEGRATIONS_CHECK = """
import importlib.metadata as md, json, sys
from langchain_core.documents import Document
from langchain_memreranker import MemRerank as LangChainRerank
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.postprocessor.memreranker import MemRerank as LlamaIndexRerank

url, wheels = sys.argv[1], sys.argv[2]
for name in ("langchain-memreranker", "llama-index-postprocessor-memreranker"):
    assert wheels in json.loads(md.distribution(name).read_text("direct_url.json"))["url"]
texts = ["User likes tea.", "User rows a boat.", "User drinks coffee daily."]
query = "What does the user like to drink?"
docs = LangChainRerank(backend="vllm", base_url=url, top_n=None).compress_documents(
    [Document(page_content=t) for t in texts], query
)
nodes = LlamaIndexRerank(backend="vllm", base_url=url).postprocess_nodes(
    [NodeWithScore(node=TextNode(text=t)) for t in texts], query_str=query
)
assert "torch" not in sys.modules
print(json.dumps({
    "langchain": [[d.page_content, d.metadata["relevance_score"]] for d in docs],
    "llama_index": [[n.node.get_content(), n.score] for n in nodes],
}))
"""


def sh(*args: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, timeout=420
    )
    assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def served_scores(server: RerankServer) -> dict[str, float]:
    """Each document's score, as the server computed it from the caller's texts it received
    (inside the prompt template the core may have applied)."""
    scores: dict[str, float] = {}
    for request in server.requests:
        for doc in request.documents:
            scores[doc] = deterministic_score(request.query, doc)
    return scores


@pytest.mark.timeout(900)
def test_wheels_install_into_a_fresh_venv_and_work(
    tmp_path: Path, rerank_server: RerankServer
) -> None:
    wheels = tmp_path / "wheels"
    # No build isolation: hatchling is in the dev group, and isolation would fetch it again.
    sh(
        sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", wheels, *(ROOT / "packages" / name for name in PACKAGES),
    )  # fmt: skip
    built = {p.name.split("-")[0]: p for p in wheels.glob("*.whl")}
    assert sorted(built) == sorted(name.replace("-", "_") for name in PACKAGES)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    core, full = tmp_path / "core-venv", tmp_path / "full-venv"
    for venv in (core, full):
        sh(sys.executable, "-m", "venv", "--without-pip", venv)  # pip comes from outside

    def install(venv: Path, *wheel_files: Path) -> list[str | Path]:
        return [
            sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
            "--no-compile", *wheel_files,
        ]  # fmt: skip

    # The three wheels in one command (the README's form), in the background meanwhile:
    # pip resolves the integrations' memreranker dependency to the wheel beside them.
    full_install = subprocess.Popen(
        [str(a) for a in install(full, *built.values())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        check_core_only(core, install(core, built["memreranker"]), env, wheels, rerank_server,
                        tmp_path)  # fmt: skip
        out, err = full_install.communicate(timeout=600)
    finally:
        if full_install.poll() is None:
            full_install.kill()
            full_install.communicate()
    assert full_install.returncode == 0, err[-4000:]

    rerank_server.reset()
    python = full / "bin" / "python"
    out = json.loads(sh(python, "-c", INTEGRATIONS_CHECK, rerank_server.url, wheels, env=env))
    served = served_scores(rerank_server)
    for surface in ("langchain", "llama_index"):
        ranked = out[surface]
        assert len(ranked) == 3, surface
        assert [score for _, score in ranked] == sorted(served.values(), reverse=True), surface


def check_core_only(
    venv: Path,
    install: list[str | Path],
    env: dict[str, str],
    wheels: Path,
    server: RerankServer,
    tmp_path: Path,
) -> None:
    """The core alone: the hosted path, and the CLI on 100 documents without tqdm."""
    sh(*install, env=env)
    scores = json.loads(sh(venv / "bin" / "python", "-c", CORE_CHECK, server.url, wheels, env=env))
    assert len(scores) == 2
    docs = [
        f"memory {i}: the user drinks {'tea' if i % 3 else 'coffee'} at {i}h" for i in range(100)
    ]
    documents = tmp_path / "docs.txt"
    documents.write_text("\n".join(docs), encoding="utf-8")
    server.reset()
    done = subprocess.run(
        [
            venv / "bin" / "memreranker", "rerank", "-q", QUERY, "-d", documents, "--json",
            "--progress", "--backend", "vllm", "--base-url", server.url,
        ],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tqdm is not installed" in done.stderr and "Traceback" not in done.stderr
    rows = json.loads(done.stdout)
    assert sorted(row["index"] for row in rows) == list(range(100))
    served = served_scores(server)
    assert len(server.requests) == 1 and len(served) == 100
    assert [row["score"] for row in rows] == sorted(served.values(), reverse=True)
    assert not any(row["is_fallback"] for row in rows)
