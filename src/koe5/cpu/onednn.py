"""fp32 CPU inference with the model's linear layers run by oneDNN, weights packed once.

Why by hand: PyTorch's CPU ``nn.Linear`` calls MKL's sgemm, and MKL picks its code path by CPU vendor:
on AMD processors it takes the AVX2 path even where the chip has AVX-512 (Zen 4/5), leaving about half
of the machine's matrix rate unused. oneDNN, which PyTorch also ships, picks its kernels by instruction
set. ``torch.utils.mkldnn.to_mkldnn`` would route Linear through oneDNN too, but converts activations
to and from oneDNN's blocked layout around every layer; ``torch.compile`` with freezing packs weights
but keeps MKL for fp32 and costs minutes of compilation per input shape family. So koe5 packs each
weight once (``mkldnn._reorder_linear_weight``) and calls ``mkldnn._linear_pointwise`` on ordinary
dense tensors, with BERT's exact GELU fused into the FFN's first layer.

The packed model is an inference copy that shares every tensor of the original except the packed
weights: the caller's model (``Encoder.model``) stays a plain, savable sentence-transformers model.
"""

from __future__ import annotations

import copy

import torch

from koe5 import env

#: Set ``KOE5_ONEDNN=0`` to keep PyTorch's own CPU kernels.
ENV = env.ONEDNN.name


def available() -> bool:
    """Whether this PyTorch build can run packed oneDNN linears (and the user has not opted out)."""
    if env.switched_off(env.ONEDNN):
        return False
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_linear_pointwise")
        and hasattr(ops._linear_pointwise, "binary")  # the fused residual sum (PackedLinear.add)
        and hasattr(ops, "_reorder_linear_weight")
    )


class PackedLinear(torch.nn.Module):
    """Inference-only stand-in for an fp32 ``nn.Linear`` (optionally followed by exact GELU)."""

    def __init__(self, linear: torch.nn.Linear, activation: str = "none") -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight)
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation == "gelu":
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "gelu", [], "none")
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def add(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``self(x) + residual`` with the sum done in the product's epilogue (no activation)."""
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, self.packed, self.bias, "add")

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, activation={self.activation}"


def _is_exact_gelu(module: object) -> bool:
    act = getattr(module, "act", module)
    return act is torch.nn.functional.gelu or (
        isinstance(module, torch.nn.GELU) and module.approximate == "none"
    )


def packed_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An inference copy of ``model`` (fp32, on CPU) whose ``nn.Linear`` layers run packed in oneDNN.

    Every parameter and buffer is shared with ``model`` (nothing is copied but module objects and the
    packed weights); the original keeps working, trainable and savable as before.
    """
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        shared[id(tokenizer)] = tokenizer
    inference = copy.deepcopy(model, memo=shared)
    inference.eval()
    for parent in list(inference.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear) or child.weight.dtype != torch.float32:
                continue
            act = getattr(parent, "intermediate_act_fn", None)  # BERT's FFN: dense, then GELU
            if name == "dense" and act is not None and _is_exact_gelu(act):
                setattr(parent, name, PackedLinear(child, "gelu"))
                parent.intermediate_act_fn = torch.nn.Identity()
            else:
                setattr(parent, name, PackedLinear(child))
    return inference
