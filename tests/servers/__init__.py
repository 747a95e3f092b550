"""Loopback test servers shared by every test directory.

Register the fixtures once in ``tests/conftest.py`` (done there)::

    pytest_plugins = ["servers.fixtures"]

then request ``rerank_server`` (a started :class:`RerankServer`) or ``refused_url`` in any
test, and import behaviours from here: ``from servers import Reply, Score, memos_error``.
"""

from __future__ import annotations

from servers.rerank_server import (
    MEMOS_BASE_PATH,
    TEI_BASE_PATH,
    Behaviour,
    Close,
    Drop,
    Flood,
    Hang,
    Pair,
    RecordedRequest,
    Reply,
    RerankServer,
    Score,
    Trickle,
    deterministic_score,
    drop_result,
    duplicate_index,
    index_out_of_range,
    malformed_json,
    memos_error,
    missing_results,
    nan_score,
    negative_index,
    refused_port,
    retry_after,
    reversed_ranking,
    running_server,
    set_score,
    tei_error,
    untemplate,
    vllm_error,
    wrong_envelope,
)

__all__ = [
    "MEMOS_BASE_PATH",
    "TEI_BASE_PATH",
    "Behaviour",
    "Close",
    "Drop",
    "Flood",
    "Hang",
    "Pair",
    "RecordedRequest",
    "RerankServer",
    "Reply",
    "Score",
    "Trickle",
    "deterministic_score",
    "drop_result",
    "duplicate_index",
    "index_out_of_range",
    "malformed_json",
    "memos_error",
    "missing_results",
    "nan_score",
    "negative_index",
    "refused_port",
    "retry_after",
    "reversed_ranking",
    "running_server",
    "set_score",
    "tei_error",
    "untemplate",
    "vllm_error",
    "wrong_envelope",
]
