"""The registry against a real MLflow server: register, alias, resolve, download."""

import hashlib
import json

import pytest

from lathe.errors import AliasNotFoundError, ModelNotFoundError
from lathe.registry import ModelRegistry

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def small_model(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    return folder


def test_register_download_round_trip(platform, small_model, tmp_path):
    registry = ModelRegistry(platform.mlflow_uri)
    v = registry.register_folder(small_model, "roundtrip-model", tags={"team": "research"})
    assert v.version == "1"
    assert v.tags["team"] == "research" and v.tags["lathe.format"] == "hf"
    local = registry.download("roundtrip-model", v.version, tmp_path / "dl")
    assert _digest(local) == _digest(small_model)
    assert registry.download("roundtrip-model", v.version, tmp_path / "dl") == local  # cached
    v2 = registry.register_folder(small_model, "roundtrip-model")
    assert [x.version for x in registry.list_versions("roundtrip-model")] == ["1", v2.version]


def test_aliases_resolve_and_missing_ones_are_named(platform, small_model):
    registry = ModelRegistry(platform.mlflow_uri)
    v = registry.register_folder(small_model, "alias-model", alias="candidate")
    assert registry.resolve("alias-model", "candidate").version == v.version
    with pytest.raises(AliasNotFoundError, match=r"no alias 'champion' \(aliases: candidate\)"):
        registry.resolve("alias-model", "champion")
    with pytest.raises(ModelNotFoundError, match="no registered model named 'ghost'"):
        registry.resolve("ghost", "champion")


def test_cli_promote_moves_an_alias(platform, small_model):
    registry = ModelRegistry(platform.mlflow_uri)
    registry.register_folder(small_model, "cli-model", alias="champion")
    v2 = registry.register_folder(small_model, "cli-model")
    result = platform.lathe("models", "promote", "cli-model", "--version", v2.version, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "name": "cli-model",
        "alias": "champion",
        "version": v2.version,
        "previous_version": "1",
    }
    assert registry.resolve("cli-model", "champion").version == v2.version
    listed = json.loads(platform.lathe("models", "list", "--json").stdout)
    assert {"name": "cli-model", "aliases": {"champion": v2.version}, "latest_version": v2.version} in listed
    bad = platform.lathe("models", "promote", "cli-model", "--version", "99")
    assert bad.returncode == 1 and "has no version 99" in bad.stderr
