"""examples/mem0_memory.py runs offline, as a user would run it, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mem0_memory.py"
NOTICE = "using a tiny random test model, its scores are meaningless"

pytestmark = pytest.mark.timeout(300)


def test_example_runs_offline(tmp_path: Path) -> None:
    """One run (subprocesses are the slow tests): ``$MEMRERANKER_MODEL`` names weights that
    cannot be loaded, so it says so and goes on with the tiny model it builds, the path an
    offline user takes. Its temporary directory (``$TMPDIR`` here) and mem0's home are
    pytest's; the temporary directory is empty afterwards. (torch's own cache directory,
    which importing ``torch._dynamo`` creates under ``$TMPDIR``, is pointed elsewhere.)"""
    scratch, home = tmp_path / "tmp", tmp_path / "mem0-home"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MEMRERANKER_MODEL", "MEMOS_API_KEY")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        MEM0_TELEMETRY="False",
        MEM0_DIR=str(home),
        TMPDIR=str(scratch),
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "torchinductor"),
        MEMRERANKER_MODEL=str(tmp_path / "no-such-weights"),
    )
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "no-such-weights cannot be loaded" in out
    assert out.count(NOTICE) == 1
    assert out.count("Q: ") == 2
    scored = [line for line in out.splitlines() if line.startswith("  [")]
    assert len(scored) == 2 * 2 * 6  # two queries, vector search and reranked, 6 each
    assert "(fallback: original order)" not in out
    assert "AsyncMemory gave the same order: True" in out
    assert "Traceback" not in done.stderr
    assert list(scratch.iterdir()) == []
