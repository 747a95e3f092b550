"""Is the Hugging Face Hub reachable? Find out in seconds, and use only the local cache if not.

Loading a Hub id (``IAAR-Shanghai/MemReranker-4B``) on a machine without network makes
huggingface_hub retry each file with backoff, about half a minute, before transformers
looks in the local cache. Programs that own their process (the command line, the demo,
the examples) call :func:`check_hub` before loading: when the Hub does not answer within a
few seconds it switches huggingface_hub to offline mode, so a model already in the local
cache still loads at once and a missing one fails at once, and it returns one line saying so.

The library itself never does this: ``MemReranker`` leaves the process's Hub settings alone.
This module imports neither torch nor huggingface_hub.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
"""Where the Hub is, unless ``$HF_ENDPOINT`` says otherwise (as for huggingface_hub)."""

PROBE_TIMEOUT = 3.0
"""Seconds :func:`check_hub` waits for the Hub before going offline."""

_TRUE = {"1", "on", "yes", "true"}


def looks_like_path(name: str) -> bool:
    """Whether ``name`` means a directory rather than a Hub id (``owner/name``).

    A Hub id has at most one ``/``; a name starting with ``.``, ``~`` or the path separator,
    one with more than one ``/``, or one naming an existing directory is a path.
    """
    return name.startswith((".", "~", os.sep)) or name.count("/") > 1 or Path(name).is_dir()


def hub_offline() -> bool:
    """Whether huggingface_hub is in offline mode (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``)."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and getattr(constants, "HF_HUB_OFFLINE", False):
        return True
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def go_offline() -> None:
    """Put huggingface_hub in offline mode for this process (only the local cache is used).

    It reads ``HF_HUB_OFFLINE`` once, when imported; if it already is, its constant is set too.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_reachable(timeout: float = PROBE_TIMEOUT, *, endpoint: str | None = None) -> bool:
    """Whether the Hub answers an HTTP request (any status) within ``timeout`` seconds.

    The request goes through ``requests`` (proxies and CA settings from the environment
    apply) in a daemon thread, so a stalled name lookup cannot hold the caller longer.
    """
    url = endpoint or hub_endpoint()
    if urlsplit(url).scheme not in ("http", "https"):
        return False
    answered = threading.Event()

    def probe() -> None:
        import requests

        try:
            requests.head(url, timeout=timeout, allow_redirects=False).close()
        except Exception:  # any failure to get an answer means "not reachable"
            return
        answered.set()

    thread = threading.Thread(target=probe, name="memreranker-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return answered.is_set()


def check_hub(model: str, *, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Before loading ``model``: go offline if it is a Hub id and the Hub cannot be reached.

    Returns a one-line notice when it switched huggingface_hub to offline mode, else
    ``None`` (``model`` is a directory, offline mode was already on, huggingface_hub is not
    installed, or the Hub answered).
    """
    if looks_like_path(model) or hub_offline():
        return None
    if importlib.util.find_spec("huggingface_hub") is None:
        return None  # no local backend installed: nothing will contact the Hub
    if hub_reachable(timeout):
        return None
    go_offline()
    host = urlsplit(hub_endpoint()).netloc or hub_endpoint()
    return (
        f"the Hugging Face Hub ({host}) cannot be reached: "
        "loading only what is already in the local cache"
    )


def one_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an error's message, cut to ``limit`` characters (for one-line reports).

    Loading errors from transformers run over several lines (advice, links); the first says
    what went wrong.
    """
    text = str(error).strip()
    first = text.splitlines()[0].strip() if text else type(error).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."
