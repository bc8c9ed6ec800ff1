"""``lathe pipeline run --k8s``: the RayJob a pipeline becomes, checked against the pinned KubeRay CRDs.

No API server runs here: ``--dry-run`` contacts nothing, and the create path uses the same
API-boundary stand-ins as the ``lathe train --k8s`` tests. The RayJob's driver command must
be the command a local run submits to the Ray head, so the two cannot drift.
"""

from __future__ import annotations

import json
import shlex

import pytest
import yaml
from typer.testing import CliRunner

from lathe import jobs, k8s
from lathe.cli import app
from lathe.errors import ConfigError
from lathe.k8s_pipeline import QUEUE_ANNOTATION, QUEUE_LABEL, shipped_pipeline
from tests.unit.cli.test_cli import lathe
from tests.unit.k8s import manifests
from tests.unit.k8s.test_k8s_cli import RAY_IMAGE, FakeCore, FakeCustom, raycluster

DEMO = manifests.REPO / "pipelines" / "demo.yaml"
SETS = ["--set", "pretrain.training.max_steps=50", "--from", "tokenizer"]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(manifests.REPO)


def dry_run(*extra: str) -> dict:
    result = CliRunner().invoke(app, ["pipeline", "run", "pipelines/demo.yaml", "--k8s", "--dry-run", *extra])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)


def test_the_dry_run_prints_a_rayjob_kuberay_accepts_and_runs_the_driver_on_the_release_cluster():
    job = dry_run(*SETS, "--image", RAY_IMAGE)
    assert manifests.validate(job) == []
    assert job["kind"] == "RayJob" and job["spec"]["clusterSelector"] == {"ray.io/cluster": "lathe-ray"}
    assert shlex.split(job["spec"]["entrypoint"]) == [
        "python", "-m", "pipelines.flow", "run", "pipelines/demo.yaml", *SETS,
    ]  # fmt: skip
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    assert env["LATHE_PIPELINE_ON_CLUSTER"] == "1"  # the driver then refuses storage one pod alone sees
    assert env["MLFLOW_TRACKING_URI"] == "http://lathe-mlflow:5000"
    labels = job["spec"]["submitterPodTemplate"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "ray-submitter" and labels["lathe.dev/pipeline"] == "demo"


def test_the_rayjob_runs_the_command_a_local_run_submits(monkeypatch):
    submitted = {}

    def fake_submit(settings, argv, **kwargs):
        submitted.update(argv=argv, **kwargs)
        return "raysubmit_1"

    monkeypatch.setattr(jobs, "submit", fake_submit)
    local = CliRunner().invoke(app, ["pipeline", "run", "pipelines/demo.yaml", *SETS, "--no-wait", "--json"])
    assert local.exit_code == 0, local.output
    assert json.loads(local.stdout)["job_id"] == "raysubmit_1"
    job = dry_run(*SETS)
    assert job["spec"]["entrypoint"] == shlex.join(["python", *submitted["argv"][1:]])
    assert submitted["cwd"] == str(manifests.REPO) and submitted["metadata"] == {
        "lathe_pipeline": "pipelines/demo.yaml"
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "dpo.base_model=${gate.version}"], "names a later stage"),
        (["--set", "sft.training.micro_batch_size=0"], "training.micro_batch_size"),
        (["--set", "nosuch.x=1"], "no stage 'nosuch'"),
        (["--from", "nosuch"], "--from nosuch"),
    ],
)
def test_a_bad_pipeline_is_refused_in_one_line_before_any_cluster_is_contacted(extra, message):
    # KUBECONFIG names no file: reaching the cluster would fail with another message.
    result = lathe("pipeline", "run", "pipelines/demo.yaml", "--k8s", *extra, env={"KUBECONFIG": "/nonexistent"})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_pipeline_file_outside_the_image_is_refused(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(DEMO.read_text())
    with pytest.raises(ConfigError, match="not under pipelines/"):
        shipped_pipeline(mine)
    assert shipped_pipeline(DEMO) == "pipelines/demo.yaml"


def rendered_raycluster(queue: str | None = None) -> dict:
    values = manifests.load_values(manifests.CHART / "ci" / "production-gpu-values.yaml")
    (cluster,) = [o for o in manifests.render(values) if o["kind"] == "RayCluster"]
    if queue:
        cluster["metadata"].setdefault("annotations", {})[QUEUE_ANNOTATION] = queue
    return cluster


def test_with_a_kueue_queue_the_rayjob_brings_a_fixed_size_copy_of_the_cluster_kueue_admits():
    cluster = rendered_raycluster(queue="training")
    custom = FakeCustom(clusters=[cluster])
    core = FakeCore([])
    from lathe import k8s_pipeline

    argv = ["python", "-m", "pipelines.flow", "run", "pipelines/demo.yaml"]
    job = k8s_pipeline.pipeline_rayjob(argv, "demo", cluster=cluster["metadata"]["name"], image=RAY_IMAGE,
                                       release="lathe", cluster_obj=custom.objects["rayclusters"][0])  # fmt: skip
    assert core.pods == []
    assert manifests.validate(job) == []
    spec = job["spec"]
    # Kueue's RayJob webhook: no clusterSelector, its own cluster, no in-tree autoscaling, deleted at the end.
    assert "clusterSelector" not in spec and spec["rayClusterSpec"]["enableInTreeAutoscaling"] is False
    assert spec["shutdownAfterJobFinishes"] is True and spec["suspend"] is True
    assert job["metadata"]["labels"][QUEUE_LABEL] == "training"
    for group in spec["rayClusterSpec"]["workerGroupSpecs"]:
        assert group["minReplicas"] == group["maxReplicas"] == group["replicas"]
    head_env = {e["name"]: e.get("value") for e in spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
                ["containers"][0].get("env", [])}  # fmt: skip
    assert "LATHE_RAY_AUTOSCALING" not in head_env and head_env["LATHE_RAY_MAX_GPUS"].isdigit()
    # The release's own cluster is left as it was.
    assert cluster["spec"].get("enableInTreeAutoscaling") is not False or "autoscalerOptions" not in cluster["spec"]


def test_without_a_queue_the_rayjob_runs_on_the_release_cluster():
    cluster = rendered_raycluster()
    from lathe import k8s_pipeline

    argv = ["python", "-m", "pipelines.flow", "run", "pipelines/demo.yaml"]
    job = k8s_pipeline.pipeline_rayjob(argv, "demo", cluster="lathe-ray", image=RAY_IMAGE, release="lathe",
                                       cluster_obj=cluster)  # fmt: skip
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "lathe-ray"} and "rayClusterSpec" not in job["spec"]
    assert QUEUE_LABEL not in job["metadata"]["labels"]


class Custom(FakeCustom):
    def list_namespaced_custom_object(self, group, version, namespace, plural, label_selector=""):
        return super().list_namespaced_custom_object(group, version, namespace, plural)


def test_run_k8s_creates_the_rayjob_and_status_reads_the_stages_from_its_log(monkeypatch):
    from lathe.pipeline_events import event_line

    log = "\n".join([
        event_line("start", pipeline="demo", run="r1", stages=[{"name": "curate", "kind": "curation"},
                                                              {"name": "tokenizer", "kind": "tokenizer"}]),
        event_line("stage", stage="curate", status="running"),
        "curation: 10 documents",
        event_line("stage", stage="curate", status="done", seconds=12.5, run_id="abc", outputs={"dataset": "/x"}),
        event_line("stage", stage="tokenizer", status="running"),
        "tokenizer: training",
    ]) + "\n"  # fmt: skip
    core, custom = FakeCore([], log=log), Custom(clusters=[raycluster()])
    monkeypatch.setattr(k8s, "clients", lambda: (core, custom))
    created = CliRunner().invoke(app, ["pipeline", "run", "pipelines/demo.yaml", "--k8s", "--no-wait", "--json"])
    assert created.exit_code == 0, created.output
    (body,) = custom.created
    assert json.loads(created.stdout)["job_id"] == body["metadata"]["name"]
    body["status"] = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    custom.objects["rayjobs"].append(body)
    core.pods = [pod_for(body["metadata"]["name"])]

    status = CliRunner().invoke(app, ["pipeline", "status", "--k8s", "--json"])
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["job"] == body["metadata"]["name"] and report["job_status"] == "RUNNING"
    assert [(s["name"], s["status"]) for s in report["stages"]] == [("curate", "done"), ("tokenizer", "running")]
    assert report["stages"][0]["run_id"] == "abc"
    only = CliRunner().invoke(app, ["pipeline", "logs", body["metadata"]["name"], "--k8s", "--stage", "curate"])
    assert only.stdout == "curation: 10 documents\n"


def pod_for(job: str):
    from tests.unit.k8s.test_k8s_cli import pod

    running = pod(f"{job}-xyz", "ray-submitter")
    return running


def test_the_gpu_pipeline_fits_the_gpus_the_production_cluster_can_ever_have():
    from pipelines.flow.driver import check_gpus
    from pipelines.flow.spec import load_pipeline
    from pipelines.stagekit.settings import PipelineSettings

    head = rendered_raycluster()["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    most = int({e["name"]: e.get("value") for e in head["env"]}["LATHE_RAY_MAX_GPUS"])
    settings = PipelineSettings(LATHE_RAY_MAX_GPUS=most)
    pipeline = load_pipeline(manifests.REPO / "pipelines" / "gpu.yaml")
    check_gpus(pipeline, pipeline.order, settings)  # every stage fits
    bigger = load_pipeline(manifests.REPO / "pipelines" / "gpu.yaml", [f"sft.scaling.num_workers={most + 1}"])
    with pytest.raises(ConfigError, match=f"stage sft: scaling.num_workers asks for {most + 1} GPUs .* at most {most}"):
        check_gpus(bigger, bigger.order, settings)


def test_a_single_gpu_recipe_beyond_the_clusters_gpus_is_refused_by_the_stage_too():
    from pipelines.pretrain.config import PretrainRecipe
    from pipelines.stagekit.recipes import load_recipe
    from pipelines.stagekit.train_runner import check_cluster

    recipe = load_recipe(PretrainRecipe, manifests.REPO / "pipelines" / "recipes" / "pretrain-125m-gpu.yaml")
    with pytest.raises(ConfigError, match=r"scaling\.num_workers: 8 GPU workers but this cluster can have at most 4"):
        check_cluster(recipe, "ray://head:10001", autoscaling=True, max_gpus=4)
