"""Render the measured tables of docs/performance.md and README.md from ``benchmarks/results/*.json``.

No figure on those pages is typed by hand: each table sits between two markers, and this script
rewrites what lies between them from the JSON, so a page cannot drift from its measurement (a test
checks that the committed pages are what the current JSON renders)::

    <!-- results: cpu_speed.json -->      a result file, a part of one (gpu_speed.json#small,
    ...written by this script...          serve_load.json#load: files transcribed from an earlier
    <!-- /results -->                     README), or headline-speed / headline-quality

Each table names the machine it was measured on and shows ratios beside the absolute figures:
machines of one CPU kind differ ~2.5× in fp32 GEMM rate, so absolute figures travel badly.

    python benchmarks/render_docs.py            # rewrite the tables in place
    python benchmarks/render_docs.py --check    # exit 1 if a page is not what the JSON renders
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = ("README.md", "docs/performance.md", "docs/postgres.md", "docs/search.md", "docs/rerank.md",
         "docs/distributed.md")  # fmt: skip
BLOCK = re.compile(r"(<!-- results: (\S+) -->\n)(.*?)(<!-- /results -->)", re.DOTALL)
INPUTS = (("query", "queries"), ("short passage", "short passages"), ("passage", "long passages"))
TASKS = ("AutoRAGRetrieval", "BelebeleRetrieval", "PublicHealthQA", "SQuADKorV1Retrieval")
TASK_HEADS = ["AutoRAG", "Belebele", "PublicHealthQA", "SQuAD-Kor", "average"]


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def cpu_of(name: str) -> str:
    """The CPU a result file was measured on, where the file itself does not record it."""
    return load("machines.json")["cpu"][name]


def table(header: list[str], rows: list[list[str]], numeric: list[bool] | None = None) -> str:
    numeric = numeric if numeric is not None else [False] + [True] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def about(
    caption: str, machine: str, gemm: str | None, files: str, script: str | None = None, origin: str = ""
) -> str:
    """The line above a table: what it measures, on which machine, from which file and script."""
    gemm_part = f"; fp32 GEMM {gemm}" if gemm else ""
    source = f"`benchmarks/results/{files}`" + (f" (`{script}`)" if script else "")
    return f"{caption}. Machine: {machine}{gemm_part}. From {source}{origin}.\n\n"


def bold(cells: list[str]) -> list[str]:
    return [f"**{c}**" if c not in ("", "–") else c for c in cells]


def cell(value: object, spec: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if spec:
        return format(value, spec)
    return f"{value:,}" if isinstance(value, int) else str(value)


def times(x: float) -> str:
    return f"{x:.2g}×" if x < 1 else f"{x:.1f}×"


# Tables transcribed from an earlier README (and from docstrings): {"columns", "rows", "formats",
# "ratios", "highlight"}; a ratio column divides a value by that of the row matching ``base`` (and the
# same ``key``), placed right after the value it divides.


def ratio_cells(spec: dict, names: list[str], rows: list[list]) -> list[str]:
    def matches(base: list, row: list) -> bool:
        key = spec.get("key")
        same_key = key is None or base[names.index(key)] == row[names.index(key)]
        return same_key and all(base[names.index(c)] == v for c, v in spec["base"].items())

    value = names.index(spec["value"])
    bases = [next(b for b in rows if matches(b, row)) for row in rows]
    return [
        format(row[value] / base[value], spec["format"]) + "×" for row, base in zip(rows, bases, strict=True)
    ]


def transcribed(name: str) -> str:
    file, part = name.split("#")
    doc = load(file)
    spec = doc["tables"][part]
    names, rows = spec["columns"], spec["rows"]
    formats = spec.get("formats", [""] * len(names))
    ratios = {r["value"]: r for r in spec.get("ratios", [])}
    columns = []  # (title, cells, numeric)
    for i, title in enumerate(names):
        values = [row[i] for row in rows]
        numeric = any(isinstance(v, (int, float)) for v in values)
        columns.append((title, [cell(v, formats[i]) for v in values], numeric))
        if title in ratios:
            columns.append((ratios[title]["title"], ratio_cells(ratios[title], names, rows), True))
    body = [list(cells) for cells in zip(*(c[1] for c in columns), strict=True)]
    for i in spec.get("highlight", []):
        body[i] = bold(body[i])
    machine, gemm = spec.get("machine", doc.get("machine", "")), spec.get("gemm", doc.get("gemm"))
    line = about(
        spec["caption"], machine, gemm, file, doc.get("script"), ", transcribed from " + doc["source"]
    )
    return line + table([c[0] for c in columns], body, [c[2] for c in columns])


# Measured files, each in the shape its benchmark script writes.

CPU_RUNNERS = {
    "plain ST, batch 32": "plain sentence-transformers, batch 32 (the baseline)",
    "plain ST, koe5's MKL": "the same in a process that imported koe5 (MKL shim)",
    "koe5 torch": "koe5 torch (unpadded, oneDNN linears, koe5's attention)",
    "koe5 torch, PyTorch attention": "the same with PyTorch's attention",
    "koe5 torch, padded": "koe5 torch on transformers' padded forward",
    "koe5 torch, MKL linears": "the same with PyTorch's MKL linears",
    "koe5 torch bf16": 'koe5 torch, `precision="bf16"`',
    "koe5 onnx": "koe5 onnx (fp32)",
    "koe5 onnx-int8": "koe5 onnx-int8",
    "koe5 auto": "koe5 auto (what the gate chose per kind of input)",
}
NOT_FP32 = {"koe5 torch bf16": "(bf16)", "koe5 onnx-int8": "(int8)", "koe5 auto": "(int8 / bf16)"}
NO_GEMM = "not recorded with this run"


def by_runner(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["input"], r["runner"]): r for r in rows}


def cpu_machine(name: str, doc: dict) -> tuple[str, str]:
    found = [f"{doc['threads']} threads", f"MKL shim {doc['mkl_shim']}"]
    if "attention_code_path" in doc:
        found.append(f"attention kernel {doc['attention_kernel']} ({doc['attention_code_path']})")
    if "pytorch_cpu_capability" in doc:
        found.append(f"PyTorch CPU capability {doc['pytorch_cpu_capability']}")
    libraries = ", ".join(f"{lib} {rate:.0f}" for lib, rate in doc["gemm_gflops_by_library"].items())
    return f"{cpu_of(name)}; " + ", ".join(found), f"{doc['gemm_gflops']:.0f} GFLOP/s ({libraries}), this run"


def cpu_cells(doc: dict, runner: str) -> list[str]:
    found = [by_runner(doc["rows"])[(key, runner)] for key, _ in INPUTS]
    return [f"{r['tokens_per_s']:,.0f} ({r['vs_baseline']:.2f}×)" for r in found]


def cpu_speed(name: str) -> str:
    doc = load(name)
    rows = by_runner(doc["rows"])
    header = ["runner"] + [f"{label} ({doc[f'{key}_mean_tokens']:.0f} tokens)" for key, label in INPUTS]
    body = []
    for runner, label in CPU_RUNNERS.items():
        shares = " / ".join(f"{rows[(key, runner)]['share_of_roofline']:.0%}" for key, _ in INPUTS)
        cells = [label, *cpu_cells(doc, runner), NOT_FP32.get(runner, shares)]
        body.append(bold(cells) if runner == "koe5 torch" else cells)
    roofline = [f"{doc[f'{key}_roofline_tokens_per_s']:,.0f}" for key, _ in INPUTS]
    body.append(["the fp32 roofline: GEMM rate ÷ the model's FLOPs, input by input", *roofline, "100%"])
    caption = "Tokens/s and × the baseline, one runner at a time"
    header.append("share of the fp32 roofline (q / s / l)")
    return about(caption, *cpu_machine(name, doc), name, "benchmarks/cpu_speed.py") + table(header, body)


ATTENTION_MODELS = {(12, 32): "E5-small", (12, 64): "E5-base", (16, 64): "E5-large"}


def attention_kernel(name: str) -> str:
    doc = load(name)
    body = []
    for r in doc["rows"]:
        model = ATTENTION_MODELS.get((r["heads"], r["head_dim"]), "")
        shape = f"{r['inputs']} × {r['length']}, {r['heads']} × {r['head_dim']} ({model})"
        torch_ns, koe5_ns = r["pytorch_ns_per_score"], r["koe5_ns_per_score"]
        body.append([shape, f"{torch_ns:.3f}", f"{koe5_ns:.3f}", f"{torch_ns / koe5_ns:.2f}×"])
    machine = f"{cpu_of(name)}; {doc['threads']} threads, MKL shim {doc['mkl_shim']}"
    if "code_path" in doc:
        machine += (
            f", kernel code path {doc['code_path']}, PyTorch CPU capability {doc['pytorch_cpu_capability']}"
        )
    caption = "One attention layer, interleaved, best of 5; a score is one query-key pair of one head"
    header = ["inputs × length, heads × head size", "PyTorch ns/score", "koe5 ns/score", "koe5 × PyTorch"]
    return about(caption, machine, NO_GEMM, name, "benchmarks/attention_kernel.py") + table(header, body)


MKL_ROWS = (  # key, label, unit, True where higher is better
    ("sgemm_gflops", "sgemm at the FFN's shape (2048 × 384 × 1536)", "GFLOP/s", True),
    ("attention_ns_per_score", "PyTorch's attention, 12 heads × 32, 325 tokens", "ns a score", False),
    ("plain_st_encode_s", "plain sentence-transformers, 64 AutoRAG pages", "s", False),
    ("fp32_train_step_s", "fp32 training, forward + backward of 192 texts", "s", False),
)


def mkl_shim(name: str) -> str:
    doc = load(name)
    on, off = doc["median"]["on"], doc["median"]["off"]
    body = []
    for key, label, unit, higher in MKL_ROWS:
        gain = on[key] / off[key] if higher else off[key] / on[key]
        body.append([label, f"{off[key]:.4g} {unit}", f"{on[key]:.4g} {unit}", f"{gain:.2f}×"])
    gemm = f"{off['sgemm_gflops']:.0f} GFLOP/s without the shim, {on['sgemm_gflops']:.0f} with it (MKL)"
    caption = f"Each side in fresh processes, alternated, medians of {doc['rounds']} rounds, 2 threads"
    header = ["measurement", "without the shim", "with the shim", "faster by"]
    return about(caption, cpu_of(name), gemm, name, "benchmarks/mkl_shim.py") + table(header, body)


def tokenize_long(name: str) -> str:
    doc = load(name)
    body = [["whole texts", f"{doc['whole_s']:.4f}", "1.00×", "–"]]
    for chars, r in sorted(doc["heads"].items(), key=lambda item: -int(item[0])):
        label = f"heads of {chars} characters a token" + (
            " (default)" if int(chars) == doc["default_chars_per_token"] else ""
        )
        body.append([label, f"{r['seconds']:.4f}", f"{r['speedup']:.2f}×", "yes" if r["exact"] else "no"])
    caption = (
        f"{doc['documents']} documents of {doc['mean_chars']:,} characters ({doc['mean_tokens_whole']:,} "
        "tokens) each: whole texts tokenised against their heads"
    )
    header = ["tokenised", "seconds", "× whole", "identical model inputs"]
    return about(caption, cpu_of(name), NO_GEMM, name, "benchmarks/tokenize_long.py") + table(header, body)


GPU_RUNNERS = {
    "plain ST fp32, batch 32": "plain ST fp32, batch 32",
    "plain ST fp16, batch 32": "plain ST fp16, batch 32",
    "koe5 torch fp32": "koe5 fp32",
    "koe5 torch auto": "koe5 auto (fp16)",
    "koe5 torch bf16": "koe5 bf16",
}
GPU_MODELS = {"small": "e5-small (bundled)", "large": "e5-large shape, random weights"}


def gpu_about(doc: dict, caption: str, command: str | None) -> str:
    cores = f", {doc['cpus']} CPU cores" if "cpus" in doc else ""
    machine = f"{doc['device']}{cores}; PyTorch {doc['torch']}"
    gemm = "not recorded (GPU; TF32 matmul " + ("on" if doc["tf32_matmul"] else "off") + ")"
    return about(caption, machine, gemm, "gpu_speed.json", command)


def gpu_speed(name: str) -> str:
    doc = load("gpu_speed.json")
    model = GPU_MODELS[name.split("#")[1]]
    rows = by_runner(doc[model]["rows"])
    header = ["runner"] + [
        f"{label} ({rows[(key, 'koe5 torch auto')]['mean_tokens']:.0f} tokens)" for key, label in INPUTS
    ]
    header += ["peak GPU memory", "tokenising, share of the time (q / s / l)"]
    body = []
    for runner, label in GPU_RUNNERS.items():
        found = [rows[(key, runner)] for key, _ in INPUTS]
        cells = [f"{model.split(' ')[0]}: {label}"]
        for r in found:
            plain = runner.startswith("plain")
            ratios = "" if plain else f" ({times(r['vs_st_fp32'])} / {times(r['vs_st_fp16'])})"
            cells.append(f"{r['sentences_per_s']:,.0f}{ratios}")
        cells.append(f"{max(r['peak_gpu_mib'] for r in found):,.0f} MiB")
        shares = [r["tokenizer_share"] for r in found]
        cells.append("–" if None in shares else " / ".join(f"{s:.0%}" for s in shares))
        body.append(bold(cells) if runner == "koe5 torch auto" else cells)
    caption = f"{model}: sentences/s and × plain sentence-transformers fp32 / fp16"
    return gpu_about(doc, caption, doc["command"]) + table(header, body)


def gpu_quality(name: str) -> str:
    quality = load("gpu_speed.json")["quality_e5_small"]
    tasks, fp32 = ("PublicHealthQA", "BelebeleRetrieval", "AutoRAGRetrieval"), quality["fp32"]["gate_average"]
    body = []
    for precision in ("fp32", "fp16", "bf16"):
        q = quality[precision]
        scores = [f"{q['ndcg_at_10'][t]:.5f}" for t in tasks]
        gate = [
            f"{q['gate_average']:.5f}",
            f"{q['gate_average'] - fp32:+.4f}",
            f"{q['min_cosine_vs_fp32']:.5f}",
        ]
        body.append([precision, *scores, *gate])
    header = ["precision", *tasks, "gate average", "vs fp32", "lowest cosine to fp32's vectors"]
    caption = f"The bundled model's NDCG@10 by precision on the GPU, {quality['note']}"
    return gpu_about(load("gpu_speed.json"), caption, None) + table(header, body)


def gpu_before(name: str) -> str:
    doc = load("gpu_speed.json")
    before = doc["before_pipelining"]
    old, new = by_runner(before[GPU_MODELS["small"]]["rows"]), by_runner(doc[GPU_MODELS["small"]]["rows"])
    body = [
        ["the first run: all inputs tokenised first, a synchronisation after every batch"]
        + [times(old[(key, "koe5 torch fp16")]["vs_st_fp32"]) for key, _ in INPUTS],
        ["this run: tokenising pipelined"]
        + [times(new[(key, "koe5 torch auto")]["vs_st_fp32"]) for key, _ in INPUTS],
    ]
    header = ["koe5 fp16 on e5-small, × plain ST fp32"] + [label for _, label in INPUTS]
    caption = "What the pipeline gives: the first run was made on another machine of the same kind"
    return gpu_about(before, caption, doc["command"]) + table(header, body)


def average(scores: dict[str, float]) -> float:
    return sum(scores[t] for t in TASKS) / len(TASKS)


FINETUNE_FILES = "finetune_korean.json` and `finetune_korean_diagnostics.json"
FINETUNE = "benchmarks/finetune_korean.py"


def finetune(name: str) -> str:
    run, diag = load("finetune_korean.json"), load("finetune_korean_diagnostics.json")
    fp32 = diag["fp32_training"]
    rows = [
        ("default model (before)", run["before"]),
        (f"koe5-small, α = {run['alpha']} (the dev split's choice), {run['precision']}", run["after"]),
        (f"the same recipe trained in fp32 (`--precision fp32`), α = {fp32['alpha']}", fp32["after"]),
        ("the fp32 run, α = 1 (not chosen)", diag["scale_100"]["bundled"]["1.0"]),
        ("loss scale 20 (ST's default), α = 1", diag["scale_20"]["bundled"]["1.0"]),
        ("loss scale 20, α = 0.5", diag["scale_20"]["bundled"]["0.5"]),
    ]
    body = []
    for i, (label, scores) in enumerate(rows):
        gain = (average(scores) - average(run["before"])) * 100
        cells = [label, *(f"{scores[t]:.5f}" for t in TASKS), f"{average(scores):.5f}", f"{gain:+.2f}"]
        body.append(bold(cells) if i == 1 else cells)
    speedup = fp32["train_minutes"] / run["train_minutes"]
    caption = (
        f"NDCG@10 on the bundled suite (seed {run['seed']}, {run['triplets']:,} triplets, {run['steps']} "
        f"steps; building, mining and training took {run['train_minutes']} minutes in {run['precision']} "
        f"({run['minutes']} in all), {fp32['train_minutes']} in fp32: {speedup:.2f}×)"
    )
    header = ["model", *TASK_HEADS, "points vs before"]
    return about(caption, cpu_of(name), NO_GEMM, FINETUNE_FILES, FINETUNE) + table(header, body)


def finetune_dev(name: str) -> str:
    run, diag = load("finetune_korean.json"), load("finetune_korean_diagnostics.json")
    rows = [
        (f"the koe5-small run ({run['precision']}), loss scale 100, dev split as now", run["dev_ndcg_at_10"])
    ]
    splits = {"dev_new": "as now", "dev_old": "first version, training positives as distractors"}
    for scale in ("scale_100", "scale_20"):
        rows += [
            (f"loss {scale[6:]}, dev split {what}", diag[scale][split]) for split, what in splits.items()
        ]
    alphas = list(run["dev_ndcg_at_10"])
    body = [[label, *(f"{scores[a]:.5f}" for a in alphas)] for label, scores in rows]
    header = ["run, dev split"] + ["base" if a == "base" else f"α = {a}" for a in alphas]
    caption = "Dev-split NDCG@10 by α, the tuned share of the weights (how α and the loss scale were settled)"
    return about(caption, cpu_of("finetune_korean.json"), NO_GEMM, FINETUNE_FILES, FINETUNE) + table(
        header, body
    )


def headline_speed(name: str) -> str:
    doc = load("cpu_speed.json")
    body = []
    for runner in ("plain ST, batch 32", "koe5 torch", "koe5 auto"):
        cells = [CPU_RUNNERS[runner], *cpu_cells(doc, runner)]
        body.append(bold(cells) if runner == "koe5 torch" else cells)
    caption = "Encoding speed on a CPU: tokens/s and × plain sentence-transformers"
    machine, gemm = cpu_machine("cpu_speed.json", doc)
    header = ["runner"] + [label for _, label in INPUTS]
    return about(caption, machine, gemm, "cpu_speed.json", "benchmarks/cpu_speed.py") + table(header, body)


def headline_quality(name: str) -> str:
    dense = load("koe5_bench.json")["tables"]["default_model_per_task"]["rows"][0][1:5]
    fusion = load("hybrid_fusion.json")
    bundled = fusion["bundled"]
    tuned = load("finetune_korean.json")
    rows = [
        ("dense: the default model (multilingual-e5-small)", dense),
        ("BM25 over Kiwi morphemes", [bundled[t]["bm25"] for t in TASKS]),
        (
            f"hybrid (the default of `koe5 search`, {fusion['default']})",
            [bundled[t][fusion["default"]] for t in TASKS],
        ),
        (
            f"dense, fine-tuned (`--recipe koe5-small`, α = {tuned['alpha']})",
            [tuned["after"][t] for t in TASKS],
        ),
    ]
    body = [
        [label, *(f"{s:.5f}" for s in scores), f"{sum(scores) / len(scores):.5f}"] for label, scores in rows
    ]
    files = "koe5_bench.json`, `hybrid_fusion.json`, `finetune_korean.json"
    caption = "NDCG@10 on the bundled Korean suite"
    machine = "any (retrieval quality does not depend on the machine)"
    return about(caption, machine, None, files) + table(["ranking", *TASK_HEADS], body)


FUSION_ROWS = {
    "dense": "dense alone",
    "bm25": "BM25 alone",
    "minmax-0.4": "min-max, dense weight 0.4 (the first default)",
    "dbsf-0.4": "distribution-based (dbsf), dense weight 0.4",
    "minmax-adaptive-0.2-0.8": "min-max, 0.2-0.8 by BM25's coverage (an earlier default)",
    "minmax-adaptive-0.1-0.7-confidence-0.5-0.5-1": (
        "min-max, 0.1-0.7 by peaks and coverage (the default before)"
    ),
}


def hybrid_fusion(name: str) -> str:
    """Fusion settings on the dev tasks (where the default was chosen) or on the bundled suite."""
    file, part = name.split("#")
    r = load(file)
    scores = r[part]
    tasks = list(scores)
    labels = [*FUSION_ROWS, r["default"]]
    body = []
    for label in labels:
        summary = r["summary"].get(label, {}).get(part)
        title = FUSION_ROWS.get(label, f"{label} (the default: chosen on the dev tasks)")
        cells = [f"{scores[t][label]:.5f}" for t in tasks]
        mean = sum(scores[t][label] for t in tasks) / len(tasks)
        worst = f"{summary['worst loss to the better part']:+.5f}" if summary else ""
        row = [title, *cells, f"{mean:.5f}", worst]
        body.append(bold(row) if label == r["default"] else row)
    what = "dev tasks from the training material" if part == "dev" else "the bundled suite (the test)"
    caption = (
        f"NDCG@10 on {what}; documents ranked whole, {r['depth']} candidates a side; "
        f"last column: the fusion minus the better of dense and BM25, worst task"
    )
    out = about(caption, "any (retrieval quality does not depend on the machine)", None, file,
                "benchmarks/hybrid_fusion.py")  # fmt: skip
    heads = [t.replace("Retrieval", "") for t in tasks]
    return out + table(["ranking", *heads, "average", "worst loss"], body)


def _interval(row: dict) -> list[str]:
    """The cells of a difference with its 95% interval (``benchmarks/hybrid_fusion.py``'s ``interval``)."""
    return [f"{row['difference']:+.4f}", f"{row['low']:+.4f} to {row['high']:+.4f}"]


def fusion_intervals(name: str) -> str:
    """The default fusion minus the better part per task, with its 95% interval over the queries."""
    file = name.split("#")[0]
    r = load(file)
    body = []
    for part, title in (("dev", "dev"), ("bundled", "test")):
        for task, row in r["intervals"][part].items():
            verdict = "holds" if row["low"] >= -0.005 else "fails" if row["high"] < -0.005 else "cannot tell"
            task_name = f"{task.replace('Retrieval', '')} ({title})"
            body.append([task_name, f"{row['queries']:,}", row["better part"], *_interval(row), verdict])
    caption = (
        f"{r['default']} minus the better of dense and BM25, NDCG@10 per task, with the 95% interval of a "
        "paired bootstrap over the task's queries; last column: the aim (never more than 0.005 below) holds "
        "when the whole interval is above -0.005, fails when it is all below, and the task cannot tell "
        "otherwise"
    )
    out = about(caption, "any (retrieval quality does not depend on the machine)", None, file,
                "benchmarks/hybrid_fusion.py")  # fmt: skip
    heads = ["task", "queries", "better part", "difference", "95% interval", "aim"]
    return out + table(heads, body, [False, True, False, True, True, False])


def postgres_store(name: str) -> str:
    """The PostgreSQL store against the folder index: build, latency, concurrency, two servers."""
    r = load(name)
    m = r["machine"]
    out = about(
        f"{r['documents']:,} documents ({r['chunks']:,} chunks), folder index and PostgreSQL in one run",
        f"{m['cpu']}, {m['cores']} cores; PostgreSQL {m['postgres']}",
        f"{m['fp32 GEMM (GFLOP/s)']} GFLOP/s",
        name,
        "benchmarks/postgres_store.py",
    )
    build = r["build (s)"]
    rows = [
        [
            "build (s)",
            f"{build['folder']:.1f}",
            f"{build['postgres']:.1f}",
            f"{build['postgres'] / build['folder']:.2f}",
        ]
    ]
    for row in r["latency"]:
        for q in ("p50", "p99"):
            a, b = row[f"folder {q} (ms)"], row[f"postgres {q} (ms)"]
            rows.append([f"{row['mode']} search {q} (ms)", f"{a:.2f}", f"{b:.2f}", f"{b / a:.2f}"])
    out += table(["", "folder", "PostgreSQL", "PostgreSQL × folder"], rows)
    c, s = r["concurrent"], r["two servers"]
    out += (
        f"\nHybrid top 10 identical in both stores for {r['hybrid top-10 identical (of 50 queries)']} of 50 "
        f"queries (query vectors given: the stores' candidates and fusion, not the model).\n\n"
        f"{c['searchers']} concurrent searchers while a writer added {c['batches written']} batches: "
        f"{c['searches']:,} searches ({c['searches/s']}/s), {c['errors']} errors, "
        f"{c['half-applied views']} searches that saw half a batch.\n\n"
        f"Two `koe5 serve --index URL` processes on one database, {s['clients']} client threads, "
        f"{s['requests']} hybrid searches: statuses {s['statuses']}, {s['requests/s']} requests/s, "
        f"p50 {s['p50 (ms)']} ms, p99 {s['p99 (ms)']} ms (the query embedded by each server).\n"
    )
    return out


def postgres_equality(name: str) -> str:
    """The PostgreSQL store against the folder index on the bundled suite, query by query."""
    r = load(name)
    version, vector = r["postgres"]
    out = about(
        f"Every query of the bundled suite in both stores (top 10, one query vector); {r['model']} model",
        f"any; PostgreSQL {version} + pgvector {vector}",
        None,
        name,
        "benchmarks/postgres_equality.py",
    )
    body = []
    for task, modes in r["tasks"].items():
        for mode in ("dense", "bm25", "hybrid"):
            m = modes[mode]
            body.append(
                [
                    task.replace("Retrieval", ""),
                    f"{modes['chunks']:,}",
                    mode,
                    f"{m['queries']:,}",
                    str(m["top-10 differs"]),
                    f"{m['max score difference']:.1e}",
                    f"{m['ndcg@10 folder']:.5f}",
                    f"{m['ndcg@10 postgres']:.5f}",
                ]
            )
    head = ["task", "chunks", "mode", "queries", "top 10 differs", "max score difference",
            "NDCG@10 folder", "NDCG@10 PostgreSQL"]  # fmt: skip
    return out + table(head, body)


def rerank_training(name: str) -> str:
    """koe5 train-reranker's recipe with each loss, then with each kind of training data: time, memory,
    dev NDCG@10."""
    r = load(name)
    m = r["machine"]
    out = about(
        f"`koe5 train-reranker` (recipe {r['recipe']}, with its data of that time: BM25 negatives, one "
        "query a group) with each loss; dev NDCG@10 of reranking each dev query's BM25 top 20 (BM25's own "
        "order: the first row)",
        f"{m['cpu']}, {m['cores']} cores",
        m.get("fp32 GEMM (GFLOP/s)"),
        name,
        "koe5 train-reranker",
    )
    first = next(iter(r["runs"].values()))
    body = [["BM25's order (no reranker)", "", "", "", "", f"{first['dev ndcg@10 of BM25 order']:.4f}"]]
    for loss, run in r["runs"].items():
        row = [
            f"--loss {loss}" + (" (chosen)" if loss == r["chosen"] else ""),
            f"{run['training queries']:,}",
            str(run["steps"]),
            f"{run['wall (min)']:.1f}",
            f"{run['peak memory (GB)']:.1f}",
            f"{run['dev ndcg@10']:.4f}",
        ]
        body.append(bold(row) if loss == r["chosen"] else row)
    head = ["run", "training queries", "steps", "wall time (min)", "peak memory (GB)", "dev NDCG@10"]
    out += table(head, body)
    for run in r.get("reruns", []):
        m = run["machine"]
        where = f"{m['cpu']}, {m['cores']} cores, fp32 GEMM {m['fp32 GEMM (GFLOP/s)']}; {m['note']}"
        out += (
            f"\nRerun on {run['date']} ({where}): --loss {run['loss']}, {run['steps']} steps in "
            f"{run['wall (min)']:.1f} min, peak {run['peak memory (GB)']:.1f} GB, dev NDCG@10 "
            f"{run['dev ndcg@10']:.4f} ({run['note']}).\n"
        )
    head = head[:-1]
    what = {"data": "The training data, each kind", "learning rate": "The learning rate, each value"}
    for key, title in what.items():
        if key in r:
            out += _rerank_runs(r[key], title, head)
    return out


def _rerank_runs(part: dict, title: str, head: list[str]) -> str:
    """A rerank_training part that compared runs of one recipe changed in one thing ("data", "learning
    rate"): time, memory, the run's own evaluation, and rerank_weight.py's dev figures of each."""
    m = part["machine"]
    out = (
        f"\n{title} measured on {part['date']} ({m['cpu']}, {m['cores']} cores, "
        f"fp32 GEMM {m['fp32 GEMM (GFLOP/s)']}; {m['note']}); chosen by {part['rule']}. {part['note']}\n\n"
    )
    own = part.get("own evaluation", "dev NDCG@10 (BM25 top 20)")
    body = []
    for run in part["runs"]:
        row = [
            run["run"] + (" (chosen)" if run["run"] == part["chosen"] else ""),
            f"{run['training queries']:,}",
            str(run["steps"]),
            f"{run['wall (min)']:.1f}",
            f"{run['peak memory (GB)']:.1f}",
            f"{run['dev ndcg@10']:.4f}",
            f"{run['dev ndcg@10, hybrid top 20, reranker alone']:.4f}",
            f"{run['dev ndcg@10, hybrid top 20, blended']:.4f} (w {run['chosen weight']:.1f})",
            f"{run['worst regret at the chosen weight']:.4f}",
        ]
        body.append(bold(row) if run["run"] == part["chosen"] else row)
    return out + table([*head, own, "hybrid top 20: reranker alone", "blended", "worst regret"], body)


def rerank_speed(name: str) -> str:
    """Reranking 50 candidates of one query: koe5 against plain CrossEncoder.predict, and a whole search."""
    r = load(name)
    m = r["machine"]
    out = about(
        "Reranking 50 candidates for one query, ~300 tokens each or of varied lengths where the row says "
        "so: pairs/s, × plain sentence-transformers, share of the fp32 GEMM roofline (— for the int8 and "
        "bf16 runners, whose products have rooflines of their own)",
        f"{m['cpu']}, {m['cores']} cores",
        m["fp32 GEMM (GFLOP/s)"],
        name,
        "benchmarks/rerank_speed.py",
    )
    body = []
    for model, row in r.items():
        if model in ("machine", "search with reranking"):
            continue
        for runner, figures in row.items():
            if isinstance(figures, dict):
                share = figures["roofline share"]
                share = "—" if share is None else f"{share:.0%}"
                body.append([model, f"{row['mean tokens per pair']:.0f}", runner, f"{figures['pairs/s']:.1f}",
                             times(figures["x baseline"]), share])  # fmt: skip
    heads = ["model", "mean tokens a pair", "runner", "pairs/s", "× baseline", "roofline"]
    out += table(heads, body, [False, True, False, True, True, True])
    s = r.get("search with reranking")
    if s:
        rows = [
            [label, f"{v['p50 (ms)']:.0f}", f"{v['p99 (ms)']:.0f}"]
            for label, v in s.items()
            if label != "queries"
        ]
        out += (
            f"\nA whole search, one at a time ({s['queries']} AutoRAG questions, the query embedded too):\n\n"
        )
        out += table(["search", "p50 (ms)", "p99 (ms)"], rows)
    return out


def rerank_gate(name: str) -> str:
    """The reranker backends' quality gate: NDCG@10 and pairs/s per backend, and what auto chose."""
    r = load(name)
    m = r["machine"]
    out = about(
        f"The reranker backends' quality gate on {r['reranker']} (koe5-reranker-small): BM25's top "
        f"{r['depth']} reranked for {r['queries']} seeded queries of each of {' + '.join(r['gate_tasks'])}; "
        f"NDCG@10 (average over the tasks), within {r['gate']} of torch fp32 to pass; pairs/s over the "
        "same pairs",
        f"{m['cpu']}, {m['cores']} cores",
        m["fp32 GEMM (GFLOP/s)"],
        name,
        "benchmarks/rerank_gate.py",
    )
    reference = r["backends"]["torch"]
    body = []
    for backend, e in r["backends"].items():
        chosen = " (auto)" if backend == r["auto"]["pairs"] else ""
        lost = e["ndcg_at_10"] - reference["ndcg_at_10"]
        body.append([f"{backend}{chosen}", f"{e['ndcg_at_10']:.5f}", f"{lost:+.4f}",
                     "passes" if e["passes_gate"] else "fails", f"{e['pairs_per_s']:.1f}",
                     times(e["pairs_per_s"] / reference["pairs_per_s"])])  # fmt: skip
    heads = ["backend", "NDCG@10", "vs torch fp32", "gate", "pairs/s", "× torch fp32"]
    return out + table(heads, body, [False, True, True, False, True, True])


def rerank_quality(name: str) -> str:
    """NDCG@10 of the first stages alone and reranked, per bundled task (and earlier rerankers')."""
    r = load(name)
    rows = r["ndcg_at_10"]
    tasks = list(rows)
    labels = [k for k in next(iter(rows.values())) if k != "queries"]
    out = about(
        f"NDCG@10 with koe5's reranker ({r['reranker']}, {_reads(r)}) on the {r['first stage']} "
        f"first stage; queries per task: {r['queries per task']} (a seeded sample where a task has more; "
        "every row on the same queries)",
        "any (retrieval quality does not depend on the machine)",
        None,
        name,
        "benchmarks/rerank_quality.py",
    )
    out += _ndcg_table(rows, tasks, labels)
    for earlier in r.get("earlier", []):
        other = earlier["ndcg_at_10"]
        out += f"\nThe same queries, {earlier['what']}, on the {earlier['first stage']} first stage:\n\n"
        out += _ndcg_table(other, tasks, [k for k in next(iter(other.values())) if k != "queries"])
    return out


def _ndcg_table(rows: dict, tasks: list[str], labels: list[str]) -> str:
    body = []
    for label in labels:
        scores = [rows[t][label] for t in tasks]
        body.append([label, *(f"{v:.4f}" for v in scores), f"{sum(scores) / len(scores):.4f}"])
    heads = [t.replace("Retrieval", "") + f" ({rows[t]['queries']} q)" for t in tasks]
    return table(["ranking", *heads, "average"], body)


def rerank_weight(name: str) -> str:
    """The reranker's weight in a blended score: NDCG@10 of each weight on the dev tasks (the choice),
    then the bundled suite with the reranker alone and blended."""
    r = load(name)
    dev, chosen = r["dev"], f"{r['chosen weight']:.1f}"
    tasks = list(dev["ndcg_at_10"])
    out = about(
        f"Dev tasks from the training material ({dev['queries per source']} held-out queries a source, seed "
        f"{dev['seed']}): NDCG@10 of {r['first stage']}'s top {dev['depth']} reordered by {r['reranker']} "
        f"({_reads(r)}) blended at each weight (1.0: the reranker alone, 0.0: the first "
        "stage's order); the chosen weight in bold",
        "any (retrieval quality does not depend on the machine)",
        None,
        name,
        "benchmarks/rerank_weight.py",
    )
    body = []
    for w in dev["ndcg_at_10"][tasks[0]]:
        cells = [f"{dev['ndcg_at_10'][t][w]:.4f}" for t in tasks]
        cells += [f"{r['worst regret'][w]:.4f}", f"{r['dev average'][w]:.4f}"]
        body.append([f"**{w}**" if w == chosen else w, *cells])
    out += table(["weight", *tasks, "worst regret", "average"], body) + "\n"
    choice = r.get("window choice")
    if choice:
        rows = [
            [win, f"{e['chosen weight']:.1f}", f"{e['worst regret (joint)']:.4f}", f"{e['dev average']:.4f}",
             f"{e['reranker alone']:.4f}"]
            for win, e in choice["by window"].items()
        ]  # fmt: skip
        out += f"The window and the weight chosen together ({choice['rule']}):\n\n"
        heads = ["window (tokens)", "its best weight", "worst regret", "dev average", "the reranker alone"]
        out += table(heads, rows) + "\n"
    out += _rerank_weight_bundled(r)
    for earlier in r.get("earlier", []):
        w = f"{earlier['chosen weight']:.1f}"
        regret, average, what = earlier["worst regret"], earlier["dev average"], earlier["what"]
        out += (
            f"\n{what[0].upper()}{what[1:]}, on the {earlier['first stage']} first stage: weight {w} chosen "
            f"on the dev tasks (worst regret {regret[w]:.4f}, dev average {average[w]:.4f}; the reranker "
            f"alone {average['1.0']:.4f}); the bundled suite:\n\n"
        )
        out += _rerank_weight_bundled(earlier, intro=False)
    return out


def _reads(r: dict) -> str:
    """How a rerank result's reranker read its candidates: its max length, and its window if any."""
    window = r.get("window")
    return f"{r['max_length']} tokens" + (f", long texts in windows of {window}" if window else "")


def _rerank_weight_bundled(r: dict, intro: bool = True) -> str:
    """The bundled rows (and the choice at each max length) of a rerank_weight result or earlier entry."""
    out = ""
    rows = r["bundled"]
    if intro:
        out += (
            "The bundled suite once, NDCG@10 (the hybrid's top 20, 50 or 100 reordered; the queries "
            "that `rerank_quality.json` scored):\n\n"
        )
    out += _ndcg_table(rows, list(rows), [k for k in next(iter(rows.values())) if k != "queries"])
    intervals = r.get("bundled intervals")
    if intervals:
        w = f"{r['chosen weight']:.1f}"
        body = []
        for task, found in intervals.items():
            for label, row in found.items():
                if label.endswith(f"weight {w}"):
                    body.append([task.replace("Retrieval", ""), label, *_interval(row)])
        out += (
            f"\nAt weight {w}, each reranked row minus the hybrid, with the 95% interval of a paired "
            "bootstrap over the task's queries"
        )
        alone = [row for found in intervals.values() for k, row in found.items() if "weight 1.0" in k]
        if alone and all(row["high"] < 0 for row in alone):
            out += " (the reranker alone, weight 1.0, is below the hybrid beyond doubt at every depth)"
        out += ":\n\n"
        heads = ["task", "reranked", "minus the hybrid", "95% interval"]
        out += table(heads, body, [False, False, True, True])
    lengths = r.get("by max length")
    if lengths:
        body = [[str(n), f"{e['chosen weight']:.1f}", f"{e['worst regret']:.4f}", f"{e['dev average']:.4f}"]
                for n, e in lengths.items()]  # fmt: skip
        out += "\nThe same choice on the dev tasks at each max length (the default's in the registry):\n\n"
        out += table(["max length (tokens)", "chosen weight", "worst regret", "dev average"], body)
    return out


def ray_build(name: str) -> str:
    """An index build in one process against Ray at equal cores, and the 100M-passage GPU estimate."""
    r = load(name)
    m = r["machine"]
    out = about(
        f"{r['model']}, one-chunk documents; each build in one process and on a Ray {m['ray']} cluster "
        "(started by the build, or already running where the row says so)",
        f"{m['cpu']}, {m['cores']} cores",
        f"{m['fp32 GEMM (GFLOP/s)']} GFLOP/s",
        name,
        "benchmarks/ray_build.py",
    )
    heads = ["build", "documents", "seconds", "documents/s", "× one process", "same index as one process"]
    for title, key in (
        ("Whole `koe5 index build` commands (a fresh process: start, model load, build)", "commands"),
        (
            "Library calls, `Index.build(..., engine=)`, with the model already loaded",
            "library calls (model loaded)",
        ),
    ):
        rows = []
        for b in r[key]:
            same = b.get("same index")
            check = ""
            if same is not None:
                top = same["top-10 identical (of 50 queries)"]
                check = f"vectors ±{same['largest vector difference']:.1g}; top 10 identical " + ", ".join(
                    f"{k} {v}/50" for k, v in top.items()
                )
            speed = [
                f"{b['documents']:,}",
                f"{b['seconds']:.1f}",
                f"{b['documents/s']:.1f}",
                f"{b['vs one process']:.3f}",
            ]
            rows.append([b["build"], *speed, check])
        out += f"{title}:\n\n" + table(heads, rows, [False, True, True, True, True, False]) + "\n"
    out += f"Starting and stopping a local cluster alone: {r['local Ray cluster start + stop (s)']} s.\n\n"
    g = r["gpu estimate"]
    out += (
        f"Estimate for {g['passages']:,} passages from the {g['device']} figures of `gpu_speed.json` "
        "(koe5 torch auto, passages of ~388 tokens; tokenisation on the actor's CPUs):\n\n"
    )
    counts = list(g["models"][0]["hours on N actors"])
    rows = [
        [x["model"], f"{x['passages/s per GPU']:,.0f}", f"{x['GPU-hours']:.1f}",
         *(f"{x['hours on N actors'][n]:.2f}" for n in counts)]
        for x in g["models"]
    ]  # fmt: skip
    hours = [f"hours on {n} GPU{'' if n == '1' else 's'}" for n in counts]
    return out + table(["model", "passages/s per GPU", "GPU-hours", *hours], rows)


def compact_quality(name: str) -> str:
    """NDCG@10 on the bundled suite with each ``--vectors`` setting, and each one's loss against float32."""
    file, _, part = name.partition("#")
    r = load(file)
    if part == "dev":
        return compact_dev(file, r["dev"])
    tasks = list(r["tasks"])
    modes = [m for m in ("dense", "hybrid") if m in r["tasks"][tasks[0]]]
    over = ", ".join(f"{kind} {n}" for kind, n in r["oversample"].items())
    out = about(
        f"NDCG@10 of a folder index ({r['model']} model) with each `--vectors` setting, every query of each "
        f"task, top 10; candidates rescored a result: {over}; last column: float32's NDCG@10 minus the "
        "setting's, worst task (the aim: int8 0.002 or less, binary 0.005 or less)",
        "any (retrieval quality does not depend on the machine)",
        None,
        file,
        "benchmarks/compact_quality.py",
    )
    body = []
    for mode in modes:
        for vectors in r["tasks"][tasks[0]][mode]:
            scores = [r["tasks"][t][mode][vectors] for t in tasks]
            losses = [r["tasks"][t]["loss vs float32"][mode].get(vectors) for t in tasks]
            worst = "" if vectors == "float32" else f"{max(losses):+.5f}"
            average = f"{sum(scores) / len(scores):.5f}"
            body.append([mode, vectors, *(f"{s:.5f}" for s in scores), average, worst])
    heads = [t.replace("Retrieval", "") + f" ({r['tasks'][t]['chunks']:,} chunks)" for t in tasks]
    numeric = [False, False] + [True] * (len(heads) + 2)
    return out + table(["search", "vectors", *heads, "average", "loss (worst task)"], body, numeric)


def compact_dev(file: str, dev: dict) -> str:
    """The sweep that chose the oversample defaults: recall@10 against exact float32 search."""
    rows = dev["recall@10 vs float32"]
    multiples = list(next(iter(rows.values())))
    out = about(
        f"Recall@10 against exact float32 search for each oversample (candidates rescored a result), on "
        f"{dev['passages']:,} StrategyQA-ko and Welfare-QA passages and {dev['queries']:,} questions (not "
        "the bundled suite); the last rows are the choices koe5 did not make",
        "any (retrieval quality does not depend on the machine)",
        None,
        file,
        "benchmarks/compact_quality.py --dev",
    )
    body = [[label, *(f"{row[m]:.4f}" for m in multiples)] for label, row in rows.items()]
    return out + table(["candidates", *(f"{m}×" for m in multiples)], body)


def speed(e: dict) -> list[str]:
    return [f"{e['p50 (ms)']:.2f}", f"{e['p99 (ms)']:.2f}", f"{e['recall@10']:.4f}"]


def compact_machine(m: dict) -> tuple[str, str]:
    return f"{m['cpu']}, {m['cores']} cores, {m['memory (GB)']} GB", f"{m['fp32 GEMM (GFLOP/s)']} GFLOP/s"


def compact_scale(name: str) -> str:
    """Compact vectors at 1M and 10M rows: build time, resident memory, latency, recall@10."""
    r = load(name)
    h = r["hnsw"]
    out = about(
        "Clustered synthetic vectors, HNSW over the codes (M="
        f"{h['m']}, efConstruction={h['ef_construction']}, efSearch={h['ef_search']} or the candidates "
        "wanted; int4: an inverted file of the power of two nearest √rows lists), 1,000 queries one at "
        "a time, k=10, the vectors file dropped from the page cache before the search process opens "
        "the index; memory: that process's resident MB after the queries, "
        "anonymous (codes, graph, Python) and file-backed (the vector rows rescoring read)",
        *compact_machine(r["machine"]),
        name,
        "benchmarks/compact_scale.py",
    )
    body = []
    for e in r["entries"].values():
        mem = e["memory after searching"]
        size = f"{e['rows']:,} × {e['dim']}"
        memory = [f"{mem['anonymous (MB)']:,}", f"{mem['file-backed (MB)']:,}"]
        kind = e["vectors"] + (f", {e['lists read']} lists read" if "lists read" in e else "")
        body.append([size, kind, cell(e["oversample"]), f"{e['build (s)']:,.0f}", *memory, *speed(e)])
    head = ["vectors", "kind", "oversample", "build (s)", "anonymous (MB)", "file-backed (MB)", "p50 (ms)",
            "p99 (ms)", "recall@10 vs exact"]  # fmt: skip
    return out + table(head, body, [False, False] + [True] * 7)


def compact_engines(name: str) -> str:
    """The ANN libraries over compact codes, side by side: what chose faiss's HNSW."""
    r = load(name)
    h = r["hnsw"]
    body = []
    for size, engines in r["engines"].items():
        for engine, e in engines.items():
            for multiple in (k for k in e if k.endswith("x")):
                build = [f"{e['bytes a row']:,}", f"{e['build (s)']:.1f}", multiple.replace("x", "×")]
                body.append([size, engine, *build, *speed(e[multiple])])
    out = about(
        f"HNSW over compact codes in each library, clustered synthetic vectors, M={h['m']}, "
        f"efConstruction={h['ef_construction']}, 2 threads; 1,000 queries one at a time, candidates rescored "
        "from the float32 rows as koe5 does",
        *compact_machine(r["machine"]),
        name,
        "benchmarks/compact_scale.py --engines",
    )
    head = ["vectors", "index", "bytes a row", "build (s)", "oversample", "p50 (ms)", "p99 (ms)", "recall@10"]
    return out + table(head, body, [False, False] + [True] * 6)


def index_quality(name: str) -> str:
    """A real (chunked) index per bundled task against whole documents, each mode."""
    r = load(name)
    scores = r["ndcg_at_10"]
    tasks = list(next(iter(scores.values())))
    body = []
    for label, row in scores.items():
        cells = [f"{row[t]:.5f}" for t in tasks] + [f"{sum(row.values()) / len(row):.5f}"]
        body.append(bold([label, *cells]) if label == "index: hybrid" else [label, *cells])
    caption = (
        f"NDCG@10 on {r.get('tasks', 'the bundled suite')}: a real index per task, documents cut into chunks "
        f"of {r['chunk tokens']} tokens "
        f"(overlap {r['overlap']}), each scored by its best chunk, against whole documents; hybrid: "
        f"the default fusion, {r['fusion']}"
    )
    out = about(caption, "any (retrieval quality does not depend on the machine)", None, name,
                "benchmarks/index_quality.py")  # fmt: skip
    heads = [t.replace("Retrieval", "").replace("V1", "") for t in tasks]
    return out + table(["retriever", *heads, "average"], body)


RENDERERS: dict[str, Callable[[str], str]] = {
    "cpu_speed.json": cpu_speed,
    "cpu_speed_previous_run.json": cpu_speed,
    "cpu_speed_avx2_emulated.json": cpu_speed,
    "attention_kernel.json": attention_kernel,
    "attention_kernel_avx2.json": attention_kernel,
    "mkl_shim.json": mkl_shim,
    "tokenize_long.json": tokenize_long,
    "gpu_speed.json#small": gpu_speed,
    "gpu_speed.json#large": gpu_speed,
    "gpu_speed.json#quality": gpu_quality,
    "gpu_speed.json#before": gpu_before,
    "finetune_korean.json": finetune,
    "postgres_store.json": postgres_store,
    "postgres_equality.json": postgres_equality,
    "ray_build.json": ray_build,
    "rerank_training.json": rerank_training,
    "rerank_speed.json": rerank_speed,
    "rerank_gate.json": rerank_gate,
    "rerank_quality.json": rerank_quality,
    "rerank_weight.json": rerank_weight,
    "compact_quality.json": compact_quality,
    "compact_quality.json#dev": compact_quality,
    "compact_scale.json": compact_scale,
    "compact_engines.json": compact_engines,
    "index_quality.json": index_quality,
    "index_quality_dev.json": index_quality,
    "hybrid_fusion.json#dev": hybrid_fusion,
    "hybrid_fusion.json#bundled": hybrid_fusion,
    "hybrid_fusion.json#intervals": fusion_intervals,
    "finetune_korean.json#dev": finetune_dev,
    "headline-speed": headline_speed,
    "headline-quality": headline_quality,
}


def render_block(name: str) -> str:
    """The Markdown between the markers named ``name``."""
    if name in RENDERERS:
        return RENDERERS[name](name)
    if "#" in name:
        return transcribed(name)
    raise KeyError(f"no renderer for results block {name!r}")


def render(text: str) -> str:
    """``text`` with every results block rewritten from the JSON."""
    return BLOCK.sub(lambda m: m.group(1) + "\n" + render_block(m.group(2)) + "\n" + m.group(4), text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 where a page differs, write nothing")
    args = parser.parse_args()
    stale = []
    for page in PAGES:
        path = ROOT / page
        text = path.read_text(encoding="utf-8")
        rendered = render(text)
        if rendered != text:
            stale.append(page)
            if not args.check:
                path.write_text(rendered, encoding="utf-8")
    verb = "stale" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "up to date")
    sys.exit(1 if args.check and stale else 0)


if __name__ == "__main__":
    main()
