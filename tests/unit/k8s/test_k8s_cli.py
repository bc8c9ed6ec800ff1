"""``lathe cluster status`` and ``lathe train submit|list|logs --k8s``, tested at the API boundary.

No Kubernetes API server can run here, so this is the one place the tests stub something:
``CoreV1Api`` and ``CustomObjectsApi`` are replaced by objects that answer with the
kubernetes client's own models and record what they were asked to create. Everything the CLI
builds is real, and the RayJob it creates is validated against KubeRay's CRD schema.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from typer.testing import CliRunner

from lathe import k8s
from lathe.cli import app
from lathe.errors import ConfigError
from tests.unit.k8s import manifests

RECIPES = sorted((manifests.REPO / "pipelines" / "recipes").glob("*.yaml"))
RAY_IMAGE = "ghcr.io/lathe-llmops/lathe-ray:0.1.0"


def pod(name: str, component: str, phase: str = "Running", ready: bool = True, restarts: int = 0) -> client.V1Pod:
    status = client.V1ContainerStatus(
        name="c", ready=ready, restart_count=restarts, image="i", image_id="", started=True
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name, labels={"app.kubernetes.io/component": component}, creation_timestamp=datetime.now(UTC)
        ),
        status=client.V1PodStatus(phase=phase, container_statuses=[status]),
    )


class FakeCore:
    def __init__(self, pods: list[client.V1Pod], log: str = "") -> None:
        self.pods, self.log, self.selectors = pods, log, []

    def list_namespaced_pod(self, namespace: str, label_selector: str = "") -> client.V1PodList:
        self.selectors.append(label_selector)
        return client.V1PodList(items=self.pods)

    def read_namespaced_pod_log(self, name: str, namespace: str, **_: object) -> str:
        return self.log


class FakeCustom:
    def __init__(self, clusters: list[dict] | None = None, jobs: list[dict] | None = None) -> None:
        self.objects = {"rayclusters": clusters or [], "rayjobs": jobs or []}
        self.created: list[dict] = []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        for obj in self.objects[plural]:
            if obj["metadata"]["name"] == name:
                return obj
        raise ApiException(status=404, reason="Not Found")

    def list_namespaced_custom_object(self, group, version, namespace, plural):
        assert (group, version) == ("ray.io", "v1")
        return {"items": self.objects[plural]}

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == ("ray.io", "v1", "rayjobs")
        self.created.append(body)
        return body


def raycluster(name: str = "lathe-ray", release: str = "lathe") -> dict:
    head = {"template": {"spec": {"containers": [{"name": "lathe-ray-head", "image": RAY_IMAGE}]}}}
    return {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": release}},
        "spec": {"headGroupSpec": head},
        "status": {"state": "ready", "readyWorkerReplicas": 1, "desiredWorkerReplicas": 2},
    }


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_the_rayjob_for_every_shipped_recipe_is_valid_for_kuberay(recipe: Path):
    job = k8s.build_rayjob(recipe, cluster="lathe-ray", image=RAY_IMAGE, sets=["training.max_steps=5"])
    assert manifests.validate(job) == []
    stage = k8s.stage_of(recipe)
    assert job["spec"]["entrypoint"] == (
        f"python -m {stage} --config pipelines/recipes/{recipe.name} --set training.max_steps=5"
    )
    submitter = job["spec"]["submitterPodTemplate"]["spec"]
    assert submitter["securityContext"]["runAsNonRoot"] and not submitter["automountServiceAccountToken"]
    assert submitter["containers"][0]["securityContext"]["readOnlyRootFilesystem"]


def test_a_recipe_outside_the_image_is_refused(tmp_path: Path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("kind: pretrain\n")
    with pytest.raises(ConfigError, match="pipelines/recipes"):
        k8s.build_rayjob(recipe, cluster="lathe-ray", image=RAY_IMAGE)


def test_submit_uses_the_head_image_and_a_missing_cluster_is_named():
    custom = FakeCustom(clusters=[raycluster()])
    created = k8s.submit(custom, "lathe", RECIPES[0], cluster="lathe-ray")
    assert created["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["image"] == RAY_IMAGE
    assert created["spec"]["clusterSelector"] == {"ray.io/cluster": "lathe-ray"}
    with pytest.raises(ConfigError, match="no RayCluster 'other-ray' in namespace 'lathe'"):
        k8s.submit(custom, "lathe", RECIPES[0], cluster="other-ray")


def test_the_submitter_carries_the_release_name_the_network_policy_selects():
    # release "prod" installs RayCluster prod-lathe-ray; the chart's policy selects instance=prod.
    custom = FakeCustom(clusters=[raycluster("prod-lathe-ray", release="prod")])
    created = k8s.submit(custom, "lathe", RECIPES[0], cluster="prod-lathe-ray")
    template = created["spec"]["submitterPodTemplate"]
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "prod"
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "ray-submitter"
    assert "http://prod-lathe-mlflow:5000" in created["spec"]["runtimeEnvYAML"]


@pytest.fixture
def cluster_api(monkeypatch):
    job = {
        "metadata": {"name": "lathe-tokenizer-abc123", "labels": {"lathe.dev/recipe": "tokenizer"}},
        "status": {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "startTime": "2026-11-29T08:00:00Z"},
    }
    core = FakeCore([pod("lathe-gateway-1", "gateway"), pod("lathe-rag-1", "rag")], log="step 1\nstep 2\n")
    custom = FakeCustom(clusters=[raycluster()], jobs=[job])
    monkeypatch.setattr(k8s, "clients", lambda: (core, custom))
    return core, custom


def test_cluster_status_lists_pods_rayclusters_and_rayjobs(cluster_api):
    result = CliRunner().invoke(app, ["cluster", "status", "--namespace", "lathe", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [p["component"] for p in report["pods"]] == ["gateway", "rag"]
    assert report["rayclusters"][0] == {"name": "lathe-ray", "state": "ready", "ready_workers": 1, "desired_workers": 2}
    assert report["rayjobs"][0]["deployment_status"] == "Running"
    assert cluster_api[0].selectors == ["app.kubernetes.io/part-of=lathe"]
    table = CliRunner().invoke(app, ["cluster", "status"])
    assert "lathe-gateway-1" in table.output and "lathe-tokenizer-abc123" in table.output


def test_cluster_status_exits_1_when_a_pod_is_not_ready(cluster_api):
    cluster_api[0].pods.append(pod("lathe-mlflow-1", "mlflow", ready=False, restarts=4))
    result = CliRunner().invoke(app, ["cluster", "status", "--json"])
    assert result.exit_code == 1


def test_train_submit_k8s_creates_the_rayjob(cluster_api):
    recipe = manifests.REPO / "pipelines" / "recipes" / "tokenizer.yaml"
    result = CliRunner().invoke(app, ["train", "submit", str(recipe), "--k8s", "--no-wait", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    (created,) = cluster_api[1].created
    assert out["job_id"] == created["metadata"]["name"] and out["status"] == "New"
    assert out["entrypoint"] == "python -m pipelines.tokenizer --config pipelines/recipes/tokenizer.yaml"


def test_train_list_and_logs_k8s(cluster_api):
    listed = CliRunner().invoke(app, ["train", "list", "--k8s", "--json"])
    assert json.loads(listed.output)[0]["name"] == "lathe-tokenizer-abc123"
    logs = CliRunner().invoke(app, ["train", "logs", "lathe-tokenizer-abc123", "--k8s"])
    assert logs.exit_code == 0 and logs.output == "step 1\nstep 2\n"
    assert cluster_api[0].selectors[-1] == "job-name=lathe-tokenizer-abc123"
