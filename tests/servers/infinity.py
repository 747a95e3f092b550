"""Infinity (``infinity-emb``), a third-party rerank server, serving a local checkpoint on
loopback for end-to-end tests.

Infinity cannot be installed beside this project (see ``infinity-requirements.txt``), so
:func:`ensure_venv` builds it its own virtual environment once, under the project's venv
(``.venv/servers/infinity-<hash>``, reused while the requirements and torch stay the same;
``$MEMRERANKER_INFINITY_VENV`` points at a ready one instead), and :func:`running_infinity`
starts ``infinity_emb v2`` from it as a child process, waits until ``/health`` answers, and
stops it afterwards. Everything the server writes goes under the given work directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from servers.rerank_server import refused_port

REQUIREMENTS = Path(__file__).with_name("infinity-requirements.txt")
VENV_ENV = "MEMRERANKER_INFINITY_VENV"
SERVED_NAME = "tiny-cross-encoder"


class InfinityUnavailable(RuntimeError):
    """Infinity could not be installed or started; the message says why (with its log)."""


def torch_requirement() -> str:
    """The project's own torch build (``torch==2.13.0+cpu`` here): never a CUDA download."""
    override = os.environ.get("MEMRERANKER_TORCH")
    if override:
        return override
    return f"torch=={importlib.metadata.version('torch')}"


def ensure_venv(timeout: float = 900.0) -> Path:
    """The directory of a virtual environment with ``infinity_emb`` installed, built if
    missing. Raises :class:`InfinityUnavailable` when pip fails (no index, say)."""
    override = os.environ.get(VENV_ENV)
    if override:
        return Path(override)
    torch = torch_requirement()
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + torch.encode()).hexdigest()[:12]
    target = Path(sys.prefix) / "servers" / f"infinity-{digest}"
    if (target / ".ready").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time: scripts/test.sh starts the build in the background while the
    # rest of the suite runs, and the fixture then waits for it here instead of building twice.
    with target.with_name(f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".ready").exists():
            return target
        for stale in target.parent.glob(f"{target.name}.building-*"):  # a killed builder's
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        return _build(target, torch, timeout)


def _build(target: Path, torch: str, timeout: float) -> Path:
    building = target.with_name(f"{target.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    log = building.with_suffix(".log")
    python = building / "bin" / "python"
    steps = [
        [sys.executable, "-m", "venv", str(building)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", torch],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    deadline = time.monotonic() + timeout
    with log.open("w") as out:
        for step in steps:
            try:
                subprocess.run(
                    step,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    check=True,
                    timeout=max(1.0, deadline - time.monotonic()),
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                shutil.rmtree(building, ignore_errors=True)
                raise InfinityUnavailable(
                    f"could not install infinity-emb ({exc}); pip said:\n{_tail(log)}"
                ) from exc
    (building / ".ready").touch()
    shutil.rmtree(target, ignore_errors=True)
    building.rename(target)
    log.unlink(missing_ok=True)
    return target


@dataclass(frozen=True)
class InfinityServer:
    port: int
    model_dir: Path
    log: Path
    startup_seconds: float
    """From launching the process to the first healthy ``/health``."""
    model: str = SERVED_NAME

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rerank_url(self) -> str:
        """Infinity's rerank route (``/rerank``, at the root: pass it as the full URL)."""
        return self.url + "/rerank"


@contextmanager
def running_infinity(
    venv: Path, model_dir: Path, workdir: Path, *, timeout: float = 180.0
) -> Iterator[InfinityServer]:
    """``infinity_emb v2`` serving ``model_dir`` on a free loopback port, until the block ends."""
    port = refused_port()
    log = workdir / "infinity.log"
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(workdir / "hf"),
        TMPDIR=str(workdir / "tmp"),
        INFINITY_ANONYMOUS_USAGE_STATS="0",
        DO_NOT_TRACK="1",
        # Two shared cores: one intra-op thread is faster for a tiny model, and polite.
        OMP_NUM_THREADS="1",
    )
    command = [
        # ``python -m``, not the console script: the venv was built under another name and
        # renamed when complete, which leaves the scripts' shebangs pointing nowhere.
        str(venv / "bin" / "python"),
        "-m",
        "infinity_emb.cli",
        "v2",
        "--model-id",
        str(model_dir),
        "--served-model-name",
        SERVED_NAME,
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--batch-size",
        "16",
        "--no-model-warmup",
        "--no-vector-disk-cache",
    ]
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir
        )
    try:
        while True:
            if process.poll() is not None:
                raise InfinityUnavailable(
                    f"infinity_emb exited with {process.returncode} before it was ready:\n"
                    + _tail(log)
                )
            if time.monotonic() - started > timeout:
                raise InfinityUnavailable(f"infinity_emb not ready after {timeout}s:\n{_tail(log)}")
            if _healthy(port):
                break
            time.sleep(0.1)
        yield InfinityServer(
            port=port, model_dir=model_dir, log=log, startup_seconds=time.monotonic() - started
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


if __name__ == "__main__":  # scripts/test.sh: build the venv ahead of the tests that need it
    with contextlib.suppress(InfinityUnavailable):  # the fixture reports the failure
        ensure_venv()
