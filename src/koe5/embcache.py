"""A persistent cache of embeddings keyed by (model fingerprint, kind, text hash).

A second benchmark run of the same model encodes nothing; a corpus that grows re-encodes only the
new texts. The store is one SQLite file (stdlib, transactional: a crash mid-write loses nothing
already committed and never leaves a half-written vector).

Example::

    cache = EmbeddingCache()
    vectors = encode_cached(encoder, ["서울은 대한민국의 수도이다."], "passage", cache)
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from koe5.env import cache_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL,
    key TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, key)
) WITHOUT ROWID
"""
_CHUNK = 500  # SQLite's bound-parameter limit is 999 on old builds


def text_key(kind: str | None, text: str) -> str:
    return hashlib.sha256(f"{kind or ''}\0{text}".encode()).hexdigest()[:32]


def model_fingerprint(encoder) -> str:
    """What decides an encoder's vectors: weights (by identity), prefixes, length limit, backend and
    the torch backend's precision (named only when not fp32, so fp32 keys stay as they were)."""
    folder = Path(encoder.path)
    parts: dict = {
        "query_prefix": encoder.query_prefix,
        "passage_prefix": encoder.passage_prefix,
        "max_length": encoder.max_length,
        "backend": getattr(encoder, "backend", "torch"),
    }
    precision = getattr(encoder, "precision", None)
    if precision not in (None, "fp32"):
        parts["precision"] = precision
    if folder.is_dir():
        marker = folder / "koe5_model.json"
        if marker.is_file():  # koe5 wrote it: the source checksum and layout identify it
            meta = json.loads(marker.read_text(encoding="utf-8"))
            for volatile in ("seconds", "source", "file_mtime_ns"):  # differ between equal conversions
                meta.pop(volatile, None)
            parts["koe5_model"] = meta
        else:  # any other folder: its config and the size and time of its weight files
            parts["config"] = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
            parts["weights"] = sorted(
                (p.name, p.stat().st_size, p.stat().st_mtime_ns)
                for p in folder.iterdir()
                if p.suffix in (".safetensors", ".bin", ".onnx")
            )
        if parts["backend"] != "torch":  # a re-export changes the vectors of the ONNX backends
            parts["onnx"] = sorted(
                (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in (folder / "onnx").glob("*.onnx")
            )
    else:
        parts["hub_id"] = encoder.path
        parts["revision"] = _hub_revision(encoder.path)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _hub_revision(model_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    hit = try_to_load_from_cache(model_id, "config.json")
    return Path(hit).parent.name if isinstance(hit, str) else None


class EmbeddingCache:
    """Vectors by (model fingerprint, key) in ``path`` (default: ``<koe5 cache>/embeddings.sqlite``)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else cache_dir() / "embeddings.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def get(self, model: str, keys: Sequence[str], dim: int) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, vector FROM vectors WHERE model = ? AND key IN ({marks})", [model, *chunk]
            )
            for key, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape == (dim,):
                    found[key] = vec
        return found

    def put(self, model: str, items: dict[str, np.ndarray]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors (model, key, vector) VALUES (?, ?, ?)",
                [(model, k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )

    def close(self) -> None:
        self._db.close()


#: Texts encoded between two writes to the cache: what a crash or a kill can cost at most.
SAVE_EVERY = 1024


def encode_cached(
    encoder,
    texts: Sequence[str],
    kind: str | None,
    cache: EmbeddingCache | None,
    *,
    show_progress: bool = False,
    **kwargs,
):
    """``encoder.encode(texts, kind)``, taking what it can from ``cache`` and storing the rest.

    The texts not in the cache are encoded in pieces of :data:`SAVE_EVERY`, longest first (the order
    the encoder batches them in anyway), and each piece is stored as soon as it is done: a run that is
    killed resumes where it stopped. Returns ``(vectors, n_encoded)``.
    """
    if cache is None:
        return encoder.encode(texts, kind, show_progress=show_progress, **kwargs), len(texts)
    fingerprint = model_fingerprint(encoder)
    keys = [text_key(kind, t) for t in texts]
    found = cache.get(fingerprint, keys, encoder.dim)
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    for i, k in enumerate(keys):
        if k in found:
            out[i] = found[k]
    missing = [i for i, k in enumerate(keys) if k not in found]
    missing.sort(key=lambda i: -len(texts[i]))
    with tqdm(
        total=len(missing), desc="encoding", unit="text", disable=not show_progress or not missing
    ) as bar:
        for start in range(0, len(missing), SAVE_EVERY):
            piece = missing[start : start + SAVE_EVERY]
            fresh = encoder.encode([texts[i] for i in piece], kind, **kwargs)
            cache.put(fingerprint, {keys[i]: fresh[j] for j, i in enumerate(piece)})
            out[piece] = fresh
            bar.update(len(piece))
    return out, len(missing)
