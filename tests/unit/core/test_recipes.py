"""Which stage runs a recipe: one answer for `lathe train submit`, `lathe data curate` and `--k8s`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lathe.errors import ConfigError
from lathe.recipes import ENTRY_POINTS, entry_point_for, recipe_kind

REPO = Path(__file__).resolve().parents[3]
RECIPES = sorted((REPO / "pipelines" / "recipes").glob("*.yaml"))
EXPECTED = {
    "curation.yaml": "pipelines.curation",
    "tokenizer.yaml": "pipelines.tokenizer",
    "pretrain-tiny.yaml": "pipelines.pretrain",
    "pretrain-125m-gpu.yaml": "pipelines.pretrain",
    "sft-lora-smollm2.yaml": "pipelines.finetune",
    "dpo-lora-smollm2.yaml": "pipelines.finetune",
    "sft-lora-smollm2-gpu.yaml": "pipelines.finetune",
    "dpo-lora-smollm2-gpu.yaml": "pipelines.finetune",
    "evaluate.yaml": "pipelines.evaluate",
}


def test_every_shipped_recipe_has_its_entry_point():
    assert {p.name: entry_point_for(p) for p in RECIPES} == EXPECTED


def test_every_entry_point_is_a_module_with_a_main():
    import importlib

    for module in set(ENTRY_POINTS.values()):
        assert callable(importlib.import_module(module + ".__main__").main)


def test_the_cli_and_the_cluster_path_ask_the_same_function():
    from lathe import k8s
    from lathe.cli import train

    for path in RECIPES:
        assert k8s.stage_of(path) == entry_point_for(path)
        if path.name != "curation.yaml":
            assert train._argv(path, [])[2] == entry_point_for(path)
    assert {k: v for k, v in ENTRY_POINTS.items() if k != "curation"} == train.ENTRY_POINTS


def test_a_curation_recipe_is_not_a_training_recipe():
    curation = REPO / "pipelines" / "recipes" / "curation.yaml"
    assert recipe_kind(curation) == "curation"
    with pytest.raises(ConfigError, match=r"kind must be one of tokenizer, pretrain, sft, dpo, evaluate \(got None\)"):
        recipe_kind(curation, training_only=True)


def test_an_unknown_kind_and_bad_yaml_are_named(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("kind: pretrian\n")
    with pytest.raises(ConfigError, match=r"recipe .*r\.yaml: kind must be one of .*\(got 'pretrian'\)"):
        entry_point_for(path)
    path.write_text("kind: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        entry_point_for(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        entry_point_for(tmp_path / "missing.yaml")


def test_a_mapping_is_named_by_its_source():
    assert entry_point_for({"kind": "dpo"}) == "pipelines.finetune"
    assert entry_point_for(yaml.safe_load("input: {path: x}\noutput: y\n")) == "pipelines.curation"
    with pytest.raises(ConfigError, match=r"recipe mine\.yaml: kind must be one of"):
        entry_point_for({"kind": "x"}, source="mine.yaml")


# -- --with-deps: which stages run first ---------------------------------------------------
def test_a_pretraining_recipe_without_its_tokenizer_plans_the_tokenizer_first(tmp_path):
    from lathe.recipes import plan_dependencies

    pretrain = REPO / "pipelines" / "recipes" / "pretrain-tiny.yaml"
    sets = [f"tokenizer={tmp_path / 'tok'}", f"data.path={tmp_path / 'curated'}"]
    (planned,) = plan_dependencies(pretrain, sets)
    assert planned.kind == "tokenizer" and planned.recipe.resolve() == REPO / "pipelines" / "recipes" / "tokenizer.yaml"
    assert planned.sets == [
        f"output={tmp_path / 'tok'}",
        f"data.path={tmp_path / 'curated'}",
        "data.dataset_name=python-docs-curated",
    ]
    assert planned.reason == f"no tokenizer in {tmp_path / 'tok'}"


def test_nothing_is_planned_when_the_tokenizer_is_there_or_the_stage_needs_none(tmp_path):
    from lathe.recipes import plan_dependencies

    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{}")
    recipes = REPO / "pipelines" / "recipes"
    assert plan_dependencies(recipes / "pretrain-tiny.yaml", [f"tokenizer={tmp_path / 'tok'}"]) == []
    for name in ("tokenizer.yaml", "sft-lora-smollm2.yaml", "dpo-lora-smollm2.yaml", "evaluate.yaml"):
        assert plan_dependencies(recipes / name) == [], name


def test_the_last_set_of_a_field_wins_and_relative_paths_resolve_here(tmp_path, monkeypatch):
    from lathe.recipes import plan_dependencies

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("kind: pretrain\nname: r\ndata: {path: corpus}\ntokenizer: first\n")
    (planned,) = plan_dependencies(recipe, ["tokenizer=second", "tokenizer=third"])
    assert planned.sets == [f"output={tmp_path / 'third'}", f"data.path={tmp_path / 'corpus'}"]
