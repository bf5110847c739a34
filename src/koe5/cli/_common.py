"""What every ``koe5`` command shares: the app, global flags, common options, error exit."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

app = typer.Typer(
    help="koe5: Korean text retrieval with E5-family embedding models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"quiet": False}

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="'default', a model folder or a hub id.")]
BackendOpt = Annotated[
    str, typer.Option("--backend", help="torch, onnx, onnx-int8 or auto (see koe5 export).")
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda, cuda:1, mps (default: best available).")
]
PrecisionOpt = Annotated[
    str,
    typer.Option("--precision", help="torch backend: auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16."),
]
QPrefixOpt = Annotated[str | None, typer.Option("--query-prefix", help="Override the query prefix.")]
PPrefixOpt = Annotated[str | None, typer.Option("--passage-prefix", help="Override the passage prefix.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@app.callback()
def main(
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or progress messages.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    _state["quiet"] = quiet
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    for noisy in ("transformers", "sentence_transformers", "httpx", "huggingface_hub", "datasets"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if quiet:
        import os

        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _progress() -> bool:
    return not _state["quiet"]


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _load(
    model: str, backend: str, device: str | None, qp: str | None, pp: str | None, precision: str = "auto"
):
    from koe5.encoder import load

    return load(
        model, backend=backend, device=device, query_prefix=qp, passage_prefix=pp, precision=precision
    )


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        _fail(ValueError(f"{flag} takes comma-separated integers, e.g. 1,3,5,10 (got {text!r})"))
    if not values or min(values) < 1:
        _fail(ValueError(f"{flag} needs positive integers (got {text!r})"))
    return values
