"""The KURE leaderboard: published card values reproduced from the published result files, and the rules."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from koe5.errors import InputError
from koe5.evaluation.leaderboard import KURE_TASKS, average_table, collect, render, task_metric, task_table
from koe5.evaluation.results import write_task_result

DATA = Path(__file__).parent / "data"
CARD = json.loads((DATA / "kure_card_tables.json").read_text(encoding="utf-8"))


# The KURE result files, copied unmodified (MIT, see data/kure_results/SOURCE.md).
REFERENCE = DATA / "kure_results"


@pytest.fixture(scope="module")
def reference():
    return collect([REFERENCE])


@pytest.mark.parametrize("k", ["1", "3", "5", "10"])
def test_every_published_value_is_reproduced(reference, k):
    ours = {row["model"]: row for row in average_table(reference, int(k))}
    published = CARD["top_k"][k]
    for row in published:
        for col in ("recall", "precision", "ndcg", "f1"):
            # the card prints 5 decimals and rounds exact halves either way: one unit of the 5th
            assert abs(ours[row["model"]][col] - row[col]) <= 1e-5 + 1e-12, (k, row["model"], col)
    # the card's row order is ours, once the model published later (nomic-ai) is left out
    names = [r["model"] for r in published]
    assert [r["model"] for r in average_table(reference, int(k)) if r["model"] in names] == names


def test_the_card_rules_are_the_only_ones_that_reproduce_it(reference):
    """F1 of the averaged P and R, or MultiLongDoc's test split alone, would miss the card."""
    published = {r["model"]: r for r in CARD["top_k"]["10"]}
    kure = reference["nlpai-lab/KURE-v1"]
    p = sum(task_metric(kure[t], "precision_at_10") for t in KURE_TASKS) / 8
    r = sum(task_metric(kure[t], "recall_at_10") for t in KURE_TASKS) / 8
    assert abs(2 * p * r / (p + r) - published["nlpai-lab/KURE-v1"]["f1"]) > 1e-3
    mldr = kure["MultiLongDocRetrieval"]["scores"]
    assert set(mldr) == {"dev", "test"}
    assert task_metric(kure["MultiLongDocRetrieval"], "ndcg_at_10") == pytest.approx(
        (mldr["dev"][0]["ndcg_at_10"] + mldr["test"][0]["ndcg_at_10"]) / 2
    )


def test_reference_files_are_consistent(reference):
    assert len(reference) >= 17
    for model, by_task in reference.items():
        assert set(KURE_TASKS) <= set(by_task), model
        for task, result in by_task.items():
            for split, entries in result["scores"].items():
                for e in entries:
                    assert e["main_score"] == e["ndcg_at_10"], (model, task, split)
                    for k in (1, 3, 5, 10):
                        for name in ("recall", "precision", "ndcg", "map"):
                            assert 0 <= e[f"{name}_at_{k}"] <= 1
                    assert e["recall_at_1"] <= e["recall_at_3"] <= e["recall_at_5"] <= e["recall_at_10"]


def test_a_model_folder_can_be_given_directly(reference):
    koe5_dir = REFERENCE / "nlpai-lab" / "KoE5"
    alone = collect([koe5_dir])
    assert list(alone) == ["nlpai-lab/KoE5"]
    expected = [r for r in average_table(reference, 10) if r["model"] == "nlpai-lab/KoE5"]
    assert average_table(alone, 10) == expected


# --- hand-made result files ------------------------------------------------------------------


def put(root: Path, model: str, task: str, splits: dict[str, dict[str, dict[str, float]]], mteb_layout=True):
    """Write a result file for ``model``; ``splits`` maps split -> subset -> metrics."""
    folder = root / model
    if mteb_layout:
        folder = folder / model.replace("/", "__") / "no_revision_available"
    scores = {
        split: [
            {"hf_subset": subset, "languages": ["kor-Hang"], "main_score": m.get("ndcg_at_10", 0.0), **m}
            for subset, m in subsets.items()
        ]
        for split, subsets in splits.items()
    }
    write_task_result(folder / f"{task}.json", task, scores)


def metrics(r: float, p: float, n: float, k: int = 1) -> dict[str, float]:
    return {f"recall_at_{k}": r, f"precision_at_{k}": p, f"ndcg_at_{k}": n}


@pytest.fixture
def board(tmp_path):
    """Two tasks: 'A' with one split; 'B' with dev and test and two subsets (Korean one named 'ko')."""
    root = tmp_path / "results"
    put(root, "org/good", "A", {"test": {"default": metrics(0.5, 0.5, 0.6)}})
    put(
        root,
        "org/good",
        "B",
        {
            "dev": {"en": metrics(0.0, 0.0, 0.0), "ko": metrics(0.2, 0.6, 0.2)},
            "test": {"en": metrics(0.0, 0.0, 0.0), "ko": metrics(0.4, 0.2, 0.4)},
        },
    )
    put(root, "org/better", "A", {"test": {"default": metrics(1.0, 1.0, 1.0)}}, mteb_layout=False)
    put(root, "org/better", "B", {"test": {"ko": metrics(1.0, 1.0, 0.9)}}, mteb_layout=False)
    put(root, "org/partial", "A", {"test": {"default": metrics(1.0, 1.0, 1.0)}})
    return root


def test_aggregation_rules(board):
    results = collect([board])
    assert set(results) == {"org/good", "org/better", "org/partial"}
    with pytest.warns(UserWarning, match=r"org/partial: no result for B"):
        rows = average_table(results, 1, tasks=["A", "B"], subsets={"B": "ko"})
    assert [r["model"] for r in rows] == ["org/better", "org/good"]  # best NDCG first, partial left out
    good = rows[1]
    # B = mean of its dev and test Korean entries: R 0.3, P 0.4, NDCG 0.3, F1 2*0.4*0.3/0.7
    assert good["recall"] == pytest.approx((0.5 + 0.3) / 2)
    assert good["precision"] == pytest.approx((0.5 + 0.4) / 2)
    assert good["ndcg"] == pytest.approx((0.6 + 0.3) / 2)
    # F1: mean of the task F1s (0.5 and 0.24/0.7), not F1 of the mean P and R
    assert good["f1"] == pytest.approx((0.5 + 0.24 / 0.7) / 2)
    assert good["f1"] != pytest.approx(2 * 0.45 * 0.4 / 0.85)


def test_a_task_with_several_subsets_needs_one_named(board):
    results = collect([board])
    with pytest.raises(InputError, match=r"subsets \['en', 'ko'\]"), pytest.warns(UserWarning):
        average_table(results, 1, tasks=["A", "B"])
    with pytest.raises(InputError, match="no subset 'xx'"), pytest.warns(UserWarning):
        average_table(results, 1, tasks=["A", "B"], subsets={"B": "xx"})


def test_task_table_keeps_partial_rows_without_average(board):
    with pytest.warns(UserWarning, match="org/partial"):
        rows = task_table(collect([board]), "ndcg_at_1", tasks=["A", "B"], subsets={"B": "ko"})
    assert [r["model"] for r in rows] == ["org/better", "org/good", "org/partial"]
    assert rows[1]["B"] == pytest.approx(0.3) and rows[1]["average"] == pytest.approx(0.45)
    assert rows[2]["B"] is None and rows[2]["average"] is None


def test_render_formats(board):
    kw = {"ks": (1,), "tasks": ["A", "B"], "subsets": {"B": "ko"}}
    with pytest.warns(UserWarning):
        md = render([board], **kw)
    assert "### Top-k 1" in md
    assert "| org/better | 1.00000 | 1.00000 | 0.95000 | 1.00000 |" in md
    assert "org/partial" not in md
    with pytest.warns(UserWarning):
        rows = list(csv.DictReader(io.StringIO(render([board], fmt="csv", **kw))))
    assert rows[1] == {"top_k": "1", "model": "org/good", "recall": "0.40000", "precision": "0.45000",
                       "ndcg": "0.45000", "f1": "0.42143"}  # fmt: skip
    with pytest.warns(UserWarning):
        doc = json.loads(render([board], fmt="json", **kw))
    assert doc["tasks"] == ["A", "B"]
    assert [r["model"] for r in doc["top_k"]["1"]] == ["org/better", "org/good"]
    with pytest.warns(UserWarning):
        per_task = render([board], per_task="ndcg_at_1", **kw)
    assert "### NDCG@1 per task" in per_task
    assert "| org/partial | 1.00000 |  |  |" in per_task


def test_a_model_folder_and_a_root_name_the_model_alike(board):
    assert set(collect([board / "org" / "good"])) == {"org/good"}  # mteb layout below the model folder
    assert set(collect([board / "org" / "better"])) == {"org/better"}  # task files directly in it


def test_two_files_for_one_task_warn_and_keep_the_newest_mteb(board):
    old = board / "org" / "good" / "org__good" / "abc123" / "A.json"
    write_task_result(old, "A", {"test": [{"hf_subset": "default", "languages": [], "main_score": 0.0}]})
    data = json.loads(old.read_text())
    data["mteb_version"] = "1.19.4"
    old.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"org/good: two results for A .* using .*no_revision_available"):
        results = collect([board])
    assert results["org/good"]["A"]["mteb_version"] == "1.20.1"


def test_other_json_is_skipped_but_broken_results_are_errors(board):
    (board / "org" / "good" / "notes.json").write_text('{"hello": 1}')
    with pytest.warns(UserWarning, match="notes.json: not an MTEB result file"):
        collect([board])
    (board / "org" / "good" / "notes.json").unlink()
    (board / "org" / "good" / "Broken.json").write_text('{"task_name": "X", "scores": 3}')
    with pytest.raises(InputError, match=r"Broken\.json"):
        collect([board])


def test_bad_arguments(tmp_path, board):
    with pytest.raises(InputError, match="not a folder"):
        collect([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no MTEB result files"):
        render([tmp_path / "empty"])
    with pytest.raises(InputError, match="unknown format"):
        render([board], fmt="html")


def test_unusable_metric_value_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "org" / "m" / "A.json"
    path.parent.mkdir(parents=True)
    entry = '{"hf_subset": "default", "main_score": 0.5, "recall_at_1": NaN, "precision_at_1": 1.0}'
    path.write_text(f'{{"task_name": "A", "scores": {{"test": [{entry}]}}}}')
    with pytest.raises(InputError, match="recall_at_1") as info:
        task_metric(collect([tmp_path])["org/m"]["A"], "recall_at_1")
    assert "A.json" in str(info.value)
