"""The variables a stage reads are settings, under the names they have always had."""

from __future__ import annotations

import pytest

from lathe.errors import ConfigError
from pipelines.stagekit.settings import load_pipeline_settings


@pytest.fixture
def env(clean_lathe_env, monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "TORCH_EXTENSIONS_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_and_the_documented_names(env):
    settings = load_pipeline_settings()
    assert (settings.result_only, settings.ray_autoscaling, settings.ray_address) == (False, False, None)
    env.setenv("LATHE_RESULT_ONLY", "1")
    env.setenv("LATHE_RAY_AUTOSCALING", "1")
    env.setenv("RAY_ADDRESS", "ray://head:10001")
    env.setenv("TORCH_EXTENSIONS_DIR", "/cache/ext")
    settings = load_pipeline_settings()
    assert (settings.result_only, settings.ray_autoscaling) == (True, True)
    assert (settings.ray_address, settings.torch_extensions_dir) == ("ray://head:10001", "/cache/ext")


def test_the_tracking_uri_is_mlflows_variable_else_lathes(env):
    assert load_pipeline_settings().tracking_uri() == "http://127.0.0.1:5000"
    env.setenv("LATHE_MLFLOW_PORT", "5999")
    assert load_pipeline_settings().tracking_uri() == "http://127.0.0.1:5999"
    env.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert load_pipeline_settings().tracking_uri() == "http://mlflow.example:5000"


def test_a_bad_value_is_named(env):
    env.setenv("LATHE_RAY_AUTOSCALING", "sometimes")
    with pytest.raises(ConfigError, match="LATHE_RAY_AUTOSCALING: Input should be a valid boolean"):
        load_pipeline_settings()


def test_workers_get_the_extension_cache(env):
    from pipelines.pretrain.config import PretrainRecipe
    from pipelines.stagekit.train_loop import worker_env

    recipe = PretrainRecipe.model_validate(
        {"name": "t", "data": {"path": "/x"}, "tokenizer": "/t", "scaling": {"strategy": "deepspeed"}}
    )
    env_vars = worker_env(recipe, "/cache/ext")
    assert env_vars["TORCH_EXTENSIONS_DIR"] == "/cache/ext" and env_vars["DS_ACCELERATOR"] == "cpu"
    assert worker_env(recipe)["TORCH_EXTENSIONS_DIR"].endswith("lathe-torch-extensions")
