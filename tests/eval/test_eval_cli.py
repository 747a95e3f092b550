"""``memreranker eval``: in-process through ``main([...])``, plus one real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eval_kit import DATA, LOCOMO_SAMPLE
from servers import RerankServer

from memreranker.cli import main

SMALL = DATA / "small.jsonl"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_with_the_tiny_model_offline(
    capsys: pytest.CaptureFixture[str], tiny_model: Path
) -> None:
    code, out, err = run_cli(capsys, "--sample", "--reranker", f"tiny=local:{tiny_model}", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["queries"] == 12 and data["pairs"] == 96
    assert list(data["results"]) == ["first-stage", "tiny"]
    assert set(data["results"]["tiny"]) == set(data["metrics"])
    assert data["rerankers"]["tiny"]["fallback_queries"] == 0
    assert data["rerankers"]["tiny"]["spec"] == f"local:{tiny_model}"
    assert set(data["p_values"]["tiny"]) == set(data["metrics"]) - {"F1"}
    # The bar: fed by the core while scoring, one per reranker, ending at every pair.
    assert "tiny: 100%" in err and "96/96" in err


def test_locomo_end_to_end_with_bm25_categories_and_a_plot(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    plot = tmp_path / "chart.png"
    code, out, err = run_cli(
        capsys, str(LOCOMO_SAMPLE), "--first-stage", "bm25", "--candidates", "4",
        "--category", "1,2", "--category", "4", "--reranker", f"tiny=local:{tiny_model}",
        "--plot", str(plot), "--no-progress", "--stat-test", "fisher",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("| system | MAP | MRR | NDCG@1 | NDCG@3 | NDCG@10 | NDCG |")
    assert lines[2].startswith("| first-stage |") and lines[3].startswith("| tiny |")
    assert "5 queries, 20 pairs" in out and "candidates: bm25 top-4" in out
    assert "Skipped" not in out  # the broken questions are of category 3, filtered out first
    assert "Fisher's randomization test" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tiny:" not in err and "pair" not in err  # no bar of ours with --no-progress
    assert not [r for r in caplog.records if r.name == "bm25s"]  # its DEBUG lines stay off


def test_a_dead_service_is_reported_as_fallbacks_with_exit_3(
    capsys: pytest.CaptureFixture[str], refused_url: str
) -> None:
    code, out, err = run_cli(
        capsys, str(SMALL), "--reranker", f"dead=vllm:m@{refused_url}", "--max-retries", "0",
        "--timeout", "2", "--no-progress",
    )
    assert code == 3
    row = next(line for line in out.splitlines() if line.startswith("| dead |"))
    assert row.endswith("| 4/4 |")
    assert "fell back" in out  # the table's note on how fallbacks count
    warning, summary, hidden = err.splitlines()
    assert warning.startswith("memreranker: ") and "falling back to original order" in warning
    assert summary.startswith("memreranker eval: dead fell back on 4/4 queries: ")
    assert "ServiceConnectionError" in summary
    # The core's warning is logged once; the 3 repeats are counted, not printed.
    assert hidden == "memreranker eval: 3 repeated warnings not shown (-v shows them)"


def test_on_error_raise_exits_1_with_one_line(
    capsys: pytest.CaptureFixture[str], refused_url: str
) -> None:
    code, out, err = run_cli(
        capsys, str(SMALL), "--reranker", f"vllm:m@{refused_url}", "--max-retries", "0",
        "--on-error", "raise", "--no-progress",
    )
    assert (code, out) == (1, "")
    assert err.startswith("memreranker eval: ServiceConnectionError") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "missing.jsonl: no such file"),
        (["BAD"], "bad.jsonl:2: not valid JSON"),
        ([str(SMALL), "--reranker", "nonsense"], "reranker spec 'nonsense': expected"),
        ([str(SMALL), "--reranker", "vllm:m"], "expected vllm:MODEL@URL"),
        ([str(SMALL), "--category", "1"], "categories select LOCOMO"),
        ([str(LOCOMO_SAMPLE), "--category", "one"], "--category takes integers"),
        ([str(SMALL), "--threshold", "2"], "--threshold: must be a number within [0, 1]"),
        ([str(SMALL), "--candidates", "0"], "--candidates: must be an integer > 0"),
        ([], "give a data file or --sample"),
        ([str(SMALL), "--sample"], "give a data file or --sample"),
        ([str(SMALL), "--reranker", "a=local:/x", "--reranker", "a=local:/y"], "named 'a'"),
        (["DEEP"], "deep.jsonl:1: JSON nested too deeply"),
        (["TWINS"], "twins.json: sample 1: duplicate sample_id 'conv-a'"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(SMALL.read_text().splitlines()[0] + "\n{oops\n", encoding="utf-8")
    (tmp_path / "deep.jsonl").write_text('{"query": ' + "[" * 10**5 + "]" * 10**5 + "}\n")
    twins = json.loads(LOCOMO_SAMPLE.read_text(encoding="utf-8"))
    (tmp_path / "twins.json").write_text(json.dumps([twins[0], twins[0]]), encoding="utf-8")
    files = {"BAD": bad, "DEEP": tmp_path / "deep.jsonl", "TWINS": tmp_path / "twins.json"}
    args = [str(files[a]) if a in files else a for a in args]
    if args[:1] == ["missing.jsonl"]:
        args = [str(tmp_path / "missing.jsonl")]
    code, out, err = run_cli(capsys, *args)
    assert (code, out) == (2, "")
    assert err.startswith("memreranker: error: ") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no-such-dir/chart.png", "no such directory"),
        (".", "it is a directory"),
        ("chart.xyz", "unknown image format .xyz"),
    ],
)
def test_plot_that_cannot_be_written_is_refused_before_the_evaluation(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    rerank_server: RerankServer,
    target: str,
    message: str,
) -> None:
    code, out, err = run_cli(
        capsys, str(SMALL), "--reranker", f"vllm:m@{rerank_server.url}",
        "--plot", str(tmp_path / target), "--no-progress",
    )  # fmt: skip
    assert (code, out) == (2, "")  # no report: nothing was evaluated...
    assert rerank_server.requests == []  # ...nor scored
    assert "cannot write the plot" in err and message in err and err.count("\n") == 1


def test_api_key_env_gives_the_key_to_vllm_and_tei(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-eval-key-4711"
    monkeypatch.setenv("TEAM_RERANK_KEY", secret)
    with RerankServer(api_key=secret) as server:
        specs = [f"v=vllm:m@{server.url}", f"t=tei:{server.tei_base_url}"]
        argv = [str(SMALL), "--max-retries", "0", "--no-progress", "--json"]
        argv += [arg for spec in specs for arg in ("--reranker", spec)]
        code, out, err = run_cli(capsys, *argv)
        assert code == 3  # without the key: 401, every query falls back
        assert json.loads(out)["rerankers"]["v"]["fallback_queries"] == 4
        server.reset()
        code, out, err = run_cli(capsys, *argv, "--api-key-env", "TEAM_RERANK_KEY")
        assert code == 0, err
        sent = {(r.path, r.headers.get("authorization")) for r in server.requests}
        assert sent == {("/v1/rerank", f"Bearer {secret}"), ("/tei/rerank", f"Bearer {secret}")}
        assert secret not in out + err
    code, out, err = run_cli(capsys, *argv, "--api-key-env", "NO_SUCH_VAR_22")
    assert (code, out) == (2, "") and "NO_SUCH_VAR_22 is not set" in err


def test_credentials_in_a_spec_url_are_redacted_everywhere(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    rerank_server: RerankServer,
    refused_url: str,
) -> None:
    """The name of a spec is the spec: its URL's user:password must not reach the Markdown
    and JSON reports, stderr or the plot."""
    secret = "sk-in-the-url-0815"
    live = rerank_server.url.replace("http://", f"http://user:{secret}@")
    dead = refused_url.replace("http://", f"http://user:{secret}@")
    argv = [
        str(SMALL), "--reranker", f"vllm:m@{live}", "--reranker", f"vllm:m@{dead}",
        "--max-retries", "0", "--timeout", "2", "--no-progress",
    ]  # fmt: skip
    chart = tmp_path / "chart.svg"
    code, markdown, err = run_cli(capsys, *argv, "--plot", str(chart))
    assert code == 3  # the dead one fell back
    code, as_json, json_err = run_cli(capsys, *argv, "--json")
    assert code == 3
    redacted = rerank_server.url.replace("http://", "http://***@")
    assert f"| vllm:m@{redacted} |" in markdown
    assert list(json.loads(as_json)["results"])[1] == f"vllm:m@{redacted}"
    assert "fell back on 4/4 queries" in err
    svg = chart.read_text(encoding="utf-8")
    assert "vllm:m@http://***@127.0.0.1" in svg  # the legend, as an SVG comment
    for text in (markdown, err, as_json, json_err, svg):
        assert secret not in text
    twice = ["--reranker", f"vllm:m@{live}/v1", "--reranker", f"vllm:m@{live}/v1"]
    code, _, err = run_cli(capsys, str(SMALL), *twice)
    assert code == 2 and "named 'vllm:m@http://***@127.0.0.1" in err and secret not in err


def test_installed_command(tmp_path: Path) -> None:
    """The console script reaches the subcommand and exits with its status. (No reranker:
    the tiny model's path is proven in-process above; torch would only add start-up time.)"""
    command = Path(sys.executable).with_name("memreranker")
    proc = subprocess.run(
        [str(command), "eval", "--sample", "--json"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["queries"] == 12
    proc = subprocess.run(
        [str(command), "eval", str(tmp_path / "missing.jsonl")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "no such file" in proc.stderr


def test_importing_the_core_and_the_cli_does_not_import_eval_dependencies() -> None:
    code = (
        "import sys, memreranker, memreranker.cli, memreranker.eval\n"
        "heavy = {'ranx', 'bm25s', 'matplotlib', 'numba', 'numpy', 'scipy', 'torch', 'tqdm'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "import importlib; importlib.import_module('memreranker')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout.strip() == "[]"
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, memreranker; print('memreranker.eval' in sys.modules)"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert proc.stdout.strip() == "False"
