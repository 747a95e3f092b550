"""A stand-in for MemReranker weights that cannot be had, for the demo and the examples.

They run on the real checkpoint when it loads, and otherwise on the tiny random model of
:func:`memreranker.testing.build_test_model` (its scores are meaningless, but every code
path runs). That model is built once into a cache directory and reused by every later run:
``$MEMRERANKER_CACHE`` if set, else ``$XDG_CACHE_HOME/memreranker`` or
``~/.cache/memreranker`` (``%LOCALAPPDATA%\\memreranker`` on Windows). One entry of about
90 MB; a newer ``memreranker.testing`` replaces it instead of adding another.

Needs ``memreranker[testing]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from memreranker.cache_dir import cache_dir
from memreranker.errors import ModelLoadError
from memreranker.hub import check_hub, one_line
from memreranker.reranker import MemReranker
from memreranker.settings import DEFAULT_LOCAL_MODEL

_PREFIX = "tiny-test-model-"


def stand_in_path(seed: int = 0) -> Path:
    """Where :func:`stand_in_model` keeps the model of ``seed`` (built or not yet).

    The name carries a digest of ``memreranker.testing``'s source: a changed builder means
    another model, built afresh.
    """
    from memreranker import testing

    digest = hashlib.sha256(Path(testing.__file__).read_bytes()).hexdigest()[:12]
    return cache_dir() / f"{_PREFIX}{digest}-seed{seed}"


def _complete(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def stand_in_model(seed: int = 0) -> Path:
    """The tiny test model's directory in :func:`cache_dir`, built on the first call.

    Safe when several processes build at once: each builds in a private directory, then
    renames it into place; the first rename wins and the others delete theirs. Older
    entries (from another version of the builder) are removed.
    """
    from memreranker.testing import build_test_model

    target = stand_in_path(seed)
    cache = target.parent
    if _complete(target):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache))
    try:
        with _no_progress_bars():
            build_test_model(building, seed=seed)
        if target.exists() and not _complete(target):
            shutil.rmtree(target, ignore_errors=True)  # a damaged entry: replace it
        try:
            building.rename(target)
        except OSError:
            if not _complete(target):  # not another process's finished build: a real failure
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    for old in cache.glob(f"{_PREFIX}*-seed{seed}"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Without transformers' "Writing model shards" bar: the build is an implementation detail."""
    from transformers.utils import logging as transformers_logging

    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


def load_or_stand_in(
    model: str | None = None, *, announce: Callable[[str], None], **options: Any
) -> tuple[MemReranker, bool]:
    """A loaded local reranker: ``model`` if it loads, else the tiny stand-in model.

    Args:
        model: A Hub id or directory; ``None`` means ``IAAR-Shanghai/MemReranker-4B``.
        announce: Receives one line when the Hub cannot be reached (then only the local
            cache is used, see :func:`memreranker.hub.check_hub`) and one when ``model``
            cannot be loaded and the stand-in takes its place.
        **options: Settings of both rerankers (``on_error``, ``batch_size``...).

    Returns:
        The reranker and whether its scores mean anything (``False`` for the stand-in).
    """
    name = model or DEFAULT_LOCAL_MODEL
    notice = check_hub(name)
    if notice is not None:
        announce(notice[0].upper() + notice[1:] + ".")
    reranker = MemReranker(model=name, **options)
    try:
        reranker.load()
        return reranker, True
    except ModelLoadError as exc:
        reranker.close()
        reason = one_line(exc, 200).rstrip(".")
        announce(
            f"{reason}: running on a tiny random test model instead, so the scores below "
            "are meaningless."
        )
    return MemReranker(model=str(stand_in_model()), **options), False
