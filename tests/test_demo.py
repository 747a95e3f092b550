"""The README's demo runs end to end offline, on the tiny test model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_offline() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MEMRERANKER_MODEL": "/does/not/exist"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "agent_memory.py")],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )
    lines = proc.stdout.splitlines()
    assert "meaningless" in lines[0]
    assert sum(line.startswith("Q: ") for line in lines) == 4
    assert sum(line.lstrip().startswith(("1.", "2.", "3.")) for line in lines) == 12
    assert "(fallback)" not in proc.stdout
