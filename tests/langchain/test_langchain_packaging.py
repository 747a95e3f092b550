"""The package depends on langchain-core and memreranker only, and never imports torch or
sentence-transformers."""

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
    assert [(r.name, r.extras, str(r.marker)) for r in optional] == [
        ("memreranker", {"local"}, 'extra == "local"')
    ]
    assert (PACKAGE / "src" / "langchain_memreranker" / "py.typed").is_file()
    assert (PACKAGE / "README.md").is_file()


def test_import_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from langchain_memreranker import MemRerank\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers', 'langchain_community',\n"
        "         'onnxruntime'}\n"
        "heavy &= set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
