"""Known rerankers and where their folders come from.

The registry is data (``data/rerankers.json``), as the embedding models' is: each entry gives a
reranker's maximum length (query and passage together), the activation that turns its logit into the
reported score, its prefixes and licence. :func:`resolve` turns a name the user typed into a
:class:`RerankerSpec` and a folder or hub id.

Example::

    from koe5.rerank.registry import known_rerankers, resolve

    known_rerankers()["dragonkue/bge-reranker-v2-m3-ko"].max_length   # 512
    spec, location, local = resolve("dragonkue/bge-reranker-v2-m3-ko")
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from koe5.env import cache_dir
from koe5.errors import ModelError
from koe5.registry import ModelSpec, registry_entries

DEFAULT = "default"
#: What may turn a logit into a score: a 0-1 score (``sigmoid``) or the logit itself (``identity``).
ACTIVATIONS = ("sigmoid", "identity")
#: The fields every registry entry has (others, such as ``name`` or ``cache_name``, go to ``extra``).
FIELDS = ("max_length", "activation", "query_prefix", "passage_prefix", "description", "licence")


@dataclass(frozen=True)
class RerankerSpec(ModelSpec):
    """What koe5 knows about a reranker: a :class:`~koe5.registry.ModelSpec` (prefixes, licence,
    ``max_length`` of query and passage together; ``dim`` stays ``None``: a reranker gives a score,
    not a vector) plus the ``activation`` of its score. ``max_length``/``activation`` are ``None``
    when unknown; they then come from the model's folder (:mod:`koe5.rerank.folders`)."""

    activation: str | None = None


@cache
def known_rerankers() -> dict[str, RerankerSpec]:
    """The registry: reranker id -> :class:`RerankerSpec`. A missing field or an unknown activation
    in the data file is a :class:`~koe5.errors.ModelError` naming the entry."""
    specs = {}
    for reranker_id, entry in registry_entries("rerankers.json").items():
        missing = [name for name in FIELDS if name not in entry]
        if missing:
            raise ModelError(f"rerankers.json: {reranker_id}: missing {', '.join(missing)}")
        values = {name: entry.pop(name) for name in FIELDS}
        activation = values["activation"]
        if activation not in ACTIVATIONS:
            raise ModelError(
                f"rerankers.json: {reranker_id}: activation {activation!r} is not one of {ACTIVATIONS}"
            )
        specs[reranker_id] = RerankerSpec(id=reranker_id, known=True, extra=entry, **values)
    return specs


def default_reranker_dir() -> Path:
    """Where ``koe5 train-reranker`` puts koe5's own reranker (inside :func:`koe5.env.cache_dir`)."""
    return cache_dir() / "models" / known_rerankers()[DEFAULT].extra["cache_name"]


def is_local(name: str) -> bool:
    """Whether ``name`` means a folder (it exists, or it is written as a path) rather than a hub id."""
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~"))


def resolve(name: str = DEFAULT) -> tuple[RerankerSpec, str, bool]:
    """Map a reranker name to ``(spec, folder or hub id, whether it is a local folder)``.

    ``"default"`` is koe5's own reranker, which must have been trained first; a folder gets an
    unknown spec (its facts come from its files); a registry id its entry; any other id is a hub id.
    """
    registry = known_rerankers()
    if name == DEFAULT:
        folder = default_reranker_dir()
        if not folder.is_dir():
            raise ModelError(
                f"the default reranker is not there yet ({folder} does not exist): run `koe5 train-reranker` "
                "to make it, or name another reranker, e.g. dragonkue/bge-reranker-v2-m3-ko"
            )
        return registry[DEFAULT], str(folder), True
    if is_local(name):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ModelError(f"reranker folder {folder} does not exist")
        return RerankerSpec(id=str(folder)), str(folder), True
    if name in registry:
        return registry[name], name, False
    return RerankerSpec(id=name), name, False
