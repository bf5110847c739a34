"""MTEB result files: koe5 writes what MTEB 1.20.1 writes, and reads them back with clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import koe5
from koe5.errors import InputError
from koe5.evaluation.metrics import evaluate_run
from koe5.evaluation.results import MTEB_FORMAT_VERSION, read_task_result, write_task_result


def entry(**metrics):
    return {"hf_subset": "default", "languages": ["kor-Hang"], **metrics}


def test_round_trip_keeps_everything(tmp_path):
    scores = evaluate_run({"q": {"a": 1}}, {"q": {"a": 0.9, "b": 0.1}})
    path = tmp_path / "results" / "org" / "model" / "AutoRAGRetrieval.json"
    write_task_result(
        path,
        "AutoRAGRetrieval",
        {"test": [entry(**scores)]},
        dataset_revision="fd7df84ac089bbec763b1c6bb1b56e985df5cc5c",
        evaluation_time=1.5,
        extra={"model_name": "org/model"},
    )
    data = read_task_result(path)
    assert data["task_name"] == "AutoRAGRetrieval"
    assert data["scores"]["test"][0] == entry(**scores)
    assert data["dataset_revision"] == "fd7df84ac089bbec763b1c6bb1b56e985df5cc5c"
    assert data["evaluation_time"] == 1.5
    assert data["kg_co2_emissions"] is None
    assert data["mteb_version"] == MTEB_FORMAT_VERSION == "1.20.1"
    assert data["koe5_version"] == koe5.__version__
    assert data["model_name"] == "org/model"
    assert [p.name for p in path.parent.iterdir()] == ["AutoRAGRetrieval.json"]  # no temporary file left


def test_layout_is_mteb_1_20_1s(tmp_path):
    """Sorted keys and two-space indent, as mteb.MTEB.run 1.20.1 dumps TaskResult."""
    path = tmp_path / "T.json"
    write_task_result(path, "T", {"dev": [entry(main_score=0.5, ndcg_at_10=0.5)]})
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    # the keys of the reference files written by mteb 1.20.1
    assert {"dataset_revision", "evaluation_time", "kg_co2_emissions", "mteb_version"} <= set(data)
    assert {"scores", "task_name"} <= set(data)


def test_numpy_scalars_are_written_as_numbers(tmp_path):
    path = tmp_path / "T.json"
    write_task_result(path, "T", {"test": [entry(main_score=np.float32(0.25), n=np.int64(3))]})
    assert read_task_result(path)["scores"]["test"][0]["main_score"] == 0.25


@pytest.mark.parametrize(
    ("scores", "match"),
    [
        ({}, "no scores"),
        ({"test": []}, "no entries"),
        ({"test": [{"languages": ["kor-Hang"], "main_score": 1.0}]}, "hf_subset"),
        ({"test": [{"hf_subset": "default", "main_score": 1.0}]}, "languages"),
        ({"test": [{"hf_subset": "default", "languages": ["kor-Hang"]}]}, "main_score"),
        ({"test": [entry(main_score=float("nan"))]}, "NaN"),
    ],
)
def test_write_refuses_what_mteb_could_not_read(tmp_path, scores, match):
    path = tmp_path / "T.json"
    with pytest.raises(InputError, match=match):
        write_task_result(path, "T", scores)
    assert not path.exists()


def test_extra_cannot_overwrite_standard_fields(tmp_path):
    with pytest.raises(InputError, match="mteb_version"):
        scores = {"test": [entry(main_score=1)]}
        write_task_result(tmp_path / "T.json", "T", scores, extra={"mteb_version": "x"})


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not a JSON file"),
        ("[1, 2]", "expected a JSON object"),
        ('{"scores": {"test": [{"hf_subset": "default"}]}}', "task_name"),
        ('{"task_name": "T", "scores": []}', "'scores' must map"),
        ('{"task_name": "T", "scores": {"test": {}}}', "non-empty list"),
        ('{"task_name": "T", "scores": {"test": [3]}}', "expected an object"),
        ('{"task_name": "T", "scores": {"test": [{"main_score": 1}]}}', "hf_subset"),
    ],
)
def test_malformed_files_are_named_in_the_error(tmp_path, content, match):
    path = tmp_path / "Broken.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=match) as info:
        read_task_result(path)
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="no such result file") as info:
        read_task_result(tmp_path / "Nope.json")
    assert "Nope.json" in str(info.value)


def test_reads_mteb_files_with_nan_in_unused_fields(tmp_path):
    # MTEB writes NaN for some nauc_* fields; reading must not fail on them
    path = tmp_path / "T.json"
    nan_entry = '{"hf_subset": "default", "main_score": 0.5, "nauc_x": NaN}'
    path.write_text(f'{{"task_name": "T", "scores": {{"test": [{nan_entry}]}}}}', encoding="utf-8")
    assert read_task_result(path)["scores"]["test"][0]["main_score"] == 0.5
