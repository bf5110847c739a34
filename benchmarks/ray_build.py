"""The cost of building an index on Ray at equal cores, and an estimate for 100M passages on GPUs.

1. The same one-chunk documents (Korean sentences and answers of the training material, as in
   ``postgres_store.py``) indexed with the default model, no embedding cache, timed as a user runs
   them: each ``koe5 index build`` a fresh command (Python start, model load, build), in one process
   (torch on every core) and with ``--engine ray`` (1 actor of 1 CPU, and as many as cores, on a local
   cluster the command starts; and joining a cluster started before, ``--address``). ~10k documents
   for all four; a larger collection (``--large``) one process vs the running cluster, where the
   actors' start is spread over more work. The ~10k one-process command runs before and after the Ray
   ones (their mean is the baseline). Documents/s of each, the ratio to the one-process command,
   the local cluster's start and stop alone, and a check that a Ray build is the same index (vectors'
   largest difference, top-10 of 50 queries in three modes).
2. The library call with a model already loaded (``Index.build(..., engine=)``): there the one-process
   build has no model to load, while each actor still loads its own, the engine's whole start cost.
3. From the H100 figures in ``gpu_speed.json`` (koe5 torch auto, passages of ~388 tokens): GPU-hours
   for 100M passages with the default model and with a model of KoE5's shape (e5-large), and the
   wall-clock time on N GPU actors.

    .venv/bin/python benchmarks/ray_build.py --docs 10000 --large 50000 \\
        --out benchmarks/results/ray_build.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PASSAGES = 100_000_000
PORT = 6391  # the benchmark's own cluster, apart from a user's on 6379


def build(docs_file: Path, encoder, folder: Path, engine=None) -> tuple[object, float]:
    from koe5.search import Index

    started = time.perf_counter()
    index = Index.build(docs_file, encoder, folder, segment_docs=1000, engine=engine)
    return index, time.perf_counter() - started


def command(docs_file: Path, folder: Path, *engine: str) -> float:
    """Seconds of one ``koe5 index build`` command, run as a user runs it (a fresh process)."""
    koe5 = Path(sys.executable).with_name("koe5")
    started = time.perf_counter()
    subprocess.run([koe5, "--quiet", "index", "build", docs_file, "-o", folder, *engine], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


@contextlib.contextmanager
def running_cluster(cores: int) -> Iterator[str]:
    """A Ray cluster started outside the timed commands (``ray start``), as a user with a cluster has;
    its address, for ``--address``."""
    ray_cli = Path(sys.executable).with_name("ray")
    subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(PORT),
                    "--num-cpus", str(cores), "--include-dashboard", "false", "--disable-usage-stats"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        yield f"127.0.0.1:{PORT}"
    finally:
        subprocess.run([ray_cli, "stop"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def write_docs(texts: list[str], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": f"d{i}", "text": text}, ensure_ascii=False) + "\n")
    return path


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
    parser.add_argument("--large", type=int, default=0, help="also this many documents (0: not)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import ray

    import koe5
    from koe5.distributed import RayEngine
    from koe5.search import Index

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cpu_speed import gemm_gflops
    from postgres_store import korean_texts

    from koe5.cpu.features import cpu_model

    tmp = Path(tempfile.mkdtemp(prefix="koe5-raybench-"))
    texts = korean_texts(args.data, max(args.docs, args.large) + 50)
    queries, texts = texts[:50], texts[50:]
    docs_file = write_docs(texts[: args.docs], tmp / "docs.jsonl")
    encoder = koe5.load("default", device="cpu")
    vectors = encoder.encode_queries(queries)
    cores = os.cpu_count() or 1

    t = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    ray.shutdown()
    start_stop = time.perf_counter() - t

    def row(name: str, seconds: float, documents: int, baseline: float, folder: Path | None) -> dict:
        """One build's figures; ``baseline``: the one-process seconds it is compared with."""
        out = {"build": name, "documents": documents, "seconds": round(seconds, 1),
               "documents/s": round(documents / seconds, 1),
               "vs one process": round(baseline / seconds, 3)}  # fmt: skip
        if folder is not None:
            out["same index"] = same_index(single, Index(folder, encoder), queries, vectors)
        print(out, flush=True)
        return out

    # The one-process command before and after the Ray ones; their mean is the baseline, and the two
    # show how much the machine itself varied during the run.
    ray_seconds = {}
    first = command(docs_file, tmp / "c-single")
    for actors in (1, cores):
        ray_seconds[actors] = command(
            docs_file, tmp / f"c-ray{actors}", "--engine", "ray", "--actors", str(actors)
        )
    with running_cluster(cores) as address:
        ray_seconds["running"] = command(
            docs_file, tmp / "c-running", "--engine", "ray", "--address", address
        )
    last = command(docs_file, tmp / "c-single-again")
    one = (first + last) / 2
    single = Index(tmp / "c-single", encoder)
    commands = [
        row(f"one process (torch on {cores} cores), first", first, args.docs, one, None),
        row(f"one process (torch on {cores} cores), after the Ray builds", last, args.docs, one, None),
    ]
    for actors in (1, cores):
        commands.append(
            row(
                f"Ray, {actors} actor(s) of 1 CPU, local cluster started by the command",
                ray_seconds[actors],
                args.docs,
                one,
                tmp / f"c-ray{actors}",
            )
        )
    commands.append(
        row(
            f"Ray on a running cluster, {cores} actors of 1 CPU",
            ray_seconds["running"],
            args.docs,
            one,
            tmp / "c-running",
        )
    )
    if args.large:
        large_file = write_docs(texts[: args.large], tmp / "large.jsonl")
        big = command(large_file, tmp / "l-single")
        commands.append(row(f"one process (torch on {cores} cores)", big, args.large, big, None))
        with running_cluster(cores) as address:
            seconds = command(large_file, tmp / "l-running", "--engine", "ray", "--address", address)
        commands.append(
            row(f"Ray on a running cluster, {cores} actors of 1 CPU", seconds, args.large, big, None)
        )

    # The library call with the model already loaded: one process loads nothing more, each actor does.
    single, one = build(docs_file, encoder, tmp / "single")
    calls = [row(f"one process (torch on {cores} cores)", one, args.docs, one, None)]
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    try:
        _, seconds = build(docs_file, encoder, tmp / "running", RayEngine(actors=cores))
    finally:
        ray.shutdown()
    calls.append(row(f"Ray on a running cluster, {cores} actors of 1 CPU", seconds, args.docs, one,
                     tmp / "running"))  # fmt: skip
    results = {
        "model": "default (multilingual-e5-small, 12 layers)",
        "commands": commands,
        "library calls (model loaded)": calls,
        "local Ray cluster start + stop (s)": round(start_stop, 1),
        "gpu estimate": gpu_estimate(),
        "machine": {
            "cpu": cpu_model(),
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
