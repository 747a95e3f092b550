"""examples/llama_index_query_engine.py runs, offline, as a user would run it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from runkit import ROOT, Run, check_offline_start, offline_env, run_program

EXAMPLE = ROOT / "examples" / "llama_index_query_engine.py"


def run_example(tmp_path: Path, hub: str, **env: str) -> Run:
    done = run_program(
        [sys.executable, str(EXAMPLE)], env=offline_env(tmp_path, hub=hub, **env), cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Retrying" not in done.stderr
    return done


def ranked_lines(out: str) -> list[str]:
    return re.findall(r"^  \d\. \[\d\.\d{3}, retrieval \d\.\d{3}\] .+$", out, flags=re.M)


@pytest.mark.timeout(300)
def test_example_offline_says_so_at_once_and_runs_on_the_stand_in(
    tmp_path: Path, refused_url: str, stand_in_dir: Path
) -> None:
    done = run_example(tmp_path, refused_url)
    check_offline_start(done)
    assert f"Reranked by local:{stand_in_dir}" in done.stdout
    assert len(ranked_lines(done.stdout)) == 3
    assert "(fallback)" not in done.stdout


@pytest.mark.timeout(300)
def test_example_with_memreranker_model(tmp_path: Path, refused_url: str, tiny_model: Path) -> None:
    done = run_example(tmp_path, refused_url, MEMRERANKER_MODEL=str(tiny_model))
    assert "meaningless" not in done.stdout and "Hub" not in done.stdout
    assert f"Reranked by local:{tiny_model}" in done.stdout
    assert len(ranked_lines(done.stdout)) == 3
    assert "(fallback)" not in done.stdout
