from pathlib import Path

import pytest
import yaml

from lathe.errors import ConfigError
from pipelines.curation.config import load_config

RECIPES = Path(__file__).resolve().parents[3] / "pipelines" / "recipes"


def write(tmp_path, data):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_recipe_loads():
    config = load_config(RECIPES / "curation.yaml")
    assert config.stages.near_dedup.bands * config.stages.near_dedup.rows == 128


def test_overrides_replace_paths(tmp_path):
    config = load_config(RECIPES / "curation.yaml", input_path=str(tmp_path), output=str(tmp_path / "out"))
    assert config.input.path == str(tmp_path) and config.output == str(tmp_path / "out")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"stages": {"dedupe": {}}}, "stages.dedupe: unknown key"),
        ({"stages": {"near_dedup": {"threshold": 1.5}}}, "stages.near_dedup.threshold"),
        ({"stages": {"quality": {"min_words": 10, "max_words": 5}}}, "stages.quality"),
        ({"stages": {"decontaminate": {"enabled": True}}}, "stages.decontaminate"),
        ({"stages": {"pii": {"kinds": ["passport"]}}}, "stages.pii.kinds.0"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_recipes_name_the_field(tmp_path, change, named):
    data = {"input": {"path": str(tmp_path)}, "output": str(tmp_path / "out"), **change}
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    assert named in info.value.message


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read recipe"):
        load_config(tmp_path / "nope.yaml")
