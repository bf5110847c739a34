"""Inference backends: what turns a padded batch of token ids into normalised sentence vectors.

* ``torch``: the sentence-transformers model (SDPA attention; fp16 on CUDA, asynchronously; on CPU
  fp32 with its linear layers run through oneDNN with packed weights, see :mod:`koe5.onednn`, and for
  BERT/XLM-R encoders on the real tokens only, without padding, see :mod:`koe5.unpadded`).
* ``onnx``: the same graph exported to ONNX, run by ONNX Runtime (``koe5 export --onnx``).
* ``onnx-int8``: that graph with dynamically quantised int8 weights (``koe5 export --onnx --int8``).
* ``auto``: per kind of input, the fastest backend that passed the quality gate when it was
  exported (``onnx/koe5_backends.json``), torch in bf16 (``torch-bf16``) among the candidates on
  CPUs with bf16 hardware; torch where nothing was measured.

Every runner takes ``input_ids`` and ``attention_mask`` as int64 numpy arrays ``(n, width)`` and
returns float32 L2-normalised vectors ``(n, dim)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from koe5.errors import ModelError

BACKENDS = ("torch", "onnx", "onnx-int8", "auto")
#: What ``auto`` may choose for a kind besides the backends: the torch backend in bf16, a candidate
#: on CPUs with bf16 hardware (:func:`cpu_has_native_bf16`), gated like the others.
TORCH_BF16 = "torch-bf16"
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_qint8.onnx"}
CHOICE_FILE = "koe5_backends.json"


def onnx_dir(folder: str | Path) -> Path:
    """Where a model folder's ONNX exports live (``<folder>/onnx``, sentence-transformers' layout)."""
    return Path(folder) / "onnx"


PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: koe5's precision names -> PyTorch's dtype names (also text-embeddings-inference's ``model_dtype``).
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


THREADS_ENV = "KOE5_THREADS"


def cpu_threads() -> int:
    """Threads for CPU inference, the same for both backends: ``KOE5_THREADS`` if set (koe5 then sets
    PyTorch's too), else PyTorch's own intra-op count (the cores it found) — ``os.cpu_count()`` would
    count SMT siblings and the host's CPUs outside this process's affinity."""
    import torch

    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return torch.get_num_threads()
    if not value.isdigit() or int(value) < 1:
        raise ModelError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
    if torch.get_num_threads() != int(value):
        torch.set_num_threads(int(value))
    return int(value)


def start(runner, input_ids: np.ndarray, attention_mask: np.ndarray):
    """Begin a batch; returns a function that waits for its vectors.

    Runners that work asynchronously (:class:`TorchRunner` on CUDA) overlap the next batch's
    preparation with this one's computation; any other runner computes here.
    """
    begin = getattr(runner, "start", None)
    if begin is not None:
        return begin(input_ids, attention_mask)
    result = runner(input_ids, attention_mask)
    return lambda: result


class TorchRunner:
    """The sentence-transformers model in PyTorch.

    ``precision``: ``auto`` is fp16 on CUDA and fp32 on CPU (a model saved in half precision is
    widened: on a CPU, fp32 through oneDNN is the fast path). Measured on an H100
    (``benchmarks/gpu_speed.py``): fp16 and bf16 run at the same speed, and fp16 keeps the
    bundled model's retrieval scores where bf16 loses 0.003 NDCG@10, hence fp16. Should fp16
    overflow (non-finite vectors, possible in models with very large activations), ``auto``
    switches the model to bf16 and redoes the batch; an explicit ``fp16`` raises instead.
    """

    name = "torch"

    def __init__(self, model, precision: str = "auto") -> None:
        import torch

        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}; available: {', '.join(PRECISIONS)}")
        self.model = model
        self.device = model.device
        self.precision = precision
        cuda = self.device.type == "cuda"
        resolved = precision if precision != "auto" else "fp16" if cuda else "fp32"
        wanted = getattr(torch, DTYPES[resolved])
        if next(model.parameters()).dtype != wanted:
            model.to(wanted)
        self.dtype = wanted
        self._with_token_types = "token_type_ids" in getattr(model.tokenizer, "model_input_names", ())
        #: CUDA runs asynchronously: see :func:`start`.
        self.pipelined = cuda
        self.forward_model = model
        #: On a CPU in fp32, the unpadded encoder where the architecture allows (:mod:`koe5.unpadded`).
        self.unpadded = None
        if self.device.type == "cpu":
            cpu_threads()  # applies KOE5_THREADS to PyTorch
            from koe5 import onednn
            from koe5.unpadded import UnpaddedEncoder

            if wanted == torch.float32 and onednn.available():
                self.unpadded = UnpaddedEncoder.build(model)
                if self.unpadded is None:
                    self.forward_model = onednn.packed_copy(model)

    @property
    def precision_name(self) -> str:
        """``fp32``, ``fp16`` or ``bf16``: what the model runs in now (``auto`` resolved)."""
        return next(name for name, dtype in DTYPES.items() if str(self.dtype) == f"torch.{dtype}")

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.start(input_ids, attention_mask)()

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray):
        import torch

        def put(array):
            tensor = torch.from_numpy(array)
            if self.pipelined:  # from pinned memory the copy does not wait for the work queued before it
                return tensor.pin_memory().to(self.device, non_blocking=True)
            return tensor

        if self.unpadded is not None:
            return self.unpadded(input_ids, attention_mask)
        with torch.inference_mode():
            features = {"input_ids": put(input_ids), "attention_mask": put(attention_mask)}
            if self._with_token_types:
                features["token_type_ids"] = torch.zeros_like(features["input_ids"])
            emb = self.forward_model(features)["sentence_embedding"].float()
            return torch.nn.functional.normalize(emb, dim=-1)

    def start(self, input_ids: np.ndarray, attention_mask: np.ndarray):
        import torch

        launched = self.dtype
        emb = self._forward(input_ids, attention_mask)
        if self.pipelined:
            host = torch.empty(emb.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(emb, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        else:
            host, done = emb, None

        def finish() -> np.ndarray:
            if done is not None:
                done.synchronize()
            result = host.numpy()
            if launched == torch.float16 and not np.isfinite(result).all():
                return self._after_overflow(input_ids, attention_mask)
            return result

        return finish

    def _after_overflow(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import logging

        import torch

        if self.precision != "auto":
            raise ModelError(
                "fp16 overflowed in this model (non-finite vectors): load it with precision='bf16' or 'fp32'"
            )
        if self.dtype == torch.float16:
            logging.getLogger("koe5").warning("koe5: fp16 overflowed in this model; switching to bf16")
            self.model.to(torch.bfloat16)
            self.dtype = torch.bfloat16
        return self(input_ids, attention_mask)


class OnnxRunner:
    """ONNX Runtime session over the exported encoder, with the folder's pooling done in numpy."""

    def __init__(self, path: Path, pooling: str, name: str) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("the onnx backends need onnxruntime: pip install 'koe5[onnx]'") from exc
        if not path.is_file():
            raise ModelError(f"{path} does not exist: run `koe5 export MODEL --onnx` first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime's idle threads spin for a while after each call; beside torch in the same
        # process (backend="auto") they would take the cores torch needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.pooling = pooling
        self.name = name

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        hidden = self.session.run(None, feeds)[0]
        if self.pooling == "cls":
            emb = hidden[:, 0]
        else:
            mask = attention_mask[..., None].astype(np.float32)
            emb = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        return (emb / np.maximum(norm, 1e-12)).astype(np.float32)


def pooling_name(config: Mapping) -> str:
    """The pooling of a sentence-transformers Pooling config (its ``config.json``, or a Pooling
    module's attributes): ``mean``, ``cls``, or the name of any other mode or mix of modes."""
    mode = config.get("pooling_mode")
    if mode is None:  # sentence-transformers < 6 keeps one flag per mode
        flag = "pooling_mode_"
        on = "+".join(sorted(k[len(flag) :] for k, v in config.items() if k.startswith(flag) and v))
        mode = {"": "mean", "mean_tokens": "mean", "cls_token": "cls"}.get(on, on)
    return mode


def pooling_mode(folder: Path) -> str:
    """The folder's sentence-transformers pooling (``mean`` or ``cls``; others are refused)."""
    path = folder / "1_Pooling" / "config.json"
    if not path.is_file():
        return "mean"
    mode = pooling_name(json.loads(path.read_text(encoding="utf-8")))
    if mode not in ("mean", "cls"):
        raise ModelError(
            f"{path}: pooling {mode!r} is not supported by the onnx backends; use backend='torch'"
        )
    return mode


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 matrix work in hardware (AVX512-BF16 or AMX); elsewhere bf16 is
    emulated and slower than fp32."""
    import torch

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # private, hence guarded
        check = getattr(getattr(torch, "cpu", None), probe, None)
        try:
            if check is not None and check():
                return True
        except Exception:  # pragma: no cover - a probe that fails means "not known to have it"
            continue
    return False


def auto_choice(folder: Path) -> dict[str, str]:
    """Per kind, the backend that ``auto`` uses: recorded at export time, else torch."""
    path = onnx_dir(folder) / CHOICE_FILE
    if path.is_file():
        choice = json.loads(path.read_text(encoding="utf-8")).get("auto", {})
        return {"query": choice.get("query", "torch"), "passage": choice.get("passage", "torch")}
    return {"query": "torch", "passage": "torch"}
