"""koe5 train-reranker: a short run of the recipe on the miniature training material and the tiny model."""

from __future__ import annotations

import dataclasses
import json

import pytest

from koe5.errors import InputError
from koe5.train.reranker import RECIPES, RerankerRecipe, train_reranker, training_rows


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory, train_rows):
    """The Welfare-QA sample (40 programmes) as the published QA_total.csv."""
    import csv

    root = tmp_path_factory.mktemp("welfare-source")
    (root / "welfare_qa").mkdir()
    with open(root / "welfare_qa" / "QA_total.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Question", "Answer", "Documents"])
        writer.writerows([r["query"], r["document"], r["group"]] for r in train_rows)
    return root


@pytest.fixture(scope="module")
def recipe(tiny_train_model_dir) -> RerankerRecipe:
    return dataclasses.replace(
        RECIPES["koe5-reranker-small"],
        base=str(tiny_train_model_dir),
        weights=(("welfare_qa", 1.0),),
        queries=50,
        negatives=1,
        range_min=0,
        dev_queries=8,
        eval_queries=5,
        batch_size=2,
        save_steps=2,
        max_length=64,
    )


def test_training_rows_keep_the_dev_split_out_and_are_reproducible(recipe, source_dir):
    from koe5.train.devsets import dev_groups, dev_tasks

    rows = training_rows(recipe, source_dir)
    assert rows == training_rows(recipe, source_dir)
    assert rows and all(r["negatives"] and r["positive"] not in r["negatives"] for r in rows)
    held = dev_groups(source_dir, sources=["welfare_qa"], queries=8, seed=recipe.seed)
    dev = dev_tasks(source_dir, sources=["welfare_qa"], queries=8, seed=recipe.seed)["welfare_qa"]
    assert len(held) == 8 and not set(dev.queries.values()) & {r["query"] for r in rows}
    assert len(rows) == len({r["query"] for r in rows}) > 20  # one query per programme left


def test_a_short_run_trains_saves_and_resumes(recipe, source_dir, tmp_path):
    from transformers import TrainerCallback

    from koe5.rerank import Reranker

    class Stop(TrainerCallback):  # a kill after step 3: checkpoint-2 is the last complete one
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_reranker(recipe, out, source_dir=source_dir, max_steps=4, callbacks=(Stop(),))
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and not (out / "model").exists()
    with pytest.raises(InputError, match="earlier run"):
        train_reranker(recipe, out, source_dir=source_dir, max_steps=4)
    result = train_reranker(recipe, out, source_dir=source_dir, max_steps=4, resume=True)
    assert result.resumed_from.name == "checkpoint-2" and result.steps == 4
    summary = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    assert summary["steps"] == 4 and "ndcg@10" in summary["final"]
    reranker = Reranker.load(str(result.model_path))
    scores = reranker.score("긴급복지는 누가 받나요?", ["위기 가구가 받습니다.", "월 10만 원입니다."])
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()
    other = dataclasses.replace(recipe, lr=1e-3)
    with pytest.raises(InputError, match="another recipe"):
        train_reranker(other, out, source_dir=source_dir, max_steps=4, resume=True)


def test_recipe_values_are_checked():
    with pytest.raises(InputError, match="loss"):
        RerankerRecipe("x", loss="mse")
    with pytest.raises(InputError, match="negatives"):
        RerankerRecipe("x", negatives=0)
