"""examples/mem0_memory.py runs offline, as a user would run it, and leaves nothing behind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from runkit import ROOT, check_offline_start, offline_env, run_program

EXAMPLE = ROOT / "examples" / "mem0_memory.py"

pytestmark = pytest.mark.timeout(300)


def test_example_offline_says_so_at_once_and_runs_on_the_stand_in(
    tmp_path: Path, refused_url: str, stand_in_dir: Path
) -> None:
    """One run (subprocesses are the slow tests), the path an offline user takes: the Hub
    cannot be reached, so it says so at once and goes on with the stand-in model (the shared
    helper of the demo and the other examples). mem0's home and the temporary directory
    (``$TMPDIR`` here) are pytest's; the temporary directory is empty afterwards. (torch's
    own cache directory, which importing ``torch._dynamo`` creates under ``$TMPDIR``, is
    pointed elsewhere.)"""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = offline_env(
        tmp_path,
        hub=refused_url,
        MEM0_TELEMETRY="False",
        MEM0_DIR=str(tmp_path / "mem0-home"),
        TMPDIR=str(scratch),
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "torchinductor"),
    )
    done = run_program([sys.executable, str(EXAMPLE)], env=env, cwd=tmp_path)
    check_offline_start(done)
    out = done.stdout
    assert f"model='{stand_in_dir}'" in out  # the provider scores with the stand-in
    assert out.count("Q: ") == 2
    scored = [line for line in out.splitlines() if line.startswith("  [")]
    assert len(scored) == 2 * 2 * 6  # two queries, vector search and reranked, 6 each
    assert "(fallback: original order)" not in out
    assert "AsyncMemory gave the same order: True" in out
    assert list(scratch.iterdir()) == []
