"""``memreranker.mem0`` as mem0's ``RerankerFactory`` builds it: the contract of a mem0
reranker (``rerank(query, documents, top_k)``), its config, ``register()``, and imports."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mem0_kit import QUERY

from memreranker import MemReranker, ModelLoadError

pytestmark = pytest.mark.timeout(120)

KEY = "sk-mem0-provider-secret-31"

TEXTS = [
    "User prefers Jiangxiang-flavoured baijiu, especially Moutai, but only on holidays.",
    "User's sister Anna lives in Berlin; she works as a pediatric nurse.",
    "User drinks oolong tea every afternoon at work.",
    "User's dog Biscuit stays with a neighbour, Mr. Chen, during trips.",
    "User is allergic to peanuts.",
    "User stopped drinking alcohol on 2026-10-01 for health reasons.",
    "User plays badminton every Saturday morning with colleagues.",
]


def mem0_memories() -> list[dict[str, Any]]:
    """Dicts shaped as ``Memory.search`` returns them (nested metadata included)."""
    return [
        {
            "id": f"mem-{i}",
            "memory": text,
            "hash": f"h{i}",
            "metadata": {"tags": ["pref"], "source": {"session": i}},
            "score": round(0.9 - 0.05 * i, 3),
            "created_at": "2026-11-20T10:00:00+00:00",
            "updated_at": None,
            "user_id": "alice",
        }
        for i, text in enumerate(TEXTS)
    ]


@pytest.fixture(scope="module")
def created(provider: ModuleType, tiny_model: Path) -> Iterator[Any]:
    """The issue's call: ``RerankerFactory.create("memreranker", {...})`` on the tiny model."""
    from mem0.utils.factory import RerankerFactory

    reranker = RerankerFactory.create(
        "memreranker", {"backend": "local", "model": str(tiny_model), "top_k": 3}
    )
    yield reranker
    reranker.close()


def core_ranking(core: MemReranker, texts: list[str], top_n: int | None) -> list[tuple[int, float]]:
    results = core.rerank(QUERY, texts, top_n=top_n)
    assert not any(r.is_fallback for r in results)
    return [(r.index, r.score) for r in results]


def test_factory_returns_a_mem0_reranker(created: Any, provider: ModuleType) -> None:
    from mem0.configs.rerankers.base import BaseRerankerConfig
    from mem0.reranker.base import BaseReranker

    assert isinstance(created, BaseReranker)
    assert isinstance(created, provider.MemRerankerMem0)
    assert isinstance(created.config, provider.MemRerankerMem0Config)
    assert isinstance(created.config, BaseRerankerConfig)
    assert (created.config.backend, created.config.top_k) == ("local", 3)
    assert isinstance(created.reranker, MemReranker)


def test_rerank_sorts_by_this_projects_scores(created: Any) -> None:
    memories = mem0_memories()
    want = core_ranking(created.reranker, TEXTS, 3)
    assert [i for i, _ in want] != [0, 1, 2]  # the test means something only if order changes
    results = created.rerank(QUERY, memories)  # top_k None: the config's 3
    assert [r["id"] for r in results] == [memories[i]["id"] for i, _ in want]
    assert [r["rerank_score"] for r in results] == pytest.approx([s for _, s in want])
    assert all(isinstance(r["rerank_score"], float) for r in results)
    for result, (i, _) in zip(results, want, strict=True):
        rest = {k: v for k, v in result.items() if k != "rerank_score"}
        assert rest == memories[i]  # every other key kept, unchanged


def test_never_mutates_or_aliases_the_input(created: Any) -> None:
    memories = mem0_memories()
    before = copy.deepcopy(memories)
    results = created.rerank(QUERY, memories, top_k=len(memories))
    assert memories == before
    assert all(r is not m for r in results for m in memories)
    results[0]["metadata"]["tags"].append("edited")
    results[0]["metadata"]["source"]["session"] = -1
    assert memories == before  # nested metadata was copied too


@pytest.mark.parametrize(
    ("top_k", "config_top_k", "kept"),
    [
        (None, 3, 3),  # no top_k given: the config's
        (0, 3, 3),  # mem0 reads 0 as "not given"
        (5, 3, 5),  # Memory.search's own top_k wins over the config's
        (2, 3, 2),
        (50, 3, 7),  # more than there are: all
        (None, None, 7),  # neither: all
    ],
)
def test_cut_as_mem0_cuts(
    created: Any, provider: ModuleType, top_k: int | None, config_top_k: int | None, kept: int
) -> None:
    reranker = provider.MemRerankerMem0({"top_k": config_top_k}, reranker=created.reranker)
    results = reranker.rerank(QUERY, mem0_memories(), top_k)
    assert len(results) == kept
    want = core_ranking(created.reranker, TEXTS, None)[:kept]
    assert [r["id"] for r in results] == [f"mem-{i}" for i, _ in want]


def test_same_cut_as_mem0s_own_huggingface_reranker(
    created: Any, provider: ModuleType, tiny_cross_encoder: Path
) -> None:
    """mem0's own provider (on a tiny cross-encoder) keeps as many memories as ours, for
    every top_k and config top_k: swapping providers never changes how many come back."""
    from mem0.utils.factory import RerankerFactory

    theirs = RerankerFactory.create(
        "huggingface", {"model": str(tiny_cross_encoder), "device": "cpu", "top_k": 3}
    )
    ours = provider.MemRerankerMem0({"top_k": 3}, reranker=created.reranker)
    memories = mem0_memories()
    for top_k in (None, 0, 1, 3, 5, 50):
        mine, their = ours.rerank(QUERY, memories, top_k), theirs.rerank(QUERY, memories, top_k)
        assert len(mine) == len(their), top_k
        assert {k for r in mine for k in r} == {k for r in their for k in r}


def test_text_is_read_as_mem0_reads_it(created: Any) -> None:
    items: list[dict[str, Any]] = [
        {"id": "a", "text": TEXTS[0], "content": "not this"},
        {"id": "b", "content": TEXTS[2]},
        {"id": "c", "memory": None, "text": TEXTS[4]},
        {"id": "d", "data": "no text key"},
        {"id": "e", "memory": TEXTS[6], "text": "not this"},
    ]
    texts = [TEXTS[0], TEXTS[2], TEXTS[4], str(items[3]), TEXTS[6]]
    want = core_ranking(created.reranker, texts, None)
    results = created.rerank(QUERY, items, top_k=len(items))
    assert [r["id"] for r in results] == [items[i]["id"] for i, _ in want]
    assert [r["rerank_score"] for r in results] == pytest.approx([s for _, s in want])


def test_no_memories_no_call(provider: ModuleType, tmp_path: Path, caplog: Any) -> None:
    reranker = provider.MemRerankerMem0({"model": str(tmp_path / "gone")})
    caplog.set_level(logging.WARNING)
    assert reranker.rerank(QUERY, []) == []
    assert caplog.records == []  # nothing loaded, nothing failed


def test_bad_arguments_are_named(created: Any) -> None:
    memories = mem0_memories()
    with pytest.raises(ValueError, match="top_k"):
        created.rerank(QUERY, memories, top_k=-1)
    with pytest.raises(TypeError, match="top_k"):
        created.rerank(QUERY, memories, top_k=True)
    with pytest.raises(TypeError, match="documents"):
        created.rerank(QUERY, memories[0])
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        created.rerank(QUERY, [memories[0], "a string"])
    with pytest.raises(ValueError, match="query"):
        created.rerank("  ", memories)


def memreranker_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.split(".")[0] == "memreranker"
    ]


@pytest.mark.parametrize(("top_k", "kept"), [(None, 7), (2, 2)])
def test_bad_model_path_falls_back_like_mem0(
    provider: ModuleType,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    top_k: int | None,
    kept: int,
) -> None:
    reranker = provider.MemRerankerMem0({"model": str(tmp_path / "gone")})
    memories = mem0_memories()
    caplog.set_level(logging.WARNING)
    results = reranker.rerank(QUERY, memories, top_k)
    assert [r["id"] for r in results] == [m["id"] for m in memories[:kept]]
    assert all(r["rerank_score"] == 0.0 and r["rerank_fallback"] is True for r in results)
    for result, memory in zip(results, memories, strict=False):
        rest = {k: v for k, v in result.items() if k not in ("rerank_score", "rerank_fallback")}
        assert rest == memory
    warnings = memreranker_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "falling back to original order" in warnings[0] and "ModelLoadError" in warnings[0]


def test_a_stale_fallback_flag_is_dropped(created: Any) -> None:
    memories = [{**m, "rerank_score": 0.0, "rerank_fallback": True} for m in mem0_memories()]
    results = created.rerank(QUERY, memories)
    assert all("rerank_fallback" not in r and r["rerank_score"] > 0.0 for r in results)


def test_on_error_raise(provider: ModuleType, tmp_path: Path) -> None:
    reranker = provider.MemRerankerMem0({"model": str(tmp_path / "gone"), "on_error": "raise"})
    with pytest.raises(ModelLoadError, match="does not exist"):
        reranker.rerank(QUERY, mem0_memories())


# --- config ---------------------------------------------------------------------------------


def test_config_checks_its_fields(provider: ModuleType) -> None:
    config_class = provider.MemRerankerMem0Config
    with pytest.raises(ValueError, match="top_kk"):
        config_class(top_kk=3)  # a typo is an error, not silently ignored
    with pytest.raises(ValueError, match="top_k"):
        config_class(top_k=0)
    with pytest.raises(ValueError, match="top_k"):
        config_class(top_k=-2)
    with pytest.raises(ValueError, match="backend"):
        config_class(backend="cohere")
    assert config_class(provider="memreranker", top_k=4).top_k == 4


def test_api_key_from_the_environment_and_never_shown(
    provider: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mem0.utils.factory import RerankerFactory

    monkeypatch.delenv("MEMOS_API_KEY", raising=False)
    with pytest.raises(ValueError, match="MEMOS_API_KEY"):
        RerankerFactory.create("memreranker", {"backend": "memos"})
    monkeypatch.setenv("MEMOS_API_KEY", KEY)
    from_env = RerankerFactory.create("memreranker", {"backend": "memos", "top_k": 5})
    assert from_env.config.api_key is None  # read by the backend, not copied into the config
    explicit = RerankerFactory.create("memreranker", {"backend": "memos", "api_key": KEY})
    config = explicit.config
    assert config.api_key is not None and config.api_key.get_secret_value() == KEY
    shown = [repr(explicit), str(config), repr(config), json.dumps(config.model_dump())]
    shown.append(config.model_dump_json())
    assert all(KEY not in text for text in shown)
    with pytest.raises(ValueError) as info:
        provider.MemRerankerMem0Config(api_key=KEY, timeout="soon")
    assert KEY not in str(info.value)


def test_other_mem0_configs_are_taken(provider: ModuleType, tmp_path: Path) -> None:
    from mem0.configs.rerankers.base import BaseRerankerConfig

    config = BaseRerankerConfig(model=str(tmp_path / "m"), top_k=2)
    reranker = provider.MemRerankerMem0(config)
    assert (reranker.config.model, reranker.config.top_k) == (str(tmp_path / "m"), 2)
    with pytest.raises(TypeError, match="config"):
        provider.MemRerankerMem0(["not", "a", "config"])


def test_a_ready_reranker(created: Any, provider: ModuleType) -> None:
    core = created.reranker
    shared = provider.MemRerankerMem0({"top_k": 2}, reranker=core)
    assert shared.reranker is core
    assert shared.config.model == core.settings.model  # the fields mirror the core's
    with pytest.raises(ValueError, match="model"):
        provider.MemRerankerMem0({"model": "another/model"}, reranker=core)


def test_core_settings_are_fixed_once_built(created: Any, provider: ModuleType) -> None:
    reranker = provider.MemRerankerMem0({"top_k": 2}, reranker=created.reranker)
    with pytest.raises(AttributeError, match="model"):
        reranker.config.model = "another/model"
    reranker.config.top_k = 4  # read at every call
    assert len(reranker.rerank(QUERY, mem0_memories())) == 4
    standalone = provider.MemRerankerMem0Config()
    standalone.model = "fine/before/building"  # a config of one's own stays editable


# --- register() -----------------------------------------------------------------------------


def test_register_twice_is_harmless(provider: ModuleType, caplog: Any) -> None:
    from mem0.utils.factory import RerankerFactory

    caplog.set_level(logging.WARNING)
    provider.register()
    provider.register()
    assert RerankerFactory.provider_to_class["memreranker"] == (
        "memreranker.mem0.MemRerankerMem0",
        provider.MemRerankerMem0Config,
    )
    assert caplog.records == []
    assert RerankerFactory.provider_to_class["cohere"][0].endswith("CohereReranker")


def test_register_replaces_a_foreign_entry_loudly(
    provider: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    from mem0.utils.factory import RerankerFactory

    table = dict(RerankerFactory.provider_to_class)
    table["memreranker"] = ("somebody.else.Reranker", dict)
    monkeypatch.setattr(RerankerFactory, "provider_to_class", table)
    caplog.set_level(logging.WARNING)
    provider.register()
    assert table["memreranker"][0] == "memreranker.mem0.MemRerankerMem0"
    assert "somebody.else.Reranker" in caplog.text


# --- imports --------------------------------------------------------------------------------


def test_imports(mem0_home: Path) -> None:
    """``import memreranker`` (and the shells' base) never imports mem0. And the hosted path
    of ``memreranker[mem0]`` needs no torch: with torch and transformers not installed (here:
    blocked) the provider imports, registers and builds. (Where torch *is* installed, mem0's
    own ``mem0.reranker`` package imports it, through its built-in providers.)"""
    code = (
        "import importlib.abc, sys\n"
        "class Absent(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.partition('.')[0] in ('torch', 'transformers', 'sentence_transformers'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Absent())\n"
        "import memreranker, memreranker.integration, memreranker.memory_text\n"
        "assert 'mem0' not in sys.modules, 'memreranker imported mem0'\n"
        "import memreranker.mem0\n"
        "memreranker.mem0.register()\n"
        "from mem0.utils.factory import RerankerFactory\n"
        "r = RerankerFactory.create('memreranker', {'backend': 'memos', 'api_key': 'k'})\n"
        "print(type(r).__name__)\n"
    )
    env = {**os.environ, "MEM0_DIR": str(mem0_home), "MEM0_TELEMETRY": "False"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "MemRerankerMem0"
