"""``POST /rerank`` (text-embeddings-inference) and ``POST /v1/rerank`` (Cohere's and Jina's rerank API).

Both score every (query, text) pair with the server's reranker (``koe5 serve --reranker``) through its
worker, batched with the other requests' pairs, and answer best first (equal scores: lower index
first), with ``X-Koe5-Truncated``: how many pairs were cut to the reranker's maximum length. An empty
list of texts is an empty answer. The bodies are :class:`~koe5.serve.schemas.RerankRequest` and
:class:`~koe5.serve.schemas.DocumentRerankRequest`.
"""

from __future__ import annotations

import uuid

import numpy as np
from fastapi import APIRouter
from starlette.responses import Response

from koe5.rerank.ranking import ranked
from koe5.serve.checks import check_query
from koe5.serve.rerank_batcher import RerankResult
from koe5.serve.reranking import check_candidates, check_model, check_top_n, require_reranker, score
from koe5.serve.responses import error_docs, json_response
from koe5.serve.schemas import (
    DocumentRerankRequest,
    DocumentRerankResponse,
    ErrorBody,
    Rank,
    RerankRequest,
    TeiErrorBody,
)
from koe5.serve.state import State

router = APIRouter()

#: What an empty list of texts scores to.
NOTHING = RerankResult(np.zeros(0, dtype=np.float32), 0, 0)


@router.post(
    "/rerank",
    response_model=list[Rank],
    responses=error_docs(TeiErrorBody, 401, 404, 413, 422, 429, 503),
    tags=["rerank"],
    summary="Rerank texts (text-embeddings-inference-compatible)",
)
async def rerank(request: RerankRequest, state: State) -> Response:
    """text-embeddings-inference's ``/rerank``: ``[{"index", "score", "text"?}]``, best first.

    ``raw_scores`` gives the logits; ``truncation_direction`` ``left`` cuts the start of the longer half
    of a too-long pair instead of its end.
    """
    require_reranker(state)
    query = check_query(request.query, state.settings)
    texts = check_candidates(request.texts, "texts", state.settings)
    side = request.truncation_direction.lower()
    result = NOTHING
    if texts:
        result = await score(
            state, query, texts, raw=request.raw_scores, truncate=request.truncate, side=side, param="texts"
        )
    rows = []
    for hit in ranked(result.scores, texts):
        row: dict = {"index": hit.index, "score": hit.score}
        if request.return_text:
            row["text"] = hit.text
        rows.append(row)
    return json_response(rows, truncated=result.truncated)


@router.post(
    "/v1/rerank",
    response_model=DocumentRerankResponse,
    responses=error_docs(ErrorBody, 401, 404, 413, 422, 429, 503),
    tags=["rerank"],
    summary="Rerank documents (Cohere- and Jina-compatible)",
)
async def rerank_documents(request: DocumentRerankRequest, state: State) -> Response:
    """The rerank API of Cohere and Jina: ``results`` best first, ``top_n`` of them, each with its
    ``relevance_score`` (the reranker's activation) and, with ``return_documents``, its document.

    ``usage.total_tokens`` counts the tokens the reranker read (query, text and special tokens).
    """
    reranker = require_reranker(state).reranker
    check_model(request.model, reranker)
    query = check_query(request.query, state.settings)
    documents = [d if isinstance(d, str) else d.text for d in request.documents]
    texts = check_candidates(documents, "documents", state.settings)
    top_n = check_top_n(request.top_n, len(texts))
    result = NOTHING
    if texts:
        result = await score(state, query, texts, truncate=request.truncate, param="documents")
    results = []
    for hit in ranked(result.scores, texts, top_n):
        row: dict = {"index": hit.index, "relevance_score": hit.score}
        if request.return_documents:
            row["document"] = {"text": hit.text}
        results.append(row)
    body = {
        "id": str(uuid.uuid4()),
        "results": results,
        "model": reranker.name,
        "usage": {"total_tokens": result.tokens},
    }
    return json_response(body, truncated=result.truncated)
