"""Which model an index was built with: its record in the manifest, loading it back, checking another.

An index stores vectors of one model; searching it with another model's query vectors, or adding
another model's chunks, gives silently wrong results. The manifest records the model (its source,
backend, prefixes and a fingerprint of its weights) so that every process that opens the index (a
server, a Ray actor on another machine) loads that model, and a model given by the caller is checked.
"""

from __future__ import annotations

import logging
from pathlib import Path

from koe5.errors import ModelMismatchError

log = logging.getLogger("koe5")


def record(encoder) -> dict:
    """The manifest's ``model`` entry for ``encoder``."""
    from koe5.embcache import model_fingerprint

    source = "default" if getattr(encoder.spec, "id", None) == "default" else str(encoder.path)
    return {
        "source": source,
        "name": encoder.name,
        "path": str(encoder.path),
        "fingerprint": model_fingerprint(encoder),
        "backend": getattr(encoder, "backend", "torch"),
        "dim": int(encoder.dim),
        "max_length": int(encoder.max_length),
        "query_prefix": encoder.query_prefix,
        "passage_prefix": encoder.passage_prefix,
    }


def load_encoder(location: Path | str, manifest: dict, device: str | None = None):
    """The model an index records in its manifest (source, backend, prefixes), checked against it."""
    from koe5.encoder import load

    model = manifest["model"]
    log.info("koe5: loading %s for %s", model["name"], location)
    encoder = load(
        model["source"],
        backend=model.get("backend", "torch"),
        device=device,
        query_prefix=model["query_prefix"],
        passage_prefix=model["passage_prefix"],
    )
    check_model(location, manifest, encoder)
    return encoder


def check_model(folder: Path | str, manifest: dict, encoder) -> None:
    """:class:`ModelMismatchError` unless ``encoder`` is the model the index was built with."""
    from koe5.embcache import model_fingerprint

    built = manifest["model"]
    fp = model_fingerprint(encoder)
    if fp != built["fingerprint"] or int(encoder.dim) != built["dim"]:
        raise ModelMismatchError(
            f"{folder} was built with {built['name']} ({built['path']}, fingerprint {built['fingerprint']}), "
            f"not {encoder.name} ({encoder.path}, fingerprint {fp}); search it with the same model "
            "(or load it without one), or rebuild it"
        )
