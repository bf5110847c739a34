"""Request and response bodies of the HTTP API (pydantic models; they are the OpenAPI schema).

``/v1/embeddings`` follows the OpenAI embeddings API, ``/embed`` text-embeddings-inference's; the
koe5 additions are marked as extensions. Limits (how many inputs, how long) are the server's
:class:`~koe5.serve.settings.Settings`, not part of the schema.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

TRUNCATE_DOC = (
    "Inputs longer than the model's maximum length (in tokens, prefix included): cut them (true) or "
    "refuse the request with 413 `max_tokens` (false). Default: the server's (koe5 serve "
    "--auto-truncate / --no-auto-truncate; on unless changed)."
)
DIMENSIONS_DOC = (
    "Keep the first `dimensions` components and renormalise. Below the model's own dimension only for "
    "models trained for it (Matryoshka) or on a server started with --allow-dimensions; 422 otherwise."
)


# --- OpenAI-compatible ---------------------------------------------------------------------------


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings`` (OpenAI). ``input_type`` and ``truncate`` are koe5 extensions."""

    input: str | list[str] = Field(description="A text or a list of texts (token arrays are not accepted).")
    model: str | None = Field(
        None, description="Any name; the server has one model and answers with its name."
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`float`: lists of numbers; `base64`: little-endian float32 bytes, base64."
    )
    dimensions: int | None = Field(None, ge=1, description=DIMENSIONS_DOC)
    user: str | None = Field(None, description="Accepted and ignored.")
    input_type: Literal["query", "passage", "none"] = Field(
        "passage",
        description="koe5 extension: the prefix to add (the model's query or passage prefix, or none).",
    )
    truncate: bool | None = Field(None, description="koe5 extension. " + TRUNCATE_DOC)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="The vector, or its base64 float32 bytes.")


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens the model read: prefix and special tokens included.")
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


# --- text-embeddings-inference-compatible ----------------------------------------------------------


class EmbedRequest(BaseModel):
    """``POST /embed`` (text-embeddings-inference). The answer is a list of vectors."""

    inputs: str | list[str] = Field(description="A text or a list of texts.")
    normalize: bool = Field(
        True, description="koe5 models end in a normalisation layer: only true is accepted (422 otherwise)."
    )
    truncate: bool | None = Field(None, description=TRUNCATE_DOC)
    truncation_direction: Literal["right", "Right", "left", "Left"] = Field(
        "right", description="Only right truncation is supported (left: 422)."
    )
    prompt_name: str | None = Field(
        None,
        description="`query`, `passage` (or `document`) or `none`: the prefix to add. Absent: `passage`, "
        "as text-embeddings-inference started with --default-prompt-name passage.",
    )
    dimensions: int | None = Field(None, ge=1, description=DIMENSIONS_DOC)


# --- search --------------------------------------------------------------------------------------


class SearchRequest(BaseModel):
    """``POST /search`` over the server's index (``koe5 serve --index FOLDER``)."""

    query: str = Field(description="The query; the model's query prefix is added for dense search.")
    k: int = Field(10, ge=1, description="How many documents (at most the server's max_k).")
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    filters: dict[str, Any] | None = Field(
        None,
        description="Metadata key -> value; a list value means any of them; `doc_id` filters on ids.",
    )


class SearchHit(BaseModel):
    """A document and the chunk that earned its score (``start``/``end``: character offsets)."""

    doc_id: str
    score: float
    chunk_id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    start: int = 0
    end: int = 0


class SearchResponse(BaseModel):
    query: str
    mode: str
    k: int
    hits: list[SearchHit]


# --- health and errors ---------------------------------------------------------------------------


class IndexInfo(BaseModel):
    folder: str = Field(description="The index folder, or its PostgreSQL URL (password hidden).")
    documents: int
    chunks: int
    error: str | None = Field(
        default=None, description="Why the index cannot be read now (its database is unreachable)."
    )


class ModelObject(BaseModel):
    id: str = Field(description="The model's name (what `model` in embedding responses says).")
    object: Literal["model"] = "model"
    created: int = Field(description="When the server started (Unix seconds).")
    owned_by: str = "koe5"


class ModelList(BaseModel):
    """``GET /v1/models`` (OpenAI): the one model this server runs."""

    object: Literal["list"] = "list"
    data: list[ModelObject]


class EmbeddingModelType(BaseModel):
    pooling: str = Field(description="`mean` or `cls` (the model folder's sentence-transformers pooling).")


class ModelType(BaseModel):
    embedding: EmbeddingModelType


class Info(BaseModel):
    """``GET /info`` (text-embeddings-inference): the model and the server's limits."""

    model_id: str
    model_sha: str | None = None
    model_dtype: str = Field(description="`float32`, `float16`, `bfloat16` (torch) or `int8` (onnx-int8).")
    model_type: ModelType
    max_concurrent_requests: int = Field(description="Requests admitted at once (`--max-queue`).")
    max_input_length: int = Field(description="Tokens per input, prefix included.")
    max_batch_tokens: int
    max_batch_requests: int | None = None
    max_client_batch_size: int = Field(description="Texts per request (`--max-inputs`).")
    auto_truncate: bool
    tokenization_workers: int = 1
    version: str = Field(description="koe5's version.")
    backend: str = Field(description="koe5 extension: the backend per kind of input.")
    dim: int = Field(description="koe5 extension: the vectors' dimension.")
    mkl_shim: str | None = Field(
        None,
        description="koe5 extension: whether MKL runs its AVX-512 path on an AMD CPU in this process "
        "(active, off, not needed, not built, too late; see koe5.mkl).",
    )
    attention_kernel: str | None = Field(
        None,
        description="koe5 extension: whether koe5's attention kernel runs the CPU fp32 encoder "
        "(active, off, unsupported CPU, not built, other OpenMP; see koe5.attention); null when the "
        "served model never asked (GPU, ONNX, other architectures).",
    )


class Health(BaseModel):
    """``GET /health``: 200 when serving, 503 (``draining``) once shutdown has begun."""

    status: Literal["ok", "draining"]
    model: str
    dim: int
    max_length: int
    backend: str
    index: IndexInfo | None = None
    queue: int = Field(description="Requests admitted and not yet answered.")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str = Field(description="The limit (Settings field) or problem: max_inputs, malformed_json, ...")


class ErrorBody(BaseModel):
    """The error of every route but ``/embed`` (OpenAI's shape)."""

    error: ErrorDetail


class TeiErrorBody(BaseModel):
    """The error of ``/embed`` (text-embeddings-inference's shape, plus ``code``)."""

    error: str
    error_type: str
    code: str
