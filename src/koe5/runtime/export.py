"""Export a model to ONNX (fp32 and int8), gate each backend on quality, and record what ``auto`` uses.

``export_onnx`` writes ``<folder>/onnx/model.onnx`` (``torch.onnx.export``) and, with ``int8``,
``model_qint8.onnx`` (``onnxruntime.quantization.quantize_dynamic``: int8 weights, activations
quantised on the fly). ``choose_backends`` then measures, on this machine:

* quality: average NDCG@10 over a fixed subset of the bundled suite (:data:`GATE_TASKS`); a backend
  may be chosen automatically only if it is within :data:`GATE` of torch fp32;
* speed: tokens/s on short Korean queries and on long passages;

and writes ``onnx/koe5_backends.json``: per kind of input (query, passage), the fastest backend that
passed. ``koe5.load(backend="auto")`` reads it.

Example::

    from koe5.runtime.export import export_onnx, choose_backends
    folder = export_onnx("default", int8=True)
    choose_backends(folder)["auto"]        # e.g. {"query": "onnx-int8", "passage": "torch"}
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from koe5.cpu.features import cpu_model
from koe5.env import hub_copy
from koe5.errors import ModelError
from koe5.files import atomic_write_bytes
from koe5.runtime.hardware import cpu_has_native_bf16, cpu_threads
from koe5.runtime.onnx_runner import ONNX_FILES, onnx_dir
from koe5.runtime.select import CHOICE_FILE, TORCH_BF16

#: The quality gate: a backend's average NDCG@10 may trail torch fp32 by at most this much.
GATE = 0.005
#: Fixed subset of the bundled suite the gate is measured on (small enough to run at export time).
GATE_TASKS = ("PublicHealthQA", "BelebeleRetrieval")


def local_folder(model: str) -> Path:
    """A writable local folder for ``model``: the folder itself, or a saved copy of a hub model."""
    from koe5.registry import resolve

    _, location = resolve(model)
    folder = Path(location)
    if folder.is_dir():
        return folder
    copy = hub_copy(location)
    if not copy.is_dir():
        from koe5.files import atomic_dir
        from koe5.runtime.torch_runner import load_sentence_transformer

        st = load_sentence_transformer(location, "cpu")
        with atomic_dir(copy) as tmp:
            st.save(str(tmp))
    return copy


def export_onnx(model: str = "default", *, int8: bool = False, force: bool = False, log=None) -> Path:
    """Write the ONNX export(s) of ``model`` into ``<folder>/onnx``; returns the model folder."""
    import torch
    from transformers import AutoModel

    folder = local_folder(model)

    def hidden_states():
        # eager attention exports to plain MatMul/Softmax, which ONNX Runtime's optimiser fuses
        base = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()

        class Hidden(torch.nn.Module):
            def __init__(self, m) -> None:
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        return Hidden(base)

    inputs = ("input_ids", "attention_mask")
    return write_exports(folder, hidden_states, inputs, "last_hidden_state", int8=int8, force=force, log=log)


def write_exports(
    folder: Path, make_module, input_names: tuple[str, ...], output_name: str, *, int8: bool, force: bool, log
) -> Path:
    """``<folder>/onnx/model.onnx`` from the module ``make_module()`` builds (only if the file is not
    there yet, or ``force``), and with ``int8`` its quantised copy ``model_qint8.onnx``; returns
    ``folder``."""
    say = log or (lambda msg: None)
    out = onnx_dir(folder)
    out.mkdir(exist_ok=True)
    fp32 = out / ONNX_FILES["onnx"]
    if force or not fp32.is_file():
        say(f"exporting {folder} to {fp32}")
        write_onnx(make_module(), input_names, output_name, fp32)
    if int8:
        q8 = out / ONNX_FILES["onnx-int8"]
        if force or not q8.is_file():
            say(f"quantising to {q8}")
            quantise_int8(fp32, q8)
    return folder


#: Above this many bytes of weights an export keeps them in a file beside the graph: one ONNX file
#: (a protobuf message) cannot exceed 2 GiB, which XLM-R large (560M parameters, 2.2 GB) does.
EXTERNAL_DATA_BYTES = 1_800_000_000


def write_onnx(module, input_names: tuple[str, ...], output_name: str, path: Path) -> None:
    """Export ``module`` (called with int64 ``(batch, sequence)`` tensors named ``input_names``) to
    ``path`` with both axes dynamic. It is written in a temporary folder beside ``path`` and moved in
    when whole, so a killed export leaves no half-written model."""
    import torch

    examples = {
        "input_ids": torch.tensor([[0, 100, 200, 300, 2], [0, 100, 200, 2, 1]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]),
        "token_type_ids": torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 1, 0]]),
    }
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    weights = sum(p.numel() * p.element_size() for p in module.parameters())
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as work:
        staged = Path(work) / path.name
        with warnings.catch_warnings(), quiet_logger("torch.onnx"):
            warnings.simplefilter("ignore")  # the exporter's notes on axis names and torchvision
            torch.onnx.export(
                module.eval(),
                tuple(examples[name] for name in input_names),
                str(staged),
                input_names=list(input_names),
                output_names=[output_name],
                dynamic_shapes=tuple({0: batch, 1: seq} for _ in input_names),
                dynamo=True,
                external_data=weights > EXTERNAL_DATA_BYTES,
                verbose=False,
            )
        # the weights' file (if any) first, the graph last: a graph in place means its weights are too
        for written in Path(work).iterdir():
            if written != staged:
                written.replace(path.parent / written.name)
        staged.replace(path)


def quantise_int8(fp32: Path, q8: Path) -> None:
    """``q8``: ``fp32`` with int8 weights in its matrix products (ONNX Runtime's dynamic quantisation:
    activations quantised on the fly), written atomically."""
    tmp = q8.with_suffix(".tmp.onnx")
    try:
        with _root_logging_kept():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            logging.getLogger().setLevel(logging.ERROR)  # its import set INFO; and its advice
            # Only the weight matrices, one scale per output channel: the defaults (per-tensor
            # scales, the 250k-row embedding Gather quantised too) cost far more NDCG@10 on the
            # gate's tasks at the same speed (docs/performance.md).
            quantize_dynamic(
                str(fp32),
                str(tmp),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
            )
        tmp.replace(q8)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def quiet_logger(name: str):
    """Only errors from the logger ``name`` meanwhile (e.g. the ONNX exporter's warning per torchvision
    operator it cannot find, which koe5's models never use)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _root_logging_kept():
    """Put the root logger's level and handlers back afterwards: importing ONNX Runtime's quantiser
    calls ``logging.basicConfig`` at INFO (one line per tensor on the console), and the caller quiets
    the root logger for the quantisation itself."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def _load_candidate(folder: Path, candidate: str):
    """An encoder for a candidate of ``auto``: a backend, or ``torch-bf16`` (torch in bf16)."""
    from koe5.encoder import load

    if candidate == TORCH_BF16:
        return load(str(folder), backend="torch", device="cpu", precision="bf16")
    return load(str(folder), backend=candidate, device="cpu")


def _gate_ndcg(folder: Path, backend: str, tasks) -> float:
    from koe5.embcache import EmbeddingCache
    from koe5.evaluation import DenseRetriever, evaluate_tasks

    enc = _load_candidate(folder, backend)
    results = evaluate_tasks(DenseRetriever(enc, cache=EmbeddingCache()), list(tasks))
    values = [
        np.mean([e["ndcg_at_10"] for split in r["scores"].values() for e in split]) for r in results.values()
    ]
    return float(np.mean(values))


def _speed(folder: Path, backend: str, queries: list[str], passages: list[str]) -> dict[str, float]:
    enc = _load_candidate(folder, backend)
    out = {}
    for kind, texts in (("query", queries), ("passage", passages)):
        n_tokens = sum(min(len(t), enc.max_length) for t in enc.tokenize(texts))
        enc.encode(texts[:8], kind)  # warm-up
        best = min(_timed(lambda: enc.encode(texts, kind)) for _ in range(2))  # noqa: B023
        out[f"{kind}_tokens_per_s"] = round(n_tokens / best, 1)
    return out


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def speed_samples(n_queries: int = 256, n_passages: int = 32) -> tuple[list[str], list[str]]:
    """Short Korean questions (KorQuAD) and long passages (AutoRAG) from the bundled suite."""
    from koe5.tasks import get_task

    squad = get_task("SQuADKorV1Retrieval").load()
    autorag = get_task("AutoRAGRetrieval").load()
    queries = list(squad.queries.values())[:n_queries]
    passages = [autorag.doc_text(d) for d in list(autorag.corpus)[:n_passages]]
    return queries, passages


def choose_backends(
    folder: str | Path, *, tasks=GATE_TASKS, backends=None, speed_texts=None, log=None
) -> dict:
    """Gate and time the exported backends against torch; write and return the choice file.

    Candidates: the ONNX exports found, and on CPUs with bf16 hardware the torch backend in bf16
    (``torch-bf16``). ``backends`` limits which candidates are measured besides torch fp32, the
    reference (default: all); ``speed_texts`` replaces the default (queries, passages) speed samples.
    """
    say = log or (lambda msg: None)
    folder = Path(folder)
    backends = gate_runners(folder, backends, "koe5 export --onnx")
    queries, passages = speed_texts or speed_samples()
    report: dict = {"gate": GATE, "gate_tasks": list(tasks), "backends": {}}
    for backend in backends:
        say(f"measuring {backend}: NDCG@10 on {', '.join(tasks)}, then speed")
        entry = {"ndcg_at_10": round(_gate_ndcg(folder, backend, tasks), 5)}
        entry.update(_speed(folder, backend, queries, passages))
        report["backends"][backend] = entry
    return record_choice(folder, report, {kind: f"{kind}_tokens_per_s" for kind in ("query", "passage")})


def gate_runners(folder: Path, backends, command: str) -> list[str]:
    """What a gate measures: torch fp32 (the reference), then the ONNX exports found in ``folder`` and,
    on CPUs with bf16 hardware, torch in bf16, limited to ``backends`` where given. No export at all
    is a :class:`ModelError` naming ``command``, which writes one."""
    exported = [b for b, f in ONNX_FILES.items() if (onnx_dir(folder) / f).is_file()]
    if not exported:
        raise ModelError(f"{folder} has no ONNX export: run `{command}` first")
    candidates = [*([TORCH_BF16] if cpu_has_native_bf16() else []), *exported]
    return ["torch"] + [b for b in candidates if backends is None or b in backends]


def record_choice(folder: Path, report: dict, speed_of: dict[str, str]) -> dict:
    """Mark each measured backend as passing the gate (NDCG@10 within :data:`GATE` of torch fp32) or
    not, let ``auto`` take per kind of input the fastest that passed (``speed_of``: kind → the speed
    field), add the machine, and write the choice file; returns ``report``."""
    reference = report["backends"]["torch"]["ndcg_at_10"]
    for entry in report["backends"].values():
        entry["passes_gate"] = entry["ndcg_at_10"] >= reference - GATE
    passing = [b for b, e in report["backends"].items() if e["passes_gate"]]
    report["auto"] = {
        kind: max(passing, key=lambda b: report["backends"][b][field]) for kind, field in speed_of.items()
    }
    report["machine"] = {"cpu": cpu_model(), "threads": cpu_threads()}
    atomic_write_bytes(onnx_dir(folder) / CHOICE_FILE, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    return report
