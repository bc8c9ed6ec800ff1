"""The vLLM pods' model cache: one ReadWriteMany claim shared by every replica, or an emptyDir per pod.

The init container downloads a version into ``/models/<name>/<version>`` once (under a lock,
``lathe.model_fetch``) and links ``/served/model`` to it; vLLM loads the link. With the
claim, a restart or a new replica finds the version there, and a pinned version starts
without asking MLflow (tests/unit/k8s/test_model_fetch.py runs that path for real).
"""

from __future__ import annotations

from tests.unit.k8s import manifests

PRODUCTION = manifests.load_values(manifests.CHART / "ci" / "production-gpu-values.yaml")


def _pods(objects: list[dict]) -> list[dict]:
    return [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"
            and o["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"]  # fmt: skip


def _container(pod: dict, name: str, init: bool = False) -> dict:
    return next(c for c in pod["initContainers" if init else "containers"] if c["name"] == name)


def test_production_serves_every_model_from_one_shared_claim_kept_on_uninstall():
    objects = manifests.render(PRODUCTION)
    (claim,) = [o for o in objects if o["kind"] == "PersistentVolumeClaim" and "model-cache" in o["metadata"]["name"]]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["spec"]["storageClassName"] == "efs"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pods = _pods(objects)
    assert len(pods) == 2
    for pod in pods:
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["models"]["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
        fetch = _container(pod, "lathe-model-fetch", init=True)
        assert "--dest=/models" in fetch["command"] and "--link=/served/model" in fetch["command"]
        vllm = _container(pod, "lathe-vllm")
        assert "--model=/served/model" in vllm["args"]
        mounts = {m["name"]: m for m in vllm["volumeMounts"]}
        assert mounts["models"]["readOnly"] and mounts["served"]["readOnly"]
        # The model is on the claim: the pod's own disk holds only the caches.
        assert vllm["resources"]["requests"]["ephemeral-storage"] == "12Gi"
        assert vllm["resources"]["limits"]["ephemeral-storage"] == "12Gi"
        assert fetch["resources"]["requests"]["ephemeral-storage"]
    for obj in objects:
        assert manifests.validate(obj) == [], obj["metadata"]["name"]


def test_without_a_claim_each_pod_downloads_into_an_emptydir_its_disk_request_covers():
    objects = manifests.render()
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim" and "model-cache" in o["metadata"]["name"]]
    (pod,) = _pods(objects)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["emptyDir"]["sizeLimit"] == "20Gi" and "persistentVolumeClaim" not in volumes["models"]
    assert volumes["served"]["emptyDir"]["sizeLimit"] == "1Mi"
    assert _container(pod, "lathe-vllm")["resources"]["requests"]["ephemeral-storage"] == "30Gi"


def test_an_existing_claim_is_used_and_none_is_created():
    objects = manifests.render({"inference": {"modelCache": {"existingClaim": "team-models", "create": True}}})
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim" and "model-cache" in o["metadata"]["name"]]
    (pod,) = _pods(objects)
    assert {v["name"]: v for v in pod["volumes"]}["models"]["persistentVolumeClaim"] == {"claimName": "team-models"}
