"""Show the library's log records on stderr, once each: for programs, not for the library.

The command line, the demo and the examples call :func:`log_to_stderr`. It puts one handler
on the ``memreranker`` logger instead of configuring the root logger (``basicConfig``):
huggingface_hub and transformers print through handlers of their own and still propagate
to the root, so a root handler prints each of their warnings a second time.
"""

from __future__ import annotations

import logging
import sys

LOGGER = "memreranker"


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


class _FirstLine(logging.Formatter):
    """Keeps the first line of a message: errors from transformers append advice and links."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        first, _, rest = text.partition("\n")
        return first + (" [...]" if rest.strip() else "")


def log_to_stderr(*, verbose: bool = False, prefix: str = "") -> logging.Handler:
    """Print ``memreranker`` warnings (with ``verbose``: also INFO, in full) on stderr.

    Calling it again replaces the handler it added before, so a record is never printed
    twice. Returns the handler; remove it with :func:`stop_logging_to_stderr`.

    Args:
        verbose: Show INFO records too, and every line of multi-line messages.
        prefix: Put before each line (the command line passes ``"memreranker: "``).
    """
    logger = logging.getLogger(LOGGER)
    stop_logging_to_stderr()
    handler = _StderrHandler()
    fmt = f"{prefix}%(levelname)s: %(message)s" if prefix else "%(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt) if verbose else _FirstLine(fmt))
    handler.set_name("memreranker-stderr")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    return handler


def stop_logging_to_stderr() -> None:
    """Remove the handler of :func:`log_to_stderr` (if any) and reset the logger's level."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        if handler.get_name() == "memreranker-stderr":
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
