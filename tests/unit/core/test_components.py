import os
import stat

import pytest

from lathe.platform.components import (
    InferenceComponent,
    MlflowComponent,
    PrometheusComponent,
    RayComponent,
    render_prometheus_config,
)
from lathe.platform.processes import StateStore
from lathe.settings import load_settings


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    return load_settings()


def test_mlflow_runs_lean_with_artifacts_under_home(settings):
    component = MlflowComponent(settings, StateStore(settings.run_dir))
    argv = component.argv()
    assert argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--artifacts-destination") + 1] == str(settings.home / "mlflow" / "artifacts")
    assert argv[argv.index("--backend-store-uri") + 1].startswith("sqlite:///" + str(settings.home))
    assert component.env()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_ray_token_is_private_and_shared_with_clients(settings):
    component = RayComponent(settings, StateStore(settings.run_dir))
    component.prepare()
    mode = stat.S_IMODE(os.stat(component.token_path).st_mode)
    assert mode == 0o600
    assert len(component.token()) == 64
    assert component.ray_env() == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(component.token_path)}
    first = component.token()
    component.prepare()
    assert component.token() == first  # a second `up` keeps the token


def test_prometheus_config_scrapes_every_component(settings):
    config = render_prometheus_config(settings)
    for job in ("lathe-inference", "lathe-gateway", "lathe-mlflow", "lathe-rag", "lathe-agent", "prometheus"):
        assert f"job_name: {job}" in config
    assert f"127.0.0.1:{settings.inference.port}" in config


def test_prometheus_finds_rays_metrics_agents_through_the_file_ray_writes(settings, tmp_path):
    import shutil
    import subprocess

    import yaml

    config = yaml.safe_load(render_prometheus_config(settings))
    ray = next(job for job in config["scrape_configs"] if job["job_name"] == "lathe-ray")
    discovery = ray["file_sd_configs"][0]["files"][0]
    assert discovery == str(
        RayComponent(settings, StateStore(settings.run_dir)).temp_dir / "prom_metrics_service_discovery.json"
    )
    promtool = shutil.which("promtool")
    if promtool:  # the config is one Prometheus accepts
        path = tmp_path / "prometheus.yml"
        path.write_text(render_prometheus_config(settings))
        check = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_missing_prometheus_is_reported_not_fatal(settings, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    component = PrometheusComponent(settings, StateStore(settings.run_dir))
    assert "not installed" in component.available()


def test_missing_engine_environment_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LATHE_INFERENCE_ENGINE_PYTHON", "/nonexistent/python")
    settings = load_settings()
    component = InferenceComponent(settings, StateStore(settings.run_dir))
    assert "make install" in component.available()
