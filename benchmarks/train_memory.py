"""Memory and time of one training step: CachedMNRL (GradCache) against plain MNRL, same batch.

The KoE5 recipe uses CachedMultipleNegativesRankingLoss so that a large batch of in-batch negatives
costs the memory of a small one. This measures, on the default model (multilingual-e5-small), one
optimizer step on 64 Korean (query, positive, hard negative) rows — 192 texts — with:

- ``mnrl``:        MultipleNegativesRankingLoss, every text's activations held at once;
- ``cached-mnrl``: CachedMultipleNegativesRankingLoss with mini-batch 8 (the recipe's loss).

Memory: each loss in a process of its own, the peak resident memory of its forward and backward pass
above the memory before it (model, gradients and tokenised batch already allocated), read from /proc
(VmHWM, reset through clear_refs); on a GPU, torch's peak allocation. Time: one process alternates
whole optimizer steps of the two losses and a forward pass without gradients, round by round, and
reports medians — on a shared machine the load moves, and alternating spreads it evenly. GradCache
embeds every text twice (once without gradients, once replayed with them), so the expected cost is
about one extra forward pass.

    .venv/bin/python benchmarks/train_memory.py [--batch 64] [--mini-batch 8] [--steps 3] [--max-length 128]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import koe5  # before anything imports torch: koe5's MKL shim must load first (koe5/mkl.py)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "train" / "welfare_sample.jsonl"


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _setup(batch: int, max_length: int):
    import torch
    from sentence_transformers import SentenceTransformer

    from koe5.registry import ensure_default_model

    torch.manual_seed(0)
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()][:batch]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(str(ensure_default_model()), device=device)
    model.max_seq_length = max_length
    model.train()
    columns = (("query", "query: "), ("document", "passage: "), ("hard_negative", "passage: "))
    features = [
        {
            k: v.to(device) if hasattr(v, "to") else v
            for k, v in model.tokenize([p + r[c] for r in rows]).items()
        }
        for c, p in columns
    ]
    return model, features, device


def _loss(mode: str, model, mini_batch: int):
    from sentence_transformers.sentence_transformer import losses

    if mode == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, scale=20)
    return losses.CachedMultipleNegativesRankingLoss(model, scale=20, mini_batch_size=mini_batch)


def measure_memory(mode: str, batch: int, mini_batch: int, max_length: int) -> dict:
    """Peak memory of the loss's forward and backward pass of a first step (a process of its own)."""
    import torch

    model, features, device = _setup(batch, max_length)
    loss = _loss(mode, model, mini_batch)
    # gradients allocated first (they cost the same in both modes); nothing freed earlier can hide
    # in the allocator's pools, because this is the first pass
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    gc.collect()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        exact = _reset_peak()
        before = _rss_kb("VmRSS") * 1024
    loss(features, None).backward()
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = _rss_kb("VmHWM") * 1024 - before if exact else -1
    tokens = sum(int(f["attention_mask"].sum()) for f in features)
    peak_mb = round(peak / 2**20, 1)
    return {
        "mode": mode,
        "device": device,
        "tokens": tokens,
        "peak_mb": peak_mb,
        "mkl_shim": koe5.cpu.mkl.status,
    }


def measure_time(batch: int, mini_batch: int, steps: int, max_length: int) -> dict:
    """Median time of a whole optimizer step of each loss, and of a forward pass without gradients
    over the same texts in mini-batches (GradCache's extra pass), interleaved round by round so that
    a change in the machine's load hits all three alike."""
    import torch

    model, features, device = _setup(batch, max_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    losses = {mode: _loss(mode, model, mini_batch) for mode in ("mnrl", "cached-mnrl")}

    def timed(fn) -> float:
        started = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    def step(loss) -> None:
        loss(features, None).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    def forward() -> None:
        with torch.no_grad():
            for feature in features:
                for begin in range(0, batch, mini_batch):
                    model(
                        {
                            k: v[begin : begin + mini_batch] if hasattr(v, "shape") else v
                            for k, v in feature.items()
                        }
                    )

    step(losses["mnrl"])  # warm-up: optimizer state, allocator pools
    times: dict[str, list[float]] = {"mnrl": [], "cached-mnrl": [], "forward": []}
    for _ in range(steps):
        for mode, loss in losses.items():
            times[mode].append(timed(lambda loss=loss: step(loss)))
        times["forward"].append(timed(forward))
    return {**{k: round(statistics.median(v), 3) for k, v in times.items()}, "mkl_shim": koe5.cpu.mkl.status}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--mini-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="Timed rounds.")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--mode", choices=("mnrl", "cached-mnrl", "time"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "time":
        print(json.dumps(measure_time(args.batch, args.mini_batch, args.steps, args.max_length)))
        return
    if args.mode:  # one memory measurement, in a process of its own
        print(json.dumps(measure_memory(args.mode, args.batch, args.mini_batch, args.max_length)))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    runs = {}
    for mode in ("mnrl", "cached-mnrl", "time"):
        command = [sys.executable, __file__, "--mode", mode, "--batch", str(args.batch)]
        command += ["--mini-batch", str(args.mini_batch), "--steps", str(args.steps)]
        command += ["--max-length", str(args.max_length)]
        out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    memory, seconds = {m: runs[m]["peak_mb"] for m in ("mnrl", "cached-mnrl")}, runs["time"]
    load = os.getloadavg()[0]
    print(f"one optimizer step of {args.batch} (query, positive, hard negative) rows: {3 * args.batch} "
          f"texts, {runs['mnrl']['tokens']} tokens, max length {args.max_length}, {runs['mnrl']['device']} "
          f"(load average {load:.1f}, koe5's MKL shim {seconds['mkl_shim']})\n")  # fmt: skip
    print("| loss | mini-batch | step time (s) | peak memory of forward + backward (MB) |")
    print("|---|---:|---:|---:|")
    print(f"| MultipleNegativesRankingLoss | – | {seconds['mnrl']} | {memory['mnrl']} |")
    cached = f"{seconds['cached-mnrl']} | {memory['cached-mnrl']}"
    print(f"| CachedMultipleNegativesRankingLoss | {args.mini_batch} | {cached} |")
    extra = (seconds["cached-mnrl"] - seconds["mnrl"]) / seconds["forward"]
    print(
        f"\nCachedMNRL / MNRL: memory ×{memory['cached-mnrl'] / max(memory['mnrl'], 1e-9):.2f}, "
        f"time ×{seconds['cached-mnrl'] / seconds['mnrl']:.2f}; the difference is {extra:.2f} forward passes "
        f"without gradients ({seconds['forward']} s each)"
    )


if __name__ == "__main__":
    main()
