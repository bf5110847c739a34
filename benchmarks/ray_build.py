"""The cost of building an index on Ray at equal cores, and an estimate for 100M passages on GPUs.

1. The same ~10k one-chunk documents (Korean sentences and answers of the training material, as in
   ``postgres_store.py``) built three times with the default model, no embedding cache: in one process
   (torch on every core), and with ``--engine ray`` on a local cluster started by the build (1 actor of
   1 CPU; as many 1-CPU actors as cores), and once more joining a cluster already running (as with
   ``--address``), as a user with a cluster does. Documents/s of each, the Ray builds' ratio to the
   one-process build, the local cluster's start and stop alone, and a check that the Ray build is the
   same index (vectors' largest difference, top-10 of 50 queries in three modes).
2. From the H100 figures in ``gpu_speed.json`` (koe5 torch auto, passages of ~388 tokens): GPU-hours
   for 100M passages with the default model and with a model of KoE5's shape (e5-large), and the
   wall-clock time on N GPU actors.

    .venv/bin/python benchmarks/ray_build.py --docs 10000 --out benchmarks/results/ray_build.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PASSAGES = 100_000_000


def build(docs_file: Path, encoder, folder: Path, engine=None) -> tuple[object, float]:
    from koe5.search import Index

    started = time.perf_counter()
    index = Index.build(docs_file, encoder, folder, segment_docs=1000, engine=engine)
    return index, time.perf_counter() - started


def same_index(a, b, queries: list[str], vectors: np.ndarray) -> dict:
    from koe5.search import store

    diff = 0.0
    for x, y in zip(a.manifest["segments"], b.manifest["segments"], strict=True):
        va = np.asarray(store.read_segment(a.folder, x["name"]).vectors)
        vb = np.asarray(store.read_segment(b.folder, y["name"]).vectors)
        diff = max(diff, float(np.abs(va - vb).max()))
    same = {}
    for mode in ("dense", "bm25", "hybrid"):
        same[mode] = sum(
            [h.chunk_id for h in a.search(q, k=10, mode=mode, query_vector=v)]
            == [h.chunk_id for h in b.search(q, k=10, mode=mode, query_vector=v)]
            for q, v in zip(queries, vectors, strict=True)
        )
    return {"largest vector difference": diff, "top-10 identical (of 50 queries)": same}


def gpu_estimate() -> dict:
    """GPU-hours for PASSAGES passages from the measured H100 rates (koe5 torch auto, ~388-token passages)."""
    speed = json.loads((ROOT / "benchmarks" / "results" / "gpu_speed.json").read_text(encoding="utf-8"))
    out = {"device": speed["device"], "passages": PASSAGES, "models": []}
    for model in ("e5-small (bundled)", "e5-large shape, random weights"):
        row = next(
            r for r in speed[model]["rows"] if r["input"] == "passage" and r["runner"] == "koe5 torch auto"
        )
        hours = PASSAGES / row["sentences_per_s"] / 3600
        out["models"].append({
            "model": model, "passages/s per GPU": row["sentences_per_s"], "mean tokens": row["mean_tokens"],
            "tokenizer share": row["tokenizer_share"], "GPU-hours": round(hours, 1),
            "hours on N actors": {str(n): round(hours / n, 2) for n in (1, 8, 32, 128)},
        })  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import ray

    import koe5
    from koe5.distributed import RayEngine

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cpu_speed import gemm_gflops
    from postgres_store import _cpu_model, korean_texts

    tmp = Path(tempfile.mkdtemp(prefix="koe5-raybench-"))
    texts = korean_texts(args.data, args.docs + 50)
    queries, texts = texts[:50], texts[50:]
    docs_file = tmp / "docs.jsonl"
    with docs_file.open("w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": f"d{i}", "text": text}, ensure_ascii=False) + "\n")
    encoder = koe5.load("default", device="cpu")
    vectors = encoder.encode_queries(queries)
    cores = os.cpu_count() or 1

    t = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    ray.shutdown()
    start_stop = time.perf_counter() - t

    single, single_s = build(docs_file, encoder, tmp / "single")
    rows = [{"build": f"one process (torch on {cores} cores)", "seconds": round(single_s, 1)}]
    for actors in (1, cores):
        index, seconds = build(docs_file, encoder, tmp / f"ray{actors}", RayEngine(actors=actors))
        rows.append({"build": f"Ray, {actors} actor(s) of 1 CPU", "seconds": round(seconds, 1),
                     "same index": same_index(single, index, queries, vectors)})  # fmt: skip
        print(rows[-1], flush=True)
    # A user with a cluster joins it (--address) instead of starting one per build: the engine's own
    # cost is then the actors' start (model load) and the driver's share of the cores.
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    try:
        index, seconds = build(docs_file, encoder, tmp / "running", RayEngine(actors=cores))
    finally:
        ray.shutdown()
    rows.append({"build": f"Ray on a running cluster, {cores} actors of 1 CPU", "seconds": round(seconds, 1),
                 "same index": same_index(single, index, queries, vectors)})  # fmt: skip
    print(rows[-1], flush=True)
    chunks = single.manifest["counts"]["chunks"]
    for row in rows:
        row["documents/s"] = round(len(texts) / row["seconds"], 1)
        row["vs one process"] = round(single_s / row["seconds"], 3)
    results = {
        "documents": len(texts),
        "chunks": chunks,
        "model": "default (multilingual-e5-small, 12 layers)",
        "builds": rows,
        "local Ray cluster start + stop (s)": round(start_stop, 1),
        "gpu estimate": gpu_estimate(),
        "machine": {
            "cpu": _cpu_model(),
            "cores": cores,
            "fp32 GEMM (GFLOP/s)": round(max(gemm_gflops().values()), 1),
            "ray": ray.__version__,
        },
    }
    print(json.dumps(results, ensure_ascii=False, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
