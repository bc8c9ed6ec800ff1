"""The CLI as a user meets it: a subprocess, its exit code and what it prints."""

import json
import os
import subprocess
import sys

import pytest


def lathe(*args, env=None, timeout=120):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LATHE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "lathe.cli", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["up"],
        ["down"],
        ["status"],
        ["chat"],
        ["models"],
        ["models", "list"],
        ["models", "promote"],
        ["models", "canary"],
        ["keys"],
        ["keys", "create"],
        ["keys", "usage"],
        ["audit"],
        ["pipeline"],
        ["pipeline", "run"],
        ["pipeline", "status"],
        ["pipeline", "logs"],
    ],
)
def test_every_command_explains_itself(command):
    result = lathe(*command, "--help")
    assert result.returncode == 0
    assert "Usage" in result.stdout
    assert len(result.stdout.strip().splitlines()) > 3


def test_a_bad_setting_is_one_line_and_exit_2(tmp_path):
    result = lathe("status", env={"LATHE_HOME": str(tmp_path), "LATHE_RAY_DASHBOARD_PORT": "http"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "LATHE_RAY_DASHBOARD_PORT" in lines[0]


def test_pipeline_dry_run_without_k8s_is_refused_and_no_ray_head_is_one_line(tmp_path):
    refused = lathe("pipeline", "run", "pipelines/demo.yaml", "--dry-run", env={"LATHE_HOME": str(tmp_path)})
    assert refused.returncode == 2 and "--dry-run prints the RayJob of --k8s" in refused.stderr
    no_head = lathe(
        "pipeline", "run", "pipelines/demo.yaml", env={"LATHE_HOME": str(tmp_path), "LATHE_RAY_DASHBOARD_PORT": "9"}
    )
    assert no_head.returncode == 1 and len(no_head.stderr.strip().splitlines()) == 1
    assert "lathe up" in no_head.stderr


def test_registry_down_is_one_line(tmp_path):
    result = lathe("models", "list", env={"LATHE_HOME": str(tmp_path), "LATHE_MLFLOW_PORT": "9"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unreachable" in lines[0] and "lathe up" in lines[0]


def test_chat_without_a_platform_says_to_start_it(tmp_path):
    result = lathe("chat", "hello", env={"LATHE_HOME": str(tmp_path), "LATHE_INFERENCE_PORT": "9"})
    assert result.returncode == 1
    assert "lathe up" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_empty_chat_message_is_refused(tmp_path):
    result = lathe("chat", "   ", env={"LATHE_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "empty" in result.stderr


def test_status_json_lists_every_component_when_nothing_runs(tmp_path):
    result = lathe("status", "--json", env={"LATHE_HOME": str(tmp_path / "fresh")})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    names = [c["name"] for c in report["components"]]
    assert names == ["mlflow", "ray", "inference", "rag", "agent", "gateway", "prometheus"]
    for component in report["components"]:
        assert component["state"] in ("stopped", "unavailable")
        assert component["pid"] is None
        assert component["url"].startswith("http://127.0.0.1:")
        assert set(component) >= {"url", "port", "pid", "healthy", "log", "state"}


def test_down_with_nothing_running_is_harmless(tmp_path):
    result = lathe("down", env={"LATHE_HOME": str(tmp_path / "fresh")})
    assert result.returncode == 0
    assert "nothing was running" in result.stdout
