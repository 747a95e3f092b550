"""Settings of a MemReranker, declared once.

``MemReranker`` validates its keyword arguments through :class:`RerankerSettings`, and the
LangChain and LlamaIndex shells inherit this model, so every option, default and check is
written here and nowhere else.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    SecretStr,
    field_validator,
    model_validator,
)

from memreranker.backend_table import (
    BUILTIN_BACKENDS,
    CUSTOM,
    SCOPE_NOTES,
    SETTING_SCOPES,
    BackendName,
    PromptFormat,
    applies,
    backend_spec,
)
from memreranker.backends.base import Backend
from memreranker.document_template import DEFAULT_DATE_FIELDS, check_document_template
from memreranker.sealed import SealedSecret, seal

OnError = Literal["fallback", "raise"]

__all__ = ["BackendName", "OnError", "PromptFormat", "RerankerSettings"]

DEFAULT_LOCAL_MODEL = BUILTIN_BACKENDS["local"].default_model
DEFAULT_MEMOS_MODEL = BUILTIN_BACKENDS["memos"].default_model


class RerankerSettings(BaseModel):
    """Everything that configures a :class:`memreranker.MemReranker`.

    Pickling writes the API key as a :class:`~memreranker.sealed.SealedSecret`, never in
    clear: unpickling in this process (or a fork of it) restores it, anywhere else raises
    ``ValueError`` asking for the key there.
    """

    # hide_input_in_errors: a validation error must not echo the API key back.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True)

    backend: BackendName | InstanceOf[Backend] = Field(
        default="local",
        description='Where scores come from: "local" weights, the hosted "memos" API, '
        'a "vllm" (or Cohere-v2-shaped) rerank server, a Hugging Face '
        'text-embeddings-inference ("tei") server, or a memreranker.Backend instance of '
        "your own (then only the settings that apply to every backend can be given).",
    )
    model: str | None = Field(
        default=None,
        description="Local: a Hub id or a directory (default IAAR-Shanghai/MemReranker-4B). "
        "memos: memos-reranker-0.6b (default) or memos-reranker-4b. vllm: the served name. "
        "tei: a label for logs only (a TEI server serves one model; nothing is sent).",
    )
    instruction: str | None = Field(
        default=None,
        description="The <Instruct> line of the prompt (local backend, and vllm/tei with "
        'prompt_format="qwen3"). None uses the model card\'s default web-search instruction. '
        "Cross-encoders: the sentence-transformers prompt if the checkpoint defines prompts, "
        "else ignored (one warning per reranker).",
    )
    prompt_format: PromptFormat | None = Field(
        default=None,
        description='vllm and tei: how the texts are sent. "qwen3": the query as the model '
        "card's system prefix + <Instruct>/<Query> lines, each document as its <Document> "
        "line + the card's suffix, so that the server, which scores the query string followed "
        "by the document string, scores the card's prompt (vLLM serving a Qwen3-Reranker-style "
        'checkpoint with is_original_qwen3_reranker, or a seq-cls conversion on TEI). "plain": '
        "the texts as given (servers that apply a template themselves, cross-encoders). None: "
        '"qwen3" for vllm, "plain" for tei.',
    )
    on_error: OnError = Field(
        default="fallback",
        description='"fallback": failures give the input order with score 0.0 and a logged '
        'warning. "raise": a MemRerankerError propagates.',
    )

    # Local weights.
    device: str | None = Field(
        default=None,
        description='torch device ("cuda", "cuda:1", "cpu"...); None picks CUDA if present.',
    )
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        default=None, description="Weights dtype; None means bfloat16 on CUDA, float32 elsewhere."
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Pairs per forward pass. None: 16 for the yes/no engines, 32 (what "
        "CrossEncoder.predict uses) for sentence-transformers.",
    )
    max_length: int = Field(
        default=8192,
        ge=64,
        description="Token budget of one local prompt (prefix + body + suffix). A query over "
        "its budget (see max_query_tokens) is cut first; then a document that does not fit is "
        "cut from the right as in the model card, with one warning per call. Cross-encoders: "
        "CrossEncoder's max_length, capped at the model's own limit (512 for BERT-style "
        "models).",
    )
    engine: Literal["prefix", "batched", "crossencoder"] = Field(
        default="prefix",
        description="Local scoring engine of a yes/no reranker (MemReranker, Qwen3-Reranker, or a "
        'seq-cls conversion of one whose prompt is the model card\'s). "prefix": runs the prompt '
        "part shared by all documents of a call (system prompt, instruction, query) once and "
        "only each document's tokens after it; same scores as the model card, faster. "
        '"batched": the model card\'s recipe as written, every pair a full prompt. '
        "\"crossencoder\": sentence-transformers' CrossEncoder, as in the model card's "
        '"Sentence Transformers" snippet. Other cross-encoders (BERT, XLM-R...) always score '
        "through sentence-transformers.",
    )
    runtime: Literal["torch", "onnx"] = Field(
        default="torch",
        description="What runs a local cross-encoder (...ForSequenceClassification: BERT, XLM-R, "
        'bge-reranker, seq-cls conversions). "torch": sentence-transformers on torch. "onnx": '
        "ONNX Runtime on CPU (memreranker[onnx]) on the checkpoint's own onnx/model.onnx, or "
        "on an export made once at the first load and cached in $MEMRERANKER_CACHE/onnx; the "
        "same scores as CrossEncoder.predict (within 1e-5), faster on CPU. If the export fails: "
        'one warning, then torch. Yes/no rerankers (causal LMs) run on torch only: "onnx" for '
        "one is an UnsupportedRuntimeError (a ValueError) at load.",
    )
    quantize: Literal["int8"] | None = Field(
        default=None,
        description='runtime="onnx" only: "int8" scores with a dynamically quantized copy of '
        "the ONNX file (int8 weights; faster, scores differ by about 1e-3, see the README); "
        "None: float32, exact.",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description='runtime="onnx" only: how many ONNX Runtime session runs (each on one '
        "thread) go at once. None: torch's thread count (the physical cores, or what "
        "torch.set_num_threads / OMP_NUM_THREADS set).",
    )
    score_cache_size: int = Field(
        default=0,
        ge=0,
        description="Keep the scores of this many (model, instruction, query, document) "
        "combinations in an in-memory LRU cache, for agents that rerank the same memories "
        "repeatedly; 0 (default) disables it.",
    )

    # Memory-aware ranking (any backend): what the model reads, and opt-in recency.
    document_template: str | None = Field(
        default=None,
        description="A str.format template of the text scored for each memory, over {text} "
        "(its own text, exactly once), {date} (its date as YYYY-MM-DD, from date_fields) and "
        'its fields by name ({source}, {speaker}...), e.g. "[{date}] {text}". A memory '
        "lacking a field is scored as its plain text (one warning per call with the count). "
        "Truncation cuts only the memory's own text. None (default): the plain text. The "
        "query is never templated.",
    )
    date_fields: tuple[str, ...] = Field(
        default=DEFAULT_DATE_FIELDS,
        min_length=1,
        description="Fields a memory's date is read from, first holding a date wins (a "
        "datetime, a date or an ISO 8601 string): an explicit date, then mem0's and "
        "LangGraph's created_at, then updated_at. For {date} and recency.",
    )
    recency_weight: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Weight w of recency in the order: results are sorted by "
        "(1 - w) * P(yes) + w * 0.5 ** (age / recency_half_life) (age clamped at 0; a memory "
        "without a date has recency 0), exposed as rank_score; score stays P(yes) and "
        "score_threshold applies to it. 0 (default): off, order by P(yes) alone.",
    )
    recency_half_life: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="Age at which recency halves, in seconds (a timedelta is accepted too); "
        "default 7 days.",
    )

    # HTTP services.
    api_key: SecretStr | None = Field(
        default=None,
        exclude=True,  # never serialised: to_dict/to_json/dumps of integrations included
        description="Service key. memos: falls back to $MEMOS_API_KEY. Never logged or shown.",
    )
    base_url: str | None = Field(
        default=None,
        description="Service root. memos: falls back to $MEMOS_BASE_URL, then the documented URL.",
    )
    timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds one HTTP attempt may take, whole: connecting, sending and reading "
        "the complete reply (a server trickling its reply cannot stretch it), sync and async.",
    )
    max_retries: int = Field(default=2, ge=0, description="Retries after a retryable failure.")
    deadline: float | None = Field(
        default=None,
        gt=0,
        description="Seconds one HTTP request may take with all its retries and waits. None: "
        "timeout * (max_retries + 1) plus the largest possible backoff waits.",
    )
    retry_backoff: float = Field(
        default=0.5,
        ge=0,
        description="Base of the exponential backoff between retries (seconds); each wait is "
        "drawn uniformly from [0, min(retry_backoff_max, retry_backoff * 2**attempt)].",
    )
    retry_backoff_max: float = Field(
        default=8.0, ge=0, description="Cap of one backoff wait (seconds)."
    )
    max_documents_per_request: int | None = Field(
        default=None,
        ge=1,
        description="Longer document lists are split across requests (scores merged, sorted "
        "globally). None: 100 (memos, vllm), 32 (tei: its default --max-client-batch-size).",
    )
    max_tokens_per_request: int = Field(
        default=8000,
        ge=1,
        description="Approximate token budget of the documents of one request, as sent "
        '(templated, with prompt_format="qwen3"; the MemOS documented cap is 8k); a list '
        "over it is split across requests.",
    )
    max_query_tokens: int = Field(
        default=2000,
        ge=1,
        description="Token limit of the query as sent, template included (MemOS: 2k; "
        "estimated for hosted backends). Locally the query also never takes more than half "
        "of what max_length leaves for query and document, so that documents are never cut "
        "away.",
    )
    max_document_tokens: int = Field(
        default=32000,
        ge=1,
        description="Approximate token limit of one document as sent, template included "
        "(MemOS: 32k).",
    )
    truncate: bool = Field(
        default=True,
        description="True: a query or document over its token limit is truncated with a "
        "warning (one per call for documents). False: it raises InputTooLongError (a "
        "ValueError), whatever on_error says.",
    )
    max_response_bytes: int = Field(
        default=4 * 2**20,
        ge=1024,
        description="Largest reply accepted (bytes, 4 MiB by default; 100 short documents need "
        "a few kB). A larger one is an InvalidResponseError as soon as its Content-Length or "
        "its first bytes over the limit arrive; the rest is never read.",
    )
    max_concurrency: int = Field(
        default=4, ge=1, description="Requests in flight at once per async call (batches)."
    )
    circuit_failure_threshold: int = Field(
        default=5,
        ge=0,
        description="Circuit breaker: after this many consecutive failed calls the hosted "
        "backend fails fast (CircuitOpenError, so the fallback applies at once) for "
        "circuit_cooldown seconds, then lets one probe call through. 0 disables it.",
    )
    circuit_cooldown: float = Field(
        default=30.0,
        gt=0,
        description="Seconds an open circuit fails fast before letting a probe call through.",
    )

    @field_validator("backend", mode="before")
    @classmethod
    def _check_backend(cls, value: Any) -> Any:
        if isinstance(value, Backend):
            if not isinstance(getattr(value, "name", None), str):
                raise TypeError(
                    f"backend: {type(value).__name__} must define name, a str label for logs"
                )
            return value
        if isinstance(value, str):
            backend_spec(value)  # ValueError naming the choices
            return value
        raise TypeError(
            "backend must be one of "
            + ", ".join(map(repr, BUILTIN_BACKENDS))
            + f" or a memreranker.Backend instance, got {type(value).__name__}"
        )
    @field_validator("document_template", mode="before")
    @classmethod
    def _check_document_template(cls, value: Any) -> str | None:
        return check_document_template(value)

    @field_validator("date_fields", mode="before")
    @classmethod
    def _check_date_fields(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("date_fields must be a list of field names, not one string")
        return value

    @field_validator("recency_half_life", mode="before")
    @classmethod
    def _half_life_seconds(cls, value: Any) -> Any:
        # Kept as seconds, a plain float: every serialisation of the settings (LangChain's
        # dumps, LlamaIndex's to_dict, mem0's config) stays plain JSON.
        if isinstance(value, timedelta):
            return value.total_seconds()
        if isinstance(value, bool):
            raise ValueError("recency_half_life must be seconds or a timedelta, not a bool")
        return value

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, key: SecretStr | None) -> SecretStr | None:
        # The key goes into an HTTP header: a character outside ASCII would fail every call
        # with an encoding error whose chained cause quotes "Bearer <key>". Never echo it.
        if key is not None and not key.get_secret_value().isascii():
            raise ValueError(
                "api_key must be ASCII text (it is sent in an HTTP header); the key given has "
                "a character outside ASCII (the key is not shown)"
            )
        return key

    @model_validator(mode="after")
    def _check_applicable(self) -> RerankerSettings:
        # Only values actually given: the shells, the CLI and the mem0 config pass some
        # defaults explicitly (None, or the default itself), which configure nothing.
        scope = CUSTOM if isinstance(self.backend, Backend) else self.backend
        fields = type(self).model_fields
        wrong = [
            name
            for name in fields  # declaration order: the same message every time
            if name in self.model_fields_set
            and not applies(name, scope)
            and getattr(self, name) != fields[name].default
        ]
        if wrong:
            raise ValueError("; ".join(_not_applicable(name, self.backend) for name in wrong))
        return self

    @model_validator(mode="after")
    def _check_runtime(self) -> RerankerSettings:
        if self.runtime == "torch":
            for name in ("quantize", "threads"):
                if getattr(self, name) is not None:
                    raise ValueError(f'{name} applies to runtime="onnx" only')
            return self
        problem = None
        if self.backend != "local":
            problem = f"the {self.backend!r} backend scores remotely"
        elif self.model is None:
            problem = f"the default model {DEFAULT_LOCAL_MODEL} is a yes/no reranker (torch only)"
        elif self.dtype not in (None, "float32"):
            problem = f'dtype={self.dtype!r} is a torch setting (ONNX runs float32, or "int8")'
        elif self.device not in (None, "cpu"):
            problem = f"device={self.device!r}: ONNX Runtime runs on the CPU here"
        if problem is not None:
            raise ValueError(
                f"runtime={self.runtime!r} applies to local cross-encoder checkpoints: {problem}"
            )
        return self

    @property
    def backend_name(self) -> str:
        """The built-in backend's name, or ``"custom"`` for a ``Backend`` instance."""
        return CUSTOM if isinstance(self.backend, Backend) else self.backend

    def resolved_prompt_format(self) -> PromptFormat | None:
        """``prompt_format`` after the backend's default (``None`` for local and memos)."""
        if self.prompt_format is not None:
            return self.prompt_format
        spec = BUILTIN_BACKENDS.get(self.backend_name)
        return None if spec is None else spec.default_prompt_format

    def resolved_max_documents_per_request(self) -> int:
        """``max_documents_per_request`` after the backend's default."""
        if self.max_documents_per_request is not None:
            return self.max_documents_per_request
        spec = BUILTIN_BACKENDS.get(self.backend_name)
        return (spec and spec.max_documents_per_request) or 100

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        fields = dict(state["__dict__"])  # never the live __dict__: callers edit the state
        key = fields.get("api_key")
        if isinstance(key, SecretStr):
            fields["api_key"] = seal(key.get_secret_value())
        return {**state, "__dict__": fields}

    def __setstate__(self, state: dict[str, Any]) -> None:
        fields = state["__dict__"]
        key = fields.get("api_key")
        if isinstance(key, SealedSecret):
            value = key.unseal()
            if value is None:
                raise ValueError(
                    f"this {type(self).__name__} was pickled with an API key, which pickles "
                    "never contain: only the process that pickled it (or a fork of it) can "
                    "restore the key. Build it here with api_key=... (or, for memos, set "
                    "MEMOS_API_KEY and leave api_key out, so no key is pickled)"
                )
            state = {**state, "__dict__": {**fields, "api_key": SecretStr(value)}}
        super().__setstate__(state)

    def resolved_model(self) -> str | None:
        """The model name after applying the backend's default."""
        if self.model is not None:
            return self.model
        spec = BUILTIN_BACKENDS.get(self.backend_name)
        return None if spec is None else spec.default_model

    def core_settings(self) -> RerankerSettings:
        """A plain ``RerankerSettings`` copy (drops the fields of a subclass)."""
        # Only the fields given: a default copied explicitly would count as given.
        names = RerankerSettings.model_fields.keys() & self.model_fields_set
        return RerankerSettings.model_validate({n: getattr(self, n) for n in names})


def _not_applicable(name: str, backend: BackendName | Backend) -> str:
    scope = [n for n in BUILTIN_BACKENDS if n in SETTING_SCOPES[name]]
    where = " and ".join(scope) if len(scope) < 3 else ", ".join(scope[:-1]) + " and " + scope[-1]
    noun = "backend" if len(scope) == 1 else "backends"
    if isinstance(backend, Backend):
        subject = f"a Backend instance ({backend.name!r})"
    else:
        subject = repr(backend)
    note = SCOPE_NOTES.get(name)
    return f"{name} applies to the {where} {noun}, not {subject}" + (f" ({note})" if note else "")
