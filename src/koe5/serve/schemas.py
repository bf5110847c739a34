"""Request and response bodies of the HTTP API (pydantic models; they are the OpenAPI schema).

``/v1/embeddings`` follows the OpenAI embeddings API, ``/embed`` and ``/rerank``
text-embeddings-inference's, ``/v1/rerank`` Cohere's and Jina's rerank API; the koe5 additions are
marked as extensions. Limits (how many inputs, how long) are the server's
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
    rerank: bool = Field(
        False,
        description="Reorder the index's `rerank_depth` best documents by the server's reranker "
        "(koe5 serve --reranker; 404 `no_reranker` without one) and return the `k` best: each hit's "
        "`score` is then the reranker's, `retrieval_score` the index's.",
    )
    rerank_depth: int | None = Field(
        None,
        description="With `rerank`: how many of the index's documents the reranker reads, from `k` to "
        "the server's max_rerank_depth (absent: 50 within those bounds).",
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
    retrieval_score: float | None = Field(
        None, description="Reranked searches only: the index's score (`score` is the reranker's)."
    )


class SearchResponse(BaseModel):
    query: str
    mode: str
    k: int
    hits: list[SearchHit]


# --- rerank --------------------------------------------------------------------------------------

TRUNCATE_PAIR_DOC = (
    "Pairs longer than the reranker's maximum length (query and text together, in tokens): cut them "
    "(true; the longer of the two loses tokens first) or refuse the request with 413 `max_tokens` "
    "(false). Default: the server's (koe5 serve --auto-truncate / --no-auto-truncate; on unless changed)."
)


class RerankRequest(BaseModel):
    """``POST /rerank`` (text-embeddings-inference). The answer is a list of ranks, best first."""

    query: str = Field(description="The question the texts should answer.")
    texts: list[str] = Field(description="The texts to score against the query (an empty list: `[]`).")
    raw_scores: bool = Field(False, description="The logits, not the reranker's activation of them.")
    return_text: bool = Field(False, description="Give each rank its text.")
    truncate: bool | None = Field(None, description=TRUNCATE_PAIR_DOC)
    truncation_direction: Literal["right", "Right", "left", "Left"] = Field(
        "right", description="Which end of the longer half of a pair is cut: its end (right) or its start."
    )


class Rank(BaseModel):
    index: int = Field(description="The text's position in `texts`.")
    score: float
    text: str | None = Field(None, description="With `return_text` only.")


class DocumentText(BaseModel):
    text: str


class DocumentRerankRequest(BaseModel):
    """``POST /v1/rerank`` (Cohere's and Jina's rerank API). ``truncate`` is a koe5 extension."""

    model: str | None = Field(
        None, description="The served reranker's name, or absent; another name is 404 `model_not_found`."
    )
    query: str = Field(description="The question the documents should answer.")
    documents: list[str | DocumentText] = Field(
        description="Texts, or objects with a `text` (other fields are ignored); an empty list gives "
        "no results."
    )
    top_n: int | None = Field(
        None, description="How many results, from 1 to the number of documents; all if absent."
    )
    return_documents: bool = Field(False, description='Give each result its document (`{"text"}`).')
    truncate: bool | None = Field(None, description="koe5 extension. " + TRUNCATE_PAIR_DOC)


class RelevanceResult(BaseModel):
    index: int = Field(description="The document's position in `documents`.")
    relevance_score: float = Field(description="The reranker's score (its activation: 0-1 for sigmoid).")
    document: DocumentText | None = Field(None, description="With `return_documents` only.")


class RerankUsage(BaseModel):
    total_tokens: int = Field(description="Tokens the reranker read: query, text and special tokens.")


class DocumentRerankResponse(BaseModel):
    id: str = Field(description="A new id for each answer.")
    results: list[RelevanceResult] = Field(description="Best first.")
    model: str
    usage: RerankUsage


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


class RerankerInfo(BaseModel):
    name: str = Field(description="What `model` in /v1/rerank answers say.")
    max_length: int = Field(description="Tokens per pair: query, text and special tokens.")
    window: int | None = Field(
        None,
        description="Tokens of a text read at a time: a longer one is read in half-overlapping windows "
        "and scored by its best (null: cut to fit).",
    )
    activation: str = Field(description="`sigmoid` (scores 0-1) or `identity` (the logit).")
    weight: float = Field(
        description="Its share of a /search hit's score when reranked (the rest the index's; 1: its alone)."
    )
    backend: str = Field(description="What runs it: `torch`, `torch-bf16`, `onnx` or `onnx-int8`.")
    device: str


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
    reranker: RerankerInfo | None = Field(
        None, description="koe5 extension: the reranker of /rerank and /v1/rerank (koe5 serve --reranker)."
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
    reranker: str | None = Field(None, description="The reranker's name (koe5 serve --reranker), if any.")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str = Field(description="The limit (Settings field) or problem: max_inputs, malformed_json, ...")


class ErrorBody(BaseModel):
    """The error of every route but ``/embed`` (OpenAI's shape)."""

    error: ErrorDetail


class TeiErrorBody(BaseModel):
    """The error of ``/embed`` and ``/rerank`` (text-embeddings-inference's shape, plus ``code``)."""

    error: str
    error_type: str
    code: str
