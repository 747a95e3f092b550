"""A real third-party rerank server (Infinity) on loopback, and the reference it must match."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from servers.infinity import InfinityServer, InfinityUnavailable, ensure_venv, running_infinity

Reference = Callable[[str, Sequence[str]], list[float]]


@pytest.fixture(scope="session")
def infinity_server(
    request: pytest.FixtureRequest,
    tiny_cross_encoder: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[InfinityServer]:
    """``infinity_emb`` serving the tiny cross-encoder (its venv built once per requirements,
    the server started once per session). Never skipped: a server that cannot be had is a
    failure. What it costs is written to the terminal: it is CI time."""
    started = time.monotonic()
    try:
        venv = ensure_venv()
        built = time.monotonic() - started
        with running_infinity(venv, tiny_cross_encoder, tmp_path_factory.mktemp("infinity")) as s:
            _report(
                request.config,
                f"infinity: venv {built:.1f}s, server ready {s.startup_seconds:.1f}s after launch",
            )
            yield s
    except InfinityUnavailable as exc:
        pytest.fail(f"Infinity is not available: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def reference(tiny_cross_encoder: Path) -> Reference:
    """Scores of the same checkpoint computed on this machine, by input index: the core's
    local backend, which itself equals ``CrossEncoder.predict`` (tests/core/test_cross_encoder.py,
    and test_reference_is_the_checkpoint_s_own_scores here)."""
    return local_reference(tiny_cross_encoder)


def local_reference(model_dir: Path) -> Reference:
    """The core's local backend on the same checkpoint."""
    from memreranker import MemReranker

    local = MemReranker(model=str(model_dir), on_error="raise")
    return lambda q, docs: [
        r.score for r in sorted(local.rerank(q, list(docs)), key=lambda r: r.index)
    ]


def _report(config: pytest.Config, line: str) -> None:
    """A line on the terminal even while output is captured."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)
