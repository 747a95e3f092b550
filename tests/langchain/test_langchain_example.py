"""examples/langchain_retriever.py runs offline, as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "langchain_retriever.py"
NOTICE = "using a tiny random test model, its scores are meaningless"


def run_example(**env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if k not in ("MEMRERANKER_MODEL", "MEMOS_API_KEY")
    }
    environment.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **env)
    return subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def reranked_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("  [")]


def test_example_runs_offline_on_the_tiny_model() -> None:
    done = run_example()
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(NOTICE) == 1
    lines = reranked_lines(done.stdout)
    assert len(lines) == 6  # two queries, top 3 each
    assert "fallback" not in done.stdout
    assert "ainvoke gave the same top 3: True" in done.stdout


def test_example_uses_memreranker_model(tiny_model: Path) -> None:
    done = run_example(MEMRERANKER_MODEL=str(tiny_model))
    assert done.returncode == 0, done.stderr[-3000:]
    assert NOTICE not in done.stdout
    assert str(tiny_model) in done.stdout
    assert len(reranked_lines(done.stdout)) == 6


def test_example_survives_unloadable_weights(tmp_path: Path) -> None:
    done = run_example(MEMRERANKER_MODEL=str(tmp_path / "does-not-exist"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cannot be loaded" in done.stdout
    assert NOTICE in done.stdout
