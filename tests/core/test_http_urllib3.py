"""The sync transport's request deadline rests on urllib3 internals: checked, not assumed."""

from __future__ import annotations

import re

import pytest
import urllib3
from urllib3.connectionpool import HTTPConnectionPool

from memreranker import MemReranker
from memreranker.http.sync_transport import check_urllib3


def test_the_installed_urllib3_has_the_internals_the_deadline_uses() -> None:
    # On a urllib3 without them this fails with the one message below, naming its version.
    check_urllib3()


def test_missing_internals_are_refused_naming_the_urllib3_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(HTTPConnectionPool, "_put_conn")
    message = rf"urllib3 {re.escape(urllib3.__version__)} lacks HTTPConnectionPool\._put_conn"
    with pytest.raises(RuntimeError, match=message):
        check_urllib3()
    with pytest.raises(RuntimeError, match=message):  # at construction, not at the first call
        MemReranker("vllm", base_url="http://127.0.0.1:9", on_error="raise")
