"""Open an index with the model it was built with (or another one that matches it).

What ``koe5 search`` and ``koe5 serve --index`` do before they answer: an index records its model
(source, backend, prefixes) in its manifest, so the user names only the folder.

Example::

    from koe5.search import open_index

    index = open_index("my-index")                       # its own model, loaded on first search
    index = open_index("my-index", device="cuda")        # its own model, on a GPU
"""

from __future__ import annotations

from pathlib import Path

from koe5.search.dense_state import resident
from koe5.search.index import Index
from koe5.search.location import is_database
from koe5.search.store import read_manifest


def open_index(
    location: str | Path,
    *,
    model: str | None = None,
    backend: str | None = None,
    device: str | None = None,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    precision: str = "auto",
) -> Index:
    """The index at ``location`` (a folder or a ``postgresql://`` URL) with an encoder.

    With nothing but the location, the index's own model is loaded lazily, on first use. Otherwise the
    index's own model (its recorded backend and prefixes, each overridable) is loaded now on
    ``device`` in ``precision``; or ``model``, which :meth:`Index.load` checks against the index's.
    """
    from koe5.encoder import load

    asked = (model, backend, device, query_prefix, passage_prefix)
    if all(x is None for x in asked) and precision == "auto":
        return Index.load(location)
    if model is None:
        built = read_info(location)["model"]
        encoder = load(
            built["source"],
            backend or built.get("backend", "torch"),
            device,
            query_prefix=query_prefix or built["query_prefix"],
            passage_prefix=passage_prefix or built["passage_prefix"],
            precision=precision,
        )
    else:
        encoder = load(
            model,
            backend or "torch",
            device,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            precision=precision,
        )
    return Index.load(location, encoder)


def read_info(location: str | Path) -> dict:
    """The manifest of the index at ``location`` (model, settings, counts) without opening the index;
    for a folder also ``memory``: what its dense side holds in memory (:func:`.dense_state.resident`)."""
    if is_database(location):
        from koe5.search.postgres import PgIndex

        index = PgIndex.load(str(location), pool_size=1)
        try:
            return index.manifest
        finally:
            index.close()
    manifest = read_manifest(Path(location))
    return {**manifest, "memory": resident(Path(location), manifest)}
