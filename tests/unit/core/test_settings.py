from pathlib import Path

import pytest

from lathe.errors import ConfigError
from lathe.settings import load_settings

pytestmark = pytest.mark.usefixtures("clean_lathe_env")


def test_defaults_describe_the_local_platform(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.profile == "local"
    assert s.home == tmp_path / ".lathe"
    assert s.mlflow.uri == "http://127.0.0.1:5000"
    assert s.inference.model_uri == "models:/smollm2-135m-instruct@champion"
    assert s.assets_dir == tmp_path / ".lathe" / "assets"


def test_each_section_reads_its_own_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("LATHE_MLFLOW_PORT", "5123")
    monkeypatch.setenv("LATHE_INFERENCE_ALIAS", "candidate")
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("LATHE_ASSETS", str(tmp_path / "shared-assets"))
    s = load_settings()
    assert s.mlflow.uri == "http://127.0.0.1:5123"
    assert s.inference.model_uri.endswith("@candidate")
    assert s.run_dir == tmp_path / "h" / "run"
    assert s.assets_dir == tmp_path / "shared-assets"


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("LATHE_INFERENCE_PORT", "abc", "LATHE_INFERENCE_PORT"),
        ("LATHE_MLFLOW_PORT", "70000", "LATHE_MLFLOW_PORT"),
        ("LATHE_PROFILE", "cloud", "LATHE_PROFILE"),
        ("LATHE_INFERENCE_ALIAS", "has space", "LATHE_INFERENCE_ALIAS"),
        ("LATHE_PROMETHEUS_SCRAPE_INTERVAL_S", "0", "LATHE_PROMETHEUS_SCRAPE_INTERVAL_S"),
    ],
)
def test_a_bad_value_names_the_variable(monkeypatch, name, value, named):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert named in info.value.message
    assert repr(value) in info.value.message


def test_k8s_profile_refuses_missing_cluster_addresses(monkeypatch):
    monkeypatch.setenv("LATHE_PROFILE", "k8s")
    with pytest.raises(ConfigError, match="LATHE_MLFLOW_TRACKING_URI"):
        load_settings()
    monkeypatch.setenv("LATHE_MLFLOW_TRACKING_URI", "http://lathe-mlflow:5000")
    monkeypatch.setenv("LATHE_INFERENCE_URL", "http://lathe-inference:8100")
    s = load_settings()
    assert s.mlflow.uri == "http://lathe-mlflow:5000"
    assert s.inference.base_url == "http://lathe-inference:8100"


def test_loading_settings_touches_no_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "never"))
    load_settings()
    assert not Path(tmp_path / "never").exists()
