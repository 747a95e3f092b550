"""The direct dependencies of the workspace's packages, for scripts/test-bounds.sh.

The low end pins exactly these (to the versions ``uv pip compile --resolution lowest-direct``
finds for the three packages with every extra) and leaves the rest, the test tools included,
to pip: transitive dependencies resolve to the newest that fits, as a user's install would.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
OURS = {"memreranker", "langchain-memreranker", "llama-index-postprocessor-memreranker"}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> list[str]:
    """Every requirement string of the packages' base installs and extras."""
    found = []
    for pyproject in sorted(ROOT.glob("packages/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        found += project.get("dependencies", [])
        for extra in project.get("optional-dependencies", {}).values():
            found += extra
    return found


def direct_names() -> set[str]:
    """Our packages' direct dependencies (torch aside), and urllib3 (its internals are used)."""
    names = {"urllib3"}
    for requirement in declared():
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"cannot read the requirement {requirement!r}")
        names.add(normalize(match[1]))
    return names - OURS - {"torch"}


def main() -> None:
    """``direct``: print the direct dependencies. ``pins FILE TORCH``: print the pins of the
    direct dependencies in a ``uv pip compile`` output, and the torch requirement."""
    if sys.argv[1:2] == ["direct"]:
        sys.stdout.write("\n".join(sorted(direct_names())) + "\n")
        return
    if len(sys.argv) != 4 or sys.argv[1] != "pins":
        raise SystemExit("usage: bounds_constraints.py direct | pins COMPILED TORCH")
    names = direct_names()
    lines = [sys.argv[3]]
    for line in Path(sys.argv[2]).read_text().splitlines():
        name, sep, _ = line.partition("==")
        if sep and normalize(name.strip()) in names:
            lines.append(line.strip())
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
