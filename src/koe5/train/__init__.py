"""Fine-tuning with the KoE5 recipe on sentence-transformers' trainer and losses.

Stages: ``sources`` (Korean training material → rows), ``mine`` (hard negatives), ``triplets``
(reading and checking training rows), ``sampler`` (batches without repeated texts or groups),
``losses``, ``evaluation`` (koe5's benchmark code as a trainer evaluator), ``run`` (one training run,
checkpoints, resume), ``merge`` (weight averaging with the base), ``config`` (recipes, files).

Example::

    from koe5.train import TrainConfig, train
    cfg = TrainConfig.from_recipe("koe5", data=["triplets.jsonl"], output="runs/ko",
                                  batch_size=64, mini_batch=8, eval_tasks=["PublicHealthQA"])
    result = train(cfg)
    result.model_path, result.metrics["final"]
"""

from koe5.train.config import RECIPES, TrainConfig, load_config_file, to_toml

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "load_config_file", "to_toml", "train"]


def __getattr__(name: str):
    # The trainer imports sentence-transformers and torch (seconds): only when it is used, so that the
    # recipes (koe5.train.config, read by every `koe5` command's option parsing) stay light.
    if name in ("TrainResult", "train"):
        from koe5.train import run

        return getattr(run, name)
    raise AttributeError(f"module 'koe5.train' has no attribute {name!r}")
