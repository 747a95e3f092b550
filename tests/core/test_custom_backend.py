"""A user's own ``memreranker.Backend`` through the core, and ``testing.FakeBackend``.

The backend under test is the README's "Writing a backend" example, read from the README
(``tests/custom_backend.py``); the shells, the mem0 provider and ``evaluate()`` run it in
their own test directories.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import pickle
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from custom_backend import keyword_backend, keyword_backend_class

from memreranker import Backend, InferenceError, MemReranker, RateLimitError, ServiceError
from memreranker.testing import FakeBackend, word_overlap

QUERY = "What does the user like to drink?"
DOCS = ["User rows a boat.", "User likes to drink tea.", "Tea is what the user likes."]


def ranked(results: Sequence[Any]) -> list[str]:
    return [r.document for r in results]


def test_the_readme_backend_ranks_sync_and_async() -> None:
    reranker = MemReranker(backend=keyword_backend(), on_error="raise")
    results = reranker.rerank(QUERY, DOCS)
    assert ranked(results) == [DOCS[1], DOCS[2], DOCS[0]]
    assert results[0].score == pytest.approx(word_overlap(QUERY, DOCS[1]))
    assert not any(r.is_fallback for r in results)
    again = asyncio.run(reranker.arerank(QUERY, DOCS, top_n=2))
    assert [(r.index, r.score) for r in again] == [(r.index, r.score) for r in results[:2]]
    assert reranker.name == "keywords" and reranker.circuit_state is None
    assert "KeywordBackend" in repr(reranker)


def test_defaults_of_the_base_class() -> None:
    threads: list[int] = []

    class Recording(Backend):
        name = "recording"

        def score(self, query, documents, *, instruction, top_n, progress=None):  # type: ignore[no-untyped-def]
            threads.append(threading.get_ident())
            return [(i, 0.5) for i in range(len(documents))]

    reranker = MemReranker(backend=Recording())
    reranker.load()  # no-ops, not AttributeErrors
    reranker.close()

    async def main() -> None:
        await reranker.arerank("q", ["a"])
        threads.append(threading.get_ident())
        await reranker.aclose()

    asyncio.run(main())
    assert threads[0] != threads[1]  # score ran off the event loop's thread
    with pytest.raises(TypeError, match="abstract"):
        Backend()  # type: ignore[abstract]

    class Nameless(Backend):
        def score(self, query, documents, *, instruction, top_n, progress=None):  # type: ignore[no-untyped-def]
            return []

    with pytest.raises(TypeError, match="name"):
        MemReranker(backend=Nameless())
    with pytest.raises(TypeError, match="Backend instance"):
        MemReranker(backend=object())  # type: ignore[arg-type]


def test_a_failing_backend_hands_over_down_the_chain(caplog: pytest.LogCaptureFixture) -> None:
    keywords = MemReranker(backend=keyword_backend())
    flaky = FakeBackend(fail_on=1, error=RateLimitError("slow down", status=429))
    chain = MemReranker(backend=flaky, fallback=keywords)
    with caplog.at_level(logging.INFO, logger="memreranker"):
        rescued = chain.rerank(QUERY, DOCS)
    assert ranked(rescued) == ranked(keywords.rerank(QUERY, DOCS))
    assert not any(r.is_fallback for r in rescued)
    assert "scored by fallback keywords" in caplog.text and "RateLimitError" in caplog.text
    assert ranked(chain.rerank(QUERY, DOCS))[0] == DOCS[1]  # call 2: the head scores itself
    assert [c.number for c in flaky.calls] == [1, 2]

    # The README backend failing, a FakeBackend rescuing it, async.
    class Broken(keyword_backend_class()):  # type: ignore[misc]
        def score(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("in-house service down")

    table = FakeBackend(dict(zip(DOCS, (0.1, 0.2, 0.9), strict=True)), name="table")
    chain = MemReranker(backend=Broken(), fallback=MemReranker(backend=table))
    results = asyncio.run(chain.arerank(QUERY, DOCS))
    assert ranked(results) == [DOCS[2], DOCS[1], DOCS[0]] and len(table.calls) == 1
    alone = MemReranker(backend=Broken()).rerank(QUERY, DOCS)
    assert all(r.is_fallback for r in alone) and ranked(alone) == DOCS
    assert "InferenceError" in (alone[0].fallback_reason or "")
    assert "ConnectionError: in-house service down" in (alone[0].fallback_reason or "")
    with pytest.raises(InferenceError, match="in-house service down"):
        MemReranker(backend=Broken(), on_error="raise").rerank(QUERY, DOCS)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ([(0, math.nan), (1, 0.5), (2, 0.5)], "not a probability"),
        ([(0, 0.5), (0, 0.4), (2, 0.5)], "twice"),
        ([(0, 0.5), (7, 0.4)], "unknown index"),
        ([(0, 1.5)], "not a probability"),
    ],
    ids=["nan", "duplicate", "unknown", "above-one"],
)
def test_untrustworthy_scores_become_a_fallback(bad: list[Any], reason: str) -> None:
    class Lying(Backend):
        name = "lying"

        def score(self, query, documents, *, instruction, top_n, progress=None):  # type: ignore[no-untyped-def]
            return list(bad)

    results = MemReranker(backend=Lying()).rerank(QUERY, DOCS)
    assert all(r.is_fallback for r in results) and ranked(results) == DOCS
    assert reason in (results[0].fallback_reason or "")
    chain = MemReranker(backend=Lying(), fallback=MemReranker(backend=keyword_backend()))
    assert ranked(chain.rerank(QUERY, DOCS))[0] == DOCS[1]


def test_settings_that_do_not_apply_are_refused() -> None:
    with pytest.raises(ValueError, match="device applies to the local backend, not 'memos'"):
        MemReranker("memos", device="cuda", api_key="k")
    with pytest.raises(ValueError, match="prompt_format applies to the vllm and tei"):
        MemReranker("local", prompt_format="plain")
    with pytest.raises(ValueError, match="engine applies to the local backend, not 'tei'"):
        MemReranker("tei", base_url="http://127.0.0.1:9", engine="batched")
    # HTTP settings on local weights would be silently unused: refused, the key never shown.
    for option in ({"api_key": "sk-unused"}, {"base_url": "http://h"}, {"max_retries": 0}):
        name = next(iter(option))
        with pytest.raises(ValueError, match=f"{name} applies to the memos, vllm and tei") as e:
            MemReranker("local", **option)
        assert "sk-unused" not in str(e.value)
    for option in ({"model": "m"}, {"api_key": "k"}, {"device": "cpu"}, {"max_retries": 0}):
        with pytest.raises(ValueError, match=f"{next(iter(option))} applies to"):
            MemReranker(backend=FakeBackend(), **option)
    # Defaults given explicitly configure nothing (shells, the CLI, configs pass them).
    MemReranker("memos", api_key="k", device=None, engine="prefix", max_length=8192).close()
    MemReranker(backend=FakeBackend(), model=None, timeout=30.0, instruction="Find it")
    with pytest.raises(ValueError, match="'nope' is not one of 'local', 'memos'"):
        MemReranker("nope")


def test_cache_progress_and_instruction_reach_a_user_backend() -> None:
    fake = FakeBackend()
    reranker = MemReranker(backend=fake, score_cache_size=16, instruction="Find drinks")
    seen: list[tuple[int, int]] = []
    docs = [*DOCS, DOCS[1]]  # a duplicate is scored once
    first = reranker.rerank(QUERY, docs, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (4, 4)
    assert fake.calls[0].documents == tuple(DOCS) and fake.calls[0].instruction == "Find drinks"
    second = reranker.rerank(QUERY, docs, instruction="Other")
    third = reranker.rerank(QUERY, docs)
    assert len(fake.calls) == 2 and fake.calls[1].instruction == "Other"  # third: all cached
    assert [(r.index, r.score) for r in third] == [(r.index, r.score) for r in first]
    assert [r.score for r in second] == [r.score for r in first]


def test_copies_copy_the_backend_object() -> None:
    fake = FakeBackend({"a": 0.2, "b": 0.8})
    reranker = MemReranker(backend=fake, fallback=MemReranker(backend=FakeBackend(name="next")))
    for clone in (copy.deepcopy(reranker), pickle.loads(pickle.dumps(reranker))):
        backend = clone.settings.backend
        assert backend is not fake and isinstance(backend, FakeBackend)
        assert [r.document for r in clone.rerank("q", ["a", "b"])] == ["b", "a"]
        assert clone.fallback is not None and clone.fallback.name == "next"
    assert fake.calls == []  # the copies scored with their own copies
    unpicklable = MemReranker(backend=FakeBackend(lambda q, d: 0.5))
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(unpicklable)


def test_fake_backend_records_fails_and_scores_from_a_table() -> None:
    fake = FakeBackend({"tea": 0.9, "dog": 0.1}, fail_on={2, 3}, name="t")
    reranker = MemReranker(backend=fake)
    assert ranked(reranker.rerank("drink?", ["dog", "tea"])) == ["tea", "dog"]
    for _ in range(2):
        failed = reranker.rerank("drink?", ["dog", "tea"], top_n=1)
        assert failed[0].is_fallback and "ServiceError: t: call" in (
            failed[0].fallback_reason or ""
        )
    missing = reranker.rerank("drink?", ["cat"])  # not in the table: a failure, not a guess
    assert missing[0].is_fallback and "KeyError" in (missing[0].fallback_reason or "")
    assert [(c.number, c.top_n) for c in fake.calls] == [(1, None), (2, 1), (3, 1), (4, None)]
    with pytest.raises(ServiceError):
        MemReranker(backend=FakeBackend(fail_on=1), on_error="raise").rerank("q", ["a"])
    with pytest.raises(TypeError, match="scores must be"):
        FakeBackend(scores=[0.5])  # type: ignore[arg-type]


def test_importing_testing_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from memreranker import MemReranker\n"
        "from memreranker.testing import FakeBackend\n"
        "assert MemReranker(backend=FakeBackend()).rerank('tea', ['tea'])[0].score == 1.0\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
