"""koe5 train-reranker: a short run of the recipe on the miniature training material and the tiny model."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

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


def test_the_runs_evaluation_reranks_the_hybrid_searchs_candidates(recipe, source_dir):
    import koe5
    from koe5.evaluation import BM25Retriever, DenseRetriever
    from koe5.evaluation.retrievers import HybridRetriever
    from koe5.train.devsets import dev_tasks
    from koe5.train.reranker import dev_samples

    samples = dev_samples(recipe, source_dir)
    dev = dev_tasks(source_dir, sources=["welfare_qa"], queries=8, seed=recipe.seed)["welfare_qa"]
    assert len(dev.corpus) > 20 and len(samples) == recipe.eval_queries
    hybrid = HybridRetriever(DenseRetriever(koe5.load(recipe.base)), BM25Retriever()).rank(dev, 20)
    bm25 = BM25Retriever().rank(dev, 20)
    text = {q: dev.queries[q] for q in dev.queries}
    differs = 0
    for sample in samples:
        (q,) = [q for q in text if text[q] == sample["query"]]
        assert set(sample["documents"]) == {dev.doc_text(d) for d in hybrid[q]}  # what koe5 search gives
        assert sample["positive"] == [dev.doc_text(d) for d in dev.qrels[q]]
        differs += set(sample["documents"]) != {dev.doc_text(d) for d in bm25[q]}
    assert differs  # the dense side brings candidates BM25 alone would not


def test_bm25_and_dense_negatives_in_turn_and_several_queries_a_group(recipe, source_dir, train_rows):
    def rows_by(mining: str) -> dict[str, list[str]]:
        chosen = dataclasses.replace(recipe, negatives=2, per_group=2, queries=200, mining=mining)
        return {r["query"]: r["negatives"] for r in training_rows(chosen, source_dir)}

    bm25, dense, mixed = rows_by("bm25"), rows_by("dense"), rows_by("bm25+dense")
    assert set(bm25) | set(dense) <= set(mixed)
    assert any(bm25[q] != dense[q] for q in set(bm25) & set(dense))
    for query in set(bm25) & set(dense):  # one from each method in turn, a text both found once
        first = bm25[query][0]
        second = dense[query][0] if dense[query][0] != first else bm25[query][1]
        assert mixed[query] == [first, second]
    group_of = {r["query"]: r["group"] for r in train_rows}
    per_group = Counter(group_of[q] for q in mixed)
    assert max(per_group.values()) == 2 and min(per_group.values()) >= 1
    answers_of = {}
    for r in train_rows:
        answers_of.setdefault(r["group"], set()).add(r["document"])
    assert not any(set(negs) & answers_of[group_of[q]] for q, negs in mixed.items())


def test_a_run_folder_of_an_older_koe5_resumes(recipe, source_dir, tmp_path):
    from koe5.train.reranker import _prepare

    out = tmp_path / "run"
    assert _prepare(out, recipe, resume=False, overwrite=False) is None
    recorded = json.loads((out / "recipe.json").read_text(encoding="utf-8"))
    del recorded["mining"], recorded["per_group"]  # the fields an older koe5 did not write
    (out / "recipe.json").write_text(json.dumps(recorded), encoding="utf-8")
    assert _prepare(out, recipe, resume=True, overwrite=False) is None  # no checkpoint yet: step 0
    with pytest.raises(InputError, match="another recipe"):
        _prepare(out, dataclasses.replace(recipe, mining="dense"), resume=True, overwrite=False)


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
    with pytest.raises(InputError, match="mining must be one of bm25, dense, bm25\\+dense, not 'colbert'"):
        RerankerRecipe("x", mining="colbert")
    with pytest.raises(InputError, match="per_group"):
        RerankerRecipe("x", per_group=0)
    for lr in (0.0, -1e-5, 0.5):
        with pytest.raises(InputError, match=r"lr must be above 0 and at most 0\.01"):
            RerankerRecipe("x", lr=lr)


def test_cli_names_a_bad_recipe_value_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from koe5.cli import app

    runner = CliRunner()
    args = ["train-reranker", "-o", str(tmp_path / "run"), "--no-install"]
    result = runner.invoke(app, [*args, "--mining", "colbert"])
    assert result.exit_code == 2
    assert "mining must be one of bm25, dense, bm25+dense, not 'colbert'" in result.output
    result = runner.invoke(app, [*args, "--per-group", "0"])
    assert result.exit_code == 2 and "per_group must be at least 1, got 0" in result.output
    result = runner.invoke(app, [*args, "--lr", "2"])
    assert result.exit_code == 2 and "lr must be above 0 and at most 0.01, got 2.0" in result.output
    assert not (tmp_path / "run").exists()
