"""The README's demo command, twice, offline: one line about the Hub at once, the tiny model
built once into the cache and reused, and nothing left in the temp directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from runkit import ROOT, Run, check_offline_start, offline_env, run_program


def snapshot(directory: Path) -> dict[str, int]:
    """Every path under ``directory`` with its inode: a rebuilt entry shows as changed."""
    return {str(p.relative_to(directory)): p.stat().st_ino for p in directory.rglob("*")}


def check_output(run: Run) -> None:
    check_offline_start(run)
    lines = run.stdout.splitlines()
    assert sum(line.startswith("Q: ") for line in lines) == 4
    assert sum(line.lstrip().startswith(("1.", "2.", "3.")) for line in lines) == 12
    assert "(fallback)" not in run.stdout


@pytest.mark.timeout(600)
def test_demo_twice_offline_leaves_nothing_behind(tmp_path: Path, refused_url: str) -> None:
    temp = tmp_path / "tmp"  # the demo's temp directory: must stay empty
    cache = tmp_path / "cache"  # $MEMRERANKER_CACHE: one entry, built once
    temp.mkdir()
    cache.mkdir()
    stale = cache / "tiny-test-model-000000000000-seed0"  # from an older memreranker
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    env = offline_env(
        tmp_path,
        hub=refused_url,
        TMPDIR=str(temp),
        MEMRERANKER_CACHE=str(cache),
        MEMRERANKER_VENV=sys.prefix,
        # torch makes its own cache directory (torchinductor_<user>) in the temp directory
        # on import; pointed elsewhere, the temp directory shows what this project leaves.
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "torchinductor"),
    )
    demo = [str(ROOT / "scripts" / "demo.sh")]

    first = run_program(demo, env=env)
    check_output(first)
    assert list(temp.iterdir()) == []
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 1 and entries[0].startswith("tiny-test-model-")
    assert entries[0] != stale.name  # the stale entry was replaced, not kept beside it
    built = snapshot(cache)

    second = run_program(demo, env=env)
    check_output(second)
    assert second.stdout == first.stdout  # same model, same scores
    assert list(temp.iterdir()) == []
    assert snapshot(cache) == built  # reused as it was: no rebuild, no growth
