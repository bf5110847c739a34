"""Compact vectors at scale: memory, build time, latency and recall on 1M and 10M clustered vectors.

For each size (rows x dimensions) the vectors are generated once into a ``.npy`` file, block by block
(never all in memory; later runs reuse it), with 1,050 held-out queries and their exact float32 top 10
(computed in blocks, kept beside it). Then, for each vector kind, each step in a fresh process:

- **build**: koe5's :class:`~koe5.search.compact.CompactIndex` (float32: ``DenseIndex``) over the
  memory-mapped file, as ``Index.build`` makes one above the ANN threshold (calibration on a sample,
  then an HNSW graph over the codes), graph saved: seconds, and the process's memory after it;
- **search**: a new process opens the saved graph over the memory-mapped file as ``Index.load``
  does, the file first dropped from the page cache (rescoring then reads its rows off the disk, as
  on a machine with too little memory to cache them), and searches 1,000 queries one at a time after
  50 warm-up queries, k=10: p50/p99 latency, recall@10 against exact float32 search, and resident
  memory, anonymous (codes, graph, Python) and file-backed (the pages of the vectors file it read),
  from ``/proc/self/status``.

Vectors: unit-normalised points around random unit centres, one centre per 1,000 points (at least
2,000, as ``benchmarks/search_latency.py``), noise of norm ~0.6; queries drawn the same way.

    .venv/bin/python benchmarks/compact_scale.py --sizes 1000000x384,1000000x1024
    .venv/bin/python benchmarks/compact_scale.py --sizes 10000000x384 --kinds int8,binary
    .venv/bin/python benchmarks/compact_scale.py --sizes 200000x384 --engines  # faiss vs usearch

An entry already in the JSON is kept (``--again`` measures it anew), so a run stopped half-way
continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from koe5.env import cache_dir
from koe5.search.compact import DEFAULT_OVERSAMPLE, Codec, CompactIndex, rescore, sample_rows
from koe5.search.dense import DenseIndex, HNSWParams

ROOT = Path(__file__).resolve().parents[1]
SPREAD = 0.6  # as search_latency.py: a point's cosine to its centre ~0.85
QUERIES, WARMUP, K, BLOCK = 1000, 50, 10, 100_000


def machine() -> dict:
    """The CPU, its cores and its measured fp32 GEMM rate (``benchmarks/cpu_speed.py``)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cpu_speed import gemm_gflops

    from koe5.cpu.features import cpu_model

    total = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory (GB)": round(total / 1e9, 1),
            "fp32 GEMM (GFLOP/s)": round(max(gemm_gflops().values()), 1)}  # fmt: skip


def memory() -> dict:
    """This process's resident memory in MB: anonymous, file-backed, and its peak."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    mb = {name: int(fields[name].split()[0]) / 1024 for name in ("RssAnon", "RssFile", "VmHWM")}
    return {"anonymous (MB)": round(mb["RssAnon"]), "file-backed (MB)": round(mb["RssFile"]),
            "peak (MB)": round(mb["VmHWM"])}  # fmt: skip


# --- data -----------------------------------------------------------------------------------------


def points(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    dim = centres.shape[1]
    block = centres[rng.integers(0, len(centres), n)] + SPREAD * rng.standard_normal(
        (n, dim), np.float32
    ) / np.sqrt(dim)
    return block / np.linalg.norm(block, axis=1, keepdims=True)


def generate(folder: Path, n: int, dim: int) -> None:
    """``vectors.npy``, ``queries.npy`` and ``truth.npy`` (exact top 10) in ``folder``, each written
    under a temporary name and renamed when complete, so a stopped run redoes only the missing one."""
    from numpy.lib.format import open_memmap

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n * 7919 + dim)
    centres = rng.standard_normal((max(2000, n // 1000), dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    if not (folder / "vectors.npy").exists():
        print(f"# generating {n:,} x {dim} vectors in {folder}", flush=True)
        out = open_memmap(folder / "vectors.tmp.npy", "w+", np.float32, (n, dim))
        for start in range(0, n, BLOCK):
            out[start : start + BLOCK] = points(rng, centres, min(BLOCK, n - start))
        out.flush()
        del out
        os.replace(folder / "vectors.tmp.npy", folder / "vectors.npy")
    if not (folder / "truth.npy").exists():
        queries = points(np.random.default_rng(1), centres, QUERIES + WARMUP)
        np.save(folder / "queries.npy", queries)
        np.save(folder / "truth.tmp.npy", exact_top(np.load(folder / "vectors.npy", mmap_mode="r"), queries))
        os.replace(folder / "truth.tmp.npy", folder / "truth.npy")


def exact_top(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The exact top ``K`` rows of each query, one block of rows at a time."""
    best_rows = np.zeros((len(queries), 0), np.int64)
    best_scores = np.zeros((len(queries), 0), np.float32)
    for start in range(0, len(vectors), BLOCK):
        scores = queries @ np.asarray(vectors[start : start + BLOCK]).T
        top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        rows = np.concatenate([best_rows, top + start], axis=1)
        values = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        keep = np.argsort(-values, axis=1)[:, :K]
        best_rows, best_scores = np.take_along_axis(rows, keep, 1), np.take_along_axis(values, keep, 1)
    return best_rows


# --- one kind, in child processes -----------------------------------------------------------------


def build(folder: Path, kind: str, params: HNSWParams) -> dict:
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    started = time.perf_counter()
    if kind == "float32":
        index = DenseIndex(vectors.shape[1], "hnsw", params)
    else:
        codec = Codec.calibrate(kind, sample_rows([vectors]))
        codec.save(folder / f"{kind}.calibration.npy")
        index = CompactIndex(codec, "hnsw", params)
    index.add(vectors)
    seconds = time.perf_counter() - started
    index.save_graph(folder / f"{kind}.hnsw")
    return {"build (s)": round(seconds, 1), "memory after build": memory()}


def search(folder: Path, kind: str, params: HNSWParams, oversample: int | None, probes: int | None) -> dict:
    path = folder / "vectors.npy"
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # what the build and the truth read
    os.close(fd)
    vectors = np.load(path, mmap_mode="r")
    queries, truth = np.load(folder / "queries.npy"), np.load(folder / "truth.npy")
    if kind == "float32":
        index = DenseIndex(vectors.shape[1], "exact", params)
        index.blocks = [vectors]
    else:
        codec = Codec.load(kind, vectors.shape[1], folder / f"{kind}.calibration.npy")
        index = CompactIndex(codec, "exact", params, oversample)
        index.attach([vectors], None)
    index.load_graph(folder / f"{kind}.hnsw")
    if probes:  # int4's inverted file: lists read a query, instead of koe5's rule
        index._index.nprobe = probes
    opened = memory()
    for q in queries[:WARMUP]:
        index.search(q, K)
    times, recall = [], []
    for q, true in zip(queries[WARMUP:], truth[WARMUP:], strict=True):
        started = time.perf_counter()
        rows, _ = index.search(q, K)
        times.append((time.perf_counter() - started) * 1000)
        recall.append(len(np.intersect1d(rows, true)) / K)
    return {
        "oversample": getattr(index, "oversample", None),
        **({"lists read": int(index._index.nprobe)} if kind == "int4" else {}),
        **figures(times, recall),
        "memory after opening": opened,
        "memory after searching": memory(),
    }


def figures(times: list[float], recall: list[float]) -> dict:
    """p50 and p99 of query times (ms) and the mean recall@10."""
    return {
        "p50 (ms)": round(float(np.percentile(times, 50)), 3),
        "p99 (ms)": round(float(np.percentile(times, 99)), 3),
        "recall@10": round(float(np.mean(recall)), 4),
    }


def child(
    step: str, folder: Path, kind: str, params: HNSWParams, oversample: int | None, probes: int | None = None
) -> dict:
    """Run ``step`` of ``kind`` in a fresh process (so each measures its own memory), return its figures."""
    command = [sys.executable, __file__, "--child", step, "--folder", str(folder), "--kinds", kind,
               "--m", str(params.m), "--ef-construction", str(params.ef_construction),
               "--ef-search", str(params.ef_search)]  # fmt: skip
    if oversample:
        command += ["--oversample", str(oversample)]
    if probes:
        command += ["--probes", str(probes)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- ANN engines (the choice koe5.search.compact.ANN records) -------------------------------------


ENGINES = {  # name: (the kind whose oversample it uses, the library, what it indexes)
    "faiss IndexHNSWRaBitQ (koe5's binary)": ("binary", "faiss", "koe5"),
    "faiss IndexBinaryHNSW (Hamming, bits around the mean)": ("binary", "faiss", "bits"),
    "usearch b1 (Hamming, bits around the mean)": ("binary", "usearch", "bits"),
    "faiss IndexHNSWSQ (koe5's int8)": ("int8", "faiss", "koe5"),
    "usearch i8 (its own int8)": ("int8", "usearch", "floats"),
}


def engines(folder: Path, params: HNSWParams) -> dict:
    """The ANN libraries over compact codes, called directly on the same vectors (same M and
    efConstruction, 2 threads): build seconds, bytes a row, p50/p99 and recall@10 after rescoring
    ``oversample`` x 10 candidates from the float32 rows."""
    vectors = np.load(folder / "vectors.npy")
    queries, truth = np.load(folder / "queries.npy"), np.load(folder / "truth.npy")
    mean = vectors.mean(axis=0)
    out = {}
    for name, (kind, library, data) in ENGINES.items():
        rows = np.packbits(vectors > mean, axis=1) if data == "bits" else vectors
        started = time.perf_counter()
        index, size = build_engine(library, kind, data, rows, params)
        seconds = time.perf_counter() - started
        out[name] = {"build (s)": round(seconds, 1), "bytes a row": round(size / len(vectors))}
        for oversample in (2, DEFAULT_OVERSAMPLE[kind]):  # the default, and one that tells them apart
            times, recall = [], []
            for q, true in zip(queries[WARMUP:], truth[WARMUP:], strict=True):
                started = time.perf_counter()
                asked = np.packbits(q > mean)[None, :] if data == "bits" else q[None, :]
                found = search_engine(library, index, asked, K * oversample, params)
                top, _ = rescore([vectors], np.array([0, len(vectors)]), q, np.asarray(found, np.int64), K)
                times.append((time.perf_counter() - started) * 1000)
                recall.append(len(np.intersect1d(top, true)) / K)
            out[name][f"{oversample}x"] = figures(times, recall)
        print(f"# {name}: {out[name]}", flush=True)
        del index
    return out


def build_engine(library: str, kind: str, data: str, rows: np.ndarray, params: HNSWParams):
    """One engine's index over ``rows`` (floats or packed bits), and its size in bytes."""
    import faiss

    if library == "usearch":
        from usearch.index import Index as Usearch

        metric, dtype = ("hamming", "b1") if data == "bits" else ("ip", "i8")
        index = Usearch(ndim=rows.shape[1] * (8 if data == "bits" else 1), metric=metric, dtype=dtype,
                        connectivity=params.m, expansion_add=params.ef_construction)  # fmt: skip
        index.add(np.arange(len(rows)), rows, threads=2)
        return index, index.memory_usage
    if data == "bits":
        index = faiss.IndexBinaryHNSW(rows.shape[1] * 8, params.m)
        index.hnsw.efConstruction = params.ef_construction
        index.add(rows)
        return index, len(faiss.serialize_index_binary(index))
    index = Codec.calibrate(kind, sample_rows([rows])).graph(params)
    index.add(rows)
    return index, len(faiss.serialize_index(index))


def search_engine(library: str, index, query: np.ndarray, want: int, params: HNSWParams) -> np.ndarray:
    import faiss

    if library == "usearch":
        index.expansion_search = max(params.ef_search, want)
        return index.search(query[0], want, threads=1).keys
    search = faiss.SearchParametersHNSW(efSearch=max(params.ef_search, want))
    return index.search(query, want, params=search)[1][0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000x384,10000000x384,1000000x1024", help="ROWSxDIM,...")
    parser.add_argument("--kinds", default="float16,int8,binary", help="float32 (HNSW over floats) too")
    parser.add_argument("--m", type=int, default=HNSWParams.m)
    parser.add_argument("--ef-construction", type=int, default=HNSWParams.ef_construction)
    parser.add_argument("--ef-search", type=int, default=HNSWParams.ef_search)
    parser.add_argument("--oversample", default="", help="N,...; default: the kind's")
    parser.add_argument("--probes", default="", help="int4: lists read a query, N,...; default: koe5's")
    parser.add_argument("--engines", action="store_true", help="compare the ANN libraries instead")
    parser.add_argument("--data", type=Path, default=cache_dir() / "bench" / "compact_scale")
    parser.add_argument("--out", type=Path, help="default: results/compact_scale.json (compact_engines.json)")
    parser.add_argument("--again", action="store_true", help="measure entries already in --out anew")
    parser.add_argument("--child", choices=("build", "search"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    params = HNSWParams(args.m, args.ef_construction, args.ef_search)
    if args.child == "build":
        print(json.dumps(build(args.folder, args.kinds, params)))
        return
    if args.child == "search":
        oversample = int(args.oversample) if args.oversample else None
        probes = int(args.probes) if args.probes else None
        print(json.dumps(search(args.folder, args.kinds, params, oversample, probes)))
        return

    out = (
        args.out or ROOT / "benchmarks" / "results" / f"compact_{'engines' if args.engines else 'scale'}.json"
    )
    results = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    results["hnsw"] = params.to_dict()
    for size in args.sizes.split(","):
        n, dim = (int(x) for x in size.lower().split("x"))
        folder = args.data / f"{n}x{dim}"
        generate(folder, n, dim)
        if args.engines:
            results.setdefault("engines", {})[f"{n:,} × {dim}"] = engines(folder, params)
            save(out, results)
            continue
        oversamples = [int(o) for o in args.oversample.split(",") if o] or [None]
        probes = [int(p) for p in args.probes.split(",") if p] or [None]
        for kind in args.kinds.split(","):
            keys = {
                (o, p): f"{n:,} x {dim} {kind}"
                + (f", oversample {o}" if o not in (None, DEFAULT_OVERSAMPLE.get(kind)) else "")
                + (f", {p} lists read" if p else "")
                for o in oversamples
                for p in probes
            }
            done = results.setdefault("entries", {})
            todo = [setting for setting, key in keys.items() if args.again or key not in done]
            if not todo:
                print(f"# {n:,} x {dim} {kind}: measured before (--again measures it anew)", flush=True)
                continue
            for setting, entry in measure(folder, n, dim, kind, params, todo).items():
                results["entries"][keys[setting]] = entry
            save(out, results)
    results["machine"] = machine()
    save(out, results)


def measure(folder: Path, n: int, dim: int, kind: str, params: HNSWParams, settings: list[tuple]) -> dict:
    """Build once, then search with each (oversample, lists read) setting, each step in its own
    process; the graph is removed afterwards (disk). One entry per setting, the build's in each."""
    built = {"rows": n, "dim": dim, "vectors": kind, **child("build", folder, kind, params, None)}
    print(f"# {n:,} x {dim} {kind}: {built}", flush=True)
    entries = {}
    for oversample, probes in settings:
        entries[oversample, probes] = {**built, **child("search", folder, kind, params, oversample, probes)}
        print(f"# {n:,} x {dim} {kind}: {entries[oversample, probes]}", flush=True)
    (folder / f"{kind}.hnsw").unlink()
    return entries


def save(path: Path, results: dict) -> None:
    path.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
