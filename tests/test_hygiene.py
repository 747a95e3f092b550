"""Project hygiene: the license the packages declare, READMEs that stand alone on the
package index, a changelog, and ``scripts/bench.sh --help`` that installs nothing."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from runkit import ROOT

import memreranker

PACKAGES = {
    "memreranker": ROOT / "packages" / "memreranker",
    "langchain-memreranker": ROOT / "packages" / "langchain-memreranker",
    "llama-index-postprocessor-memreranker": ROOT
    / "packages"
    / "llama-index-postprocessor-memreranker",
}
# sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def project(path: Path) -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((path / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def test_license_is_apache_2_everywhere() -> None:
    text = (ROOT / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_SHA256
    for name, path in PACKAGES.items():
        assert project(path)["license"] == "Apache-2.0", name
        # Each package ships the text in its wheel and sdist (hatchling takes LICENSE*).
        assert (path / "LICENSE").read_bytes() == text, name


@pytest.mark.parametrize("name", list(PACKAGES))
def test_package_readme_stands_alone_on_the_index(name: str) -> None:
    path = PACKAGES[name]
    assert project(path)["readme"] == "README.md"
    readme = (path / "README.md").read_text(encoding="utf-8")
    relative = [t for t in LINK.findall(readme) if not t.startswith(("https://", "http://", "#"))]
    assert relative == [], f"{name}: links that break on the package index: {relative}"
    assert f"pip install {name}" in readme
    assert "```python" in readme
    others = [other for other in PACKAGES if other != name]
    for other in others:  # and back to the rest of the project
        assert f"https://pypi.org/project/{other}/" in readme, f"{name} -> {other}"
    assert "Apache License 2.0" in readme


def test_changelog_has_the_current_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    assert f"## [{memreranker.__version__}]" in changelog
    for path in PACKAGES.values():  # one version for the three packages
        assert project(path)["version"] == memreranker.__version__


def test_bench_help_prints_usage_and_installs_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "no-venv"
    env = {**os.environ, "MEMRERANKER_VENV": str(venv), "PATH": "/usr/bin:/bin"}
    bench = str(ROOT / "scripts" / "bench.sh")
    done = subprocess.run([bench, "--help"], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: scripts/bench.sh BENCHMARK")
    for script in (ROOT / "benchmarks").glob("*.py"):
        assert f"\n  {script.stem} " in done.stdout
    assert "``" not in done.stdout and done.stderr == ""
    assert not venv.exists()  # nothing bootstrapped, nothing installed

    for argv, needle in (([], "usage:"), (["no-such-benchmark"], "no benchmark named")):
        done = subprocess.run([bench, *argv], capture_output=True, text=True, env=env, timeout=30)
        assert done.returncode == 2 and needle in done.stderr and done.stdout == ""
        assert not venv.exists()
