"""What koe5's MKL shim (koe5/mkl.py) changes on this machine: the same work with it and without it.

Each measurement runs in a fresh process (the shim only loads before PyTorch), alternately with the
shim on and off (``KOE5_MKL_AVX512=0``), round by round, so drift in machine speed hits both alike;
medians are reported with the ratio on/off. Measured in each process:

* ``sgemm``: ``torch.mm`` at the shape of the model's FFN (2048 × 384 × 1536), GFLOP/s;
* ``attention``: ``scaled_dot_product_attention`` at 12 heads × 32, one input of 325 tokens, ns/score;
* ``plain ST encode``: ``SentenceTransformer.encode`` (batch 32) of 64 AutoRAG pages, seconds;
* ``fp32 train step``: forward and backward of 192 Korean training texts (max length 128), seconds.

    python benchmarks/mkl_shim.py [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "train" / "welfare_sample.jsonl"


def measure() -> dict:
    import koe5  # first: the shim loads on import, before PyTorch

    status = koe5.cpu.mkl.status
    import torch
    from sentence_transformers import SentenceTransformer

    from koe5.registry import ensure_default_model
    from koe5.runtime.export import speed_samples

    def seconds(fn, repeats):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats

    a, b = torch.randn(2048, 384), torch.randn(384, 1536)
    out = {"shim": status, "sgemm_gflops": 2 * 2048 * 384 * 1536 / seconds(lambda: a @ b, 40) / 1e9}
    q, k, v = (torch.randn(1, 12, 325, 32) for _ in range(3))
    att = seconds(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), 40)
    out["attention_ns_per_score"] = att / (12 * 325 * 325) * 1e9

    st = SentenceTransformer(str(ensure_default_model()), device="cpu")
    _, passages = speed_samples(16, 64)
    passages = ["passage: " + p for p in passages]
    out["plain_st_encode_s"] = seconds(lambda: st.encode(passages, batch_size=32), 1)

    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line][:64]
    texts = [f"query: {r['query']}" for r in rows] + [
        f"passage: {r[key]}" for key in ("document", "hard_negative") for r in rows
    ]
    st.max_seq_length = 128
    st.train()

    def step():
        for i in range(0, len(texts), 32):
            features = dict(st.tokenize(texts[i : i + 32]))
            st(features)["sentence_embedding"].pow(2).sum().backward()

    out["fp32_train_step_s"] = seconds(step, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure()))
        return

    runs: dict[str, list[dict]] = {"on": [], "off": []}
    base_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "KOE5_MKL_AVX512")}
    for _ in range(args.rounds):
        for side, env in (("on", {}), ("off", {"KOE5_MKL_AVX512": "0"})):
            proc = subprocess.run(
                [sys.executable, "-W", "ignore", __file__, "--measure"],
                env={**base_env, **env},
                capture_output=True,
                text=True,
                check=True,
            )
            runs[side].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    metrics = [k for k in runs["on"][0] if k != "shim"]
    report = {
        "shim": {side: runs[side][0]["shim"] for side in runs},
        "rounds": args.rounds,
        "median": {
            side: {m: round(statistics.median(r[m] for r in runs[side]), 4) for m in metrics} for side in runs
        },
    }
    on, off = report["median"]["on"], report["median"]["off"]
    report["on_over_off"] = {m: round(on[m] / off[m], 3) for m in metrics}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    shim = report["shim"]
    print(f"shim: on = {shim['on']}, off = {shim['off']}; medians of {args.rounds} rounds")
    for m in metrics:
        print(f"  {m:24} on {on[m]:10.3f}   off {off[m]:10.3f}   on/off {report['on_over_off'][m]:.2f}")


if __name__ == "__main__":
    main()
