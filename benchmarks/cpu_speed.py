"""Encoding speed on this CPU, everything side by side in one run, against the GEMM roofline.

For Korean short queries (KorQuAD questions, ~25 tokens), short passages (Belebele paragraphs, ~100
tokens) and long passages (AutoRAG pages, ~300-512 tokens) it measures tokens/s and sentences/s of:

* plain ``SentenceTransformer.encode`` at batch 32 (the baseline), in a child process that never
  imports koe5, as a sentence-transformers user runs it (on AMD CPUs: MKL on its AVX2 path), and the
  same in this process, where ``import koe5`` has moved MKL to AVX-512 (:mod:`koe5.cpu.mkl`),
* koe5 ``torch`` (token-budget batches, unpadded, koe5's attention kernel), ``onnx``, ``onnx-int8`` and
  ``auto``; ``torch`` unpadded with PyTorch's attention instead of koe5's kernel, on transformers'
  padded forward with koe5's packed linears, the same with PyTorch's own (MKL) linears, and ``torch``
  in bf16 (``precision="bf16"``),

and the fp32 roofline: the machine's measured GEMM rate (the faster of MKL and oneDNN as PyTorch
ships them, same threads, measured between the rows) divided by the
model's FLOPs per token (~42.5 MFLOP for the dense layers of multilingual-e5-small plus 4·n·h per
layer for attention in an input of n tokens, summed input by input: attention grows with the square of
the length, so a mean length would undercount it). Every figure is also given as a share of that
roofline.

    python benchmarks/cpu_speed.py [--queries 512] [--passages 64] [--repeats 3] [--json]

Needs the ONNX exports (``koe5 export default --onnx --int8``; the script makes them if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def gemm_gflops(seconds: float = 1.0) -> dict[str, float]:
    """Sustained fp32 GEMM rate on this machine at the shape of the model's FFN layers, through the
    two libraries PyTorch ships: MKL (``torch.mm``) and oneDNN (a packed ``_linear_pointwise``). The
    roofline takes the faster: MKL runs its AVX2 path on AMD chips that have AVX-512."""
    import torch

    a, w = torch.randn(2048, 384), torch.randn(1536, 384)
    b, c = w.t().contiguous(), torch.empty(2048, 1536)
    packed = torch.ops.mkldnn._reorder_linear_weight(w) if torch.backends.mkldnn.is_available() else None
    kernels = {"mkl": lambda: torch.mm(a, b, out=c)}
    if packed is not None:
        kernels["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
    rates = {}
    for name, fn in kernels.items():
        for _ in range(3):
            fn()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            n += 1
        rates[name] = 2 * 2048 * 384 * 1536 * n / (time.perf_counter() - start) / 1e9
    return rates


def baseline_worker(folder: str, inputs_file: str) -> None:
    """Child process: plain sentence-transformers, no koe5 import. Reads a kind of input per line on
    stdin, encodes it at batch 32 and answers with the seconds it took."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(folder, device="cpu")
    with open(inputs_file, encoding="utf-8") as f:
        inputs = json.load(f)
    for line in sys.stdin:
        start = time.perf_counter()
        st.encode(inputs[line.strip()], batch_size=32, normalize_embeddings=True)
        print(time.perf_counter() - start, flush=True)


class Baseline:
    """The child process of :func:`baseline_worker`; ``run(kind)`` returns its seconds."""

    def __init__(self, folder, inputs: dict[str, list[str]]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8", delete=False) as f:
            json.dump(inputs, f, ensure_ascii=False)
        self.path = f.name
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        self.proc = subprocess.Popen(
            [sys.executable, "-W", "ignore", __file__, "--baseline-worker", str(folder), self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def run(self, kind: str) -> float:
        self.proc.stdin.write(kind + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the baseline process ended (exit status {self.proc.wait()})")
        return float(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        os.unlink(self.path)


def flops_per_token(seq_len: float, hidden=384, layers=12, ffn=1536) -> float:
    dense = layers * (2 * 4 * hidden * hidden + 2 * 2 * hidden * ffn)
    attention = layers * 4 * seq_len * hidden
    return dense + attention


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=512)
    parser.add_argument("--passages", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--baseline-worker", nargs=2, metavar=("FOLDER", "INPUTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        baseline_worker(*args.baseline_worker)
        return

    import koe5

    koe5.cpu.mkl.enable()  # done by the import already: koe5 comes before torch so its MKL shim loads first
    import torch

    from koe5.cpu import attention, onednn
    from koe5.registry import ensure_default_model
    from koe5.runtime.export import export_onnx, speed_samples
    from koe5.runtime.onnx_runner import ONNX_FILES, onnx_dir
    from koe5.tasks import get_task

    folder = ensure_default_model()
    if not all((onnx_dir(folder) / f).is_file() for f in ONNX_FILES.values()):
        export_onnx("default", int8=True)
    queries, passages = speed_samples(args.queries, args.passages)
    encoders = {
        name: koe5.load(str(folder), backend=name, device="cpu") for name in ("torch", "onnx", "onnx-int8")
    }
    encoders["auto"] = koe5.load(str(folder), backend="auto", device="cpu")
    sdpa = encoders["torch, PyTorch attention"] = koe5.load(str(folder), backend="torch", device="cpu")
    for runner in {id(r): r for r in sdpa.runners.values()}.values():
        if runner.unpadded is not None:
            runner.unpadded.attention_kernel = False
    padded = encoders["torch, padded"] = koe5.load(str(folder), backend="torch", device="cpu")
    for runner in {id(r): r for r in padded.runners.values()}.values():  # packed linears, padded forward
        runner.unpadded, runner.forward_model = None, onednn.packed_copy(runner.model)
    encoders["torch bf16"] = koe5.load(str(folder), backend="torch", device="cpu", precision="bf16")
    os.environ[onednn.ENV] = "0"  # the same torch path on PyTorch's own (MKL) kernels, for comparison
    encoders["torch, MKL linears"] = koe5.load(str(folder), backend="torch", device="cpu")
    del os.environ[onednn.ENV]
    st = encoders["torch"].model
    belebele = get_task("BelebeleRetrieval").load()
    short = [belebele.doc_text(d) for d in list(belebele.corpus)[: args.passages * 4]]
    inputs = {"query": queries, "short passage": short, "passage": passages}
    encode_as = {"query": "query", "short passage": "passage", "passage": "passage"}
    tokens = {
        kind: [
            min(len(t), 512) for t in encoders["torch"].tokenize([f"{encode_as[kind]}: " + x for x in texts])
        ]
        for kind, texts in inputs.items()
    }

    prefixed = {kind: [f"{encode_as[kind]}: " + t for t in texts] for kind, texts in inputs.items()}
    child = Baseline(folder, prefixed)

    def in_process(kind):
        return lambda: st.encode(prefixed[kind], batch_size=32, normalize_embeddings=True)

    # a row's function returns its seconds when it timed itself elsewhere (the child process)
    def from_child(kind):
        return lambda: child.run(kind)

    runs = {("plain ST, batch 32", k): from_child(k) for k in inputs}
    runs.update({("plain ST, koe5's MKL", k): in_process(k) for k in inputs})
    for name, enc in encoders.items():
        for kind in inputs:
            runs[(f"koe5 {name}", kind)] = (lambda e, k: lambda: e.encode(inputs[k], encode_as[k]))(enc, kind)
    for fn in runs.values():  # warm-up
        fn()
    times: dict = {key: [] for key in runs}
    gflops = []
    for _ in range(args.repeats):  # interleaved, so drift in machine speed hits every row alike
        gflops.append(gemm_gflops(1.0))
        for key, fn in runs.items():
            start = time.perf_counter()
            seconds = fn()
            times[key].append(seconds if isinstance(seconds, float) else time.perf_counter() - start)
    child.close()
    libs = {lib: float(np.median([g[lib] for g in gflops])) for lib in gflops[0]}
    rate = max(libs.values()) * 1e9
    report = {
        "threads": torch.get_num_threads(),
        "mkl_shim": koe5.cpu.mkl.status,
        "attention_kernel": attention.status,
        "attention_code_path": attention.variant,
        "pytorch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gemm_gflops": round(rate / 1e9, 1),
        "gemm_gflops_by_library": {k: round(v, 1) for k, v in libs.items()},
        "rows": [],
    }
    for kind in inputs:
        n_tok = sum(tokens[kind])
        mean_len = float(np.mean(tokens[kind]))
        total_flops = sum(n * flops_per_token(n) for n in tokens[kind])
        roof = rate * n_tok / total_flops
        base = min(times[("plain ST, batch 32", kind)])
        report[f"{kind}_mean_tokens"] = round(mean_len, 1)
        report[f"{kind}_roofline_tokens_per_s"] = round(roof, 1)
        for (name, k), ts in times.items():
            if k != kind:
                continue
            best = min(ts)
            report["rows"].append(
                {
                    "input": kind,
                    "runner": name,
                    "tokens_per_s": round(n_tok / best, 1),
                    "sentences_per_s": round(len(inputs[kind]) / best, 1),
                    "vs_baseline": round(base / best, 3),
                    "share_of_roofline": round(n_tok / best / roof, 3),
                }
            )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    by_lib = ", ".join(f"{k} {v}" for k, v in report["gemm_gflops_by_library"].items())
    print(
        f"torch threads {report['threads']}, GEMM {report['gemm_gflops']} GFLOP/s ({by_lib}), "
        f"koe5's MKL shim {report['mkl_shim']}, attention kernel {report['attention_kernel']} "
        f"({report['attention_code_path']}), PyTorch's CPU code {report['pytorch_cpu_capability']}"
    )
    for kind in inputs:
        print(
            f"\n{kind}: {len(inputs[kind])} texts, mean {report[f'{kind}_mean_tokens']} tokens, "
            f"roofline {report[f'{kind}_roofline_tokens_per_s']:.0f} tok/s"
        )
        print(f"  {'':30} {'tok/s':>8} {'sent/s':>8} {'× base':>7} {'roofline':>9}")
        for r in report["rows"]:
            if r["input"] == kind:
                print(
                    f"  {r['runner']:30} {r['tokens_per_s']:8.0f} {r['sentences_per_s']:8.1f} "
                    f"{r['vs_baseline']:7.2f} {r['share_of_roofline']:8.0%}"
                )


if __name__ == "__main__":
    main()
