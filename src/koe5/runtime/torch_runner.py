"""The ``torch`` backend: the sentence-transformers model in PyTorch (fp32 on CPU through :mod:`koe5.cpu`,
fp16 on CUDA, asynchronously)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from koe5.errors import ModelError
from koe5.runtime.base import DTYPES, PRECISIONS
from koe5.runtime.hardware import cpu_threads

log = logging.getLogger("koe5")


def load_sentence_transformer(location: str, device: str | None):
    """A sentence-transformers model from a folder or hub id, in eval mode; any failure is a ModelError."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load of a local folder is noise, not progress
    if not Path(location).expanduser().exists():
        from koe5.hub import unavailable

        reason = unavailable(location)
        if reason is not None:
            raise ModelError(f"cannot load model from {location}: {reason}")
    try:
        st = SentenceTransformer(location, device=device)
    except Exception as exc:  # sentence-transformers raises many types; name the model either way
        raise ModelError(f"cannot load model from {location}: {type(exc).__name__}: {exc}") from exc
    st.eval()
    return st


class TorchRunner:
    """The sentence-transformers model in PyTorch.

    ``precision``: ``auto`` is fp16 on CUDA and fp32 on CPU (a model saved in half precision is
    widened: on a CPU, fp32 through oneDNN is the fast path). On CUDA fp16 and bf16 run at the same
    speed and fp16 keeps more of the retrieval quality (``benchmarks/gpu_speed.py``; figures in
    docs/performance.md), hence fp16. Should fp16 overflow (non-finite vectors, possible in models with
    very large activations), ``auto`` switches the model to bf16 and redoes the batch; an explicit
    ``fp16`` raises instead.
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
        #: On a CPU in fp32, the unpadded encoder where the architecture allows (:mod:`koe5.cpu.unpadded`).
        self.unpadded = None
        if self.device.type == "cpu":
            cpu_threads()  # applies KOE5_THREADS to PyTorch
            from koe5.cpu import onednn
            from koe5.cpu.unpadded import UnpaddedEncoder

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
        import torch

        if self.precision != "auto":
            raise ModelError(
                "fp16 overflowed in this model (non-finite vectors): load it with precision='bf16' or 'fp32'"
            )
        if self.dtype == torch.float16:
            log.warning("koe5: fp16 overflowed in this model; switching to bf16")
            self.model.to(torch.bfloat16)
            self.dtype = torch.bfloat16
        return self(input_ids, attention_mask)
