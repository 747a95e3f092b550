"""The API key never leaks: repr, model_dump, dumps, errors. And dumps/loads round-trips."""

from __future__ import annotations

import pytest
from langchain_core.load import dumps, loads
from pydantic import SecretStr, ValidationError

from langchain_memreranker import MemRerank
from memreranker import MemReranker

KEY = "sk-very-secret-0123456789"


def test_api_key_is_a_secret_str() -> None:
    compressor = MemRerank(backend="memos", api_key=KEY)
    assert isinstance(compressor.api_key, SecretStr)
    assert compressor.api_key.get_secret_value() == KEY
    assert compressor.reranker.settings.api_key is not None
    assert compressor.reranker.settings.api_key.get_secret_value() == KEY
    assert compressor.lc_secrets == {"api_key": "MEMOS_API_KEY"}


def test_api_key_absent_from_every_rendering() -> None:
    compressor = MemRerank(backend="memos", api_key=KEY, model="m")
    renderings = [
        repr(compressor),
        str(compressor),
        repr(compressor.reranker),
        str(compressor.model_dump()),
        compressor.model_dump_json(),
        str(compressor.model_dump(mode="json")),
        dumps(compressor),
        dumps(compressor, pretty=True),
        str(MemRerank.model_json_schema()),
    ]
    for text in renderings:
        assert KEY not in text
    assert "api_key" not in compressor.model_dump()


def test_dumps_writes_a_secret_reference() -> None:
    text = dumps(MemRerank(backend="memos", api_key=KEY, model="m", top_n=5))
    assert '"api_key": {"lc": 1, "type": "secret", "id": ["MEMOS_API_KEY"]}' in text


@pytest.mark.filterwarnings("ignore:The function `loads` is in beta")
def test_dumps_loads_round_trip() -> None:
    original = MemRerank(
        backend="memos", api_key=KEY, model="m", top_n=5, score_threshold=0.25, timeout=3.0
    )
    restored = loads(
        dumps(original),
        secrets_map={"MEMOS_API_KEY": KEY},
        valid_namespaces=["langchain_memreranker"],
        allowed_objects=[MemRerank],
    )
    assert isinstance(restored, MemRerank)
    assert restored.api_key is not None
    assert restored.api_key.get_secret_value() == KEY
    assert (restored.model, restored.top_n, restored.score_threshold, restored.timeout) == (
        "m",
        5,
        0.25,
        3.0,
    )
    assert restored.reranker is not original.reranker


def test_dumps_with_a_ready_reranker_is_not_implemented() -> None:
    compressor = MemRerank(reranker=MemReranker("memos", model="m", api_key=KEY))
    text = dumps(compressor)
    assert '"type": "not_implemented"' in text
    assert KEY not in text
    assert KEY not in repr(compressor)
    assert KEY not in str(compressor.model_dump())


def test_errors_never_echo_the_key() -> None:
    with pytest.raises(ValueError) as conflict:
        MemRerank(reranker=MemReranker("memos", model="m"), api_key=KEY)
    assert KEY not in str(conflict.value)
    with pytest.raises(ValidationError) as extra:
        MemRerank(backend="memos", api_key=KEY, bogus=1)
    assert KEY not in str(extra.value)
    with pytest.raises(ValidationError) as bad_type:
        MemRerank(backend="memos", api_key=[KEY])
    assert KEY not in str(bad_type.value)
    with pytest.raises(ValidationError, match="api_key applies to the memos") as local:
        MemRerank(api_key=KEY)  # local weights would leave the key silently unused
    assert KEY not in str(local.value)


def test_no_key_is_read_into_the_object(monkeypatch: pytest.MonkeyPatch) -> None:
    # The memos backend reads $MEMOS_API_KEY itself; the shell never copies it, so that it
    # is neither serialised nor sent to another backend (a vLLM server, say).
    monkeypatch.setenv("MEMOS_API_KEY", KEY)
    compressor = MemRerank()
    assert compressor.api_key is None
    assert compressor.reranker.settings.api_key is None
    assert KEY not in dumps(compressor)
