"""The core's local scores equal an independent rendering of the model card's recipe.

The reference below is written from the model card (CONTRACTS section 1), not from the
package: full-vocabulary logits of a plain ``AutoModelForCausalLM``, ``tokenizer.pad`` with
left padding, log-softmax over (no, yes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore:`max_length` is ignored:UserWarning")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from memreranker import MemReranker  # noqa: E402
from memreranker.testing import build_test_model  # noqa: E402

CARD_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
CARD_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
CARD_TASK = "Given a web search query, retrieve relevant passages that answer the query"


def card_recipe(
    model_dir: Path, pairs: list[tuple[str, str]], instruction: str | None, max_length: int = 8192
) -> list[float]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    yes = tokenizer.convert_tokens_to_ids("yes")
    no = tokenizer.convert_tokens_to_ids("no")
    assert (yes, no) == (9693, 2152)
    prefix = tokenizer.encode(CARD_PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(CARD_SUFFIX, add_special_tokens=False)
    task = instruction if instruction is not None else CARD_TASK
    texts = [f"<Instruct>: {task}\n<Query>: {q}\n<Document>: {d}" for q, d in pairs]
    scores: list[float] = []
    # One pair per forward pass: no padding at all in the reference, so a padding bug in
    # the package cannot hide behind the same bug here.
    for text in texts:
        inputs = tokenizer(
            [text],
            padding=False,
            truncation="longest_first",
            return_attention_mask=False,
            max_length=max_length - len(prefix) - len(suffix),
        )
        inputs["input_ids"][0] = prefix + inputs["input_ids"][0] + suffix
        batch = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
        with torch.no_grad():
            logits = model(**batch).logits[:, -1, :]
        pair = torch.stack([logits[:, no], logits[:, yes]], dim=1)
        scores.append(torch.nn.functional.log_softmax(pair, dim=1)[:, 1].exp().item())
    return scores


QUERY = "When is the user flying to Berlin, and who will they visit?"
DOCS = [
    "Flight LH2341 to Berlin booked for 14 May 2026.",
    "The user's sister Anna lives in Berlin; she moved there last year.",
    "User prefers window seats.",
    "User is allergic to peanuts.",
    "She said the apartment is near Tempelhofer Feld.",
    "Meeting with Bob moved from Thursday to Friday 🎉🎉",
    "用户下周一要去北京出差",
    "ユーザーは寿司が好きです。",
    "사용자는 축구를 좋아합니다",
    "x",
    "",
    "A long note. " + "The user described their week in detail, including errands. " * 40,
    "Berlin " * 200,
    "Dinner reservation at 7pm on Saturday at the Italian place downtown.",
    "The user's dog is called Biscuit and needs walking twice a day.",
    "Trip cancelled? No — rescheduled to June.",
    "Emoji only: 🛫🏙️👩‍👧",
    "Tabs\tand\nnewlines\r\ninside",
    "The user said 'yes' to the invitation and 'no' to the after-party.",
    "Remember: passport expires in 2027.",
    "Anna's birthday is on 20 May.",
    "User works as a backend developer in Hangzhou.",
]


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Different seed and shape from the shared ``tiny_model``."""
    return build_test_model(
        tmp_path_factory.mktemp("fidelity-model"),
        seed=7,
        hidden_size=96,
        num_layers=3,
        num_heads=6,
        num_kv_heads=3,
        intermediate_size=160,
    )


def _assert_close(got: list[float], want: list[float], tol: float = 1e-5) -> None:
    assert len(got) == len(want)
    worst = max(abs(g - w) for g, w in zip(got, want, strict=True))
    assert worst <= tol, f"max |diff| {worst:.3g} > {tol}"


def _scores_by_index(
    reranker: MemReranker, query: str, docs: list[str], **kw: object
) -> list[float]:
    results = reranker.rerank(query, docs, **kw)  # type: ignore[arg-type]
    assert not any(r.is_fallback for r in results)
    by_index = {r.index: r.score for r in results}
    return [by_index[i] for i in range(len(docs))]


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_matches_model_card(other_model: Path, batch_size: int) -> None:
    reranker = MemReranker(model=str(other_model), batch_size=batch_size, on_error="raise")
    got = _scores_by_index(reranker, QUERY, DOCS)
    _assert_close(got, card_recipe(other_model, [(QUERY, d) for d in DOCS], None))
    assert max(got) - min(got) > 0.2, "scores should spread over (0, 1)"


def test_truncation_matches_model_card(other_model: Path) -> None:
    # 128 tokens leave room for the prompt plus a short document: the long ones get cut.
    reranker = MemReranker(model=str(other_model), max_length=128, on_error="raise")
    got = _scores_by_index(reranker, QUERY, DOCS)
    _assert_close(got, card_recipe(other_model, [(QUERY, d) for d in DOCS], None, max_length=128))


def test_truncation_really_happens(other_model: Path) -> None:
    long_doc = DOCS[11]
    short = MemReranker(model=str(other_model), max_length=128, on_error="raise")
    full = MemReranker(model=str(other_model), on_error="raise")
    assert short.rerank(QUERY, [long_doc])[0].score != full.rerank(QUERY, [long_doc])[0].score


def test_custom_instruction(other_model: Path) -> None:
    instruction = "Given a user question, find the memory that answers it"
    reranker = MemReranker(model=str(other_model), instruction=instruction, on_error="raise")
    got = _scores_by_index(reranker, QUERY, DOCS)
    _assert_close(got, card_recipe(other_model, [(QUERY, d) for d in DOCS], instruction))
    default = _scores_by_index(MemReranker(model=str(other_model)), QUERY, DOCS)
    assert got != default


def test_per_call_instruction_overrides_setting(other_model: Path) -> None:
    reranker = MemReranker(model=str(other_model), instruction="A", on_error="raise")
    got = _scores_by_index(reranker, QUERY, DOCS[:5], instruction="B")
    _assert_close(got, card_recipe(other_model, [(QUERY, d) for d in DOCS[:5]], "B"))


async def test_async_equals_sync(other_model: Path) -> None:
    reranker = MemReranker(model=str(other_model), on_error="raise")
    sync = reranker.rerank(QUERY, DOCS)
    assert await reranker.arerank(QUERY, DOCS) == sync
