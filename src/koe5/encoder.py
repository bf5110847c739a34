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

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from koe5.batching import CPU_BATCH, GPU_BATCH, length_sorted_batches
from koe5.errors import InputError
from koe5.registry import DEFAULT, ModelSpec, resolve
from koe5.runtime.base import Runner
from koe5.runtime.select import build_runners, check_backend, exported_copy
from koe5.runtime.torch_runner import load_sentence_transformer
from koe5.textio import check_unicode

log = logging.getLogger("koe5")

Kind = Literal["query", "passage"]
_PLURAL = {"query": "queries", "passage": "passages", None: "texts"}
#: Texts per tokenising step when tokenising overlaps a GPU's work (see ``Encoder._tokenized_chunks``).
PIPELINE_CHUNK = 4096
#: A text longer than this many characters per token of ``max_length`` is tokenised from a prefix
#: (see :meth:`Encoder.tokenize_for_model`). Korean runs at ~2 characters a token and English at
#: ~4-5, so 6 leaves English heads long enough; benchmarks/tokenize_long.py measures the choice.
CLIP_CHARS_PER_TOKEN = 6


def check_texts(texts: str | Iterable[str]) -> list[str]:
    """Validate input texts; a single string counts as a list of one.

    Raises :class:`InputError` naming the first bad item and its type, or the position of a lone
    surrogate in it (which would make the tokenizer fail with a TypeError naming nothing).
    """
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or texts is None:
        raise InputError(f"expected a string or a list of strings, got {type(texts).__name__}")
    items = list(texts)
    for i, text in enumerate(items):
        if isinstance(text, str):
            check_unicode(text, f"item {i}")
            continue
        if isinstance(text, (bytes, bytearray)):
            raise InputError(f"item {i} is bytes, not str: decode it first (e.g. .decode('utf-8'))")
        raise InputError(f"item {i} is {type(text).__name__}, not str: {text!r:.60}")
    return items


class Encoder:
    """A model plus what koe5 knows about it (prefixes, limits) and how it runs (backend per kind).

    Use :func:`koe5.load` to make one. ``last_truncated`` counts the inputs of the latest call
    that were longer than ``max_length`` tokens and were cut. ``clip_long_texts`` (on where the
    tokenizer splits words at spaces): tokenise only a long text's head, see :meth:`tokenize_for_model`.
    """

    def __init__(
        self,
        spec: ModelSpec,
        path: str,
        tokenizer,
        runners: dict[str, Runner],
        *,
        dim: int,
        max_length: int,
        batch_size: int = CPU_BATCH.inputs,
        max_tokens: int | None = CPU_BATCH.tokens,
        model=None,
    ) -> None:
        self.spec = spec
        self.path = path
        self.tokenizer = tokenizer
        self.runners = runners
        self.dim = dim
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._model = model
        self.last_truncated = 0
        self._lead, self._tail = self._special_layout()
        self._pad_id = self.tokenizer.pad_token_id or 0
        self.clip_long_texts = self._splits_at_spaces()

    @property
    def model(self):
        """The sentence-transformers model (loaded on first use when the backends are ONNX).

        A plain model, savable and trainable: on a CPU the torch backend encodes with an inference
        copy whose linear layers run packed in oneDNN (:mod:`koe5.cpu.onednn`; for BERT/XLM-R encoders on
        unpadded tokens, :mod:`koe5.cpu.unpadded`); that copy holds its own packed weights, so after
        changing this model's weights, load the encoder again."""
        if self._model is None:
            self._model = load_sentence_transformer(self.path, None)
        return self._model

    @property
    def backend(self) -> str:
        """The backend of each kind, e.g. ``"torch"`` or ``"query=onnx-int8,passage=torch"``."""
        names = {kind: r.name for kind, r in self.runners.items()}
        if len(set(names.values())) == 1:
            return next(iter(names.values()))
        return ",".join(f"{k}={v}" for k, v in sorted(names.items()))

    @property
    def precision(self) -> str | None:
        """The torch backend's precision (``fp32``, ``fp16`` or ``bf16``); ``None`` without one."""
        names = (runner.precision_name for runner in self.runners.values())
        return next((name for name in names if name is not None), None)

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

    def _splits_at_spaces(self) -> bool:
        """Whether the tokenizer cuts text into words at spaces before it splits words into pieces, as
        BERT's and SentencePiece's Metaspace pre-tokenizers do: then a text cut at a space tokenises to
        the same pieces as the whole text, up to the cut. (Byte-level BPE rewrites Korean into byte
        symbols, so this check fails for it and its texts are tokenised whole: safe, not faster.)"""
        pre = getattr(getattr(self.tokenizer, "backend_tokenizer", None), "pre_tokenizer", None)
        if pre is None:
            return False
        try:
            words = pre.pre_tokenize_str("가나 다라 ab cd")
        except Exception:  # a custom pre-tokenizer that cannot run alone: keep whole texts
            return False
        return [w.strip("▁Ġ ") for w, _ in words] == ["가나", "다라", "ab", "cd"]

    def tokenize_for_model(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids as :meth:`tokenize` gives them, except that a text's ids may stop early once they
        are longer than ``max_length``: what the model sees after :meth:`_truncate` is the same.

        Why: only the first ``max_length`` tokens reach the model, but the tokenizer reads the whole
        text; for long documents that is most of the work where the model is fast (a GPU). A text
        longer than ``CLIP_CHARS_PER_TOKEN × max_length`` characters is tokenised up to its last space
        before that point, trailing whitespace removed, so the head ends with a whole word; a tokenizer
        that splits words at spaces gives the head the same tokens as the whole text. The head is kept
        only if it has more than ``max_length`` tokens (strictly: then its last content token, the one
        a cut could still touch, falls outside the truncated input); heads with fewer (very long words)
        and texts without a space to cut at are tokenised whole.
        """
        limit = CLIP_CHARS_PER_TOKEN * self.max_length
        if not self.clip_long_texts or all(len(t) <= limit for t in texts):
            return self.tokenize(texts)
        heads = list(texts)
        clipped = []
        for i, text in enumerate(texts):
            cut = text.rfind(" ", limit // 2, limit) if len(text) > limit else -1
            if cut > 0:
                heads[i] = text[:cut].rstrip()
                clipped.append(i)
        ids = self.tokenize(heads)
        short = [i for i in clipped if len(ids[i]) <= self.max_length]
        for i, whole in zip(short, self.tokenize([texts[i] for i in short]), strict=True):
            ids[i] = whole
        return ids

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with special tokens, not truncated."""
        if not texts:
            return []
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        # The Rust tokenizer directly, without offsets (encode_batch_fast): ~25 % less time than the
        # Hugging Face call, which matters on a GPU where tokenising is the larger part of the work.
        # Only while it is set to neither truncate nor pad (the Hugging Face call resets both).
        if (
            backend is not None
            and hasattr(backend, "encode_batch_fast")
            and backend.truncation is None
            and backend.padding is None
        ):
            return [e.ids for e in backend.encode_batch_fast(list(texts), add_special_tokens=True)]
        return self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]

    def _truncate(self, ids: list[int]) -> list[int]:
        """Cut the content, not the closing special tokens, as Hugging Face truncation does."""
        if len(ids) <= self.max_length:
            return ids
        keep = self.max_length - self._tail
        return ids[:keep] + ids[len(ids) - self._tail :] if self._tail else ids[: self.max_length]

    def _pad(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """``input_ids`` and ``attention_mask`` of a batch, padded on the right."""
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        filled = np.arange(int(lengths.max())) < lengths[:, None]
        input_ids = np.full(filled.shape, self._pad_id, dtype=np.int64)
        input_ids[filled] = np.fromiter(
            (i for row in rows for i in row), dtype=np.int64, count=int(lengths.sum())
        )
        return input_ids, filled.astype(np.int64)

    def _tokenized_chunks(self, texts: list[str], pipelined: bool):
        """``(offset, token ids)`` of consecutive chunks of ``texts``.

        On a CPU, one chunk: every input is sorted by length together. Where the model runs
        asynchronously (CUDA), tokenising is the larger part of the work for a small model
        (``benchmarks/gpu_speed.py``; docs/performance.md), so chunks of ``PIPELINE_CHUNK`` texts are
        tokenised in a background thread while the GPU encodes the previous chunk; the Rust tokenizer
        releases the GIL.
        """
        if not pipelined or len(texts) <= PIPELINE_CHUNK:
            yield 0, self.tokenize_for_model(texts)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="koe5-tokenize") as pool:
            pending = pool.submit(self.tokenize_for_model, texts[:PIPELINE_CHUNK])
            for offset in range(0, len(texts), PIPELINE_CHUNK):
                ids = pending.result()
                after = offset + PIPELINE_CHUNK
                if after < len(texts):  # the next chunk tokenises while this one is encoded
                    pending = pool.submit(self.tokenize_for_model, texts[after : after + PIPELINE_CHUNK])
                yield offset, ids

    def encode(
        self,
        texts: str | Iterable[str],
        kind: Kind | None = None,
        *,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Embed ``texts`` (with the prefix of ``kind``, none if ``None``) -> float32 (n, dim).

        Batches hold at most ``batch_size`` inputs and ``max_tokens`` padded token-equivalents
        (defaults: the encoder's; see :mod:`koe5.batching`).
        """
        items = check_texts(texts)
        prefix = {"query": self.query_prefix, "passage": self.passage_prefix, None: ""}.get(kind)
        if prefix is None:
            raise InputError(f"kind must be 'query', 'passage' or None, got {kind!r}")
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        self.last_truncated = 0
        if not items:
            return out
        runner = self.runners[kind or "passage"]
        size = batch_size or self.batch_size
        budget = max_tokens if max_tokens is not None else self.max_tokens
        progress = _progress(len(items), show_progress, f"encoding {_PLURAL[kind]}")
        truncated = 0
        in_flight = None  # (rows of out, finish) of the batch started last

        def collect():
            rows, finish = in_flight
            out[rows] = finish()
            progress.update(len(rows))

        chunks = self._tokenized_chunks([prefix + t for t in items], runner.pipelined)
        for offset, ids in chunks:
            lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
            truncated += int((lengths > self.max_length).sum())
            for batch in length_sorted_batches(np.minimum(lengths, self.max_length), size, budget):
                finish = runner.start(*self._pad([self._truncate(ids[i]) for i in batch]))
                if in_flight is not None:
                    collect()
                in_flight = (batch + offset, finish)
        collect()
        progress.close()
        self.last_truncated = truncated
        if truncated:
            log.warning(
                "koe5: %d of %d inputs were longer than %d tokens and were truncated",
                truncated,
                len(items),
                self.max_length,
            )
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
        return (
            f"Encoder({self.name!r}, dim={self.dim}, max_length={self.max_length}, "
            f"backend={self.backend!r}, path={self.path!r})"
        )


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text", disable=not enabled or total == 0, leave=False)


def _max_length(folder: Path, tokenizer, spec: ModelSpec, st) -> int:
    limits = [spec.max_length]
    if st is not None:
        limits.append(st.max_seq_length)
    else:
        cfg = folder / "sentence_bert_config.json"
        if cfg.is_file():
            limits.append(json.loads(cfg.read_text(encoding="utf-8")).get("max_seq_length"))
        limits.append(getattr(tokenizer, "model_max_length", None))
    limits = [int(x) for x in limits if x and x < 1_000_000]
    return min(limits) if limits else 512


def load(
    model: str = DEFAULT,
    backend: str = "torch",
    device: str | None = None,
    *,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    precision: str = "auto",
) -> Encoder:
    """Load an encoder: ``"default"`` (bundled, offline), a local folder or a hub id.

    Prefixes come from the model registry or the folder's saved prompts; pass ``query_prefix`` /
    ``passage_prefix`` to override them (needed for models koe5 does not know). ``backend`` is one
    of :data:`koe5.runtime.select.BACKENDS` (the ONNX ones need ``koe5 export`` first); ``precision``
    is the torch backend's: ``auto`` = fp16 on CUDA, fp32 on CPU (see
    :class:`koe5.runtime.torch_runner.TorchRunner`), or ``fp32``, ``fp16``, ``bf16``.
    Batches default to 32 inputs and 4,096 padded token-equivalents on CPU, 512 and 65,536 on CUDA.
    """
    check_backend(backend)  # before resolving: a typo costs no model load
    spec, location = resolve(model, query_prefix=query_prefix, passage_prefix=passage_prefix)
    location, backend = exported_copy(location, backend)
    loaded = build_runners(model, location, backend, device, precision)
    st, tokenizer, runners = loaded.model, loaded.tokenizer, loaded.runners
    on_gpu = st is not None and st.device.type == "cuda"
    batches = GPU_BATCH if on_gpu else CPU_BATCH
    probe = next(iter(runners.values()))(np.array([[0, 1]], dtype=np.int64), np.ones((1, 2), dtype=np.int64))
    return Encoder(
        spec,
        location,
        tokenizer,
        runners,
        dim=int(probe.shape[1]),
        max_length=_max_length(Path(location), tokenizer, spec, st),
        batch_size=batch_size or batches.inputs,
        max_tokens=max_tokens or batches.tokens,
        model=st,
    )
