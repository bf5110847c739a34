"""The README and the documentation site: short front door, live links, figures from their JSON."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`([\w/]+/\w+\.(?:py|c))`")  # `koe5/cpu/mkl.py`, `serve/app.py`, `benchmarks/x.py`


def render_docs():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "benchmarks" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_is_a_short_front_door_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "scripts/setup && .venv/bin/koe5 bench" in text
    assert ".venv/bin/python -m pytest -q" in text


@pytest.mark.parametrize("page", render_docs().PAGES)
def test_each_table_is_what_the_script_renders_from_the_current_json(page):
    text = (ROOT / page).read_text(encoding="utf-8")
    assert render_docs().render(text) == text, f"{page} is stale: run python benchmarks/render_docs.py"


def test_each_table_names_the_machine_it_was_measured_on():
    module = render_docs()
    for page in module.PAGES:
        blocks = module.BLOCK.findall((ROOT / page).read_text(encoding="utf-8"))
        assert blocks, page
        for _, name, body, _ in blocks:
            assert "Machine: " in body, (page, name)


def test_every_result_file_is_on_the_performance_page():
    page = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    results = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    missing = [p.name for p in results if p.name != "machines.json" and p.name not in page]
    assert not missing


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files(page):
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        assert (page.parent / target.split("#")[0]).exists(), f"{page.name}: {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_paths_named_in_the_docs_exist(page):
    for path in CODE_PATH.findall(page.read_text(encoding="utf-8")):
        if path.startswith(("benchmarks/", "tests/")):
            found = ROOT / path
        else:  # a module, named from src/, from koe5/ or from its package
            found = ROOT / "src" / "koe5" / path.removeprefix("src/").removeprefix("koe5/")
        assert found.exists(), f"{page.name}: {path}"
