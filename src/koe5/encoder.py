"""Encode Korean text with an E5-style model: the right prefixes, length-sorted batches, explicit
truncation, float32 L2-normalised vectors.

Example::

    import koe5
    enc = koe5.load()                      # the bundled multilingual-e5-small, offline
    q = enc.encode_queries(["한국의 수도는 어디인가요?"])
    p = enc.encode_passages(["서울은 대한민국의 수도이다.", "부산은 항구 도시이다."])
    enc.similarity(q, p)                   # (1, 2) cosine similarities
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from koe5.batching import length_sorted_batches
from koe5.errors import InputError, ModelError
from koe5.registry import DEFAULT, ModelSpec, resolve

log = logging.getLogger("koe5")

Kind = Literal["query", "passage"]
_PLURAL = {"query": "queries", "passage": "passages", None: "texts"}
BACKENDS = ("torch",)


def check_texts(texts: str | Iterable[str]) -> list[str]:
    """Validate input texts; a single string counts as a list of one.

    Raises :class:`InputError` naming the first bad item and its type.
    """
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or texts is None:
        raise InputError(f"expected a string or a list of strings, got {type(texts).__name__}")
    items = list(texts)
    for i, text in enumerate(items):
        if isinstance(text, str):
            continue
        if isinstance(text, (bytes, bytearray)):
            raise InputError(f"item {i} is bytes, not str: decode it first (e.g. .decode('utf-8'))")
        raise InputError(f"item {i} is {type(text).__name__}, not str: {text!r:.60}")
    return items


class Encoder:
    """A sentence-transformers model plus what koe5 knows about it (prefixes, limits).

    Use :func:`koe5.load` to make one. ``last_truncated`` counts the inputs of the latest call
    that were longer than ``max_length`` tokens and were cut.
    """

    def __init__(self, model, spec: ModelSpec, path: str, *, batch_size: int = 32) -> None:
        self.model = model
        self.spec = spec
        self.path = path
        self.batch_size = batch_size
        self.tokenizer = model.tokenizer
        # sentence-transformers 6 renamed the method; 5 only has the old name
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        self.dim: int = int(dim or spec.dim)
        limits = [x for x in (model.max_seq_length, spec.max_length) if x]
        self.max_length: int = int(min(limits)) if limits else 512
        self.last_truncated = 0
        self._lead, self._tail = self._special_layout()
        self._pad_id = self.tokenizer.pad_token_id or 0
        self._with_token_types = "token_type_ids" in getattr(self.tokenizer, "model_input_names", ())

    @property
    def name(self) -> str:
        return self.spec.display_name

    @property
    def query_prefix(self) -> str:
        return self.spec.query_prefix

    @property
    def passage_prefix(self) -> str:
        return self.spec.passage_prefix

    def _special_layout(self) -> tuple[int, int]:
        """How many special tokens the tokenizer puts before and after the content."""
        full = self.tokenizer("가", add_special_tokens=True)["input_ids"]
        content = self.tokenizer("가", add_special_tokens=False)["input_ids"]
        for lead in range(len(full) - len(content) + 1):
            if full[lead : lead + len(content)] == content:
                return lead, len(full) - lead - len(content)
        return 0, 0

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with special tokens, not truncated."""
        if not texts:
            return []
        return self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]

    def _truncate(self, ids: list[int]) -> list[int]:
        """Cut the content, not the closing special tokens, as Hugging Face truncation does."""
        if len(ids) <= self.max_length:
            return ids
        keep = self.max_length - self._tail
        return ids[:keep] + ids[len(ids) - self._tail :] if self._tail else ids[: self.max_length]

    def encode(
        self,
        texts: str | Iterable[str],
        kind: Kind | None = None,
        *,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Embed ``texts`` (with the prefix of ``kind``, none if ``None``) -> float32 (n, dim)."""
        import torch

        items = check_texts(texts)
        prefix = {"query": self.query_prefix, "passage": self.passage_prefix, None: ""}.get(kind)
        if prefix is None:
            raise InputError(f"kind must be 'query', 'passage' or None, got {kind!r}")
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        self.last_truncated = 0
        if not items:
            return out
        ids = self.tokenize([prefix + t for t in items])
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        self.last_truncated = int((lengths > self.max_length).sum())
        if self.last_truncated:
            log.warning(
                "koe5: %d of %d inputs were longer than %d tokens and were truncated",
                self.last_truncated,
                len(items),
                self.max_length,
            )
        batches = length_sorted_batches(np.minimum(lengths, self.max_length), batch_size or self.batch_size)
        device = self.model.device
        progress = _progress(len(items), show_progress, f"encoding {_PLURAL[kind]}")
        with torch.inference_mode():
            for batch in batches:
                rows = [self._truncate(ids[i]) for i in batch]
                width = max(map(len, rows))
                input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, row in enumerate(rows):
                    input_ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
                    mask[r, : len(row)] = 1
                features = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
                if self._with_token_types:
                    features["token_type_ids"] = torch.zeros_like(features["input_ids"])
                emb = self.model(features)["sentence_embedding"].float()
                emb = torch.nn.functional.normalize(emb, dim=-1)
                out[batch] = emb.cpu().numpy()
                progress.update(len(batch))
        progress.close()
        return out

    def encode_queries(self, texts: str | Iterable[str], **kwargs) -> np.ndarray:
        """Embed search queries (the model's query prefix is added)."""
        return self.encode(texts, "query", **kwargs)

    def encode_passages(self, texts: str | Iterable[str], **kwargs) -> np.ndarray:
        """Embed documents/passages (the model's passage prefix is added)."""
        return self.encode(texts, "passage", **kwargs)

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity matrix (n_a, n_b) of two sets of vectors."""
        a = np.atleast_2d(np.asarray(a, dtype=np.float32))
        b = np.atleast_2d(np.asarray(b, dtype=np.float32))
        if a.shape[1] != b.shape[1]:
            raise InputError(f"dimension mismatch: {a.shape[1]} vs {b.shape[1]}")
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return an @ bn.T

    def __repr__(self) -> str:
        return f"Encoder({self.name!r}, dim={self.dim}, max_length={self.max_length}, path={self.path!r})"


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text", disable=not enabled or total == 0, leave=False)


def load(
    model: str = DEFAULT,
    backend: str = "torch",
    device: str | None = None,
    *,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    batch_size: int = 32,
) -> Encoder:
    """Load an encoder: ``"default"`` (bundled, offline), a local folder or a hub id.

    Prefixes come from the model registry or the folder's saved prompts; pass ``query_prefix`` /
    ``passage_prefix`` to override them (needed for models koe5 does not know).
    """
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    spec, location = resolve(model, query_prefix=query_prefix, passage_prefix=passage_prefix)
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load of a local folder is noise, not progress
    try:
        st = SentenceTransformer(location, device=device)
    except Exception as exc:  # sentence-transformers raises many types; name the model either way
        raise ModelError(f"cannot load model {model!r} from {location}: {type(exc).__name__}: {exc}") from exc
    st.eval()
    return Encoder(st, spec, location, batch_size=batch_size)
