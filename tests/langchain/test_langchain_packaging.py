"""The package depends on langchain-core and memreranker only (langgraph-checkpoint is the
``[langgraph]`` extra), and never imports torch, sentence-transformers nor langgraph."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "packages" / "langchain-memreranker"


def test_declared_dependencies() -> None:
    # The installed metadata, as pip resolves it (extras excluded).
    requirements = [Requirement(r) for r in requires("langchain-memreranker") or []]
    default = [r for r in requirements if r.marker is None]
    assert sorted(r.name for r in default) == ["langchain-core", "memreranker"]
    assert all(not r.extras for r in default)  # in particular not memreranker[local]
    optional = [r for r in requirements if r.marker is not None]
    assert sorted((r.name, str(r.marker)) for r in optional) == [
        ("langgraph-checkpoint", 'extra == "langgraph"'),
        ("memreranker", 'extra == "local"'),
    ]
    assert [r.extras for r in optional if r.name == "memreranker"] == [{"local"}]
    assert (PACKAGE / "src" / "langchain_memreranker" / "py.typed").is_file()
    assert (PACKAGE / "README.md").is_file()


def test_import_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from langchain_memreranker import MemRerank\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers', 'langchain_community',\n"
        "         'onnxruntime'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
        # The store's module (and langgraph) only on first use of MemRerankStore.
        "assert not {'langgraph', 'langchain_memreranker.store'} & set(sys.modules)\n"
        "import langchain_memreranker\n"
        "assert langchain_memreranker.MemRerankStore.__module__ == 'langchain_memreranker.store'\n"
        "assert 'langgraph' in sys.modules\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_store_without_langgraph_says_which_extra(tmp_path: Path) -> None:
    """Without langgraph installed (hidden here by a meta-path finder), importing the
    package works and asking for MemRerankStore names the extra."""
    code = (
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'langgraph' or name.startswith('langgraph.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "import langchain_memreranker\n"
        "from langchain_memreranker import MemRerank\n"
        "try:\n"
        "    langchain_memreranker.MemRerankStore\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'langchain-memreranker[langgraph]'" in done.stdout
