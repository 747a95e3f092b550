"""The core package's layers, checked on its import statements (parsed, not run).

foundation < backends < core < surfaces: a module imports only its own layer and the ones
below; ``http/`` never imports ``local/`` (the hosted backends stay torch-free). README,
"Writing a backend", describes the same layout.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "packages" / "memreranker" / "src"
PACKAGE = SRC / "memreranker"

LAYERS: dict[str, int] = {
    # 0, the foundation: facts and small helpers every layer may use.
    "memreranker.errors": 0,
    "memreranker.types": 0,
    "memreranker.ranking": 0,
    "memreranker.progress": 0,
    "memreranker.validation": 0,
    "memreranker.sealed": 0,
    "memreranker.logs": 0,
    "memreranker.prompt": 0,
    "memreranker.memory_text": 0,
    "memreranker.document_template": 0,
    "memreranker.pool": 0,
    "memreranker.cache_dir": 0,
    "memreranker.dedup": 0,
    "memreranker.hub": 0,
    "memreranker.backend_table": 0,
    "memreranker.settings": 0,
    "memreranker.backends.base": 0,
    # 1, the backends.
    "memreranker.http": 1,
    "memreranker.local": 1,
    "memreranker.score_cache": 1,
    # 2, the core: the factory and MemReranker.
    "memreranker.backends": 2,
    "memreranker.reranker": 2,
    "memreranker": 2,  # the package's __init__: the public names
    # 3, the surfaces.
    "memreranker.integration": 3,
    "memreranker.mem0": 3,
    "memreranker.testing": 3,
    "memreranker.stand_in": 3,
    "memreranker.cli": 3,
    "memreranker.rerank_cli": 3,
    "memreranker.eval": 3,
    "memreranker.__main__": 3,
}
"""Module (or package, for everything inside it) -> layer. The longest prefix wins."""


def layer(module: str) -> int:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        found = LAYERS.get(".".join(parts[:end]))
        if found is not None:
            return found
    raise AssertionError(f"{module} has no layer in tests/test_layering.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    return parse_imports(
        path.read_text(encoding="utf-8"), module_name(path), package=path.name == "__init__.py"
    )


def parse_imports(source: str, module: str, *, package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every ``memreranker`` import, at any depth (lazy ones too)."""
    tree = ast.parse(source)
    package_name = module if package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package_name.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names]
            # "from memreranker import ranking" imports a module, "... import X" a name.
            found += [(node.lineno, n if _is_module(n) else base) for n in names]
    return [(line, name) for line, name in found if name.split(".")[0] == "memreranker"]


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def test_no_module_imports_a_layer_above_it() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        for line, target in imports(path):
            if layer(target) > layer(here):
                wrong.append(
                    f"{path.relative_to(SRC)}:{line}: layer {layer(here)} {here} "
                    f"imports layer {layer(target)} {target}"
                )
    assert not wrong, "\n".join(wrong)


def test_http_never_imports_local() -> None:
    wrong = [
        f"{path.relative_to(SRC)}:{line}: {target}"
        for path in sorted((PACKAGE / "http").rglob("*.py"))
        for line, target in imports(path)
        if target.startswith("memreranker.local")
    ]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_lazy_and_relative_imports() -> None:
    source = (
        "def f():\n"
        "    from memreranker.local.backend import LocalBackend\n"
        "from ..reranker import MemReranker\n"
        "from memreranker import ranking, MemReranker\n"
    )
    found = sorted(parse_imports(source, "memreranker.http.planted"))
    assert found == [
        (2, "memreranker.local.backend"),
        (3, "memreranker.reranker"),
        (4, "memreranker"),
        (4, "memreranker.ranking"),
    ]
    assert layer("memreranker.http.planted") == 1 < layer(found[1][1])
