"""Behaviours a planted mistake once survived in: each test here fails with its mistake.

Each test names, in its docstring, the mistake it was checked against (planted, seen to
fail, reverted).
"""

from __future__ import annotations

import asyncio
import json
import pickle
import shutil
import threading
import time
from pathlib import Path

import pytest
from servers import Hang, Reply, RerankServer, Score, Trickle
from servers.clients import FAST

from memreranker import MemReranker, ModelLoadError, RerankTimeoutError

QUERY = "What does the user drink in the morning?"
DOCS = ["The user drinks green tea every morning.", "Coffee after lunch.", "", "x"]


# --- The sync watchdog ------------------------------------------------------------------------


def test_watchdog_times_out_a_trickle_while_many_quick_calls_finish(
    rerank_server: RerankServer,
) -> None:
    """Mistake: the watchdog's heap, rebuilt once more than 64 finished watches pile up,
    drops the watches still armed; the trickling call then lasts the whole trickle (~20 s)."""
    rerank_server.script(Trickle(0.1))  # the first request trickles; all others are quick
    timeout = 5.0  # room for 65 quick calls on a loaded machine
    outcome: dict[str, float] = {}

    def slow() -> None:
        rr = MemReranker(
            "vllm", base_url=rerank_server.url, timeout=timeout, max_retries=0, on_error="raise"
        )
        start = time.monotonic()
        try:
            rr.rerank(QUERY, DOCS)
        except RerankTimeoutError:
            outcome["elapsed"] = time.monotonic() - start
        finally:
            rr.close()

    thread = threading.Thread(target=slow)
    thread.start()
    while not rerank_server.requests:  # the trickle is under way (its watch armed)
        time.sleep(0.01)
    quick_done = 0
    with MemReranker("vllm", base_url=rerank_server.url, on_error="raise", **FAST) as quick:
        while thread.is_alive() and quick_done < 200:
            quick.rerank(QUERY, DOCS)
            quick_done += 1
    thread.join(timeout=30)
    # The premise: the heap was rebuilt while the trickle's watch was armed.
    assert quick_done > 64, quick_done
    assert "elapsed" in outcome
    assert outcome["elapsed"] < timeout + 1.5


# --- Deep copies of metadata ------------------------------------------------------------------


def test_copy_of_a_list_holding_an_unpicklable_object_is_still_detached() -> None:
    """Mistake: a list that ``copy.deepcopy`` cannot copy (it holds a lock) is returned
    as is (or copied shallowly), so the copy's inner list is the input's."""
    from langchain_core.documents import Document

    from memreranker.integration import detached_copy

    lock = threading.Lock()
    original = Document(page_content="m", metadata={"l": [lock, [1]]})
    copy = detached_copy(original)
    copy.metadata["l"][1].append(2)
    copy.metadata["l"].append("new")
    assert original.metadata == {"l": [lock, [1]]}
    assert copy.metadata["l"][0] is lock  # what cannot be copied is shared, not lost


# --- Batches ----------------------------------------------------------------------------------


def test_rows_over_the_token_budget_travel_alone() -> None:
    """Mistake: a row over ``max_tokens_per_request`` joins its neighbours (or an empty
    batch is planned before it)."""
    from memreranker.http.batching import Limits, plan_batches

    limits = Limits(
        max_documents_per_request=100,
        max_tokens_per_request=10,
        max_query_tokens=100,
        max_document_tokens=1000,
        truncate=True,
    )
    small, big = "abc", "b" * 60  # 1 and 20 estimated tokens
    docs = [small, small, big, big, small, big]
    assert plan_batches(docs, limits) == [
        range(0, 2),
        range(2, 3),
        range(3, 4),
        range(4, 5),
        range(5, 6),
    ]
    assert plan_batches([big], limits) == [range(0, 1)]


# --- Checkpoints ------------------------------------------------------------------------------


def ranked(path: Path, **options: object) -> list[tuple[int, float]]:
    results = MemReranker(model=str(path), on_error="raise", **options).rerank(QUERY, DOCS)  # type: ignore[arg-type]
    assert not any(r.is_fallback for r in results)
    return [(r.index, r.score) for r in results]


def test_config_without_architectures_loads_as_yes_no(tiny_model: Path, tmp_path: Path) -> None:
    """Mistake: a config that declares no architecture is refused (or sent down the
    cross-encoder path), where the yes/no loader can tell from the weights."""
    from memreranker.local.checkpoint import inspect_checkpoint

    bare = tmp_path / "bare"
    shutil.copytree(tiny_model, bare)
    config = json.loads((bare / "config.json").read_text())
    del config["architectures"]
    (bare / "config.json").write_text(json.dumps(config))
    assert inspect_checkpoint(str(bare)).kind == "yes_no"
    assert ranked(bare, engine="batched") == ranked(tiny_model, engine="batched")


@pytest.fixture(scope="module")
def st_yes_no(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The tiny yes/no model saved by sentence-transformers as a CrossEncoder (modules.json,
    a LogitScore module over the "yes" and "no" tokens, the card's prompt as its template)."""
    from memreranker.local.checkpoint import inspect_checkpoint
    from memreranker.local.crossencoder import load_cross_encoder

    target = tmp_path_factory.mktemp("st-yes-no") / "model"
    load_cross_encoder(inspect_checkpoint(str(tiny_model))).save_pretrained(str(target))
    return target


def logit_score_config(path: Path) -> Path:
    for found in path.rglob("*.json"):
        text = found.read_text()
        if "true_token_id" in text and "false_token_id" in text:
            return found
    raise AssertionError(f"no LogitScore config under {path}")


def test_logit_score_with_equal_true_and_false_tokens_is_refused(
    st_yes_no: Path, tmp_path: Path
) -> None:
    """Mistake: a LogitScore whose true and false token ids are equal (every logit
    difference 0, every score 0.5) is accepted."""
    assert ranked(st_yes_no, engine="crossencoder")  # the checkpoint as saved is served
    broken = tmp_path / "equal-tokens"
    shutil.copytree(st_yes_no, broken)
    found = logit_score_config(broken)
    config = json.loads(found.read_text())
    config["false_token_id"] = config["true_token_id"]
    found.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="LogitScore"):
        MemReranker(model=str(broken), engine="crossencoder", on_error="raise").load()


def test_config_default_prompt_is_applied_as_predict_applies_it(
    tiny_qwen3_cross_encoder: Path, tmp_path: Path
) -> None:
    """Mistake: with no instruction the engine passes no prompt, so the chat template's own
    default instruction is rendered instead of the config's default prompt."""
    from sentence_transformers import CrossEncoder

    other = tmp_path / "other-default"
    shutil.copytree(tiny_qwen3_cross_encoder, other)
    st_config = other / "config_sentence_transformers.json"
    config = json.loads(st_config.read_text())
    config["prompts"] = {"query": "Given a question about the user, find the memory"}
    st_config.write_text(json.dumps(config))
    want = CrossEncoder(str(other)).predict([(QUERY, d) for d in DOCS])
    card = CrossEncoder(str(tiny_qwen3_cross_encoder)).predict([(QUERY, d) for d in DOCS])
    assert max(abs(float(a) - float(b)) for a, b in zip(want, card, strict=True)) > 1e-4
    got = dict(ranked(other))
    assert all(abs(got[i] - float(w)) < 1e-5 for i, w in enumerate(want))


# --- Progress of the async fallback chain -----------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


def test_async_fallback_chain_restarts_progress(
    rerank_server: RerankServer, tiny_model: Path
) -> None:
    """Mistake: the async chain hands over without restarting progress, so the bar counts
    the failed reranker's batch and the fallback's documents together."""
    docs = [f"memory number {i}: the user drinks tea" for i in range(20)]
    seen = Recorder()
    # One batch answers at once, the other fails a little later (whichever arrives first).
    rerank_server.script(Score(), Hang(0.5, then=Reply(400, {"error": {"message": "down"}})))
    local = MemReranker(model=str(tiny_model), batch_size=20, engine="batched")
    rr = MemReranker(
        "vllm",
        base_url=rerank_server.url,
        max_documents_per_request=10,
        max_retries=0,
        fallback=local,
        **{k: v for k, v in FAST.items() if k != "max_retries"},
    )
    results = asyncio.run(rr.arerank(QUERY, docs, progress=seen))
    rr.close()
    assert not any(r.is_fallback for r in results)
    assert seen.calls == [(10, 20), (0, 20), (20, 20)]


# --- Sealed keys ------------------------------------------------------------------------------


def test_pickling_twice_does_not_grow_the_sealed_key_table() -> None:
    """Mistake: every pickle seals the key under a new token, so a process that pickles
    rerankers (multiprocessing, caches) grows the process-wide table without bound."""
    from memreranker import sealed

    rr = MemReranker("vllm", base_url="http://127.0.0.1:9", api_key="sk-table-size-check")
    first = pickle.dumps(rr)
    size = len(sealed._key_of), len(sealed._token_of)
    second = pickle.dumps(rr)
    pickle.dumps(MemReranker("vllm", base_url="http://127.0.0.1:9", api_key="sk-table-size-check"))
    assert (len(sealed._key_of), len(sealed._token_of)) == size
    assert first == second  # the same key, the same token
    assert b"sk-table-size-check" not in first
