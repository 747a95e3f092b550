"""Progress of one rerank call, reported by the backends as they score.

A caller asks for it with ``rerank(..., progress=...)``: ``True`` shows a tqdm bar on stderr
(none, without a crash, when tqdm is not installed), a callable receives ``(done, total)``
in documents after every batch, and ``None``/``False`` (the default) reports nothing.

Backends receive an :data:`Advance` (``advance(n)``: ``n`` more documents scored) and call it
after each forward pass or HTTP batch; they never see the bar. The facade owns the
:class:`Progress` of a call: it restarts it when a fallback reranker takes over (that
reranker scores every document again) and completes it when the call returns, so a bar
never ends short (the score cache, duplicate documents scored once) nor over its total.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("memreranker")

ProgressCallback = Callable[[int, int], None]
"""``callback(done, total)``: documents scored so far, out of the call's documents."""

Advance = Callable[[int], None]
"""What a backend calls after each batch: ``advance(n)`` with the documents it just scored."""

ProgressOption = bool | ProgressCallback | None
"""The ``progress`` argument of ``rerank``: True (a tqdm bar), a callback, or None/False."""


def check_progress(progress: Any) -> ProgressOption:
    if progress is None or isinstance(progress, bool) or callable(progress):
        return progress  # type: ignore[no-any-return]
    raise TypeError(
        "progress must be True/False/None or a callable(done, total), "
        f"got {type(progress).__name__}"
    )


class Progress:
    """Documents scored so far in one call, forwarded to a callback and/or a tqdm bar.

    Thread-safe: concurrent HTTP batches and engine threads may advance it.
    """

    def __init__(
        self, total: int, *, callback: ProgressCallback | None = None, bar: Any = None
    ) -> None:
        self.total = total
        self.done = 0
        self._callback = callback
        self._bar = bar
        self._lock = threading.Lock()

    @classmethod
    def create(cls, option: ProgressOption, total: int, *, desc: str) -> Progress | None:
        """The progress of a call of ``total`` documents, or None when nothing is asked."""
        if option is None or option is False:
            return None
        if option is True:
            return cls(total, bar=_tqdm_bar(total, desc))
        return cls(total, callback=option)

    def advance(self, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            step = min(n, self.total - self.done)
            if step <= 0:
                return
            self.done += step
            done = self.done
            if self._bar is not None:
                self._bar.update(step)
        if self._callback is not None:
            self._callback(done, self.total)

    def restart(self) -> None:
        """Back to zero: another reranker of the fallback chain scores every document again."""
        with self._lock:
            if self.done == 0:
                return
            self.done = 0
            if self._bar is not None:
                self._bar.reset(total=self.total)
        if self._callback is not None:
            self._callback(0, self.total)

    def finish(self) -> None:
        """Complete the count (cached and duplicate documents cost no batch) and close."""
        self.advance(self.total - self.done)
        self.close()

    def close(self) -> None:
        """Close the bar, wherever the count stands (a failed call's bar stays short)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _tqdm_bar(total: int, desc: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        logger.debug("tqdm is not installed: no progress bar")
        return None
    return tqdm(total=total, desc=desc, unit="doc", file=sys.stderr, leave=False)
