"""Training configuration: the recipes' values, config files, the saved copy, validation."""

from __future__ import annotations

import json
import re

import pytest

from koe5.errors import InputError
from koe5.train.config import RECIPES, TrainConfig, load_config_file, to_toml, tomllib_loads


def test_koe5_recipe_is_the_default():
    cfg = TrainConfig.from_recipe("koe5", data=["x.jsonl"], output="o")
    assert cfg == TrainConfig(data=["x.jsonl"], output="o")
    assert (cfg.loss, cfg.scale, cfg.batch_size, cfg.lr, cfg.epochs) == ("cached-mnrl", 20.0, 512, 1e-5, 1.0)
    assert 0 < cfg.warmup < 1 and cfg.group_column == "group"


def test_kure_recipe_needs_a_guide():
    cfg = TrainConfig.from_recipe("kure-v1", data=["x.jsonl"], output="o")
    assert (cfg.loss, cfg.batch_size, cfg.lr) == ("gist", 4096, 2e-5)
    with pytest.raises(InputError, match="guide"):
        cfg.validate()
    cfg.replace(guide="default").validate()


def test_every_recipe_validates():
    for name in RECIPES:
        extra = {"guide": "default"} if name == "kure-v1" else {}
        TrainConfig.from_recipe(name, data=["x"], output="o", **extra).validate()


def test_toml_round_trip_and_none_left_out():
    cfg = TrainConfig.from_recipe(
        "koe5-small",
        data=["a.jsonl", "b.parquet"],
        output="o",
        eval_tasks=["PublicHealthQA"],
        query_prefix="질의: ",
    )
    text = to_toml(cfg)
    assert "guide" not in text and 'query_prefix = "질의: "' in text
    assert TrainConfig.from_dict(tomllib_loads(text)) == cfg


def test_config_files_toml_yaml_and_relative_paths(tmp_path):
    (tmp_path / "rows.jsonl").write_text("{}\n", encoding="utf-8")
    (tmp_path / "a.toml").write_text(
        'data = ["rows.jsonl", "org/hub-set"]\noutput = "run"\nbatch_size = 64\nlr = 2e-5\n', encoding="utf-8"
    )
    values = load_config_file(tmp_path / "a.toml")
    assert values["data"] == [str(tmp_path / "rows.jsonl"), "org/hub-set"]
    assert values["output"] == str(tmp_path / "run")
    cfg = TrainConfig.from_recipe("koe5", **values)
    assert (cfg.batch_size, cfg.lr, cfg.loss) == (64, 2e-5, "cached-mnrl")
    (tmp_path / "b.yaml").write_text("data: rows.jsonl\nmini-batch: 8\neval_tasks: [PublicHealthQA]\n")
    cfg = TrainConfig.from_dict(load_config_file(tmp_path / "b.yaml"))
    assert cfg.data == [str(tmp_path / "rows.jsonl")] and cfg.mini_batch == 8


def test_config_errors_name_the_problem(tmp_path):
    (tmp_path / "bad.toml").write_text("batch_sise = 3\n", encoding="utf-8")
    with pytest.raises(InputError, match="batch_sise"):
        TrainConfig.from_dict(load_config_file(tmp_path / "bad.toml"), origin="bad.toml")
    (tmp_path / "broken.toml").write_text("lr = = 1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"broken.toml: not valid TOML"):
        load_config_file(tmp_path / "broken.toml")
    with pytest.raises(InputError, match="unknown recipe"):
        TrainConfig.from_recipe("koe6")
    base = TrainConfig(data=["x"], output="o")
    for change, message in [
        ({"loss": "triplet"}, "loss must be"),
        ({"batch_size": 0}, "batch_size"),
        ({"merge_base": 1.5}, "merge_base"),
        ({"warmup": 1.0}, "warmup"),
        ({"data": []}, "no training data"),
    ]:
        with pytest.raises(InputError, match=message):
            base.replace(**change).validate()


def test_every_setting_the_cli_offers_has_its_help_in_the_config():
    import dataclasses

    from koe5.cli.train import TRAIN_OPTIONS

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    offered = [o.name for o in TRAIN_OPTIONS if o.name in fields]
    assert len(offered) == 28  # every flag of `koe5 train` but --config, --resume and --overwrite
    for name in offered:
        assert isinstance(fields[name].metadata.get("help"), str), name
    assert fields["lr"].metadata["help"] == "Peak learning rate."


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"batch_size": "eight"}, "setting 'batch_size' must be int, got 'eight'"),
        ({"lr": "1e-5"}, "setting 'lr' must be float, got '1e-5' (str); in YAML write numbers like 1.0e-5"),
        ({"gradient_checkpointing": "yes"}, "setting 'gradient_checkpointing' must be bool"),
        ({"max_length": 1.5}, "setting 'max_length' must be int or none"),
        ({"negative_columns": ["a", 3]}, "setting 'negative_columns' must be list"),
    ],
)
def test_a_setting_of_the_wrong_type_is_named(tmp_path, setting, message):
    from koe5.errors import ConfigError

    key, value = next(iter(setting.items()))
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"data": ["rows.jsonl"], "output": "out", key: value}))
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig.from_dict(load_config_file(path), origin=str(path)).validate()
