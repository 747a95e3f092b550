"""The command as a user runs it: the installed console script and ``python -m memreranker``,
in their own processes (tracebacks, exit statuses and timings are the process's)."""

from __future__ import annotations

import sys
from pathlib import Path

from runkit import BIN, FIRST_OUTPUT_LIMIT_S, offline_env, run_program

import memreranker


def test_missing_documents_file_exits_2_with_one_line(tmp_path: Path) -> None:
    done = run_program(
        [str(BIN / "memreranker"), "rerank", "-q", "drinks?", "-d", str(tmp_path / "nope.txt")],
        env=offline_env(tmp_path, hub="http://127.0.0.1:9"),
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("memreranker: error: --documents ")
    assert "no such file" in done.stderr


def test_python_m_memreranker(tmp_path: Path) -> None:
    done = run_program(
        [sys.executable, "-m", "memreranker", "--version"],
        env=offline_env(tmp_path, hub="http://127.0.0.1:9"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"memreranker {memreranker.__version__}\n"


def test_offline_the_cli_says_so_at_once_and_exits_3(tmp_path: Path, refused_url: str) -> None:
    """A Hub id without network: one line about the Hub within seconds (not half a minute of
    retries, each warning printed twice), then the fallback output and exit status 3."""
    done = run_program(
        [str(BIN / "memreranker"), "rerank", "-q", "What does the user drink?"],
        env=offline_env(tmp_path, hub=refused_url),
        input="User likes tea.\nUser plays badminton.\n",
    )
    assert done.returncode == 3, done.stderr
    assert done.first_output_s is not None and done.first_output_s < FIRST_OUTPUT_LIMIT_S
    lines = done.stderr.splitlines()
    assert lines[0].startswith("memreranker: the Hugging Face Hub (127.0.0.1:")
    assert "cannot be reached" in lines[0]
    assert "Retrying" not in done.stderr and "Traceback" not in done.stderr
    assert len(lines) == len(set(lines)) == 2, done.stderr  # the notice, the fallback reason
    assert "falling back to original order" in lines[1]
    table = done.stdout.splitlines()
    assert [row.split()[-1] for row in table[1:3]] == ["tea.", "badminton."]
    assert "*" in table[1] and table[-1].startswith("* not scored")


def test_a_fallback_piped_into_head_still_exits_3(tmp_path: Path, refused_url: str) -> None:
    """``memreranker rerank ... | head -1``: the reader goes away after one line, and the
    exit status still says that the output is a fallback (a broken pipe is not success)."""
    docs = tmp_path / "docs.txt"
    docs.write_text("".join(f"memory {i}: the user likes tea\n" for i in range(3000)))
    command = (
        f"set -o pipefail; {BIN / 'memreranker'} rerank -q 'What does the user drink?' "
        f"-d {docs} --backend vllm --base-url {refused_url} --max-retries 0 | head -1"
    )
    done = run_program(["bash", "-c", command], env=offline_env(tmp_path, hub=refused_url))
    assert done.returncode == 3, done.stderr  # pipefail: memreranker's status, not head's
    assert done.stdout.split() == ["rank", "score", "index", "line", "document"]
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert "falling back to original order" in done.stderr
