"""examples/llama_index_query_engine.py runs, offline, as a user would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama_index_query_engine.py"


def run_example(tmp_path: Path, model: str | None) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("MEMRERANKER_MODEL", None)
    if model is not None:
        env["MEMRERANKER_MODEL"] = model
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def ranked_lines(out: str) -> list[str]:
    return re.findall(r"^  \d\. \[\d\.\d{3}, retrieval \d\.\d{3}\] .+$", out, flags=re.M)


@pytest.mark.timeout(300)
def test_example_offline_builds_the_test_model(tmp_path: Path) -> None:
    out = run_example(tmp_path, model=None)
    notes = [line for line in out.splitlines() if "meaningless" in line]
    assert len(notes) == 1
    assert "Reranked by local:" in out
    assert len(ranked_lines(out)) == 3
    assert "(fallback)" not in out


@pytest.mark.timeout(300)
def test_example_with_memreranker_model(tmp_path: Path, tiny_model: Path) -> None:
    out = run_example(tmp_path, model=str(tiny_model))
    assert "meaningless" not in out
    assert f"Reranked by local:{tiny_model}" in out
    assert len(ranked_lines(out)) == 3
    assert "(fallback)" not in out
