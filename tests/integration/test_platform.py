"""`lathe up/status/down` on the real components: MLflow, Ray, vLLM, Prometheus."""

import json
import shutil
import socket
import time

import httpx
import pytest

from lathe.platform.processes import port_is_free
from tests.integration.conftest import PORTS, platform_env
from tests.support.platform import run_lathe

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_status_reports_every_component_healthy(platform):
    report = platform.status()
    states = {c["name"]: c["state"] for c in report["components"]}
    assert states["mlflow"] == states["ray"] == states["inference"] == states["gateway"] == "healthy"
    assert states["rag"] == states["agent"] == "healthy"
    expected_prometheus = "healthy" if shutil.which("prometheus") else "unavailable"
    assert states["prometheus"] == expected_prometheus
    inference = platform.component("inference")
    assert "smollm2-135m-instruct@champion = v1" in inference["detail"]
    assert inference["url"] == platform.inference_url
    for component in report["components"]:
        if component["state"] == "healthy":
            assert component["pid"] > 0
            assert (platform.home / "logs" / f"{component['name']}.log").exists()


def test_up_twice_changes_nothing(platform):
    before = {c["name"]: c["pid"] for c in platform.status()["components"]}
    again = platform.lathe("up", "--json")
    assert again.returncode == 0, again.stderr
    after = {c["name"]: c["pid"] for c in json.loads(again.stdout)["components"]}
    assert before == after


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus package is not installed")
def test_prometheus_scrapes_every_component(platform):
    url = f"http://127.0.0.1:{PORTS['LATHE_PROMETHEUS_PORT']}/api/v1/targets"
    deadline = time.monotonic() + 60
    while True:
        targets = httpx.get(url, timeout=5).json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if health and all(h == "up" for h in health.values()):
            break
        assert time.monotonic() < deadline, f"targets not all up: {health}"
        time.sleep(1)
    assert set(health) == {
        "lathe-inference", "lathe-gateway", "lathe-mlflow", "lathe-rag", "lathe-agent", "lathe-ray", "prometheus"
    }  # fmt: skip
    query = f"http://127.0.0.1:{PORTS['LATHE_PROMETHEUS_PORT']}/api/v1/query"
    deadline = time.monotonic() + 30
    while True:
        result = httpx.get(query, params={"query": "lathe_inference_engine_up"}, timeout=5).json()["data"]["result"]
        if result:
            break
        assert time.monotonic() < deadline, "lathe_inference_engine_up never scraped"
        time.sleep(1)
    assert result[0]["value"][1] == "1"


def test_ray_head_runs_jobs_for_token_holders_only(platform):
    from ray.job_submission import JobStatus, JobSubmissionClient

    token_path = platform.home / "ray" / "auth_token"
    address = f"http://127.0.0.1:{PORTS['LATHE_RAY_DASHBOARD_PORT']}"
    refused = httpx.get(f"{address}/api/jobs/", timeout=5)
    assert refused.status_code in (401, 403)

    client = JobSubmissionClient(address, headers={"Authorization": f"Bearer {token_path.read_text().strip()}"})
    job = client.submit_job(
        entrypoint="python -c \"import ray; ray.init(); print('cpus', ray.cluster_resources()['CPU'])\""
    )
    deadline = time.monotonic() + 120
    while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, "the Ray job did not finish"
        time.sleep(1)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, client.get_job_logs(job)
    assert "cpus" in client.get_job_logs(job)


def test_busy_port_is_one_line_and_starts_nothing(tmp_path):
    env = platform_env(tmp_path / "home", LATHE_MLFLOW_PORT="25100", LATHE_PROMETHEUS_ENABLED="false")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 25100))
        blocker.listen()
        result = run_lathe(["up"], env, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "25100" in lines[0] and "LATHE_MLFLOW_PORT" in lines[0]
    run_dir = tmp_path / "home" / "run"
    assert not run_dir.exists() or not list(run_dir.glob("*.json"))


def test_unknown_model_fails_and_rolls_back(tmp_path):
    ports = {
        "LATHE_MLFLOW_PORT": "25200",
        "LATHE_RAY_PORT": "26480",
        "LATHE_RAY_DASHBOARD_PORT": "28365",
        "LATHE_INFERENCE_PORT": "28110",
        "LATHE_RAY_CLIENT_PORT": "30002",
        "LATHE_RAY_AGENT_PORT": "22366",
        "LATHE_GATEWAY_PORT": "28060",
        "LATHE_GATEWAY_METRICS_PORT": "28069",
        "LATHE_RAG_PORT": "28310",
        "LATHE_AGENT_PORT": "28410",
        "LATHE_PROMETHEUS_ENABLED": "false",
    }
    env = platform_env(tmp_path / "home", LATHE_INFERENCE_MODEL_NAME="no-such-model", **ports)
    result = run_lathe(["up"], env, timeout=300)
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert "no registered model named 'no-such-model'" in error_lines[0]
    assert "rolling back" in result.stdout + result.stderr
    status = json.loads(run_lathe(["status", "--json"], env).stdout)
    assert all(c["pid"] is None for c in status["components"])
    assert port_is_free(25200)  # the MLflow it started is gone
