"""The losses of the recipes, from sentence-transformers: CachedMNRL (KoE5), MNRL, CachedGIST (KURE-v1).

All three take (query, positive, negative_1..n) rows and use every other row's positive and negatives
as in-batch negatives; with several devices, ``gather_across_devices`` makes every device's rows
negatives for every query (cross-device negatives).

>>> loss = build_loss(model, TrainConfig(loss="cached-mnrl", mini_batch=8), world_size=1)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from koe5.train.config import TrainConfig


def build_loss(model: Any, config: TrainConfig, *, guide: Any = None, world_size: int = 1) -> Any:
    """The loss module for ``config.loss`` on ``model`` (a ``SentenceTransformer``)."""
    from sentence_transformers.sentence_transformer import losses

    gather = bool(config.gather_across_devices and world_size > 1)
    if config.loss == "cached-mnrl":
        return losses.CachedMultipleNegativesRankingLoss(
            model, scale=config.scale, mini_batch_size=config.mini_batch, gather_across_devices=gather
        )
    if config.loss == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, scale=config.scale, gather_across_devices=gather)
    if config.loss == "gist":
        if guide is None:
            raise ValueError("the gist loss needs a guide model")
        return losses.CachedGISTEmbedLoss(
            model,
            guide,
            temperature=config.gist_temperature,
            mini_batch_size=config.mini_batch,
            margin=config.gist_margin,
            gather_across_devices=gather,
        )
    raise ValueError(f"unknown loss {config.loss!r}")
