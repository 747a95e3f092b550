"""Unit tests of MemRerank, the LlamaIndex node postprocessor."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from pydantic import ValidationError

from llama_index.postprocessor.memreranker import MemRerank
from memreranker import InferenceError, MemReranker, MemRerankerError, RerankerSettings

PACKAGE = Path(__file__).resolve().parents[2] / "packages" / "llama-index-postprocessor-memreranker"
QUERY = "What does the user like to drink?"
SECRET = "sk-very-secret-4711"


def snapshot(nodes: list[NodeWithScore]) -> list[NodeWithScore]:
    return copy.deepcopy(nodes)


def assert_untouched(nodes: list[NodeWithScore], before: list[NodeWithScore]) -> None:
    assert nodes == before  # pydantic deep equality: node, metadata, relationships, score
    for now, then in zip(nodes, before, strict=True):
        assert now.node.metadata == then.node.metadata
        assert now.score == then.score


# --- the class and the package ---------------------------------------------------------------


def test_class() -> None:
    names = [cls.__name__ for cls in MemRerank.__mro__]
    assert BaseNodePostprocessor.__name__ in names
    assert issubclass(MemRerank, BaseNodePostprocessor)
    assert issubclass(MemRerank, RerankerSettings)
    assert MemRerank.class_name() == "MemRerank"


def test_package_layout() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    root = PACKAGE / "llama_index"
    assert not (root / "__init__.py").exists()
    assert not (root / "postprocessor" / "__init__.py").exists()
    assert (root / "postprocessor" / "memreranker" / "__init__.py").is_file()
    assert (root / "postprocessor" / "memreranker" / "py.typed").is_file()

    meta = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert meta["build-system"]["build-backend"] == "hatchling.build"
    assert meta["tool"]["llamahub"]["import_path"] == "llama_index.postprocessor.memreranker"
    assert "MemRerank" in meta["tool"]["llamahub"]["class_authors"]
    deps = [
        d.split(">")[0].split("<")[0].split("=")[0].strip() for d in meta["project"]["dependencies"]
    ]
    assert sorted(deps) == ["llama-index-core", "memreranker"]
    assert "optional-dependencies" not in meta["project"]


# --- construction: settings or a ready reranker ----------------------------------------------


def test_settings_build_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[RerankerSettings] = []
    original = MemReranker.from_settings.__func__  # type: ignore[attr-defined]

    def spy(cls: type[MemReranker], settings: RerankerSettings, **kw: object) -> MemReranker:
        built.append(settings)
        return original(cls, settings, **kw)

    monkeypatch.setattr(MemReranker, "from_settings", classmethod(spy))
    rerank = MemRerank(
        model="some/dir", instruction="Find memories", batch_size=4, on_error="raise"
    )
    assert len(built) == 1
    core = rerank.reranker
    assert isinstance(core, MemReranker)
    assert core.settings.model == "some/dir"
    assert core.settings.instruction == "Find memories"
    assert core.settings.batch_size == 4
    assert core.settings.on_error == "raise"
    assert type(core.settings) is RerankerSettings


def test_core_built_once_not_per_call(
    monkeypatch: pytest.MonkeyPatch, fake_core, nodes: list[NodeWithScore]
) -> None:
    core, backend = fake_core()
    calls = 0
    original = MemReranker.from_settings.__func__  # type: ignore[attr-defined]

    def counting(cls: type[MemReranker], settings: RerankerSettings, **kw: object) -> MemReranker:
        nonlocal calls
        calls += 1
        return original(cls, settings, **kw)

    monkeypatch.setattr(MemReranker, "from_settings", classmethod(counting))
    rerank = MemRerank(reranker=core)
    for _ in range(3):
        rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert calls == 0
    assert rerank.reranker is core
    assert len(backend.calls) == 3


def test_ready_reranker_fields_mirror_it(fake_core) -> None:
    core, _ = fake_core(instruction="Find memories", batch_size=3)
    rerank = MemRerank(reranker=core, top_n=2)
    assert rerank.reranker is core
    assert rerank.model == core.settings.model
    assert rerank.instruction == "Find memories"
    assert rerank.batch_size == 3
    assert rerank.top_n == 2


def test_ready_reranker_with_agreeing_settings_is_fine(fake_core) -> None:
    core, _ = fake_core(batch_size=3)
    rerank = MemRerank(reranker=core, model=core.settings.model, batch_size=3)
    assert rerank.reranker is core


def test_ready_reranker_with_conflicting_settings_raises(fake_core) -> None:
    core, _ = fake_core(batch_size=3)
    with pytest.raises(ValueError, match=r"model='other/model'.*not both"):
        MemRerank(reranker=core, model="other/model")
    with pytest.raises(ValueError, match="batch_size"):
        MemRerank(reranker=core, batch_size=8)


def test_conflicting_api_key_never_shown(fake_core) -> None:
    core, _ = fake_core(api_key="sk-the-core-key")
    with pytest.raises(ValueError) as info:
        MemRerank(reranker=core, api_key=SECRET)
    assert "api_key differs" in str(info.value)
    assert SECRET not in str(info.value)
    assert "sk-the-core-key" not in str(info.value)


def test_reranker_must_be_a_memreranker() -> None:
    with pytest.raises(TypeError, match="MemReranker"):
        MemRerank(reranker=object())  # type: ignore[arg-type]


def test_invalid_options() -> None:
    with pytest.raises(ValueError):
        MemRerank(top_n=-1)
    with pytest.raises(TypeError):
        MemRerank(top_n="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MemRerank(score_threshold=1.5)
    with pytest.raises(ValidationError):
        MemRerank(backend="nope")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        MemRerank(not_an_option=1)  # type: ignore[call-arg]


def test_core_settings_fixed_after_construction(fake_core) -> None:
    core, _ = fake_core()
    rerank = MemRerank(reranker=core)
    with pytest.raises(AttributeError, match="fixed"):
        rerank.model = "other"
    assert rerank.model == core.settings.model
    rerank.top_n = 3  # the shell's own options stay mutable, and validated
    assert rerank.top_n == 3
    with pytest.raises(ValueError):
        rerank.top_n = -2


def test_close_only_an_owned_core(fake_core) -> None:
    core, backend = fake_core()
    MemRerank(reranker=core).close()
    assert backend.closed == 0
    owned = MemRerank(model="never-loaded")
    _, spare = fake_core()
    owned.reranker._backend = spare
    owned.close()
    assert spare.closed == 1


def test_copies_share_the_core(fake_core, nodes: list[NodeWithScore]) -> None:
    rerank = MemRerank(model="never-loaded", top_n=2)
    _, spare = fake_core()
    rerank.reranker._backend = spare
    clone = copy.deepcopy(rerank)
    assert clone.reranker is rerank.reranker  # weights and pools are not duplicated
    assert clone.to_dict() == rerank.to_dict()
    assert len(clone.postprocess_nodes(nodes, query_str=QUERY)) == 2
    clone.close()  # a copy never closes the core it shares
    assert spare.closed == 0
    rerank.close()
    assert spare.closed == 1


def test_pickle_rebuilds_the_core() -> None:
    rerank = MemRerank(model="some/dir", top_n=2, keep_retrieval_score=True)
    again = pickle.loads(pickle.dumps(rerank))
    assert again.to_dict() == rerank.to_dict()
    assert again.reranker is not rerank.reranker
    assert again.reranker.settings.model == "some/dir"


def test_defaults() -> None:
    rerank = MemRerank()
    assert rerank.top_n is None
    assert rerank.score_threshold is None
    assert rerank.keep_retrieval_score is False
    assert rerank.backend == "local"


def test_from_dict_round_trip() -> None:
    rerank = MemRerank(model="some/dir", top_n=4, score_threshold=0.25, keep_retrieval_score=True)
    again = MemRerank.from_dict(rerank.to_dict())
    assert again.to_dict() == rerank.to_dict()
    assert again.reranker.settings.model == "some/dir"


# --- secrets ---------------------------------------------------------------------------------


def test_api_key_never_serialised_or_shown() -> None:
    rerank = MemRerank(model="some/dir", api_key=SECRET)
    assert rerank.api_key is not None and rerank.api_key.get_secret_value() == SECRET
    for text in (
        repr(rerank),
        str(rerank),
        json.dumps(rerank.to_dict()),
        rerank.to_json(),
        rerank.model_dump_json(),
        repr(rerank.reranker),
    ):
        assert SECRET not in text
    assert "api_key" not in rerank.to_dict()


# --- reranking -------------------------------------------------------------------------------


def test_reranks_and_maps_by_index(
    fake_core, nodes: list[NodeWithScore], keyword_score: Callable[[str], float]
) -> None:
    core, backend = fake_core()
    rerank = MemRerank(reranker=core)
    out = rerank.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))

    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    assert backend.calls == [("sync", QUERY, texts, None)]
    assert len(out) == len(nodes)  # top_n=None keeps every node
    by_id = {n.node.node_id: n for n in nodes}
    scores = [n.score for n in out]
    assert scores == sorted(scores, reverse=True)
    assert [n.node.node_id for n in out] != [n.node.node_id for n in nodes]
    for item in out:
        original = by_id[item.node.node_id]
        assert item.node.get_content() == original.node.get_content()
        assert item.score == pytest.approx(keyword_score(texts[nodes.index(original)]))
        assert item is not original and item.node is not original.node


def test_text_is_the_embed_view(fake_core, nodes: list[NodeWithScore]) -> None:
    core, backend = fake_core()
    MemRerank(reranker=core).postprocess_nodes(nodes[:1], query_str=QUERY)
    sent = backend.calls[0][2][0]
    assert "source: chat-0" in sent  # metadata included, as for the embedding
    assert "not for the reranker" not in sent  # excluded_embed_metadata_keys respected
    assert nodes[0].node.get_content() in sent


def test_top_n_cuts(fake_core, nodes: list[NodeWithScore]) -> None:
    core, _ = fake_core()
    full = MemRerank(reranker=core).postprocess_nodes(nodes, query_str=QUERY)
    top = MemRerank(reranker=core, top_n=3).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in top] == [n.node.node_id for n in full[:3]]
    more = MemRerank(reranker=core, top_n=50).postprocess_nodes(nodes, query_str=QUERY)
    assert len(more) == len(nodes)
    assert MemRerank(reranker=core, top_n=0).postprocess_nodes(nodes, query_str=QUERY) == []


def test_score_threshold(fake_core, nodes: list[NodeWithScore]) -> None:
    core, _ = fake_core()
    full = MemRerank(reranker=core).postprocess_nodes(nodes, query_str=QUERY)
    cut = full[2].score
    kept = MemRerank(reranker=core, score_threshold=cut).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in kept] == [n.node.node_id for n in full if n.score >= cut]
    assert all(n.score >= cut for n in kept)


def test_keep_retrieval_score(fake_core, nodes: list[NodeWithScore]) -> None:
    core, _ = fake_core()
    before = snapshot(nodes)
    out = MemRerank(reranker=core, keep_retrieval_score=True).postprocess_nodes(
        nodes, query_str=QUERY
    )
    retrieval = {n.node.node_id: n.score for n in before}
    for item in out:
        assert item.node.metadata["retrieval_score"] == retrieval[item.node.node_id]
        assert item.node.metadata["source"]  # the rest of the metadata is kept
    assert_untouched(nodes, before)

    plain = MemRerank(reranker=core).postprocess_nodes(nodes, query_str=QUERY)
    assert all("retrieval_score" not in n.node.metadata for n in plain)


def test_caller_nodes_never_mutated(fake_core, nodes: list[NodeWithScore]) -> None:
    core, _ = fake_core()
    before = snapshot(nodes)
    ids = [id(n.node.metadata) for n in nodes]
    out = MemRerank(reranker=core, keep_retrieval_score=True, top_n=4).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert_untouched(nodes, before)
    assert [id(n.node.metadata) for n in nodes] == ids
    out[0].node.metadata["edited"] = True  # editing a result leaves the input alone
    assert "edited" not in {k for n in nodes for k in n.node.metadata}
    original = {n.node.node_id: n.node for n in nodes}
    for item in out:  # same identity and relationships, new objects
        assert item.node.node_id in original
        assert item.node.relationships == original[item.node.node_id].relationships
        assert item.node.metadata is not original[item.node.node_id].metadata


def test_query_bundle_required(fake_core, nodes: list[NodeWithScore]) -> None:
    core, backend = fake_core()
    with pytest.raises(ValueError, match="query"):
        MemRerank(reranker=core).postprocess_nodes(nodes)
    assert backend.calls == []


async def test_query_bundle_required_async(fake_core, nodes: list[NodeWithScore]) -> None:
    core, backend = fake_core()
    with pytest.raises(ValueError, match="query"):
        await MemRerank(reranker=core).apostprocess_nodes(nodes)
    assert backend.calls == []


def test_empty_nodes_never_call_the_backend(fake_core, events) -> None:
    core, backend = fake_core()
    debug = LlamaDebugHandler()
    rerank = MemRerank(reranker=core, callback_manager=CallbackManager([debug]))
    assert rerank.postprocess_nodes([], query_str=QUERY) == []
    assert backend.calls == []
    starts = [e for e in events.of_type(ReRankStartEvent) if e.model_name == core.name]
    ends = events.of_type(ReRankEndEvent)
    assert len(starts) == 1 and starts[0].nodes == [] and starts[0].top_n == 0
    assert ends and ends[-1].nodes == []
    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 1
    assert pairs[0][1].payload[EventPayload.NODES] == []


async def test_empty_nodes_async(fake_core) -> None:
    core, backend = fake_core()
    assert await MemRerank(reranker=core).apostprocess_nodes([], query_str=QUERY) == []
    assert backend.calls == []


# --- fallback and errors ---------------------------------------------------------------------


def test_fallback_keeps_order(
    fake_core, nodes: list[NodeWithScore], events, caplog: pytest.LogCaptureFixture
) -> None:
    core, _ = fake_core(error=InferenceError("boom"))
    debug = LlamaDebugHandler()
    rerank = MemRerank(
        reranker=core,
        top_n=3,
        score_threshold=0.9,  # not applied: fallback scores are unknown, not low
        keep_retrieval_score=True,
        callback_manager=CallbackManager([debug]),
    )
    before = snapshot(nodes)
    with caplog.at_level(logging.WARNING, logger="memreranker"):
        out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == [n.node.node_id for n in nodes[:3]]
    assert all(n.score == 0.0 for n in out)
    assert all(n.node.metadata["rerank_fallback"] is True for n in out)
    assert [n.node.metadata["retrieval_score"] for n in out] == [n.score for n in before[:3]]
    assert_untouched(nodes, before)
    assert sum("falling back" in r.getMessage() for r in caplog.records) == 1

    starts = [e for e in events.of_type(ReRankStartEvent) if e.model_name == core.name]
    assert len(starts) == 1
    assert [n.node.node_id for n in events.of_type(ReRankEndEvent)[-1].nodes] == [
        n.node.node_id for n in out
    ]
    ((_, end),) = debug.get_event_pairs(CBEventType.RERANKING)
    assert end.payload[EventPayload.NODES] == out


def test_fallback_when_the_model_is_missing(tmp_path: Path, nodes: list[NodeWithScore]) -> None:
    rerank = MemRerank(model=str(tmp_path / "no-such-model"), top_n=2)
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == ["memory-0", "memory-1"]
    assert [n.score for n in out] == [0.0, 0.0]
    assert all(n.node.metadata["rerank_fallback"] for n in out)


async def test_fallback_async(fake_core, nodes: list[NodeWithScore]) -> None:
    core, _ = fake_core(error=InferenceError("boom"))
    out = await MemRerank(reranker=core).apostprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == [n.node.node_id for n in nodes]
    assert all(n.score == 0.0 and n.node.metadata["rerank_fallback"] for n in out)


def test_no_fallback_flag_on_success(fake_core, nodes: list[NodeWithScore]) -> None:
    core, _ = fake_core()
    out = MemRerank(reranker=core).postprocess_nodes(nodes, query_str=QUERY)
    assert all("rerank_fallback" not in n.node.metadata for n in out)


def test_on_error_raise_propagates(fake_core, nodes: list[NodeWithScore]) -> None:
    core, _ = fake_core(error=InferenceError("boom"), on_error="raise")
    before = snapshot(nodes)
    with pytest.raises(MemRerankerError, match="boom"):
        MemRerank(reranker=core).postprocess_nodes(nodes, query_str=QUERY)
    assert_untouched(nodes, before)


def test_caller_mistakes_raise(fake_core, nodes: list[NodeWithScore]) -> None:
    core, _ = fake_core()
    with pytest.raises(ValueError, match="query"):
        MemRerank(reranker=core).postprocess_nodes(nodes, query_str="   ")


# --- async -----------------------------------------------------------------------------------


async def test_async_is_native(
    monkeypatch: pytest.MonkeyPatch, fake_core, nodes: list[NodeWithScore]
) -> None:
    core, backend = fake_core()

    def no_threads(*args: object, **kwargs: object) -> None:
        raise AssertionError("the shell must not run the sync path in a thread")

    def no_sync(*args: object, **kwargs: object) -> None:
        raise AssertionError("the async path must not call the sync one")

    monkeypatch.setattr(asyncio, "to_thread", no_threads)
    monkeypatch.setattr(MemRerank, "_postprocess_nodes", no_sync)
    rerank = MemRerank(reranker=core, top_n=3)
    out = await rerank.apostprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    assert [kind for kind, *_ in backend.calls] == ["async"]
    assert len(out) == 3


async def test_async_equals_sync(fake_core, nodes: list[NodeWithScore]) -> None:
    core, _ = fake_core()
    rerank = MemRerank(reranker=core, top_n=5, keep_retrieval_score=True)
    sync = rerank.postprocess_nodes(nodes, query_str=QUERY)
    asynchronous = await rerank.apostprocess_nodes(nodes, query_str=QUERY)
    assert asynchronous == sync


async def test_tiny_model_sync_and_async_agree(
    tiny_model: Path, nodes: list[NodeWithScore]
) -> None:
    rerank = MemRerank(model=str(tiny_model), top_n=4)
    sync = rerank.postprocess_nodes(nodes, query_str=QUERY)
    asynchronous = await rerank.apostprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in asynchronous] == [n.node.node_id for n in sync]
    assert [n.score for n in asynchronous] == pytest.approx([n.score for n in sync], abs=1e-5)
    core = MemReranker(model=str(tiny_model))
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    want = core.rerank(QUERY, texts, top_n=4)
    assert [n.node.node_id for n in sync] == [nodes[r.index].node.node_id for r in want]
    assert [n.score for n in sync] == pytest.approx([r.score for r in want], abs=1e-5)
    assert all(0.0 <= n.score <= 1.0 for n in sync)


# --- events ----------------------------------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True])
async def test_events(fake_core, nodes: list[NodeWithScore], events, use_async: bool) -> None:
    core, _ = fake_core()
    debug = LlamaDebugHandler()
    rerank = MemRerank(reranker=core, top_n=3, callback_manager=CallbackManager([debug]))
    bundle = QueryBundle(QUERY)
    if use_async:
        out = await rerank.apostprocess_nodes(nodes, query_bundle=bundle)
    else:
        out = rerank.postprocess_nodes(nodes, query_bundle=bundle)

    (start,) = [e for e in events.of_type(ReRankStartEvent) if e.model_name == core.name]
    assert start.query == bundle
    assert start.nodes == nodes
    assert start.top_n == 3
    assert start.model_name == "fake:keyword"
    assert events.of_type(ReRankEndEvent)[-1].nodes == out

    ((cb_start, cb_end),) = debug.get_event_pairs(CBEventType.RERANKING)
    assert cb_start.payload[EventPayload.NODES] == nodes
    assert cb_start.payload[EventPayload.MODEL_NAME] == "fake:keyword"
    assert cb_start.payload[EventPayload.QUERY_STR] == QUERY
    assert cb_start.payload[EventPayload.TOP_K] == 3
    assert cb_end.payload[EventPayload.NODES] == out


def test_event_top_n_when_keeping_all(fake_core, nodes: list[NodeWithScore], events) -> None:
    core, _ = fake_core()
    MemRerank(reranker=core).postprocess_nodes(nodes, query_str=QUERY)
    (start,) = [e for e in events.of_type(ReRankStartEvent) if e.model_name == core.name]
    assert start.top_n == len(nodes)
