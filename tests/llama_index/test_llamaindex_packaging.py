"""The package depends on llama-index-core and memreranker only, and never imports torch or
sentence-transformers."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement
from servers import RerankServer

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "packages" / "llama-index-postprocessor-memreranker"


def test_declared_dependencies() -> None:
    requirements = [Requirement(r) for r in requires("llama-index-postprocessor-memreranker") or []]
    assert sorted(r.name for r in requirements) == ["llama-index-core", "memreranker"]
    assert all(not r.extras for r in requirements)  # in particular not memreranker[local]
    namespace = PACKAGE / "llama_index"
    assert not (namespace / "__init__.py").exists()
    assert not (namespace / "postprocessor" / "__init__.py").exists()
    assert (namespace / "postprocessor" / "memreranker" / "py.typed").is_file()


def test_hosted_use_never_imports_torch(rerank_server: RerankServer) -> None:
    code = (
        "import sys\n"
        "from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode\n"
        "from llama_index.postprocessor.memreranker import MemRerank\n"
        f"rerank = MemRerank(backend='vllm', base_url={rerank_server.url!r}, on_error='raise')\n"
        "nodes = [NodeWithScore(node=TextNode(text=t), score=0.5) for t in ('a b', 'c')]\n"
        "out = rerank.postprocess_nodes(nodes, QueryBundle('a'))\n"
        "assert len(out) == 2\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers', 'onnxruntime'}\n"
        "heavy &= set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert len(rerank_server.requests) == 1
