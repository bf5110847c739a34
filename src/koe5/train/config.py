"""Training configuration as data: one dataclass, named recipes, TOML/YAML files, the saved copy.

Precedence: a recipe's values, then a config file's, then explicit arguments (the CLI's flags).

>>> cfg = TrainConfig.from_recipe("koe5", data=["triplets.jsonl"], output="runs/ko")
>>> cfg.loss, cfg.batch_size, cfg.lr, cfg.scale
('cached-mnrl', 512, 1e-05, 20.0)
>>> TrainConfig.from_dict(tomllib_loads(to_toml(cfg))) == cfg
True
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from koe5.errors import ConfigError, InputError
from koe5.runtime.base import PRECISIONS

#: cached-mnrl: CachedMultipleNegativesRankingLoss (KoE5); mnrl: the same loss without GradCache;
#: gist: CachedGISTEmbedLoss with a guide model (KURE-v1)
LOSSES = ("cached-mnrl", "mnrl", "gist")


@dataclass
class TrainConfig:
    """Everything a training run depends on. Saved beside the model as ``train_config.toml``.

    Sizes: ``batch_size`` is the global batch (all devices together: the in-batch negatives of
    each query); ``mini_batch`` bounds memory (GradCache mini-batch, per device). ``warmup`` is a
    fraction of the steps. ``max_steps`` > 0 overrides ``epochs``. ``merge_base``: the fine-tuned
    share α of the final weights, ``(1 - α)·base + α·tuned`` (WiSE-FT); ``None`` keeps the tuned
    weights as they are.

    A field's ``metadata["help"]`` is the help text of its ``koe5 train`` flag (``""``: the flag shows
    none); fields without it are settings of config files and Python only.
    """

    data: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Training rows: JSONL, CSV/TSV, Parquet, a saved dataset or a hub id (repeatable)."
        },
    )
    output: str = field(default="", metadata={"help": "Run folder (model/, checkpoints/, log.jsonl)."})
    model: str = field(default="default", metadata={"help": "Start from: 'default', a folder, a hub id."})
    recipe: str = field(default="koe5", metadata={"help": "koe5 (default), kure-v1 or koe5-small."})
    loss: str = field(default="cached-mnrl", metadata={"help": "cached-mnrl (default), mnrl or gist."})
    guide: str | None = field(default=None, metadata={"help": "Guide model of the gist loss (KURE-v1)."})
    scale: float = 20.0
    gist_temperature: float = 0.01
    gist_margin: float = 0.0
    batch_size: int = field(default=512, metadata={"help": "Global batch (in-batch negatives)."})
    mini_batch: int = field(default=32, metadata={"help": "GradCache mini-batch: bounds memory."})
    lr: float = field(default=1e-5, metadata={"help": "Peak learning rate."})
    epochs: float = field(default=1.0, metadata={"help": ""})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps (overrides --epochs)."})
    warmup: float = field(default=0.1, metadata={"help": "Warm-up fraction of the steps."})
    weight_decay: float = 0.01
    scheduler: str = "linear"
    optimizer: str = "adamw_torch"
    seed: int = field(default=42, metadata={"help": ""})
    max_length: int | None = field(default=None, metadata={"help": "Truncate training texts to N tokens."})
    precision: str = field(default="auto", metadata={"help": "auto, fp32, bf16, fp16."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": ""})
    gather_across_devices: bool = True
    query_prefix: str | None = field(default=None, metadata={"help": ""})
    passage_prefix: str | None = field(default=None, metadata={"help": ""})
    # columns of the training data; None: found by name (query/document/hard_negative, ...)
    query_column: str | None = field(default=None, metadata={"help": ""})
    positive_column: str | None = field(default=None, metadata={"help": ""})
    negative_columns: list[str] | None = field(default=None, metadata={"help": "Comma-separated."})
    group_column: str | None = field(
        default="group", metadata={"help": "Rows of a group never share a batch."}
    )
    data_split: str = "train"
    # checkpoints, logs, evaluation
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int = 2
    logging_steps: int = 10
    eval_steps: int | None = field(default=None, metadata={"help": ""})
    eval_tasks: list[str] = field(
        default_factory=list, metadata={"help": "Benchmark tasks to evaluate (comma-separated)."}
    )
    eval_holdout: float = field(
        default=0.0, metadata={"help": "Hold out this fraction (< 1) or number of rows, by group."}
    )
    eval_data: str | None = field(default=None, metadata={"help": "A dev file of rows to evaluate on."})
    eval_at_start: bool = True
    merge_base: float | None = field(default=None, metadata={"help": "Final = (1-ALPHA)·base + ALPHA·tuned."})

    def __post_init__(self) -> None:
        if isinstance(self.data, (str, Path)):
            self.data = [str(self.data)]
        self.data = [str(d) for d in self.data]
        self.output = str(self.output)

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> TrainConfig:
        """The named recipe's values (see :data:`RECIPES`) with ``overrides`` on top."""
        if name not in RECIPES:
            raise InputError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
        return cls.from_dict({**RECIPES[name], "recipe": name, **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, origin: str = "config") -> TrainConfig:
        """Build from plain data, rejecting unknown keys (a typo must not be silently ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k.replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"{origin}: unknown setting(s) {', '.join(unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> TrainConfig:
        """Raise :class:`InputError` naming the first setting that cannot work (a
        :class:`~koe5.errors.ConfigError` for a value of the wrong type)."""
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name))
        if not self.data:
            raise InputError(
                "no training data: give --data (JSONL, CSV, Parquet, a saved dataset or a hub id)"
            )
        if not self.output:
            raise InputError("no output folder: give --output")
        if self.loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.loss == "gist" and not self.guide:
            raise InputError(f"loss {self.loss!r} needs a guide model (--guide MODEL)")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        for name in ("batch_size", "mini_batch", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise InputError(f"lr must be positive, got {self.lr}")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise InputError("set epochs > 0 or max_steps > 0")
        if not 0 <= self.warmup < 1:
            raise InputError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if self.merge_base is not None and not 0 <= self.merge_base <= 1:
            raise InputError(f"merge_base (the tuned share α) must be in [0, 1], got {self.merge_base}")
        if self.eval_holdout < 0:
            raise InputError(f"eval_holdout must be >= 0, got {self.eval_holdout}")
        return self


_HINTS: dict[str, Any] = {}


def _check_type(name: str, value: Any) -> None:
    """A :class:`ConfigError` unless ``value`` fits the field's annotation (an int passes for a float)."""
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(TrainConfig))
    hint = _HINTS[name]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)

    def fits(kind: Any) -> bool:
        if kind is type(None):
            return value is None
        if typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            return isinstance(value, list) and all(isinstance(v, item) for v in value)
        if kind is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, kind)

    if not any(fits(kind) for kind in options):
        wanted = " or ".join("none" if k is type(None) else getattr(k, "__name__", str(k)) for k in options)
        hint = ""
        if float in options and isinstance(value, str):
            hint = "; in YAML write numbers like 1.0e-5 (PyYAML reads 1e-5 as a string)"
        raise ConfigError(f"setting {name!r} must be {wanted}, got {value!r} ({type(value).__name__}){hint}")


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


#: Named recipes: only the values that differ from :class:`TrainConfig`'s defaults (the KoE5 recipe).
RECIPES: dict[str, dict[str, Any]] = {
    # nlpai-lab/KoE5: multilingual-e5-large, CachedMNRL, batch 512, lr 1e-5, one epoch
    "koe5": {},
    # nlpai-lab/KURE-v1: CachedGISTEmbedLoss with a guide model, batch 4096, lr 2e-5
    "kure-v1": {"loss": "gist", "batch_size": 4096, "lr": 2e-5},
    # the default model on a 2-core CPU (benchmarks/finetune_korean.py): short sequences, a small
    # batch, a short run and half the tuned weights averaged with the base. Scale 100 is E5's own
    # temperature (τ = 0.01); at ST's default 20 the small run moved the model much further from its
    # starting point (the dev NDCG@10 of both scales: docs/performance.md).
    "koe5-small": {
        "scale": 100.0,
        "batch_size": 64,
        "mini_batch": 16,
        "lr": 1e-5,
        "max_steps": 60,
        "max_length": 128,
        "save_steps": 20,
        "eval_steps": 20,
        "merge_base": 0.5,
    },
}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config file into plain data."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            values = tomllib_loads(text)
        except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError and names line and column
            raise InputError(f"{path}: not valid TOML ({exc})") from exc
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - PyYAML comes with transformers
            raise InputError(f"{path}: YAML configs need PyYAML (pip install pyyaml), or use TOML") from exc
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({exc})") from exc
    elif suffix == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    else:
        raise InputError(f"{path}: config files end in .toml, .yaml, .yml or .json")
    if not isinstance(values, dict):
        raise InputError(f"{path}: expected a table of settings at the top level")
    # relative paths in a config file are relative to the file, not to the shell; a name that is no
    # file beside the config (a hub dataset id) stays as it is
    base = path.parent
    for key in ("data", "eval_data"):
        if key not in values:
            continue
        value = values[key]
        items = value if isinstance(value, list) else [value]
        resolved = [_beside(base, v) for v in items]
        values[key] = resolved if isinstance(value, list) else resolved[0]
    if isinstance(values.get("output"), str) and values["output"]:
        values["output"] = str(base / Path(values["output"]).expanduser())
    return values


def _beside(base: Path, value: Any) -> Any:
    if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
        return value
    candidate = base / value
    return str(candidate) if candidate.exists() else value


def tomllib_loads(text: str) -> dict[str, Any]:
    """``tomllib.loads`` (Python 3.11+), or ``tomli`` on 3.10."""
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError as exc:
            raise InputError("TOML configs need Python 3.11+ or `pip install tomli` on 3.10") from exc
    return tomllib.loads(text)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(config: TrainConfig) -> str:
    """The config as TOML; ``None`` settings are left out (their default is ``None``)."""
    lines = ["# koe5 train: the effective configuration of this run (koe5 train --config FILE)"]
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None:
            if _default_of(f) is not None:
                raise ValueError(f"{f.name} is None but its default is not; TOML has no null")
            continue
        lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
