"""Configuration of the hosted backends: keys, URLs, secrets, warnings, no torch."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from servers import Reply, RerankServer, memos_error
from servers.clients import FAST, MODES, rerank

from memreranker import AuthenticationError, InvalidResponseError, MemReranker, RerankerSettings
from memreranker.http.protocol import DEFAULT_MEMOS_BASE_URL

KEY = "sk-memos-SECRET-5e1d0a9c33b7"
DOCS = ["alpha", "beta", "gamma"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMOS_API_KEY", raising=False)
    monkeypatch.delenv("MEMOS_BASE_URL", raising=False)


# --- Keys and URLs ---------------------------------------------------------------------------


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(ValueError, match="MEMOS_API_KEY"):
        MemReranker("memos")
    with pytest.raises(ValueError, match="MEMOS_API_KEY"):
        MemReranker("memos", api_key="   ")


def test_key_and_base_url_from_environment(
    rerank_server: RerankServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMOS_API_KEY", KEY)
    monkeypatch.setenv("MEMOS_BASE_URL", rerank_server.memos_base_url)
    with MemReranker("memos", on_error="raise", **FAST) as rr:
        rr.rerank("q", DOCS)
    assert rerank_server.last.headers["authorization"] == f"Token {KEY}"
    assert rerank_server.last.path == "/api/openmem/v1/rerank"


def test_arguments_win_over_environment(
    rerank_server: RerankServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMOS_API_KEY", "sk-from-env-000000")
    monkeypatch.setenv("MEMOS_BASE_URL", "https://elsewhere.invalid/api")
    with MemReranker(
        "memos", api_key=KEY, base_url=rerank_server.memos_base_url, on_error="raise", **FAST
    ) as rr:
        rr.rerank("q", DOCS)
    assert rerank_server.last.headers["authorization"] == f"Token {KEY}"


def test_documented_default_base_url() -> None:
    rr = MemReranker("memos", api_key=KEY)
    assert rr.backend.endpoint_url == DEFAULT_MEMOS_BASE_URL + "/rerank"  # type: ignore[attr-defined]
    assert rr.name == "memos:memos-reranker-0.6b"


def test_key_with_control_characters_rejected_without_echo() -> None:
    with pytest.raises(ValueError) as info:
        MemReranker("memos", api_key="sk-abc\r\nX-Evil: 1")
    assert "sk-abc" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "warns"),
    [
        ("http://10.1.2.3:8000", True),
        ("http://rerank.example.com", True),
        ("http://localhost:8000", False),
        ("http://127.0.0.1:8000", False),
        ("http://[::1]:8000", False),
        ("https://rerank.example.com", False),
    ],
)
def test_plain_http_to_remote_host_warns(
    url: str, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="memreranker")
    MemReranker("vllm", base_url=url)
    MemReranker("memos", api_key=KEY, base_url=url)
    assert ("plain http" in caplog.text) is warns


def test_unknown_memos_model_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="memreranker")
    MemReranker("memos", api_key=KEY, model="memos-reranker-9b")
    assert "memos-reranker-9b" in caplog.text


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("retry_backoff", -1),
        ("max_documents_per_request", 0),
        ("max_tokens_per_request", 0),
        ("max_concurrency", 0),
        ("deadline", 0),
    ],
)
def test_invalid_http_settings(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        MemReranker("vllm", base_url="http://localhost:8000", **{option: value})


def test_http_settings_are_declared_once() -> None:
    fields = RerankerSettings.model_fields
    for name in (
        "deadline",
        "retry_backoff",
        "retry_backoff_max",
        "max_documents_per_request",
        "max_tokens_per_request",
        "max_query_tokens",
        "max_document_tokens",
        "truncate",
        "max_concurrency",
    ):
        assert fields[name].description, name


# --- The key never leaks -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_secret_never_in_repr_errors_or_logs(
    rerank_server: RerankServer, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rr = MemReranker(
        "memos", api_key=KEY, base_url=rerank_server.memos_base_url, on_error="raise", **FAST
    )
    texts = [repr(rr), str(rr), repr(rr.backend), repr(rr.settings), str(rr.settings)]
    texts.append(rr.settings.model_dump_json())
    texts.append(str(rr.settings.model_dump()))
    # Servers that echo the Authorization header back in their errors.
    for behaviour, kind in [
        (Reply(401, {"error": {"message": f"invalid header 'Token {KEY}'"}}), AuthenticationError),
        (memos_error(40132, f"API key {KEY} invalid"), AuthenticationError),
        (Reply(200, f"<html>debug: Authorization: Token {KEY}</html>"), InvalidResponseError),
        (Reply(503, f"upstream rejected Token {KEY}"), None),
    ]:
        rerank_server.default = behaviour
        with pytest.raises(kind or Exception) as info:
            rerank(rr, mode, "q", DOCS)
        error = info.value
        texts += [str(error), repr(error), error.message, *map(str, error.args)]
        texts.append("".join(traceback.format_exception(error)))
    # And in fallback mode, the reason carried by the results.
    fallback = MemReranker("memos", api_key=KEY, base_url=rerank_server.memos_base_url, **FAST)
    results = rerank(fallback, mode, "q", DOCS)
    assert all(r.is_fallback for r in results)
    texts += [r.fallback_reason or "" for r in results]
    texts += [repr(r) for r in results]
    texts += [record.getMessage() for record in caplog.records]
    texts += [caplog.text]
    assert all(KEY not in text for text in texts)
    assert any("***" in text for text in texts)  # the echoed key was scrubbed, not dropped
    rr.close()
    fallback.close()


def test_secret_not_pickled_in_settings() -> None:
    settings = RerankerSettings(backend="memos", api_key=KEY)
    assert KEY not in settings.model_dump_json()
    assert KEY.encode() not in pickle.dumps(settings.model_dump())


def test_warning_about_instruction(
    rerank_server: RerankServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Plain texts carry no instruction (the template's use of it: test_http_templates.py).
    caplog.set_level(logging.WARNING, logger="memreranker")
    with MemReranker("vllm", base_url=rerank_server.url, prompt_format="plain", **FAST) as rr:
        rr.rerank("q", DOCS, instruction="Judge relevance")
        rr.rerank("q", DOCS, instruction="Judge relevance")
    assert caplog.text.count("instruction is ignored") == 1
    assert "instruction" not in rerank_server.last.body
    assert "Judge relevance" not in rerank_server.last.raw.decode()


# --- torch stays out -------------------------------------------------------------------------

NO_TORCH = """
import asyncio, sys
from memreranker import MemReranker
url = sys.argv[1]
rr = MemReranker("memos", api_key="sk-subprocess-000000", base_url=url, on_error="raise")
assert not rr.rerank("q", ["a b", "c"])[0].is_fallback
assert not asyncio.run(rr.arerank("q", ["a b", "c"]))[0].is_fallback
vl = MemReranker("vllm", base_url=url.split("/api/")[0])  # the qwen3 template (pure strings)
assert not vl.rerank("q", ["a"], instruction="Find it")[0].is_fallback
tei = MemReranker("tei", base_url=url.split("/api/")[0] + "/tei", prompt_format="qwen3")
assert not asyncio.run(tei.arerank("q", ["a"]))[0].is_fallback
rr.close()
heavy = sorted(m for m in ("torch", "transformers", "safetensors", "numpy") if m in sys.modules)
print("HEAVY", heavy)
assert "torch" not in sys.modules and "transformers" not in sys.modules, heavy
"""


def test_hosted_backends_never_import_torch(rerank_server: RerankServer) -> None:
    src = Path(__file__).resolve().parents[2] / "packages" / "memreranker" / "src"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("MEMOS_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, rerank_server.memos_base_url],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout or "torch" not in done.stdout
    assert len(rerank_server.requests) == 4
