#!/usr/bin/env bash
# Bring Lathe up on a local kind cluster and run `helm test` against it:
#   make k8s-smoke            (or: deploy/k8s-smoke.sh)
# Needs a container engine (docker), kind, kubectl and helm on PATH, and network access to
# pull the operators' charts and the vLLM CPU image. On failure it prints where the logs are.
set -euo pipefail

CLUSTER="${LATHE_KIND_CLUSTER:-lathe-smoke}"
NAMESPACE="${LATHE_NAMESPACE:-lathe}"
RELEASE="${LATHE_RELEASE:-lathe}"
TAG="${LATHE_IMAGE_TAG:-0.1.0}"
LOGS="${LATHE_SMOKE_LOGS:-.lathe/k8s-smoke}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

for tool in docker kind kubectl helm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "k8s-smoke: '$tool' not found on PATH; it needs docker, kind, kubectl and helm (see README: Deploy on Kubernetes)" >&2
    exit 2
  fi
done
if ! docker info >/dev/null 2>&1; then
  echo "k8s-smoke: the docker engine is not running (docker info failed)" >&2
  exit 2
fi

collect_logs() {
  mkdir -p "$LOGS"
  kubectl get all,events -n "$NAMESPACE" -o wide >"$LOGS/resources.txt" 2>&1 || true
  for pod in $(kubectl get pods -n "$NAMESPACE" -o name 2>/dev/null); do
    kubectl logs -n "$NAMESPACE" "$pod" --all-containers --prefix >"$LOGS/${pod#pod/}.log" 2>&1 || true
  done
  kind export logs "$LOGS/kind" --name "$CLUSTER" >/dev/null 2>&1 || true
  echo "k8s-smoke: FAILED; logs under $LOGS (resources.txt, one file per pod, kind/ for the nodes)" >&2
}
trap collect_logs ERR

cd "$ROOT"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kubectl config use-context "kind-$CLUSTER"

docker build -f deploy/docker/lathe.Dockerfile -t "ghcr.io/lathe-llmops/lathe:$TAG" .
kind load docker-image "ghcr.io/lathe-llmops/lathe:$TAG" --name "$CLUSTER"

helm repo add kuberay https://ray-project.github.io/kuberay-helm/ --force-update >/dev/null
helm repo add kedacore https://kedacore.github.io/charts --force-update >/dev/null
helm repo update >/dev/null
helm upgrade --install kuberay-operator kuberay/kuberay-operator -n kuberay --create-namespace --wait
# KEDA: for event-driven autoscaling where the values turn it on.
helm upgrade --install keda kedacore/keda -n keda --create-namespace --wait

kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
secret() {  # secret NAME KEY VALUE: create or replace
  kubectl create secret generic "$1" -n "$NAMESPACE" --from-literal="$2=$3" --dry-run=client -o yaml | kubectl apply -f -
}
keep_secret() {  # keep_secret NAME KEY VALUE: create unless it exists (a rerun keeps the passwords the pods use)
  kubectl get secret "$1" -n "$NAMESPACE" >/dev/null 2>&1 || secret "$@"
}
random() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }
keep_secret lathe-postgresql password "$(random)"
keep_secret lathe-gateway-admin admin-key "lk-admin-$(random)"

# Monitoring off: kube-prometheus-stack is not installed on the smoke cluster.
helm upgrade --install "$RELEASE" helm/lathe -n "$NAMESPACE" \
  -f helm/lathe/ci/kind-values.yaml -f helm/lathe/ci/monitoring-off-values.yaml \
  --set gateway.adminKey.existingSecret=lathe-gateway-admin \
  --atomic --wait --timeout 20m

# A gateway key for the test pod, made with the admin API from inside the gateway pod.
GATEWAY="$(kubectl get deploy -n "$NAMESPACE" -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=gateway" -o name)"
PORT="$(kubectl get "$GATEWAY" -n "$NAMESPACE" -o jsonpath='{.spec.template.spec.containers[0].ports[0].containerPort}')"
KEY="$(kubectl exec -n "$NAMESPACE" "$GATEWAY" -- sh -c \
  "LATHE_GATEWAY_URL=http://127.0.0.1:$PORT lathe keys create smoke-$(date +%s) --json | python -c 'import json,sys; print(json.load(sys.stdin)[\"key\"])'")"
secret lathe-test-key api-key "$KEY"
helm upgrade "$RELEASE" helm/lathe -n "$NAMESPACE" --reuse-values \
  --set helmTest.apiKey.existingSecret=lathe-test-key --wait --timeout 10m
helm test "$RELEASE" -n "$NAMESPACE" --logs --timeout 10m
echo "k8s-smoke: OK (cluster $CLUSTER, release $RELEASE in namespace $NAMESPACE)"
