"""Deprecation warnings triggered by a call in our code are errors (a pytest plugin module).

A ``filterwarnings = error::FutureWarning:memreranker`` filter cannot say this: a warning
is filed under the module its ``stacklevel`` points at, and transformers' deprecated keyword
warning points into its own decorators (``transformers.utils.output_capturing``), never at
the caller several frames out. So while each test runs (setup, call and teardown), every
DeprecationWarning, PendingDeprecationWarning or FutureWarning that pytest would record is
looked at with its stack: the warning is ours when the first frame, walking out from the
code that warned, past that code's own package, torch's module call machinery and the
standard library, is in our packages, examples or benchmarks (or when our code warned
itself). Ours: raised where it was warned, as ``-W error`` would. Not ours (a dependency
calling another's deprecated API, e.g. sentence-transformers into transformers): recorded
as usual. Filters (``filterwarnings`` marks, ``-W``) still apply first; ``pytest.warns``
records without this check.
"""

from __future__ import annotations

import contextlib
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = tuple(f"{ROOT / name}/" for name in ("packages", "examples", "benchmarks", "scripts"))
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
# Frames a call into a library passes through without being "the caller".
TRANSPARENT = {"torch", "stdlib", "<generated>"}
_STDLIB = tuple(
    f"{Path(sysconfig.get_paths()[key]).resolve()}/" for key in ("stdlib", "platstdlib")
)
_WARNINGS_FILE = warnings.__file__


def origin(filename: str) -> str:
    """Who wrote the code of ``filename``: "ours", a top-level package name, "stdlib"..."""
    if filename.startswith("<"):
        return "<generated>"  # dataclass and namedtuple methods, exec'd code
    path = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.startswith(OURS):
        return "ours"
    if path.startswith(f"{ROOT}/"):
        return path[len(f"{ROOT}/") :].split("/", 1)[0]  # tests
    if path.startswith(_STDLIB):
        return "stdlib"
    return path


def our_call(frame: FrameType | None) -> str | None:
    """``file:line`` of our code that triggered the warning being shown from ``frame``."""
    while frame is not None and frame.f_code.co_filename == _WARNINGS_FILE:
        frame = frame.f_back
    if frame is None:
        return None
    warner = origin(frame.f_code.co_filename)
    while frame is not None:
        here = origin(frame.f_code.co_filename)
        if here == "ours" or (here != warner and here not in TRANSPARENT):
            if here != "ours":
                return None
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


@contextlib.contextmanager
def deprecations_from_our_code_raise() -> Iterator[None]:
    shown = warnings.showwarning  # pytest's recorder for this test

    def showwarning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, DEPRECATIONS):
            where = our_call(sys._getframe(1))
            if where is not None:
                error = message if isinstance(message, Warning) else category(message)
                if hasattr(error, "add_note"):
                    error.add_note(
                        f"(a deprecated call from our code, {where}: tests/{__name__}.py)"
                    )
                raise error
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    try:
        yield
    finally:
        warnings.showwarning = shown


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with deprecations_from_our_code_raise():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with deprecations_from_our_code_raise():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    with deprecations_from_our_code_raise():
        return (yield)
