"""``lora.merge: false``: the fine-tune stage exports the adapter alone, naming its registered
base, and the registry keeps it as a ``lora`` version; the recipe rules that make it servable."""

from __future__ import annotations

import pytest

from lathe.errors import ConfigError
from lathe.lora import adapter_base
from lathe.registry import ModelRegistry
from pipelines.finetune.config import FinetuneRecipe
from pipelines.finetune.stage import build_model, export, resolve_base
from pipelines.stagekit.recipes import load_recipe
from tests.unit.training.test_evaluate import _char_tokenizer
from tests.unit.training.test_train_loop import tiny_model


def adapter_recipe(**changes) -> dict:
    recipe = {
        "kind": "sft", "name": "a", "base_model": "models:/tiny-base/1", "data": {"path": "/d.jsonl"},
        "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"], "merge": False},
        "mlflow": {"register_as": "tiny-adapter"},
    }  # fmt: skip
    return {**recipe, **changes}


def test_an_unmerged_adapter_exports_small_names_its_base_and_registers_as_lora(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the SQLite store keeps artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = ModelRegistry(uri)
    base = tmp_path / "base"
    tiny_model().save_pretrained(base)
    _char_tokenizer().save_pretrained(base)
    registry.register_folder(base, "tiny-base")
    recipe = FinetuneRecipe.model_validate(adapter_recipe())
    payload = {"base": {"registry": uri, "name": "tiny-base", "version": "1", "cache": str(tmp_path / "cache")}}

    export(build_model(recipe, payload), tmp_path / "out", recipe, payload)
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    assert adapter_base(out) == "tiny-base/1"  # the registered version, not the worker's download folder
    version = registry.register_folder(out, "tiny-adapter", tags={"lathe.base_model": "tiny-base/1"})
    assert version.tags["lathe.format"] == "lora" and version.adapter_of == "tiny-base/1"
    assert registry.get_version("tiny-base", "1").adapter_of is None

    on_adapter = FinetuneRecipe.model_validate(
        adapter_recipe(base_model="models:/tiny-adapter/1", mlflow={"register_as": "adapter-on-adapter"})
    )
    with pytest.raises(ConfigError, match=r"base_model: tiny-adapter/1 is a LoRA adapter, not a model"):
        resolve_base(on_adapter, uri, tmp_path / "cache")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"base_model": "/models/smollm2"},
            "base_model: an adapter (lora.merge: false) is served on its registered base",
        ),
        ({"mlflow": {"register_as": "tiny-base"}}, "mlflow.register_as: an adapter registers under a name of its own"),
    ],
)
def test_an_adapter_recipe_that_could_not_be_served_is_refused_naming_the_field(tmp_path, changes, message):
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(adapter_recipe(**changes)))
    with pytest.raises(ConfigError) as refused:
        load_recipe(FinetuneRecipe, path)
    assert message in str(refused.value)
