"""A first install's model: registered once from its source, then served from the cache.

Runs against a real MLflow registry (a SQLite store in a temporary folder), through the same
``ModelRegistry`` that `lathe models register` uses; the source is a ``file://`` URI or a
folder, which MLflow reads exactly as it reads ``s3://`` and ``gs://``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lathe import model_fetch
from lathe.errors import ConfigError
from lathe.model_bootstrap import SOURCE_TAG, ensure_registered, parse_source
from lathe.registry import ModelRegistry

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture
def uri(tmp_path, monkeypatch, clean_lathe_env):
    monkeypatch.chdir(tmp_path)  # the SQLite store keeps artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import mlflow

    mlflow.set_tracking_uri(uri)  # the fluent API keeps the last URI any earlier test set
    return uri


@pytest.fixture
def weights(tmp_path):
    """A model folder as a bucket would hold it."""
    folder = tmp_path / "bucket" / "smollm2"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    return folder


def test_bootstrap_registers_version_1_with_the_alias_once(uri, weights, tmp_path):
    registry = ModelRegistry(uri)
    source = weights.as_uri()  # file:///…/bucket/smollm2, read by MLflow's artifact repository
    info, registered = ensure_registered(registry, "smollm2", "champion", source, tmp_path / "work")
    assert registered and info.version == "1" and "champion" in info.aliases
    assert info.tags[SOURCE_TAG] == source
    # A second install, an upgrade or another replica finds the alias and touches nothing.
    again, registered = ensure_registered(registry, "smollm2", "champion", "file:///nowhere/at/all", tmp_path / "w")
    assert not registered and again.version == "1"
    assert [v.version for v in registry.list_versions("smollm2")] == ["1"]
    assert not (tmp_path / "work" / ".bootstrap-smollm2").exists()  # the staged copy is gone


def test_an_alias_set_elsewhere_is_never_overwritten(uri, weights, tmp_path):
    registry = ModelRegistry(uri)
    registry.register_folder(weights, "m")
    registry.register_folder(weights, "m", alias="champion")  # v2 promoted by a pipeline
    info, registered = ensure_registered(registry, "m", "champion", str(weights), tmp_path / "work")
    assert (info.version, registered) == ("2", False)
    assert len(registry.list_versions("m")) == 2


def test_the_init_container_registers_downloads_and_then_serves_from_the_cache(uri, weights, tmp_path, capsys):
    cache, link = tmp_path / "cache", tmp_path / "served" / "model"
    common = ["--name", "smollm2", "--dest", str(cache), "--link", str(link)]
    assert model_fetch.main([*common, "--tracking-uri", uri, "--source", str(weights), "--wait-for-alias"]) == 0
    assert link.resolve() == (cache / "smollm2" / "1").resolve()
    assert (link / "config.json").is_file()
    assert "registered smollm2 version 1 as @champion" in capsys.readouterr().err
    # A restart with the version pinned: the cache answers, MLflow is not asked (it is down here).
    link.unlink()
    assert model_fetch.main([*common, "--version", "1", "--tracking-uri", UNREACHABLE, "--wait-s", "0"]) == 0
    assert link.resolve() == (cache / "smollm2" / "1").resolve()
    # Following the alias with MLflow down: the version the alias last resolved to, said out loud.
    assert model_fetch.main([*common, "--tracking-uri", UNREACHABLE, "--wait-s", "0"]) == 0
    assert "serving cached 1 of smollm2@champion" in capsys.readouterr().err
    # A version that is not cached still needs the registry.
    assert model_fetch.main([*common, "--version", "2", "--tracking-uri", UNREACHABLE, "--wait-s", "0"]) == 1


def test_a_missing_alias_is_waited_for_with_a_clear_line(uri, tmp_path, capsys):
    ModelRegistry(uri).list_models()  # the store's tables exist before the clock starts
    args = ["--name", "ghost", "--alias", "gold", "--dest", str(tmp_path / "c"), "--tracking-uri", uri]
    assert model_fetch.main([*args, "--wait-for-alias", "--wait-s", "3"]) == 1
    err = capsys.readouterr().err
    assert "waiting for ghost@gold to be registered (try 1, next in 2s)" in err
    assert "gave up on ghost@gold after 2 tries" in err
    assert "no registered model named 'ghost'" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hf://HuggingFaceTB/SmolLM2-135M-Instruct@main", ("hf", "HuggingFaceTB/SmolLM2-135M-Instruct", "main")),
        ("hf://org/repo", ("hf", "org/repo", None)),
        ("s3://bucket/models/llama", ("uri", "s3://bucket/models/llama", None)),
        ("gs://bucket/m", ("uri", "gs://bucket/m", None)),
        ("/sources/models/m", ("path", "/sources/models/m", None)),
    ],
)
def test_sources_parse(text, expected):
    parsed = parse_source(text)
    assert (parsed.kind, parsed.location, parsed.revision) == expected


@pytest.mark.parametrize("text", ["hf://just-a-name", "s3://", "http://example.com/m", "relative/path"])
def test_a_bad_source_fails_before_the_registry_is_asked(text, tmp_path):
    with pytest.raises(ConfigError, match=r"source|bucket"):
        ensure_registered(ModelRegistry(UNREACHABLE), "m", "champion", text, tmp_path)


def test_lathe_models_bootstrap_on_the_command_line(uri, weights):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATHE_")}
    env["LATHE_MLFLOW_TRACKING_URI"] = uri
    command = [sys.executable, "-m", "lathe.cli", "models", "bootstrap", "m", "--source", weights.as_uri(), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["version"], out["aliases"], out["registered"]) == ("1", ["champion"], True)


def _inference_deployment(values: dict) -> dict:
    from tests.unit.k8s import manifests

    return next(
        o
        for o in manifests.render(values)
        if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"
    )


def test_the_chart_registers_from_the_source_and_waits_instead_of_failing_the_release(monkeypatch, tmp_path):
    from tests.unit.k8s import manifests

    model = manifests.load_values(manifests.CHART / "values.yaml")["inference"]["models"][0]
    sourced = {**model, "source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct", "existingAlias": False}
    values = {"inference": {"models": [sourced], "huggingFaceToken": {"existingSecret": "hf", "key": "token"}}}
    deployment = _inference_deployment(values)
    (fetch,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert "--source=hf://HuggingFaceTB/SmolLM2-135M-Instruct" in fetch["command"]
    assert "--wait-for-alias" in fetch["command"]  # a missing alias is waited for, not a failed release
    token = next(e for e in fetch["env"] if e["name"] == "HF_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert manifests.validate(deployment) == []
    # The init container parses exactly the flags the chart passes (the download itself is tested above).
    seen = []
    monkeypatch.setattr(model_fetch, "_retry", lambda args: seen.append(args) or 0)
    argv = [a if not a.startswith("--dest=") else f"--dest={tmp_path}" for a in fetch["command"][3:]]
    assert model_fetch.main([*argv, "--tracking-uri=http://127.0.0.1:9"]) == 0
    assert (seen[0].source, seen[0].wait_for_alias, seen[0].wait_s) == (sourced["source"], True, 600.0)
    # HTTPS egress opens only when some model has a source to download.
    policy = next(
        o
        for o in manifests.render(values)
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-inference")
    )
    assert any({"protocol": "TCP", "port": 443} in rule.get("ports", []) for rule in policy["spec"]["egress"])
    plain = next(
        o for o in manifests.render({}) if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-inference")
    )
    assert not any({"protocol": "TCP", "port": 443} in rule.get("ports", []) for rule in plain["spec"]["egress"])


def test_a_model_with_no_source_and_no_existing_alias_fails_rendering_naming_it():
    from tests.unit.k8s import manifests

    model = manifests.load_values(manifests.CHART / "values.yaml")["inference"]["models"][0]
    with pytest.raises(Exception, match=f"inference model {model['id']} has no source and existingAlias is false"):
        manifests.render({"inference": {"models": [{**model, "existingAlias": False}]}})
