"""examples/langchain_retriever.py and examples/langgraph_memory.py run offline, as a user
would run them."""

from __future__ import annotations

import sys
from pathlib import Path

from runkit import ROOT, Run, check_offline_start, offline_env, run_program

EXAMPLE = ROOT / "examples" / "langchain_retriever.py"
NOTICE = "running on a tiny random test model instead, so the scores below are meaningless"


def run_example(tmp_path: Path, hub: str, **env: str) -> Run:
    done = run_program([sys.executable, str(EXAMPLE)], env=offline_env(tmp_path, hub=hub, **env))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Retrying" not in done.stderr
    return done


def reranked_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("  [")]


def test_example_offline_says_so_at_once_and_runs_on_the_stand_in(
    tmp_path: Path, refused_url: str, stand_in_dir: Path
) -> None:
    done = run_example(tmp_path, refused_url)
    check_offline_start(done)
    assert done.stdout.count(NOTICE) == 1
    assert str(stand_in_dir) in done.stdout  # the cached stand-in, not a new temp directory
    assert len(reranked_lines(done.stdout)) == 6  # two queries, top 3 each
    assert "fallback" not in done.stdout
    assert "ainvoke gave the same top 3: True" in done.stdout


def test_example_uses_memreranker_model(tmp_path: Path, refused_url: str, tiny_model: Path) -> None:
    done = run_example(tmp_path, refused_url, MEMRERANKER_MODEL=str(tiny_model))
    assert "meaningless" not in done.stdout and "Hub" not in done.stdout  # a directory
    assert str(tiny_model) in done.stdout
    assert len(reranked_lines(done.stdout)) == 6


STORE_EXAMPLE = ROOT / "examples" / "langgraph_memory.py"


def test_store_example_offline_runs_on_the_stand_in(
    tmp_path: Path, refused_url: str, stand_in_dir: Path
) -> None:
    """examples/langgraph_memory.py: one run, offline, on the cached stand-in model."""
    done = run_program(
        [sys.executable, str(STORE_EXAMPLE)], env=offline_env(tmp_path, hub=refused_url)
    )
    check_offline_start(done)
    assert str(stand_in_dir) in done.stdout
    lines = done.stdout.splitlines()
    assert sum(" rerank " in line for line in lines) == 3  # the reranked top 3
    assert "falling back" not in done.stderr
    assert "asearch gave the same top 3: True" in done.stdout
