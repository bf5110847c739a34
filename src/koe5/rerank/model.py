"""A cross-encoder that scores (query, passage) pairs: the second stage after search.

Search finds a hundred candidates fast by comparing vectors or words; a reranker then reads the query
and each candidate together and scores how well the candidate answers it, which orders the best few
better. :meth:`Reranker.load` resolves the registry (:mod:`koe5.rerank.registry`), checks the folder
is a cross-encoder before loading its weights (:mod:`koe5.rerank.folders`) and loads it with
sentence-transformers' ``CrossEncoder``; scoring tokenises, batches by a token budget and runs the
Hugging Face model itself, so it can count truncated pairs and refuse long ones.

Example::

    from koe5.rerank import Reranker

    reranker = Reranker.load("dragonkue/bge-reranker-v2-m3-ko")
    texts = ["서울은 대한민국의 수도이다.", "부산은 항구 도시이다."]
    reranker.score("한국의 수도는?", texts)   # float32, one score per text, in input order
    for hit in reranker.rank("한국의 수도는?", texts, top_k=1):
        print(hit.index, hit.score, hit.text)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from koe5.batching import length_sorted_batches
from koe5.errors import ModelError, TooLongError
from koe5.files import atomic_dir
from koe5.rerank.backends import OnnxClassifier, runner_name
from koe5.rerank.folders import FolderFacts, choose_max_length, config_folder, inspect_folder
from koe5.rerank.inputs import check_candidates, check_query, check_top_k
from koe5.rerank.ranking import Ranked, ranked
from koe5.rerank.registry import DEFAULT, RerankerSpec, resolve
from koe5.rerank.windows import best, expand
from koe5.runtime.base import DTYPES, PRECISIONS
from koe5.runtime.select import TORCH_BF16, exported_copy

log = logging.getLogger("koe5")

#: Padded token-equivalents per forward pass (:func:`koe5.batching.token_cost`). Pairs are sorted by
#: length and cut into passes by this budget, not by a count: candidates range from a 20-token title
#: to a 1,024-token chunk, and a fixed count either runs short pairs in needlessly small passes or puts
#: 32 long ones into one (32 pairs of 1,024 tokens in XLM-R large, 16 heads: 2 GB of attention scores
#: per layer in eager attention). The budget bounds a pass's memory whatever the lengths, while short
#: pairs still go many to a pass; sorting keeps padding small. Not tuned by a benchmark yet.
MAX_TOKENS = 16384
#: A pass never holds more pairs than this, however short they are.
MAX_PAIRS = 256


@dataclass(frozen=True)
class Scores:
    """What one scoring call gives: a score per text (input order) and what it cost.

    ``truncated`` counts the pairs longer than ``max_length`` that were cut; ``tokens`` is how many
    tokens the model read, special tokens included (after cutting). With a ``window`` a pair is a
    window of a text (:mod:`koe5.rerank.windows`).
    """

    scores: np.ndarray
    truncated: int
    tokens: int


class Reranker:
    """A cross-encoder plus what koe5 knows about it (maximum length, activation).

    Make one with :meth:`load`. It keeps no state from call to call (counts come back in
    :class:`Scores`), so a server may call it from a worker thread; the tokenizer, which is not safe to
    call from two threads at once, is guarded by a lock.
    """

    def __init__(
        self,
        spec: RerankerSpec,
        location: str,
        model,
        *,
        max_length: int,
        activation: str,
        max_tokens: int = MAX_TOKENS,
        weight: float = 1.0,
        onnx: OnnxClassifier | None = None,
        tokenizer=None,
        backend: str = "torch",
        window: int | None = None,
    ) -> None:
        self.spec = spec
        self.location = location
        #: what runs the model: ``torch``, ``torch-bf16``, ``onnx`` or ``onnx-int8``
        self.backend = backend
        #: sentence-transformers' CrossEncoder; ``None`` where ONNX Runtime runs the model (``onnx``)
        self.cross_encoder = model
        self.max_length = max_length
        self.activation = activation
        self.max_tokens = max_tokens
        #: tokens of a text read at a time, a long text scoring as its best window; None: cut to fit
        self.window = check_window(window, max_length)
        #: its share of a reranked search result's score (:func:`koe5.search.reranking.blend`)
        self.weight = check_weight(weight)
        #: the exported classifier when ONNX Runtime runs the model (:mod:`koe5.rerank.backends`)
        self.onnx = onnx
        #: the Hugging Face tokenizer (call it under ``_lock``: see the class docstring)
        self.tokenizer = model.tokenizer if model is not None else tokenizer
        self._lock = threading.Lock()
        self._specials = self.tokenizer.num_special_tokens_to_add(pair=True)
        #: koe5's fp32 CPU path (:mod:`koe5.cpu.classifier`) where it covers the model, else None
        self.fast = _fast_path(model) if model is not None else None

    @classmethod
    def load(
        cls,
        name_or_folder: str = DEFAULT,
        *,
        device: str | None = None,
        max_length: int | None = None,
        precision: str = "auto",
        max_tokens: int = MAX_TOKENS,
        weight: float | None = None,
        backend: str = "torch",
        window: int | None = None,
    ) -> Reranker:
        """Load a reranker: ``"default"`` (koe5's own, after ``koe5 train-reranker``), a registry id,
        a folder or another hub id.

        ``max_length`` (query and passage together) defaults to the registry's, else the tokenizer's
        limit up to 512; ``precision`` ``auto`` is fp16 on CUDA and fp32 elsewhere. An embedding
        folder or a head of more than one label is a :class:`~koe5.errors.ModelError`, raised before
        any weights are read. ``weight``: the reranker's share of a reranked search result's score,
        the rest the first stage's (default: the registry's ``weight``, else 1: the reranker alone).
        ``backend``: ``torch``, or ``onnx``, ``onnx-int8`` or ``auto`` for a local folder exported by
        ``koe5 export NAME --reranker --onnx`` (:mod:`koe5.rerank.backends`). ``window``: read a
        text longer than this many tokens in overlapping windows and score it by its best
        (:mod:`koe5.rerank.windows`; default: the registry's ``window``, else none; 0: none, a long
        text is cut to fit).
        """
        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}; available: {', '.join(PRECISIONS)}")
        if max_tokens < 1:
            raise ModelError(f"max_tokens must be at least 1, got {max_tokens}")
        spec, location, local = resolve(name_or_folder)
        if not local:
            location, backend = exported_copy(location, backend)
            local = Path(location).is_dir()
        runner = runner_name(backend, name_or_folder, location, local)  # before any download
        name = location if local else name_or_folder
        facts = inspect_folder(config_folder(location, local), name)
        length = choose_max_length(max_length, spec.max_length, facts, name)
        activation = _activation(spec, facts)
        # checked here too, so that a bad weight or window costs no model load
        weight = check_weight(spec.extra.get("weight", 1.0) if weight is None else weight)
        window = check_window(spec.extra.get("window") if window is None else window, length)
        how = {"max_length": length, "activation": activation, "max_tokens": max_tokens, "weight": weight}
        how["window"] = window
        how["backend"] = runner
        if runner in ("onnx", "onnx-int8"):
            if device not in (None, "cpu"):
                raise ModelError(f"reranker backend {runner!r} runs on the CPU, not {device!r}")
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(location)
            return cls(
                spec, location, None, **how, onnx=OnnxClassifier(location, runner), tokenizer=tokenizer
            )
        precision = "bf16" if runner == TORCH_BF16 else precision
        return cls(spec, location, _load_cross_encoder(location, device, length, precision), **how)

    @property
    def name(self) -> str:
        return self.spec.display_name

    @property
    def device(self) -> str:
        return "cpu" if self.cross_encoder is None else str(self.cross_encoder.device)

    def pair_lengths(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Tokens of each (query, text) pair as the model would read it uncut, special tokens included.

        The query is tokenised once and each text alone: a pair's two halves are tokenised apart and
        joined by the special tokens, so their lengths add up.
        """
        with self._lock:  # verbose=False: an uncut long text is expected here, not worth a warning
            query_ids = self.tokenizer(query, add_special_tokens=False, verbose=False)["input_ids"]
            text_ids = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        extra = len(query_ids) + self._specials
        return np.fromiter((len(ids) + extra for ids in text_ids), dtype=np.int64, count=len(text_ids))

    def score_with_stats(
        self,
        query: str,
        texts: Sequence[str],
        *,
        raw: bool = False,
        truncate: bool = True,
        show_progress: bool = False,
    ) -> Scores:
        """Score every text against ``query``, and say how many pairs were cut.

        ``raw`` gives the logits; otherwise the registry's activation is applied (sigmoid: 0-1). A pair
        longer than ``max_length`` is cut as sentence-transformers cuts it (the longer half first);
        with ``truncate=False`` it is a :class:`~koe5.errors.TooLongError` naming the first such item,
        raised before the model runs. With a ``window``, a text longer than it is read in windows
        and scores as its best; only a window with a long query can then be too long.
        """
        query = check_query(query)
        items = check_candidates(texts)
        if not items:
            return Scores(np.zeros(0, dtype=np.float32), 0, 0)
        pieces, owner = self.windows(items)
        lengths = self.pair_lengths(query, pieces)
        over = np.flatnonzero(lengths > self.max_length)
        if over.size and not truncate:
            first = int(over[0])
            raise TooLongError(
                f"item {int(owner[first])}: the query and this text are {int(lengths[first])} tokens "
                f"together, more than the reranker's {self.max_length} ({over.size} "
                f"{'item' if self.window is None else 'window'}(s) too long; truncation is off)"
            )
        read = np.minimum(lengths, self.max_length)
        logits = np.empty(len(pieces), dtype=np.float32)
        progress = _progress(len(pieces), show_progress)
        for batch in length_sorted_batches(read, MAX_PAIRS, self.max_tokens):
            logits[batch] = self._logits(query, [pieces[i] for i in batch])
            progress.update(len(batch))
        progress.close()
        if over.size:
            log.warning(
                "koe5: %d of %d (query, text) pairs were longer than %d tokens and were truncated",
                over.size,
                len(pieces),
                self.max_length,
            )
        if self.window is not None:  # both activations keep the order: the best logit is the best score
            logits = best(logits, owner, len(items))
        scores = logits if raw else activate(self.activation, logits)
        return Scores(scores, int(over.size), int(read.sum()))

    def windows(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """What the model reads of ``texts``: with a ``window``, each long text's windows; without,
        the texts. And for each, the index of its text (:func:`koe5.rerank.windows.expand`)."""
        with self._lock:  # expand tokenises only with a window
            return expand(self.tokenizer, texts, self.window)

    def score(
        self, query: str, texts: Sequence[str], *, raw: bool = False, truncate: bool = True
    ) -> np.ndarray:
        """float32 scores, one per text in input order (see :meth:`score_with_stats`)."""
        return self.score_with_stats(query, texts, raw=raw, truncate=truncate).scores

    def rank(
        self,
        query: str,
        texts: Sequence[str],
        top_k: int | None = None,
        *,
        raw: bool = False,
        truncate: bool = True,
    ) -> list[Ranked]:
        """The texts best first (ties: lower index first), ``top_k`` of them (``None``: all).

        ``top_k`` below 1 or above ``len(texts)`` is an :class:`~koe5.errors.InputError`, checked
        before any scoring; no texts give an empty list. To know how many pairs were cut as well, rank
        the result of :meth:`score_with_stats` with :func:`~koe5.rerank.ranking.ranked`.
        """
        items = check_candidates(texts)
        check_top_k(top_k, len(items))  # before the model runs, not after
        return ranked(self.score(query, items, raw=raw, truncate=truncate), items, top_k)

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write the reranker as a sentence-transformers CrossEncoder folder, atomically (a temporary
        folder beside it, then one rename); its activation is saved with it."""
        import torch

        if self.cross_encoder is None:
            raise ModelError(
                f"a reranker run by {self.backend} cannot be saved: load it with backend='torch'"
            )
        folder = Path(folder)
        keep = self.cross_encoder.activation_fn
        sigmoid = self.activation == "sigmoid"
        self.cross_encoder.activation_fn = torch.nn.Sigmoid() if sigmoid else torch.nn.Identity()
        try:
            with atomic_dir(folder, replace=overwrite) as tmp:
                self.cross_encoder.save(str(tmp))
        except FileExistsError as exc:
            raise ModelError(f"{folder} already exists (pass overwrite=True to replace it)") from exc
        finally:
            self.cross_encoder.activation_fn = keep
        return folder

    def pair_logits(
        self, queries: Sequence[str], texts: Sequence[str], *, truncation_side: str = "right"
    ) -> np.ndarray:
        """One forward pass over the pairs (``queries[i]``, ``texts[i]``), cut to ``max_length`` as
        sentence-transformers' ``CrossEncoder.predict`` cuts them (``longest_first``), from the
        ``truncation_side`` end; pairs of several queries may share the pass (the server's batches)."""
        import torch

        with self._lock:  # the tokenizer, and its truncation side for this call only
            keep = self.tokenizer.truncation_side
            self.tokenizer.truncation_side = truncation_side
            try:
                features = self.tokenizer(
                    list(queries),
                    list(texts),
                    padding=True,
                    truncation="longest_first",
                    max_length=self.max_length,
                    return_tensors="np" if self.onnx or self.fast else "pt",
                )
            finally:
                self.tokenizer.truncation_side = keep
        runner = self.onnx or self.fast
        if runner is not None:
            logits = runner(features["input_ids"], features["attention_mask"], features.get("token_type_ids"))
            return np.asarray(logits, dtype=np.float32).reshape(-1)
        model = self.cross_encoder.model
        features = {key: value.to(model.device) for key, value in features.items()}
        with torch.inference_mode():
            logits = model(**features, return_dict=True).logits
        return logits.float().view(-1).cpu().numpy()

    def _logits(self, query: str, texts: list[str]) -> np.ndarray:
        return self.pair_logits([query] * len(texts), texts)

    def __repr__(self) -> str:
        return (
            f"Reranker({self.name!r}, max_length={self.max_length}, window={self.window}, "
            f"activation={self.activation!r}, "
            f"weight={self.weight:g}, backend={self.backend!r}, device={self.device!r}, "
            f"location={self.location!r})"
        )


def _fast_path(cross_encoder):
    """koe5's unpadded fp32 CPU forward for a BERT or XLM-R classifier on the CPU (right-padded
    inputs), or None: transformers' padded forward serves everything else."""
    from koe5.cpu.classifier import UnpaddedClassifier

    model = cross_encoder.model
    if cross_encoder.device.type != "cpu" or cross_encoder.tokenizer.padding_side != "right":
        return None
    return UnpaddedClassifier.build(model)


def _activation(spec: RerankerSpec, facts: FolderFacts) -> str:
    """The registry's activation, else the one saved with the model, else sigmoid (a one-label head
    trained with a binary or listwise cross-entropy: its logit's sigmoid is a 0-1 relevance)."""
    return spec.activation or facts.activation or "sigmoid"


def activate(activation: str, logits: np.ndarray) -> np.ndarray:
    """Scores from logits: themselves (``identity``) or their sigmoid."""
    if activation == "identity":
        return logits
    # sigmoid written through tanh: no overflow in exp for large negative logits
    return (0.5 * (1.0 + np.tanh(0.5 * logits.astype(np.float64)))).astype(np.float32)


def _load_cross_encoder(location: str, device: str | None, max_length: int, precision: str):
    """sentence-transformers' CrossEncoder in eval mode, in the precision asked; a failure names it."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load of a local folder is noise, not progress
    try:
        model = CrossEncoder(location, device=device, max_length=max_length)
    except Exception as exc:  # sentence-transformers raises many types; name the reranker either way
        raise ModelError(f"cannot load reranker from {location}: {type(exc).__name__}: {exc}") from exc
    cuda = model.device.type == "cuda"
    resolved = precision if precision != "auto" else "fp16" if cuda else "fp32"
    model.to(getattr(torch, DTYPES[resolved]))
    model.eval()
    return model


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="reranking", unit="pair", disable=not enabled or total == 0, leave=False)


def check_window(window, max_length: int) -> int | None:
    """``window`` as a number of tokens that fits the reranker's length beside a query, or None
    (``None`` or 0: no windows, a long text is cut to fit)."""
    if window is None:
        return None
    whole = isinstance(window, int) and not isinstance(window, bool)
    if not whole or not (window == 0 or 8 <= window < max_length):
        raise ModelError(
            f"a reranker's window must be a whole number of tokens from 8 to below its max length "
            f"{max_length} (room for the query), got {window!r:.40}"
        )
    return window or None


def check_weight(weight) -> float:
    """``weight`` as a float from 0 to 1; a :class:`~koe5.errors.ModelError` naming it otherwise."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
        raise ModelError(f"a reranker's weight must be a number from 0 to 1, got {weight!r:.40}")
    return float(weight)
