"""The ``memreranker`` command: the parser, the exit statuses and the options every subcommand
shares. The subcommands live in their own modules, listed in :data:`COMMANDS`.

Adding a subcommand takes one line here (its module in :data:`COMMANDS`) and, in its module,
``register(subparsers)``::

    def register(subparsers: Subparsers) -> None:
        parser = add_command(subparsers, "eval", help="...", description="...")
        add_reranker_options(parser)          # --backend, --model, ... as for rerank
        parser.add_argument(...)
        parser.set_defaults(run=run)          # run(args) -> int, an ExitStatus

``register`` runs whenever the parser is built (also for ``--help``), so such a module
imports only light modules at the top and the rest inside ``run``. ``run`` raises
:class:`UsageError` for user mistakes (one line on stderr, exit status 2) and returns an
:class:`ExitStatus` otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import textwrap
import typing
import warnings
from collections.abc import Callable, Iterator, Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TextIO

import memreranker
from memreranker.backend_table import BUILTIN_BACKENDS
from memreranker.settings import RerankerSettings

if TYPE_CHECKING:
    from memreranker.reranker import MemReranker

COMMANDS: tuple[str, ...] = ("memreranker.rerank_cli", "memreranker.eval.cli")
"""Modules of the subcommands, in the order ``--help`` lists them; each has ``register``."""

PROG = "memreranker"

Subparsers = Any  # argparse's _SubParsersAction, private in typeshed


class ExitStatus(IntEnum):
    """What a ``memreranker`` command's exit status means (the same for every subcommand);
    :data:`EXIT_STATUS_MEANINGS` says it in words, and ``--help`` shows those."""

    OK = 0
    SCORING_FAILED = 1
    USAGE = 2
    FALLBACK = 3
    INTERRUPTED = 130


EXIT_STATUS_MEANINGS: dict[ExitStatus, str] = {
    ExitStatus.OK: "success",
    ExitStatus.SCORING_FAILED: "scoring failed, with --on-error raise (the error is on stderr)",
    ExitStatus.USAGE: "user error: bad arguments, a missing or invalid input file (one line "
    "on stderr)",
    ExitStatus.FALLBACK: "the output is a fallback: nothing was scored; the documents are "
    "printed in input order with score 0 and flagged, and the reason is on stderr",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl-C, SIGINT)",
}

EXIT_STATUS_HELP = "exit status:\n" + "\n".join(
    textwrap.fill(text, 90, initial_indent=f"  {status.value}  ", subsequent_indent=" " * 5)
    for status, text in EXIT_STATUS_MEANINGS.items()
)


class UsageError(Exception):
    """A user mistake: reported as one line on stderr, exit status 2, no traceback."""


class _Parser(argparse.ArgumentParser):
    """Reports argument errors as one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Rerank documents (an agent's memories, RAG chunks) by how well they "
        "answer a query, with MemReranker models: local weights or a hosted rerank API.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {memreranker.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        importlib.import_module(module).register(subparsers)
    return parser


def add_command(
    subparsers: Subparsers, name: str, *, help: str, description: str
) -> argparse.ArgumentParser:
    """A subcommand's parser, with ``-v`` and the exit statuses in its ``--help``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at INFO level, messages in full"
    )
    return parser


# --- The reranker options, shared by every subcommand that builds a MemReranker ---------------


def literal_choices(field: str) -> list[str]:
    """The values of a settings field declared as a ``Literal`` (``None`` left out), so that
    a value added to the settings (a backend, a dtype) shows up here without a change."""
    found: list[str] = []
    pending: list[Any] = [RerankerSettings.model_fields[field].annotation]
    while pending:
        tp = pending.pop(0)
        if typing.get_origin(tp) is typing.Literal:
            found.extend(v for v in typing.get_args(tp) if isinstance(v, str))
        else:
            pending.extend(typing.get_args(tp))
    return found


def _default(field: str) -> Any:
    return RerankerSettings.model_fields[field].default


def _number(kind: type, low: float, strict: bool) -> Callable[[str], Any]:
    sign = ">" if strict else ">="
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {noun} {sign} {low:g}, got {text!r}"
            ) from None
        if value != value or (value <= low if strict else value < low):  # NaN fails too
            raise argparse.ArgumentTypeError(f"must be {noun} {sign} {low:g}, got {text!r}")
        return value

    return parse


positive_int = _number(int, 0, strict=True)
non_negative_int = _number(int, 0, strict=False)
positive_float = _number(float, 0, strict=True)


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number within [0, 1], got {text!r}")
    return value


RERANKER_FIELDS = (
    "backend",
    "model",
    "base_url",
    "instruction",
    "on_error",
    "device",
    "dtype",
    "batch_size",
    "timeout",
    "max_retries",
)
"""The settings fields that :func:`add_reranker_options` adds as options (``--base-url`` for
``base_url``...); ``--api-key-env`` is the one option that is not a field."""


def add_reranker_options(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--model``, ... ``--api-key-env``: what builds the MemReranker."""
    group = parser.add_argument_group("reranker")
    group.add_argument(
        "--backend",
        choices=list(BUILTIN_BACKENDS),
        default=None,
        help=f"where scores come from (default: {_default('backend')})",
    )
    group.add_argument(
        "--model",
        default=None,
        help="local: a Hub id or a directory (default: IAAR-Shanghai/MemReranker-4B); "
        "memos: memos-reranker-0.6b (default) or memos-reranker-4b; vllm: the served name",
    )
    group.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="service root of a hosted backend (memos: $MEMOS_BASE_URL or the MemOS cloud)",
    )
    group.add_argument(
        "--instruction",
        default=None,
        metavar="TEXT",
        help="the <Instruct> line of the prompt (default: the model card's)",
    )
    group.add_argument(
        "--on-error",
        choices=literal_choices("on_error"),
        default=None,
        help="fallback: print the input order, flagged, exit status 3; raise: report the "
        f"error, exit status 1 (default: {_default('on_error')})",
    )
    group.add_argument(
        "--api-key-env",
        default=None,
        metavar="NAME",
        help="read the service's API key from the environment variable NAME (the memos "
        "backend reads $MEMOS_API_KEY without it); a key is never given on the command line",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help=f"hosted: seconds per HTTP attempt (default: {_default('timeout'):g})",
    )
    group.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=None,
        metavar="N",
        help=f"hosted: retries after a retryable failure (default: {_default('max_retries')})",
    )
    group.add_argument(
        "--device",
        default=None,
        help="local: torch device, e.g. cpu, cuda, cuda:1 (default: CUDA if present, else CPU)",
    )
    group.add_argument(
        "--dtype",
        choices=literal_choices("dtype"),
        default=None,
        help="local: weights dtype (default: bfloat16 on CUDA, float32 on CPU)",
    )
    group.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="local: pairs per forward pass (default: 16 for yes/no rerankers, 32 for "
        "cross-encoders)",
    )


def reranker_settings(args: argparse.Namespace) -> RerankerSettings:
    """The settings the reranker options describe; :class:`UsageError` if they are invalid.

    Options left out keep the settings' defaults (and the environment variables the core
    reads, such as ``$MEMOS_API_KEY``).
    """
    from pydantic import ValidationError

    values: dict[str, Any] = {
        field: getattr(args, field)
        for field in RERANKER_FIELDS
        if getattr(args, field, None) is not None
    }
    if args.api_key_env is not None:
        values["api_key"] = api_key_from_env(args.api_key_env)
    try:
        return RerankerSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise UsageError(problems) from None


def api_key_from_env(name: str) -> str:
    """``--api-key-env NAME``: the key in ``$NAME``; :class:`UsageError` if unset or empty."""
    key = os.environ.get(name, "").strip()
    if not key:
        raise UsageError(f"--api-key-env: the environment variable {name} is not set or empty")
    return key


def build_reranker(args: argparse.Namespace) -> MemReranker:
    """The MemReranker the reranker options describe; :class:`UsageError` if it cannot be
    built (invalid settings, no API key for memos, no ``--base-url`` for vllm...)."""
    from memreranker.reranker import MemReranker

    settings = reranker_settings(args)
    try:
        return MemReranker.from_settings(settings)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


# --- Running ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``memreranker``; returns the exit status (see :class:`ExitStatus`)."""
    from memreranker.logs import log_to_stderr, stop_logging_to_stderr

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _usage(exc)
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else ExitStatus.OK
    log_to_stderr(verbose=args.verbose, prefix=f"{PROG}: ")
    try:
        with _library_chatter(args.verbose):
            return int(args.run(args))
    except UsageError as exc:
        return _usage(exc)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`) before any output of write_output: no traceback.
        _discard_stdout()
        return ExitStatus.OK
    finally:
        stop_logging_to_stderr()


def write_output(write: Callable[[TextIO], None]) -> None:
    """Run ``write(sys.stdout)`` and flush it. A reader that goes away (``| head -1``) ends
    the output quietly, and the command still exits with its own status (3 after a fallback,
    which a broken pipe must not turn into 0)."""
    try:
        write(sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()


def _discard_stdout() -> None:
    # What is still buffered goes nowhere, not to a closed pipe at exit (another traceback).
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # a stdout without a file descriptor (captured)
        pass


@contextlib.contextmanager
def _library_chatter(verbose: bool) -> Iterator[None]:
    """Unless ``-v``: no "Loading weights" bars and no deprecation notices from transformers
    and torch, which a user of the command cannot act on (our own progress bar stays)."""
    if verbose:
        yield
        return
    name = "HF_HUB_DISABLE_PROGRESS_BARS"
    before = os.environ.get(name)
    os.environ.setdefault(name, "1")
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", category=category, module="transformers")
                warnings.filterwarnings("ignore", category=category, module="torch")
            yield
    finally:
        if before is None:
            os.environ.pop(name, None)


def _usage(exc: UsageError) -> int:
    sys.stderr.write(f"{PROG}: error: {exc}\n")
    return ExitStatus.USAGE


if __name__ == "__main__":
    raise SystemExit(main())
