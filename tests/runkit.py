"""Run the programs a user runs (the CLI, the demo, the examples) as a user would.

``run_program`` records when the first byte of output arrived: "offline, the first output
comes within 10 s" is a promise of the entry points. ``offline_env`` is an environment in
which the Hugging Face Hub cannot be reached (its endpoint is a refused loopback port, so
it fails the same way on any machine) and offline mode is *not* switched on: the program
has to find out by itself, quickly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FIRST_OUTPUT_LIMIT_S = 10.0
"""The issue's promise: offline, every entry point says something within 10 s."""


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    first_output_s: float | None
    """Seconds from start to the first byte on stdout or stderr; None if it printed nothing."""
    elapsed_s: float


def run_program(
    args: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 300,
) -> Run:
    start = time.monotonic()
    proc = subprocess.Popen(
        list(args),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd or ROOT,
    )
    first: list[float] = []
    lock = threading.Lock()
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}

    def pump(stream: IO[bytes], key: str) -> None:
        while data := stream.read1(65536):  # type: ignore[attr-defined]
            with lock:
                if not first:
                    first.append(time.monotonic() - start)
                chunks[key].append(data)

    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True),
    ]
    for thread in pumps:
        thread.start()
    if input is not None:
        assert proc.stdin is not None
        proc.stdin.write(input.encode("utf-8"))
        proc.stdin.close()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    for thread in pumps:
        thread.join()
    return Run(
        returncode=proc.returncode,
        stdout=b"".join(chunks["out"]).decode("utf-8", "replace"),
        stderr=b"".join(chunks["err"]).decode("utf-8", "replace"),
        first_output_s=first[0] if first else None,
        elapsed_s=time.monotonic() - start,
    )


def offline_env(tmp: Path, *, hub: str, **extra: str) -> dict[str, str]:
    """The environment of a user without network: ``hub`` (a refused URL) as the Hub, an
    empty Hugging Face cache, Python's output unbuffered so that timings show what the
    program does rather than pipe buffering, and no model or key preselected."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MEMRERANKER_MODEL", "MEMOS_API_KEY")
    }
    home = tmp / "hf-home"
    home.mkdir(exist_ok=True)
    env.update(HF_ENDPOINT=hub, HF_HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


def check_offline_start(run: Run, model: str = "IAAR-Shanghai/MemReranker-4B") -> None:
    """What the demo and the examples print offline, at once: one line about the Hub, one
    about the stand-in model taking the place of ``model``; no retries, no traceback."""
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert run.first_output_s is not None and run.first_output_s < FIRST_OUTPUT_LIMIT_S
    lines = run.stdout.splitlines()
    assert "Hugging Face Hub" in lines[0] and "cannot be reached" in lines[0], lines[:2]
    assert model in lines[1] and "meaningless" in lines[1], lines[:2]
    assert sum("meaningless" in line for line in lines) == 1
    assert "Retrying" not in run.stderr and "Traceback" not in run.stderr
    check_no_warnings(run)


def check_no_warnings(run: Run) -> None:
    """No warning of any kind in a user's face (FutureWarning, UserWarning, ...)."""
    assert "Warning" not in run.stderr, run.stderr[-3000:]
