"""The CLI's options module: the model option block, ``failing``/``fail``, ``say`` and ``python -m koe5``."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import typer
from typer.testing import CliRunner

from koe5.cli.options import (
    MODEL_DEFAULTS,
    ModelOptions,
    comma_list,
    fail,
    failing,
    int_list,
    main,
    say,
    with_model_options,
)
from koe5.errors import InputError

runner = CliRunner()


def _app(command) -> typer.Typer:
    """A small app with koe5's global flags (-q, -v) and one command."""
    app = typer.Typer()
    app.callback()(main)
    app.command()(command)
    return app


def test_model_options_become_one_value_and_load_the_model(tiny, tiny_model_dir):
    seen = {}

    @with_model_options
    def embed(model_options: ModelOptions = MODEL_DEFAULTS) -> None:
        seen["options"] = model_options
        seen["encoder"] = model_options.load()

    args = ["embed", "--model", str(tiny_model_dir), "--device", "cpu", "--query-prefix", "q: "]
    result = runner.invoke(_app(embed), args)
    assert result.exit_code == 0, result.output
    assert seen["options"] == ModelOptions(str(tiny_model_dir), "torch", "cpu", "auto", "q: ", None)
    encoder = seen["encoder"]
    assert encoder.dim == tiny.dim and encoder.query_prefix == "q: "
    assert encoder.passage_prefix == tiny.passage_prefix


def test_a_model_option_the_command_declares_keeps_its_own_default():
    seen = {}

    @with_model_options
    def serve(
        model: Annotated[str | None, typer.Option("--model", help="Mine.")] = None,
        model_options: ModelOptions = MODEL_DEFAULTS,
    ) -> None:
        seen["model"], seen["options"] = model, model_options

    result = runner.invoke(_app(serve), ["serve", "--backend", "onnx"])
    assert result.exit_code == 0, result.output
    assert seen["model"] is None and seen["options"] == ModelOptions(None, "onnx")
    assert "Mine." in runner.invoke(_app(serve), ["serve", "--help"]).stdout


def test_failing_turns_a_koe5_error_into_exit_2_with_the_message():
    def load() -> None:
        with failing():
            raise InputError("docs.jsonl:3: not valid JSON")

    result = runner.invoke(_app(load), ["load"])
    assert result.exit_code == 2
    assert result.stderr == "error: docs.jsonl:3: not valid JSON\n" and result.stdout == ""


def test_failing_lets_other_errors_through_unless_named():
    def strict() -> None:
        with failing():
            raise ValueError("a bug")

    def lenient() -> None:
        with failing(ValueError):
            raise ValueError("alpha must be in [0, 1]")

    assert isinstance(runner.invoke(_app(strict), ["strict"]).exception, ValueError)
    result = runner.invoke(_app(lenient), ["lenient"])
    assert result.exit_code == 2 and result.stderr == "error: alpha must be in [0, 1]\n"


def test_fail_takes_a_message():
    def check() -> None:
        fail("--kind must be query, passage or none")

    result = runner.invoke(_app(check), ["check"])
    assert result.exit_code == 2 and result.stderr == "error: --kind must be query, passage or none\n"


def test_say_is_silent_under_quiet_and_never_on_stdout():
    def hello() -> None:
        say("loading")
        typer.echo("result")

    loud = runner.invoke(_app(hello), ["hello"])
    assert loud.exit_code == 0 and loud.stderr == "loading\n" and loud.stdout == "result\n"
    quiet = runner.invoke(_app(hello), ["-q", "hello"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == "result\n"


def test_lists_from_flags():
    assert comma_list(" a, b,,c ") == ["a", "b", "c"] and comma_list(None) is None
    assert int_list("1,3, 10", "--k") == [1, 3, 10]

    def ks(k: str = "1,x") -> None:
        int_list(k, "--k")

    result = runner.invoke(_app(ks), ["ks"])
    assert result.exit_code == 2 and "--k takes comma-separated integers" in result.stderr


def test_python_m_koe5_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "koe5", "--help"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout and "bench" in done.stdout and "train" in done.stdout
