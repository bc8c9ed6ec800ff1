"""The RAG service's encoder and expansion settings on Kubernetes: values become the service's
own settings, a bad value fails the install naming the key, and a slow first start (the ONNX
export of the encoder) is not mistaken for a dead pod."""

from __future__ import annotations

import re

import pytest

from services.rag.settings import RagServiceSettings
from tests.unit.k8s import manifests


def _container(objects: list[dict], component: str) -> dict:
    (deployment,) = [
        o for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]  # fmt: skip
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _settings(container: dict, monkeypatch) -> RagServiceSettings:
    """The settings the RAG service reads from the container's environment."""
    for item in container["env"]:
        if "value" in item and item["name"].startswith("LATHE_RAG_"):
            monkeypatch.setenv(item["name"], item["value"])
    return RagServiceSettings()


@pytest.mark.usefixtures("clean_lathe_env")
def test_the_encoder_threads_and_expansion_reach_the_service(monkeypatch):
    values = {"rag": {"encoder": "onnx-int8", "embedThreads": 2, "expand": 2}}
    settings = _settings(_container(manifests.render(values), "rag"), monkeypatch)
    assert (settings.encoder, settings.embed_threads, settings.expand) == ("onnx-int8", 2, 2)


@pytest.mark.usefixtures("clean_lathe_env")
def test_the_defaults_are_the_services_own(monkeypatch):
    container = _container(manifests.render({}), "rag")
    assert "LATHE_RAG_EMBED_THREADS" not in {e["name"] for e in container["env"]}  # one per core
    settings = _settings(container, monkeypatch)
    defaults = RagServiceSettings.model_fields
    assert settings.encoder == defaults["encoder"].default and settings.expand == defaults["expand"].default


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"encoder": "tensorrt"}, "/rag/encoder"),
        ({"expand": 9}, "/rag/expand"),
        ({"embedThreads": -1}, "/rag/embedThreads"),
    ],
)
def test_a_bad_rag_value_fails_the_install_naming_it(values, path):
    with pytest.raises(Exception, match=re.escape(f"at '{path}'")):
        manifests.render({"rag": values})


def test_rag_and_agent_have_a_startup_probe_before_their_liveness_probe():
    objects = manifests.render({})
    for component in ("rag", "agent"):
        container = _container(objects, component)
        startup, liveness = container["startupProbe"], container["livenessProbe"]
        assert startup["httpGet"] == liveness["httpGet"]
        # Three minutes to start (an ONNX export takes ~10 s on 2 cores, far longer on a busy node).
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 180
