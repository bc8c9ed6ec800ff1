from pathlib import Path

import pytest
from pydantic import ValidationError

from lathe.errors import ConfigError
from lathe.settings import describe_validation_error, load_settings
from services.agent.settings import AgentServiceSettings
from services.gateway.settings import GatewayServiceSettings
from services.inference.settings import InferenceServiceSettings
from services.rag.settings import RagServiceSettings

SERVICE_SETTINGS = [
    (GatewayServiceSettings, "LATHE_GATEWAY_"),
    (InferenceServiceSettings, "LATHE_INFERENCE_"),
    (RagServiceSettings, "LATHE_RAG_"),
    (AgentServiceSettings, "LATHE_AGENT_"),
]

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
        ("LATHE_LOG_LEVEL", "LOUD", "LATHE_LOG_LEVEL"),
    ],
)
def test_a_bad_value_names_the_variable(monkeypatch, name, value, named):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.message.startswith(f"{named}:")
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


def test_the_engine_environment_is_a_setting(monkeypatch, tmp_path):
    assert load_settings().inference.engine_python.name == "python"
    monkeypatch.setenv("LATHE_INFERENCE_ENGINE_PYTHON", str(tmp_path / "vllm" / "python"))
    assert load_settings().inference.engine_python == tmp_path / "vllm" / "python"


def test_the_cli_reads_a_remote_clusters_tokens_through_the_settings(monkeypatch, tmp_path):
    from lathe.cli.keys import admin_key
    from lathe.jobs import ray_headers

    monkeypatch.setenv("LATHE_HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    assert ray_headers(load_settings()) == {}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "ray-secret")
    monkeypatch.setenv("LATHE_GATEWAY_ADMIN_KEY", "admin-secret")
    settings = load_settings()
    assert ray_headers(settings) == {"Authorization": "Bearer ray-secret"}
    assert admin_key(settings) == "admin-secret"
    assert "ray-secret" not in repr(settings) and "admin-secret" not in repr(settings)  # never shown


@pytest.mark.parametrize(("cls", "prefix"), SERVICE_SETTINGS, ids=lambda v: getattr(v, "__name__", v))
def test_every_service_shares_the_roots_home_and_log_level(cls, prefix, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert (cls().home, cls().log_level) == (tmp_path / ".lathe", "INFO")
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "env"))
    monkeypatch.setenv(prefix + "HOME", str(tmp_path / "not-read"))
    monkeypatch.setenv("LATHE_LOG_LEVEL", "DEBUG")
    assert (cls().home, cls().log_level) == (tmp_path / "env", "DEBUG")
    assert cls(home="~/given").home == Path("~/given").expanduser()
    assert cls(LATHE_HOME=tmp_path / "alias").home == tmp_path / "alias"


@pytest.mark.parametrize(("cls", "prefix"), SERVICE_SETTINGS, ids=lambda v: getattr(v, "__name__", v))
def test_a_services_bad_log_level_is_named_as_set(cls, prefix, monkeypatch):
    monkeypatch.setenv("LATHE_LOG_LEVEL", "LOUD")
    with pytest.raises(ValidationError) as info:
        cls()
    assert describe_validation_error(info.value, prefix).startswith("LATHE_LOG_LEVEL: ")
