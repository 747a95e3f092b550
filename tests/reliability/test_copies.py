"""Copies: results share nothing mutable with the caller's objects; rerankers survive
``copy.deepcopy`` and ``pickle``, rebuilt from their settings, and the API key is never written
into a pickle.

* LangChain documents and LlamaIndex nodes come back as deep copies: nested metadata values
  (and LlamaIndex ``relationships``) edited on either side never show on the other, on the
  scored and the fallback path, sync and async. A stale ``rerank_fallback`` flag is removed
  on success by both shells.
* ``pickle`` of ``RerankerSettings``, ``MemReranker`` (with its fallback chain) and both shells
  works; the unpickled object is rebuilt from settings (no lock, pool or weights shared) and
  holds the key again only in the process that pickled it (or a fork of it); anywhere else
  unpickling asks for the key. ``copy.deepcopy(MemReranker)`` is an independent rebuild;
  ``copy.deepcopy`` of a shell shares its core (documented in the README).
"""

from __future__ import annotations

import asyncio
import copy
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import NodeRelationship, NodeWithScore, RelatedNodeInfo, TextNode
from reliability_kit import MODES
from servers import RerankServer, running_server

from langchain_memreranker import MemRerank as LangChainRerank
from llama_index.postprocessor.memreranker import MemRerank as LlamaIndexRerank
from memreranker import MemReranker, RerankerSettings

pytestmark = pytest.mark.timeout(60)

KEY = "sk-PICKLE-4c1d9e7f2a-never-in-clear"
QUERY = "What does the user drink?"
TEXTS = ["green tea every morning", "a sister in Berlin", "coffee after lunch"]
FAST: dict[str, Any] = {"timeout": 2.0, "max_retries": 0}


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[RerankServer]:
    """A server that scores only requests carrying ``KEY``: a scored result proves the key
    survived the copy; a lost key gives a fallback."""
    with running_server(api_key=KEY) as server:
        yield server


def run(mode: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the sync method ``fn`` or, for "async", its ``a``-prefixed twin."""
    if mode == "sync":
        return fn(*args, **kwargs)
    twin = getattr(fn.__self__, "a" + fn.__name__)
    return asyncio.run(twin(*args, **kwargs))


# --- Results share nothing with the inputs -----------------------------------------------------


def lc_documents() -> list[Document]:
    return [
        Document(
            page_content=text,
            id=f"d{i}",
            metadata={"tags": ["memory"], "nested": {"seen": [i]}, "rerank_fallback": True},
        )
        for i, text in enumerate(TEXTS)
    ]


def li_nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(
            node=TextNode(
                text=text,
                id_=f"n{i}",
                metadata={"tags": ["memory"], "nested": {"seen": [i]}, "rerank_fallback": True},
                excluded_llm_metadata_keys=["tags"],
                relationships={
                    NodeRelationship.SOURCE: RelatedNodeInfo(
                        node_id="source", metadata={"pages": [i]}
                    )
                },
            ),
            score=0.5,
        )
        for i, text in enumerate(TEXTS)
    ]


@pytest.mark.parametrize("outcome", ["scored", "fallback"])
@pytest.mark.parametrize("mode", MODES)
def test_langchain_results_share_nothing_with_inputs(
    rerank_server: RerankServer, refused_url: str, mode: str, outcome: str
) -> None:
    url = rerank_server.url if outcome == "scored" else refused_url
    compressor = LangChainRerank(backend="vllm", base_url=url, top_n=None, **FAST)
    docs = lc_documents()
    before = copy.deepcopy(docs)
    out = run(mode, compressor.compress_documents, docs, QUERY)
    assert len(out) == len(docs)
    assert docs == before
    for doc in out:
        source = docs[int(doc.id[1:])]
        assert doc.metadata["nested"] == source.metadata["nested"]
        assert ("rerank_fallback" in doc.metadata) is (outcome == "fallback")  # stale: gone
        doc.metadata["nested"]["seen"].append("edited")
        doc.metadata["tags"].append("edited")
    assert docs == before  # editing the results never reaches the caller's documents
    for doc in docs:
        doc.metadata["nested"]["seen"].append("caller")
    assert not any("caller" in doc.metadata["nested"]["seen"] for doc in out)
    compressor.close()


@pytest.mark.parametrize("outcome", ["scored", "fallback"])
@pytest.mark.parametrize("mode", MODES)
def test_llamaindex_results_share_nothing_with_inputs(
    rerank_server: RerankServer, refused_url: str, mode: str, outcome: str
) -> None:
    url = rerank_server.url if outcome == "scored" else refused_url
    postprocessor = LlamaIndexRerank(backend="vllm", base_url=url, **FAST)
    nodes = li_nodes()
    before = copy.deepcopy(nodes)
    out = run(mode, postprocessor.postprocess_nodes, nodes, query_str=QUERY)
    assert len(out) == len(nodes)
    assert nodes == before
    for item in out:
        node = item.node
        source = nodes[int(node.node_id[1:])].node
        assert node.metadata["nested"] == source.metadata["nested"]
        assert node.relationships == source.relationships
        # The stale flag of an earlier failed call goes on success, as in LangChain.
        assert ("rerank_fallback" in node.metadata) is (outcome == "fallback")
        node.metadata["nested"]["seen"].append("edited")
        node.relationships[NodeRelationship.SOURCE].metadata["pages"].append("edited")
        node.excluded_llm_metadata_keys.append("edited")
    assert nodes == before
    for item in nodes:
        item.node.metadata["nested"]["seen"].append("caller")
        item.node.relationships[NodeRelationship.SOURCE].metadata["pages"].append("caller")
    for item in out:
        assert "caller" not in item.node.metadata["nested"]["seen"]
        assert "caller" not in item.node.relationships[NodeRelationship.SOURCE].metadata["pages"]
    postprocessor.close()


def test_uncopyable_metadata_value_is_shared_not_fatal(rerank_server: RerankServer) -> None:
    # deepcopy cannot copy a lock: the call still succeeds, the containers are still copies.
    lock = threading.Lock()
    docs = [Document(page_content=t, metadata={"lock": lock, "seen": [1]}) for t in TEXTS]
    out = LangChainRerank(
        backend="vllm", base_url=rerank_server.url, top_n=None
    ).compress_documents(docs, QUERY)
    assert all(doc.metadata["lock"] is lock for doc in out)
    out[0].metadata["seen"].append(2)
    assert all(doc.metadata["seen"] == [1] for doc in docs)
    nodes = [
        NodeWithScore(node=TextNode(text=t, metadata={"lock": lock, "seen": [1]})) for t in TEXTS
    ]
    result = LlamaIndexRerank(backend="vllm", base_url=rerank_server.url).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert all(item.node.metadata["lock"] is lock for item in result)
    result[0].node.metadata["seen"].append(2)
    assert all(item.node.metadata["seen"] == [1] for item in nodes)


# --- Pickle and deepcopy -----------------------------------------------------------------------


def keyed(server: RerankServer) -> dict[str, Any]:
    return {"backend": "vllm", "base_url": server.url, "api_key": KEY, **FAST}


def picklable_objects(server: RerankServer) -> dict[str, Any]:
    chain = MemReranker(**keyed(server), fallback=MemReranker("memos", api_key=KEY + "-2"))
    return {
        "settings": RerankerSettings(**keyed(server)),
        "core": MemReranker(**keyed(server)),
        "core with fallback chain": chain,
        "langchain": LangChainRerank(**keyed(server), top_n=2),
        "langchain, ready reranker": LangChainRerank(reranker=chain, top_n=2),
        "llama_index": LlamaIndexRerank(**keyed(server), top_n=2),
        "llama_index, ready reranker": LlamaIndexRerank(reranker=chain, top_n=2),
    }


def test_pickles_never_hold_the_key(keyed_server: RerankServer) -> None:
    for name, obj in picklable_objects(keyed_server).items():
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            data = pickle.dumps(obj, protocol=protocol)
            assert KEY.encode() not in data, (name, protocol)
            assert KEY.encode("utf-16-le") not in data, (name, protocol)


def core_of(obj: Any) -> MemReranker:
    return obj if isinstance(obj, MemReranker) else obj.reranker


def scores(obj: Any) -> list[tuple[int, float, bool]]:
    if isinstance(obj, MemReranker):
        return [(r.index, r.score, r.is_fallback) for r in obj.rerank(QUERY, TEXTS)]
    if isinstance(obj, LangChainRerank):
        docs = [Document(page_content=t, id=str(i)) for i, t in enumerate(TEXTS)]
        return [
            (int(d.id), d.metadata["relevance_score"], "rerank_fallback" in d.metadata)
            for d in obj.compress_documents(docs, QUERY)
        ]
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(TEXTS)]
    return [
        (int(n.node.node_id), n.score, "rerank_fallback" in n.node.metadata)
        for n in obj.postprocess_nodes(nodes, query_str=QUERY)
    ]


@pytest.mark.parametrize(
    "name",
    [
        "core",
        "core with fallback chain",
        "langchain",
        "langchain, ready reranker",
        "llama_index",
        "llama_index, ready reranker",
    ],
)
def test_pickle_rebuilds_from_settings_with_the_key(keyed_server: RerankServer, name: str) -> None:
    obj = picklable_objects(keyed_server)[name]
    again = pickle.loads(pickle.dumps(obj))
    original, rebuilt = core_of(obj), core_of(again)
    assert rebuilt is not original
    assert rebuilt.backend is not original.backend  # no lock, pool or breaker shared
    assert rebuilt.settings == original.settings
    assert repr(rebuilt) == repr(original)  # the fallback chain too
    assert rebuilt.settings.api_key is not None
    assert rebuilt.settings.api_key.get_secret_value() == KEY
    expected = scores(obj)
    assert not any(fallback for _, _, fallback in expected)
    assert scores(again) == expected  # the server accepted the restored key
    if not isinstance(obj, MemReranker):
        assert again.top_n == obj.top_n and again.owns_reranker == obj.owns_reranker
        assert again.model_dump() == obj.model_dump()


def test_deepcopy_of_a_core_is_an_independent_rebuild(
    keyed_server: RerankServer, tiny_reranker: MemReranker
) -> None:
    chain = picklable_objects(keyed_server)["core with fallback chain"]
    clone = copy.deepcopy(chain)
    assert clone.backend is not chain.backend
    assert clone.fallback is not None and clone.fallback is not chain.fallback
    assert repr(clone) == repr(chain)
    assert scores(clone) == scores(chain)
    # Local weights: the copy shares no lock and loads its own weights on first use.
    local = copy.deepcopy(tiny_reranker)
    backend, original = local.backend, tiny_reranker.backend
    assert backend._load_lock is not original._load_lock  # type: ignore[attr-defined]
    assert backend._run_lock is not original._run_lock  # type: ignore[attr-defined]
    assert backend._engine is None  # type: ignore[attr-defined]
    assert local.rerank(QUERY, TEXTS) == tiny_reranker.rerank(QUERY, TEXTS)
    local.close()


def test_deepcopy_of_a_shell_shares_its_core(keyed_server: RerankServer) -> None:
    for name in ("langchain", "llama_index"):
        shell = picklable_objects(keyed_server)[name]
        clone = copy.deepcopy(shell)
        assert clone.reranker is shell.reranker  # weights and pools loaded once
        assert not clone.owns_reranker  # closing the copy never closes the shared core
        assert scores(clone) == scores(shell)


def test_the_key_cannot_be_unpickled_in_another_process(keyed_server: RerankServer) -> None:
    with_key = pickle.dumps(MemReranker(**keyed(keyed_server)))
    without = pickle.dumps(MemReranker("vllm", base_url=keyed_server.url))
    code = (
        "import pickle, sys\n"
        "data = sys.stdin.buffer.read()\n"
        "size = int(sys.argv[1])\n"
        "print(pickle.loads(data[size:]))\n"
        "try:\n"
        "    pickle.loads(data[:size])\n"
        "except ValueError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(len(with_key))],
        input=with_key + without,
        capture_output=True,
        timeout=60,
        check=True,
    )
    out = done.stdout.decode()
    assert "MemReranker(backend='vllm'" in out  # no key: rebuilt anywhere
    assert "refused:" in out and "pickled with an API key" in out and "api_key=" in out
    assert KEY not in out + done.stderr.decode()
