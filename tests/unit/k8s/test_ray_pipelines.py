"""The chart's side of training pipelines on KubeRay: what every Ray pod is told, and what it may reach.

The pipeline driver and its stages read LATHE_RAY_MAX_GPUS, LATHE_RAY_AUTOSCALING,
LATHE_PIPELINE_STORAGE, the S3 settings, LATHE_GATEWAY_URL and LATHE_API_KEY from the Ray
containers; GCS fault tolerance and the Kueue queue are RayCluster settings. Every render is
validated against the pinned KubeRay CRDs and the Kubernetes schemas.
"""

from __future__ import annotations

import functools
import json
import re

import pytest
import yaml

from tests.unit.k8s import manifests

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RAY_ON = {"enabled": True, "jobs": {"enabled": True}}
EVERY_KNOB = {
    # Clients reach the gateway from the ingress controller only: Ray pods need their own allow.
    "networkPolicy": {"gatewayClientNamespaceSelector": {"kubernetes.io/metadata.name": "ingress-nginx"}},
    "ray": {
        **RAY_ON,
        "pipelines": {
            "storage": "s3://lathe-ci/pipelines",
            "s3": {
                "existingSecret": "minio-keys",
                "accessKeyIdKey": "access-key",
                "secretAccessKeyKey": "secret-key",
                "endpointUrl": "http://minio.minio.svc:9000",
                "region": "eu-west-1",
            },
            "gatewayApiKey": {"existingSecret": "pipeline-gateway-key", "key": "token"},
            "providerKeys": [{"env": "LATHE_JUDGE_API_KEY", "existingSecret": "judge-provider"}],
        },
        "gcsFaultTolerance": {
            "enabled": True,
            "redisAddress": "redis-ha.redis.svc:6380",
            "redisPassword": {"existingSecret": "redis-ha", "key": "redis-password"},
            "externalStorageNamespace": "lathe-training",
        },
        "kueue": {"queueName": "training"},
    },
}


@functools.lru_cache(maxsize=16)
def _render_json(values_json: str) -> list[dict]:
    return manifests.render(json.loads(values_json))


def render(values: dict) -> list[dict]:
    return _render_json(json.dumps(values, sort_keys=True))


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return found


def ray_envs(objects: list[dict]) -> dict[str, dict[str, dict]]:
    """``pod group -> {variable: env entry}`` of the Ray container of every RayCluster pod."""
    cluster = one(objects, "RayCluster")
    return {
        where: {e["name"]: e for e in spec["containers"][0].get("env", [])}
        for where, spec in manifests.pod_specs(cluster)
    }


def values_of(envs: dict[str, dict[str, dict]], name: str) -> set:
    return {
        env[name].get("value", json.dumps(env[name].get("valueFrom"))) if name in env else None for env in envs.values()
    }


@pytest.fixture
def production(rendered) -> list[dict]:
    return rendered["production-gpu-values.yaml"]


# -- the environment ----------------------------------------------------------------------


def test_max_gpus_of_the_production_cluster_is_each_groups_maximum_times_its_gpus(production):
    values = manifests.load_values(manifests.CHART / "ci" / "production-gpu-values.yaml")
    objects = production
    cluster = one(objects, "RayCluster")
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    from_groups = sum(
        g["maxReplicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
        for g in cluster["spec"]["workerGroupSpecs"]
    )
    gpu = values["ray"]["gpuWorkers"]
    assert from_groups == gpu["maxReplicas"] * gpu["gpus"] > 0
    assert values_of(ray_envs(objects), "LATHE_RAY_MAX_GPUS") == {str(from_groups)}


@pytest.mark.parametrize(
    ("ray", "expected"),
    [
        ({"autoscaling": False, "gpuWorkers": {"replicas": 3, "maxReplicas": 5, "gpus": 2}}, "6"),
        ({"autoscaling": True, "gpuWorkers": {"replicas": 1, "maxReplicas": 5, "gpus": 2}}, "10"),
        ({"gpuWorkers": {"enabled": False}}, "0"),
    ],
    ids=["fixed-size-counts-replicas", "autoscaling-counts-maxima", "cpu-only"],
)
def test_max_gpus_follows_replicas_without_autoscaling_and_is_zero_on_a_cpu_cluster(ray, expected):
    gpu = manifests.load_values(manifests.CHART / "values.yaml")["ray"]["gpuWorkers"]
    objects = render({"ray": {**RAY_ON, **ray, "gpuWorkers": {**gpu, **ray["gpuWorkers"]}}})
    assert values_of(ray_envs(objects), "LATHE_RAY_MAX_GPUS") == {expected}


@pytest.mark.parametrize("autoscaling", [True, False])
def test_the_runner_is_told_the_cluster_autoscales_only_when_it_does(autoscaling):
    envs = ray_envs(render({"ray": {**RAY_ON, "autoscaling": autoscaling}}))
    assert values_of(envs, "LATHE_RAY_AUTOSCALING") == ({"1"} if autoscaling else {None})


def test_the_production_ray_pods_get_storage_and_the_gateway_for_evaluation(production):
    objects = production
    envs = ray_envs(objects)
    assert set(envs) == {"head", "cpu", "gpu"}
    assert values_of(envs, "LATHE_PIPELINE_STORAGE") == {"s3://lathe-prod-artifacts/pipelines"}
    gateway = one(objects, "Service", "lathe-gateway")
    assert values_of(envs, "LATHE_GATEWAY_URL") == {f"http://lathe-gateway:{gateway['spec']['ports'][0]['port']}"}
    for env in envs.values():
        assert env["LATHE_API_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": "lathe-pipelines-gateway-key", "key": "api-key"}
        }
        assert env["AWS_DEFAULT_REGION"]["value"] == "us-east-1"
        assert "AWS_ACCESS_KEY_ID" not in env  # IRSA through the ServiceAccount
    account = one(objects, "ServiceAccount", "lathe-ray")
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]


def test_the_evaluation_stage_reads_the_names_the_chart_sets(production, monkeypatch):
    from lathe.settings import load_settings
    from pipelines.evaluate.sections import EndpointSection

    env = ray_envs(production)["head"]
    monkeypatch.setenv("LATHE_GATEWAY_URL", env["LATHE_GATEWAY_URL"]["value"])
    assert load_settings().gateway.base_url == env["LATHE_GATEWAY_URL"]["value"]
    assert EndpointSection().api_key_env in env


@pytest.mark.parametrize(
    ("ray", "expected"),
    [
        ({"pipelines": {"storage": "gs://bucket/runs"}, "sharedStorageClaim": "rwx"}, "gs://bucket/runs"),
        ({"sharedStorageClaim": "rwx"}, "/app/.lathe/pipelines"),
        ({}, None),
    ],
    ids=["uri-wins", "rwx-claim", "neither"],
)
def test_storage_is_the_uri_else_the_shared_claim_else_unset_with_a_warning(ray, expected):
    files = manifests.render_files({"ray": {**RAY_ON, **ray}})
    cluster = yaml.safe_load(files["lathe/templates/raycluster-ray.yaml"])
    assert values_of(ray_envs([cluster]), "LATHE_PIPELINE_STORAGE") == {expected}
    notes = files["lathe/templates/NOTES.txt"]
    assert ("multi-node run cannot checkpoint" in notes) is (expected is None)
    if ray.get("sharedStorageClaim"):
        for where, spec in manifests.pod_specs(cluster):
            (volume,) = [v for v in spec["volumes"] if v["name"] == "lathe-home"]
            assert volume["persistentVolumeClaim"]["claimName"] == "rwx", where
            mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
            assert expected.startswith(mounts["lathe-home"] + "/") or expected.startswith("gs://"), where


def test_s3_credentials_come_from_the_secret_and_the_endpoint_and_region_are_set():
    envs = ray_envs(render(EVERY_KNOB))
    for env in envs.values():
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "minio-keys", "key": "access-key"}
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "minio-keys", "key": "secret-key"}
        assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.minio.svc:9000"
        assert env["AWS_DEFAULT_REGION"]["value"] == env["AWS_REGION"]["value"] == "eu-west-1"
        assert env["LATHE_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "pipeline-gateway-key", "key": "token"}
    plain = ray_envs(render({"ray": RAY_ON}))
    assert not [
        n for env in plain.values() for n in env if n.startswith("AWS_") or n in ("LATHE_API_KEY", "LATHE_GATEWAY_URL")
    ]


def test_an_outside_judges_key_comes_from_its_secret_under_the_variable_the_recipe_names():
    envs = ray_envs(render(EVERY_KNOB))
    assert envs and all(
        env["LATHE_JUDGE_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "judge-provider", "key": "api-key"}
        for env in envs.values()
    )
    assert not [n for env in ray_envs(render({"ray": RAY_ON})).values() for n in env if n == "LATHE_JUDGE_API_KEY"]


@pytest.mark.parametrize("taken", ["LATHE_API_KEY", "AWS_REGION", "JUDGE_KEY"])
def test_a_provider_key_may_not_take_a_variable_the_chart_or_another_entry_sets(taken):
    keys = [{"env": "JUDGE_KEY", "existingSecret": "a"}, {"env": taken, "existingSecret": "b"}]
    values = {"ray": {**RAY_ON, "pipelines": {"providerKeys": keys}}}
    with pytest.raises(Exception, match=re.escape(f"ray.pipelines.providerKeys[1].env: {taken} is set by the chart")):
        manifests.render(values)


def test_the_schema_refuses_a_provider_key_without_a_secret_or_with_a_bad_variable():
    import helm_python

    bad = (({"env": "JUDGE_KEY"}, "existingSecret"), ({"env": "judge-key", "existingSecret": "a"}, "env"))
    for entry, where in bad:
        with pytest.raises(helm_python.HelmValuesError, match=where):
            manifests.render({"ray": {**RAY_ON, "pipelines": {"providerKeys": [entry]}}})


def test_a_gateway_key_without_the_gateway_fails_naming_both():
    values = {"gateway": {"enabled": False}, "ray": {**RAY_ON, "pipelines": {"gatewayApiKey": {"existingSecret": "k"}}}}
    with pytest.raises(
        Exception, match=re.escape("ray.pipelines.gatewayApiKey.existingSecret is set but gateway.enabled is false")
    ):
        manifests.render(values)


@pytest.mark.parametrize(
    ("pipelines", "message"),
    [
        ({"storage": "/data/pipelines"}, "/ray/pipelines/storage"),
        ({"storage": "s3:/bucket"}, "/ray/pipelines/storage"),
        ({"s3": {"endpointUrl": "minio:9000"}}, "/ray/pipelines/s3/endpointUrl"),
    ],
)
def test_the_schema_refuses_storage_that_is_not_an_object_store_uri(pipelines, message):
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match=message):
        manifests.render({"ray": {**RAY_ON, "pipelines": pipelines}})


# -- GCS fault tolerance and Kueue ------------------------------------------------------------


def test_every_knob_renders_objects_valid_for_the_pinned_kuberay_crds():
    objects = render(EVERY_KNOB)
    problems = [p for obj in objects for p in manifests.validate(obj)]
    assert not problems, "\n".join(problems)
    assert {o["kind"] for o in objects} >= {"RayCluster", "RayJob", "NetworkPolicy"}


def test_gcs_fault_tolerance_points_kuberay_at_the_external_redis():
    cluster = one(render(EVERY_KNOB), "RayCluster")
    assert cluster["spec"]["gcsFaultToleranceOptions"] == {
        "redisAddress": "redis-ha.redis.svc:6380",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis-ha", "key": "redis-password"}}},
        "externalStorageNamespace": "lathe-training",
    }
    assert "gcsFaultToleranceOptions" not in one(render({"ray": RAY_ON}), "RayCluster")["spec"]


def test_gcs_fault_tolerance_without_a_redis_address_fails_with_one_clear_line():
    message = "ray.gcsFaultTolerance.enabled needs ray.gcsFaultTolerance.redisAddress"
    with pytest.raises(Exception, match=re.escape(message)):
        manifests.render({"ray": {**RAY_ON, "gcsFaultTolerance": {"enabled": True}}})


def test_the_kueue_queue_annotates_the_cluster_and_leaves_the_charts_rayjobs_unqueued():
    # Kueue refuses (or ignores) a queued RayJob on an existing cluster: the chart's own RayJobs stay unlabelled,
    # and `lathe pipeline run --k8s` reads the annotation to build RayJobs Kueue admits (test_pipeline_k8s.py).
    objects = render(EVERY_KNOB)
    assert one(objects, "RayCluster")["metadata"]["annotations"]["lathe.dev/kueue-queue"] == "training"
    jobs = [o for o in objects if o["kind"] == "RayJob"]
    assert jobs and not [j for j in jobs if "kueue.x-k8s.io/queue-name" in j["metadata"]["labels"]]
    plain = render({"ray": RAY_ON})
    assert "lathe.dev/kueue-queue" not in one(plain, "RayCluster")["metadata"]["annotations"]
