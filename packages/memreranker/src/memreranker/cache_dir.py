"""Where memreranker keeps what it builds for reuse: the stand-in model, ONNX exports.

``$MEMRERANKER_CACHE`` if set, else ``$XDG_CACHE_HOME/memreranker`` or
``~/.cache/memreranker`` (``%LOCALAPPDATA%\\memreranker`` on Windows). A foundation module,
so that the local backends (ONNX exports) and the surfaces (the stand-in) share one rule.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "MEMRERANKER_CACHE"


def cache_dir() -> Path:
    """The cache directory (not created here)."""
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "memreranker"
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base).expanduser() / "memreranker"
