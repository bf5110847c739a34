"""A corpus's vectors as Parquet shards, for users who keep vectors in their own store.

::

    OUT/
      manifest.json          the model, the kind of input, the texts' digest, shard size, state
      part-000000.parquet    id (string), vector (fixed-size list of float32), one row per text
      part-000001.parquet    ...

Each shard is written to a temporary file and renamed, so a shard that exists is complete; a run
that stopped resumes (``resume=True``) from the shards it finished, once the manifest shows the same
model, texts and shard size. The ``id`` of a text is its id in the input, or its row number (from 0).
Shards are encoded on Ray actors with an ``engine``, or in this process without one.

Example::

    import koe5
    from koe5.distributed import RayEngine, encode_to_parquet, read_vectors

    encode_to_parquet(["첫 문서", "둘째 문서"], koe5.load(), "vectors/", engine=RayEngine(actors=2))
    ids, vectors = read_vectors("vectors/")
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from koe5.distributed.actors import next_result
from koe5.distributed.engine import RayEngine
from koe5.errors import InputError

FORMAT = "koe5-vectors"
MANIFEST = "manifest.json"
SHARD_TEXTS = 10_000


class TextActor:
    """Holds one copy of the model; encodes a shard of texts."""

    def __init__(self, model: dict, batch_size: int | None, device: str | None, threads: int) -> None:
        import torch

        from koe5.search.indexed_model import load_encoder

        torch.set_num_threads(threads)
        self.encoder = load_encoder("a Ray encode", {"model": model}, device=device)
        self.batch_size = batch_size

    def encode(self, texts: list[str], kind: str | None) -> np.ndarray:
        return encode_shard(self.encoder, texts, kind, self.batch_size)


def encode_shard(encoder, texts: list[str], kind: str | None, batch_size: int | None) -> np.ndarray:
    kwargs = {"batch_size": batch_size} if batch_size else {}
    return np.asarray(encoder.encode(texts, kind, **kwargs), dtype=np.float32)


def encode_to_parquet(
    texts: Sequence[str],
    encoder,
    output: str | Path,
    *,
    ids: Sequence[str] | None = None,
    kind: str | None = "passage",
    engine: RayEngine | None = None,
    shard_texts: int = SHARD_TEXTS,
    resume: bool = False,
    show_progress: bool = False,
) -> dict:
    """Encode ``texts`` with ``encoder`` (``kind``: its prefix) into Parquet shards in ``output``;
    returns ``{"texts", "shards", "resumed_shards", "dim"}``."""
    from tqdm.auto import tqdm

    from koe5.search.indexed_model import record

    if ids is not None and len(ids) != len(texts):
        raise InputError(f"{len(ids)} ids for {len(texts)} texts")
    if shard_texts < 1:
        raise InputError(f"shard_texts must be positive, got {shard_texts}")
    output = Path(output)
    model = record(encoder)
    manifest = {"format": FORMAT, "version": 1, "model": model, "kind": kind, "texts": len(texts),
                "digest": _digest(texts, ids), "shard_texts": shard_texts, "dim": model["dim"]}  # fmt: skip
    todo = _start(output, manifest, resume)
    names = shard_names(len(texts), shard_texts)
    bar = tqdm(total=len(texts), desc="encoding", unit="text", disable=not show_progress, leave=False)
    bar.update(sum(_size(i, shard_texts, len(texts)) for i, n in enumerate(names) if n not in todo))
    pending = [i for i, n in enumerate(names) if n in todo]
    shards = [list(texts[i * shard_texts : (i + 1) * shard_texts]) for i in pending]
    for i, vectors in zip(pending, _encoded(shards, encoder, model, kind, engine), strict=True):
        rows = range(i * shard_texts, i * shard_texts + len(vectors))
        _write_shard(output / names[i], [ids[r] if ids else str(r) for r in rows], vectors)
        bar.update(len(vectors))
    bar.close()
    _write_manifest(output, {**manifest, "state": "complete", "shards": names})
    return {"texts": len(texts), "shards": len(names), "resumed_shards": len(names) - len(pending),
            "dim": model["dim"]}  # fmt: skip


def _encoded(shards, encoder, model: dict, kind, engine: RayEngine | None) -> Iterator[np.ndarray]:
    """The vectors of each shard, in order: on Ray actors, or here."""
    if engine is None:
        for shard in shards:
            yield encode_shard(encoder, shard, kind, None)
        return
    with engine.session() as plan, plan.pool(TextActor, model, engine.batch_size) as pool:
        window, submitted = plan.actors * engine.in_flight, 0
        for done in range(len(shards)):
            while submitted < len(shards) and submitted - done < window:
                pool.submit(lambda actor, texts: actor.encode.remote(texts, kind), shards[submitted])
                submitted += 1
            yield next_result(pool)


def read_vectors(folder: str | Path) -> tuple[list[str], np.ndarray]:
    """The ids and vectors (float32, ``(n, dim)``) of a finished :func:`encode_to_parquet` folder."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest is None or manifest.get("state") != "complete":
        raise InputError(f"{folder}: not a finished koe5 vectors folder ({MANIFEST} missing or incomplete)")
    ids: list[str] = []
    blocks = []
    for name in manifest["shards"]:
        table = pq.read_table(folder / name)
        ids.extend(table.column("id").to_pylist())
        flat = table.column("vector").combine_chunks().flatten().to_numpy()
        blocks.append(flat.reshape(len(table), manifest["dim"]))
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, manifest["dim"]), np.float32)
    return ids, vectors


def _start(output: Path, manifest: dict, resume: bool) -> set[str]:
    """The shard files still to write; a fresh folder, or the finished shards of the same run kept."""
    previous = _read_manifest(output)
    if previous is not None and resume:
        same = {k: previous.get(k) for k in manifest} == manifest
        if not same:
            changed = [k for k in manifest if previous.get(k) != manifest[k]]
            raise InputError(
                f"cannot resume {output}: its run had other {', '.join(changed)}; write to a new folder"
            )
        done = {p.name for p in output.glob("part-*.parquet")}
        return set(shard_names(manifest["texts"], manifest["shard_texts"])) - done
    if output.exists() and any(output.iterdir()):
        raise InputError(f"{output} exists and is not empty; choose another folder (or resume its run)")
    output.mkdir(parents=True, exist_ok=True)
    _write_manifest(output, {**manifest, "state": "building"})
    return set(shard_names(manifest["texts"], manifest["shard_texts"]))


def shard_names(n_texts: int, shard_texts: int) -> list[str]:
    return [f"part-{i:06d}.parquet" for i in range(-(-n_texts // shard_texts))]


def _write_shard(path: Path, ids: list[str], vectors: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1])
    table = pa.table({"id": pa.array(ids, pa.string()), "vector": column})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def _write_manifest(folder: Path, manifest: dict) -> None:
    from koe5.files import atomic_write_bytes

    atomic_write_bytes(folder / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8"))


def _digest(texts: Sequence[str], ids: Sequence[str] | None) -> str:
    h = hashlib.sha256()
    for i, text in enumerate(texts):
        h.update(f"{ids[i] if ids else i}\0{text}\0".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


def _size(i: int, shard: int, total: int) -> int:
    return min(shard, total - i * shard)
