"""Fixtures of the mem0 provider tests: a real mem0, offline, writing only to pytest tmp dirs.

mem0 reads ``MEM0_DIR`` (where it writes ``config.json`` and, by default, its history DB)
and ``MEM0_TELEMETRY`` once, when first imported, and sends telemetry unless told not to.
So no test module imports mem0 (or ``memreranker.mem0``) at module level: the session
fixture below sets both variables first, then imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mem0_kit import USER, MemoryFactory, memory_config, messages, offline_embedder


@pytest.fixture(scope="session", autouse=True)
def mem0_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """mem0's home directory, in a pytest tmp dir; telemetry off; mem0 imported."""
    if "mem0" in sys.modules:
        pytest.fail("mem0 was imported before its MEM0_DIR / MEM0_TELEMETRY could be set")
    home = tmp_path_factory.mktemp("mem0-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEM0_DIR", str(home))
        patch.setenv("MEM0_TELEMETRY", "False")
        import mem0.memory.setup
        import mem0.memory.telemetry

        assert mem0.memory.setup.mem0_dir == str(home)
        assert mem0.memory.telemetry.MEM0_TELEMETRY is False
        yield home


@pytest.fixture(scope="session")
def provider(mem0_home: Path) -> ModuleType:
    """``memreranker.mem0``, registered with mem0's RerankerFactory."""
    import memreranker.mem0

    memreranker.mem0.register()
    return memreranker.mem0


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The tiny model on one intra-op thread (mem0's async search scores in a worker thread;
    on a small shared machine torch's spinning threads make either path several times
    slower). Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)




def _close(memory: Any) -> None:
    memory.close()  # the history DB
    memory.vector_store.client.close()  # mem0 leaves its local Qdrant open
    close = getattr(memory.reranker, "close", None)
    if close is not None:
        close()


@pytest.fixture(scope="module")
def make_memory(
    provider: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MemoryFactory]:
    """Builds ``mem0.Memory`` objects from a reranker config (``{"provider", "config"}``),
    each in its own tmp dir, holding the dozen memories of ``mem0_kit.MEMORIES`` for
    ``USER`` (added with ``infer=False``). Closed at the end of the module."""
    from mem0 import Memory

    built: list[Any] = []

    def make(reranker: dict[str, Any] | None) -> Any:
        memory = Memory.from_config(memory_config(tmp_path_factory.mktemp("mem0"), reranker))
        built.append(memory)
        memory.embedding_model = offline_embedder()
        added = memory.add(messages(), user_id=USER, infer=False)
        assert len(added["results"]) == len(messages())
        return memory

    yield make
    for memory in built:
        _close(memory)


@pytest.fixture(scope="module")
def make_async_memory(
    provider: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MemoryFactory]:
    """As ``make_memory``, for ``mem0.AsyncMemory`` (an async factory)."""
    from mem0 import AsyncMemory

    built: list[Any] = []

    async def make(reranker: dict[str, Any] | None) -> Any:
        config = memory_config(tmp_path_factory.mktemp("mem0-async"), reranker)
        memory = AsyncMemory.from_config(config)
        built.append(memory)
        memory.embedding_model = offline_embedder()
        added = await memory.add(messages(), user_id=USER, infer=False)
        assert len(added["results"]) == len(messages())
        return memory

    yield make
    for memory in built:
        _close(memory)
