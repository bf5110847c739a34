"""The shape of the package (docs/architecture.md): no import cycles, modules and functions small
enough to read in one sitting, the speed-ups apart from the interface, old names kept for a release."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "koe5"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
#: the old module names, re-exported for one release
COMPAT = ("bench", "backends", "mkl", "attention", "export")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The koe5 modules ``name`` imports anywhere in its file (function-level imports included: a
    lazy import that closes a cycle is still a cycle in the design)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]).strip(".")
            # ``from koe5.cpu import mkl`` imports the module koe5.cpu.mkl, not just the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in modules and t != name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    compat = {f"koe5.{m}" for m in COMPAT}
    return {
        name: _imports(path, name, modules) - compat for name, path in modules.items() if name not in compat
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_dependencies_point_one_way():
    """Evaluation depends on search, never the reverse; the fast path (cpu/) never depends on the
    runners that use it; nothing below the shells imports the CLI or the server."""
    graph = _graph()
    for name, targets in graph.items():
        # koe5.search's __init__ lends the moved retrievers on attribute access for one release
        if name.startswith("koe5.search") and name != "koe5.search":
            assert not any(t.startswith("koe5.evaluation") for t in targets), name
        if name.startswith("koe5.cpu"):
            assert not any(
                t.startswith(("koe5.runtime.select", "koe5.runtime.torch_runner")) for t in targets
            )
        if not name.startswith(("koe5.cli", "koe5.serve")) and name != "koe5.__main__":
            assert not any(t.startswith(("koe5.cli", "koe5.serve")) for t in targets), name


def test_modules_and_functions_are_small():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(SRC)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []


def test_importing_koe5_and_its_fast_path_never_imports_torch():
    code = (
        "import sys, koe5, koe5.cpu, koe5.cpu.mkl, koe5.env, koe5.cpu.features; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_searching_does_not_load_the_evaluation_stack():
    code = (
        "import sys; from koe5.search import Index; print(sorted(m for m in sys.modules if 'evaluat' in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("old", COMPAT)
def test_old_module_names_still_import_with_a_deprecation_warning(old):
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        f"try:\n    import koe5.{old}\nexcept DeprecationWarning as w:\n    print('warned', w)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("warned") and "moved to koe5." in out.stdout


def test_old_names_are_the_new_objects():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import koe5.attention
        import koe5.backends
        import koe5.bench
        import koe5.mkl
        from koe5.search import BM25Retriever

    import koe5.cpu.attention
    import koe5.cpu.mkl
    from koe5 import evaluation
    from koe5.runtime.torch_runner import TorchRunner

    assert koe5.mkl is koe5.cpu.mkl and koe5.attention is koe5.cpu.attention  # live state, not a copy
    koe5.cpu.attention.kernel()
    assert koe5.attention.status == koe5.cpu.attention.status is not None
    assert koe5.bench.evaluate_tasks is evaluation.evaluate_tasks
    assert koe5.bench.DenseRetriever is evaluation.DenseRetriever
    assert koe5.backends.TorchRunner is TorchRunner
    assert BM25Retriever is evaluation.BM25Retriever
