"""memreranker.hub (is the Hub reachable? offline if not) and memreranker.logs (each warning
printed once): what the CLI, the demo and the examples share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import RerankServer

from memreranker import hub

HUB_ID = "IAAR-Shanghai/MemReranker-4B"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline mode off (the suite runs with HF_HUB_OFFLINE=1); everything restored after."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback port that accepts connections and never answers (a stalled Hub)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def trickling_endpoint() -> Iterator[str]:
    """A Hub that answers one byte every 0.1 s, forever (a stalled proxy): each read
    succeeds within any per-read timeout, so only the probe's own deadline ends it."""
    stop = threading.Event()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)

    def serve() -> None:
        clients = []
        while not stop.is_set():
            try:
                client, _ = server.accept()
                client.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                clients.append(client)
            except OSError:
                pass
            for client in clients:
                try:
                    client.sendall(b"a")
                except OSError:
                    pass
        for client in clients:
            client.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()


def test_unreachable_hub_turns_offline_mode_on(
    online: None, refused_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_ENDPOINT", refused_url)
    started = time.monotonic()
    notice = hub.check_hub(HUB_ID)
    assert time.monotonic() - started < 2
    assert notice is not None and "cannot be reached" in notice and "\n" not in notice
    assert refused_url.removeprefix("http://") in notice
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True  # already imported: set too
    assert hub.check_hub(HUB_ID) is None  # offline now: nothing more to say or probe


@pytest.mark.parametrize("endpoint", ["silent_endpoint", "trickling_endpoint"])
def test_a_stalled_hub_costs_the_timeout_only(
    online: None, endpoint: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", request.getfixturevalue(endpoint))
    started = time.monotonic()
    assert hub.check_hub(HUB_ID, timeout=0.5) is not None
    assert time.monotonic() - started < 1.5


def test_reachable_hub_changes_nothing(
    online: None, rerank_server: RerankServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", rerank_server.url)  # answers (any status will do)
    assert hub.check_hub(HUB_ID) is None
    assert os.environ["HF_HUB_OFFLINE"] == "0"
    assert len(rerank_server.requests) == 0  # a HEAD request: not a rerank call


def test_directories_and_offline_mode_are_not_probed(
    online: None, silent_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", silent_endpoint)
    started = time.monotonic()
    assert hub.check_hub(str(tmp_path)) is None
    assert hub.check_hub("./relative/model/dir") is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.check_hub(HUB_ID) is None
    assert time.monotonic() - started < 0.3  # no probe was made


def test_looks_like_path(tmp_path: Path) -> None:
    assert not hub.looks_like_path(HUB_ID)
    assert not hub.looks_like_path("bert-base-uncased")
    for name in (str(tmp_path), "./model", "~/models/x", "/abs/path", "a/b/c"):
        assert hub.looks_like_path(name), name


def test_one_line() -> None:
    error = OSError("cannot load model 'x': no network.\nCheck your connection at https://...")
    assert hub.one_line(error) == "cannot load model 'x': no network."
    assert hub.one_line(ValueError("")) == "ValueError"
    assert hub.one_line(ValueError("a" * 500), limit=20) == "a" * 17 + "..."


LOGGING_ONCE = """
import logging
from huggingface_hub.utils import logging as hub_logging
from memreranker.logs import log_to_stderr, stop_logging_to_stderr

log_to_stderr()
log_to_stderr()  # again: replaces its handler instead of adding a second
hub_logging.get_logger("huggingface_hub.test13").warning("hub-warning-13")
logging.getLogger("memreranker").warning("core-warning-13\\nsecond line")
logging.getLogger("memreranker").info("core-info-13")
stop_logging_to_stderr()
logging.getLogger("memreranker").warning("after-stop-13")
"""


def test_library_warnings_are_printed_once() -> None:
    """huggingface_hub prints through its own handler and propagates to the root logger: a
    root handler (logging.basicConfig) would print each of its warnings twice. In a fresh
    interpreter, as in the programs that call log_to_stderr."""
    done = subprocess.run(
        [sys.executable, "-c", LOGGING_ONCE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert err.count("hub-warning-13") == 1, err
    assert err.count("core-warning-13") == 1, err
    assert "second line" not in err  # one line per record unless verbose
    assert "core-info-13" not in err
    assert "after-stop-13" not in err  # removed again (the library itself prints nothing)
