"""koe5's CPU attention kernel against PyTorch's, on the shapes the unpadded encoder gives it.

For runs of equal-length inputs (E5-small: 12 heads × 32; E5-base/large: 12 or 16 heads × 64) it times
one layer's attention both ways on the same fused Q/K/V matrix, interleaved, best of ``--repeats``:

* PyTorch: ``scaled_dot_product_attention`` on strided views of the fused matrix, one call per run,
  copied into the context rows (what the unpadded encoder does without the kernel);
* koe5: :func:`koe5.cpu.attention.attend`, one call for the layer.

Reported: nanoseconds per score (a score is one query-key pair of one head: 4·d FLOPs of Q·Kᵀ and P·V)
and koe5's speed-up. The end-to-end effect is in ``benchmarks/cpu_speed.py`` (its row "koe5 torch,
PyTorch attention").

    python benchmarks/attention_kernel.py [--repeats 5] [--code-path avx512|avx2] [--json]

``--code-path avx2`` times the kernel's AVX2 code; to compare it with PyTorch as an AVX2 machine runs
it, keep PyTorch's kernels and MKL on AVX2 too::

    ATEN_CPU_CAPABILITY=avx2 KOE5_MKL_AVX512=0 python benchmarks/attention_kernel.py --code-path avx2
"""

from __future__ import annotations

import argparse
import json
import time

import koe5  # before anything imports torch: koe5's MKL shim must load first (koe5/mkl.py)

SHAPES = [  # (inputs, length, heads, head size)
    (8, 480, 12, 32),
    (16, 256, 12, 32),
    (32, 128, 12, 32),
    (64, 64, 12, 32),
    (256, 20, 12, 32),
    (8, 480, 12, 64),
    (64, 64, 16, 64),
]


def seconds(fn, *args, budget: float = 0.4) -> float:
    fn(*args)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget:
        fn(*args)
        n += 1
    return (time.perf_counter() - start) / n


def main() -> None:
    import torch

    from koe5.cpu import attention

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--code-path", choices=["avx512", "avx2"], help="default: the fastest this CPU runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if attention.kernel() is None:
        raise SystemExit(f"koe5's attention kernel is not used on this machine ({attention.status})")
    code_path = args.code_path or attention.variant
    if code_path not in attention.cpu_variants():
        raise SystemExit(f"this CPU cannot run the kernel's {code_path} code")
    rows = []
    with torch.inference_mode():
        for count, length, heads, d in SHAPES:
            torch.manual_seed(0)
            fused = torch.randn(count * length, 3 * heads * d)
            fused[:, : heads * d] *= d**-0.5
            context = torch.empty(count * length, heads * d)
            runs = torch.tensor([[0, count, length]], dtype=torch.int64)
            best = {"pytorch": float("inf"), "koe5": float("inf")}
            for _ in range(args.repeats):
                sdpa = seconds(attention.pytorch_attention, fused, context, runs.tolist(), heads, d)
                best["pytorch"] = min(best["pytorch"], sdpa)
                best["koe5"] = min(
                    best["koe5"], seconds(attention.attend, fused, context, runs, heads, d, code_path)
                )
            scores = count * heads * length * length
            rows.append(
                {
                    "inputs": count,
                    "length": length,
                    "heads": heads,
                    "head_dim": d,
                    "pytorch_ns_per_score": round(best["pytorch"] / scores * 1e9, 3),
                    "koe5_ns_per_score": round(best["koe5"] / scores * 1e9, 3),
                    "speedup": round(best["pytorch"] / best["koe5"], 2),
                }
            )
    report = {
        "threads": torch.get_num_threads(),
        "mkl_shim": koe5.cpu.mkl.status,
        "pytorch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "code_path": code_path,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"torch threads {report['threads']}, koe5's MKL shim {report['mkl_shim']}, PyTorch's CPU code "
        f"{report['pytorch_cpu_capability']}, koe5's kernel {code_path}; ns per score"
    )
    print(f"  {'inputs × length, heads × d':28} {'PyTorch':>8} {'koe5':>8} {'speed-up':>9}")
    for r in rows:
        shape = f"{r['inputs']} × {r['length']}, {r['heads']} × {r['head_dim']}"
        ns = f"{r['pytorch_ns_per_score']:8.3f} {r['koe5_ns_per_score']:8.3f}"
        print(f"  {shape:28} {ns} {r['speedup']:8.2f}×")


if __name__ == "__main__":
    main()
