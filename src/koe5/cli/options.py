"""What every ``koe5`` command shares: the app and its global flags, the model options, ``say`` and ``fail``.

A command that loads a model declares one ``model_options: ModelOptions`` parameter and is decorated with
:func:`with_model_options`; it gets the six flags ``--model --backend --device --precision --query-prefix
--passage-prefix`` and receives their values as one :class:`ModelOptions`::

    @app.command()
    @with_model_options
    def encode(input: str = "-", model_options: ModelOptions = MODEL_DEFAULTS) -> None:
        with failing():  # a Koe5Error ends the command: "error: ..." and exit code 2
            encoder = model_options.load()
        say(f"{encoder.name} loaded")  # progress on stderr, silent under -q
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from koe5.errors import Koe5Error

if TYPE_CHECKING:
    from koe5.encoder import Encoder

app = typer.Typer(
    help="koe5: Korean text retrieval with E5-family embedding models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_flags = {"quiet": False}  # the global -q of this invocation

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
QueryPrefixOpt = Annotated[str | None, typer.Option("--query-prefix", help="Override the query prefix.")]
PassagePrefixOpt = Annotated[
    str | None, typer.Option("--passage-prefix", help="Override the passage prefix.")
]
BatchSizeOpt = Annotated[
    int | None,
    typer.Option("--batch-size", "-b", help="Inputs per forward pass (default: 32 on CPU, 512 on CUDA)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
EngineOpt = Annotated[
    str, typer.Option("--engine", help="local (this process) or ray (actors on a Ray cluster; koe5[ray]).")
]
AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster: auto, host:port or ray://host:port (default: a local one)."),
]
ActorsOpt = Annotated[
    int | None, typer.Option("--actors", help="Ray encoder actors (default: the cluster's CPUs or GPUs).")
]
GpusPerActorOpt = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-actor", help="GPUs each Ray actor holds (default: 1 where the cluster has GPUs)."
    ),
]


def ray_engine(
    engine: str, address: str | None, actors: int | None, gpus: float | None, batch_size: int | None
):
    """The :class:`~koe5.distributed.RayEngine` the engine flags ask for, or ``None`` for ``local``."""
    from koe5.distributed import ENGINES, RayEngine

    if engine not in ENGINES:
        fail(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "local":
        if address or actors or gpus is not None:
            fail("--address, --actors and --gpus-per-actor need --engine ray")
        return None
    with failing():
        return RayEngine(address=address, actors=actors, gpus_per_actor=gpus, batch_size=batch_size)


@app.callback()
def main(
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or progress messages.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    _flags["quiet"] = quiet
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    for noisy in ("transformers", "sentence_transformers", "httpx", "huggingface_hub", "datasets"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if quiet:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def is_quiet() -> bool:
    """Whether ``koe5 -q`` was given."""
    return _flags["quiet"]


def show_progress() -> bool:
    """Whether to draw progress bars (not under ``-q``)."""
    return not _flags["quiet"]


def say(message: str) -> None:
    """A progress message on stderr, unless ``-q``: stdout stays the command's result."""
    if not _flags["quiet"]:
        typer.echo(message, err=True)


def warn(message: str) -> None:
    """``warning: <message>`` on stderr, also under ``-q`` (the result may not be what was meant)."""
    typer.echo(f"warning: {message}", err=True)


def fail(problem: Exception | str) -> NoReturn:
    """End the command: ``error: <problem>`` on stderr, exit code 2."""
    typer.echo(f"error: {problem}", err=True)
    raise typer.Exit(2)


@contextmanager
def failing(*also: type[Exception]) -> Iterator[None]:
    """Turn a :class:`~koe5.errors.Koe5Error` (and the ``also`` types) raised inside into :func:`fail`."""
    try:
        yield
    except (Koe5Error, *also) as exc:
        fail(exc)


def comma_list(text: str | None) -> list[str] | None:
    """``"a, b,,c"`` → ``["a", "b", "c"]``; ``None`` stays ``None``."""
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def int_list(text: str, flag: str) -> list[int]:
    """``"1,3,5"`` → ``[1, 3, 5]``, or :func:`fail` naming ``flag``."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"{flag} takes comma-separated integers, e.g. 1,3,5,10 (got {text!r})")
    if not values or min(values) < 1:
        fail(f"{flag} needs positive integers (got {text!r})")
    return values


@dataclass(frozen=True)
class ModelOptions:
    """The model a command uses, as its six flags give it (``None``: the command's own default)."""

    model: str | None = "default"
    backend: str | None = "torch"
    device: str | None = None
    precision: str = "auto"
    query_prefix: str | None = None
    passage_prefix: str | None = None

    def load(self) -> Encoder:
        """The encoder these options name (:func:`koe5.encoder.load`)."""
        from koe5.encoder import load

        return load(
            self.model or "default",
            backend=self.backend or "torch",
            device=self.device,
            query_prefix=self.query_prefix,
            passage_prefix=self.passage_prefix,
            precision=self.precision,
        )


#: The default of a command's ``model_options`` parameter (typer never sees it: its flags do).
MODEL_DEFAULTS = ModelOptions()


def _keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def option(name: str, kind: Any, default: Any, *flags: str, **settings: Any) -> inspect.Parameter:
    """A typer option as a parameter, for :func:`replace_parameter`: ``typer.Option(*flags, **settings)``.

    >>> option("max_k", int, 100, "--max-k", help="Results per search (422).").name
    'max_k'
    """
    return _keyword(name, Annotated[kind, typer.Option(*flags, **settings)], default)


MODEL_OPTIONS = [
    _keyword("model", ModelOpt, "default"),
    _keyword("backend", BackendOpt, "torch"),
    _keyword("device", DeviceOpt, None),
    _keyword("precision", PrecisionOpt, "auto"),
    _keyword("query_prefix", QueryPrefixOpt, None),
    _keyword("passage_prefix", PassagePrefixOpt, None),
]

F = TypeVar("F", bound=Callable[..., Any])


def replace_parameter(
    placeholder: str, options: Sequence[inspect.Parameter], pack: Callable[..., Any] = dict
) -> Callable[[F], F]:
    """Give a command ``options`` (typer parameters) in place of its parameter ``placeholder``.

    The command receives ``pack(**values)`` of those options as ``placeholder``. An option the command
    declares itself keeps the command's place, help and default, and its value is packed too.
    """

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = signature.parameters
        names = [o.name for o in options]
        parameters: list[inspect.Parameter] = []
        for p in own.values():
            parameters += [o for o in options if o.name not in own] if p.name == placeholder else [p]

        @functools.wraps(command)
        def replaced(**values: Any) -> Any:
            packed = pack(**{n: values[n] for n in names})
            mine = {n: v for n, v in values.items() if n in own}
            return command(**mine, **{placeholder: packed})

        # typer reads the parameters from the signature (and calls with keywords only)
        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters]
        replaced.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        replaced.__annotations__ = {p.name: p.annotation for p in parameters}
        return replaced  # type: ignore[return-value]

    return decorate


#: The decorator of every command with a ``model_options: ModelOptions`` parameter (see the module's example).
with_model_options = replace_parameter("model_options", MODEL_OPTIONS, ModelOptions)


RerankWeightOpt = Annotated[
    float | None,
    typer.Option(
        "--rerank-weight",
        help="The reranker's share of a reranked result's score, 0 to 1; the rest is the first stage's "
        "(default: the reranker's own, 1 where koe5 knows none: its order alone).",
    ),
]

#: The help of a reranker's window option (``--rerank-window`` here, ``--window`` on ``koe5 rerank``).
WINDOW_HELP = (
    "Read a text longer than this many tokens in half-overlapping windows, scored by its best (0: cut it "
    "to fit; default: the reranker's own)."
)

RerankWindowOpt = Annotated[int | None, typer.Option("--rerank-window", help=WINDOW_HELP)]

RerankBackendOpt = Annotated[
    str,
    typer.Option(
        "--rerank-backend",
        help="What runs the reranker: torch, onnx, onnx-int8 or auto (see koe5 export --reranker).",
    ),
]
