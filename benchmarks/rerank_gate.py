"""The reranker backends' quality gate on this machine, as ``koe5 export default --reranker --onnx --int8``
runs it, with the machine's fp32 GEMM rate beside it.

Exports koe5's installed reranker (``koe5 train-reranker``) to ONNX in fp32 and int8, then reranks BM25's
top 20 for a seeded sample of 40 queries of each gate task (PublicHealthQA, BelebeleRetrieval) with
torch fp32 (the reference), torch bf16 (where the CPU has bf16 hardware), ONNX fp32 and ONNX int8:
NDCG@10, pairs/s, and which backend ``auto`` records (the fastest within 0.005 NDCG@10 of torch fp32).

    .venv/bin/python benchmarks/rerank_gate.py --out benchmarks/results/rerank_gate.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reranker", default="default")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from cpu_speed import gemm_gflops
    from rerank_quality import report as write_report

    from koe5.cpu.features import cpu_model
    from koe5.rerank.export import choose_reranker_backends, export_reranker

    folder = export_reranker(args.reranker, int8=True, log=lambda m: print(f"# {m}", flush=True))
    report = choose_reranker_backends(folder, log=lambda m: print(f"# {m}", flush=True))
    gemm = max(gemm_gflops().values())
    result = {
        "reranker": args.reranker,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "fp32 GEMM (GFLOP/s)": round(gemm, 1)},
        **{k: v for k, v in report.items() if k != "machine"},
    }
    write_report(result, args.out)


if __name__ == "__main__":
    main()
