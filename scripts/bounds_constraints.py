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


def requirements() -> list[str]:
    """``-e packages/<name>[every extra]`` for each package: what the low end resolves."""
    lines = []
    for pyproject in sorted(ROOT.glob("packages/*/pyproject.toml")):
        extras = sorted(
            tomllib.loads(pyproject.read_text())["project"].get("optional-dependencies", {})
        )
        suffix = f"[{','.join(extras)}]" if extras else ""
        lines.append(f"-e {pyproject.parent.relative_to(ROOT)}{suffix}")
    return lines


def floors() -> dict[str, str]:
    """Each direct dependency's declared floor (its ``>=`` bound), by normalized name."""
    found: dict[str, str] = {}
    for requirement in declared():
        match = _REQUIREMENT.match(requirement)
        bound = re.search(r">=\s*([0-9][^,\s]*)", match[3]) if match else None
        if match and bound and normalize(match[1]) not in OURS | {"torch"}:
            found[normalize(match[1])] = bound[1]
    return found


def _release(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def compiled_pins(path: str) -> dict[str, str]:
    pins = {}
    for line in Path(path).read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith(" "):
            pins[normalize(name.strip())] = version.strip()
    return pins


def main() -> None:
    """``direct``: the direct dependencies. ``requirements``: the packages with every extra.
    ``above COMPILED``: ``name==floor`` for each direct dependency that a ``uv pip compile``
    output holds above its declared floor. ``pins COMPILED TORCH``: the pins of the direct
    dependencies in such an output, and the torch requirement."""
    command = sys.argv[1:2]
    if command == ["direct"]:
        sys.stdout.write("\n".join(sorted(direct_names())) + "\n")
        return
    if command == ["requirements"]:
        sys.stdout.write("\n".join(requirements()) + "\n")
        return
    if command == ["above"] and len(sys.argv) == 3:
        pins = compiled_pins(sys.argv[2])
        above = [
            f"{name}=={floor}"
            for name, floor in sorted(floors().items())
            if name in pins and _release(pins[name]) != _release(floor)
        ]
        sys.stdout.write("".join(line + "\n" for line in above))
        return
    if len(sys.argv) != 4 or command != ["pins"]:
        raise SystemExit(
            "usage: bounds_constraints.py direct | requirements | above COMPILED | "
            "pins COMPILED TORCH"
        )
    names = direct_names()
    lines = [sys.argv[3]]
    for name, version in compiled_pins(sys.argv[2]).items():
        if name in names:
            lines.append(f"{name}=={version}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
