"""Weight averaging of a fine-tuned model with its base (WiSE-FT): ``(1 - α)·base + α·tuned``.

Fine-tuning on a narrow mix raises some tasks and lowers others; averaging with the starting weights
keeps much of the gain and most of what the base knew (KoE5's measured case: half the PublicHealthQA
gain, Belebele nearly restored). Choose α on a dev split.

>>> merge_state_dicts(base.state_dict(), tuned.state_dict(), alpha=0.5)       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from koe5.errors import ModelError


def merge_state_dicts(base: Mapping[str, Any], tuned: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """Interpolate every floating-point tensor; other tensors (ids, masks) are taken from ``tuned``."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if base.keys() != tuned.keys():
        missing = sorted(base.keys() ^ tuned.keys())[:5]
        raise ModelError(
            f"the models differ in their weights ({', '.join(missing)} …): not the same architecture"
        )
    merged = {}
    for name, weight in tuned.items():
        other = base[name]
        if weight.shape != other.shape:
            raise ModelError(
                f"weight {name} has shape {tuple(weight.shape)} vs {tuple(other.shape)} in the base"
            )
        if weight.is_floating_point():
            merged[name] = (other.to(weight.dtype) * (1 - alpha) + weight * alpha).to(weight.dtype)
        else:
            merged[name] = weight
    return merged


def merge_with_base(tuned: Any, base: Any, alpha: float) -> Any:
    """Replace ``tuned``'s weights (a model, in place) by the average with ``base``'s; returns ``tuned``."""
    tuned.load_state_dict(merge_state_dicts(base.state_dict(), tuned.state_dict(), alpha))
    return tuned
