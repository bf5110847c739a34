"""koe5.env: every environment variable koe5 reads is listed there and read through it."""

import ast
from pathlib import Path

import pytest

from koe5 import env

SRC = Path(__file__).parents[1] / "src" / "koe5"


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("KOE5_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert env.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("KOE5_CACHE")
    assert env.cache_dir() == tmp_path / "xdg" / "koe5"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert env.cache_dir() == tmp_path / "home" / ".cache" / "koe5"


@pytest.mark.parametrize(
    ("value", "off"),
    [(None, False), ("", False), ("1", False), ("on", False), ("0", True), (" Off ", True), ("NO", True)],
)
def test_switches(monkeypatch, value, off):
    if value is None:
        monkeypatch.delenv(env.ONEDNN.name, raising=False)
    else:
        monkeypatch.setenv(env.ONEDNN.name, value)
    assert env.switched_off(env.ONEDNN) is off


def test_readers(monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert (env.integer(env.RANK, 0), env.integer(env.WORLD_SIZE, 1)) == (3, 1)
    monkeypatch.setenv("KOE5_TRAIN_DATA", "~/data")
    assert env.path(env.TRAIN_DATA) == Path("~/data").expanduser()
    monkeypatch.setenv("LD_PRELOAD", "/a/x.so:/b/y.so /c/z.so")
    assert env.preloaded() == ["/a/x.so", "/b/y.so", "/c/z.so"]
    monkeypatch.setenv("KOE5_THREADS", "  ")
    assert env.get(env.THREADS) is None


def test_settings_lists_what_is_set_and_masks_the_api_key(monkeypatch):
    for var in env.VARIABLES:
        monkeypatch.delenv(var.name, raising=False)
    monkeypatch.setenv("KOE5_THREADS", "2")
    monkeypatch.setenv("KOE5_API_KEY", "s3cret")
    assert env.settings() == {"KOE5_THREADS": "2", "KOE5_API_KEY": "***"}


def test_no_other_module_reads_the_environment():
    """One place lists and reads them all: ``os.environ.get`` / ``os.getenv`` appear only in env.py
    (writing variables for other libraries, as the CLI's ``--quiet`` does, is not reading them)."""
    readers = []
    for path in SRC.rglob("*.py"):
        if path.name == "env.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = ast.unparse(node.func)
                if target in ("os.environ.get", "os.getenv", "environ.get"):
                    readers.append(f"{path.relative_to(SRC)}:{node.lineno}")
            subscript = isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ"
            if subscript and isinstance(node.ctx, ast.Load):
                readers.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert readers == []


def test_every_koe5_variable_mentioned_in_the_code_is_listed():
    listed = {var.name for var in env.VARIABLES}
    mentioned = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
            if text.startswith("KOE5_") and text.isupper() and " " not in text:
                mentioned.add(text)
    assert mentioned <= listed, mentioned - listed
