# The cluster's software: the KubeRay operator and kube-prometheus-stack (both prerequisites
# of the Lathe chart's CRD objects), prometheus-adapter on that Prometheus, then Lathe itself
# with its cloud wiring. The cluster add-ons (GPUs, storage, autoscaling, ingress, KEDA) are
# the addons module's.

resource "helm_release" "kuberay_operator" {
  name             = "kuberay-operator"
  repository       = "https://ray-project.github.io/kuberay-helm/"
  chart            = "kuberay-operator"
  version          = var.kuberay_version
  namespace        = "kuberay-system"
  create_namespace = true
  atomic           = true
  values = [yamlencode({
    metrics = { serviceMonitor = { enabled = true, selector = { release = "kube-prometheus-stack" } } }
  })]
  depends_on = [helm_release.kube_prometheus_stack]
}

resource "helm_release" "kube_prometheus_stack" {
  name             = "kube-prometheus-stack"
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = var.kube_prometheus_stack_version
  namespace        = "monitoring"
  create_namespace = true
  atomic           = true
  timeout          = 900
  values = [yamlencode({
    grafana = {
      admin = { existingSecret = var.grafana_admin_secret }
      # The sidecar loads every ConfigMap labelled grafana_dashboard=1 (Lathe's dashboards) in any namespace.
      sidecar = { dashboards = { enabled = true, label = "grafana_dashboard", labelValue = "1", searchNamespace = "ALL", folderAnnotation = "grafana_folder", provider = { foldersFromFilesStructure = true } } }
    }
    prometheus = {
      prometheusSpec = {
        # Select ServiceMonitors and rules by the release label the Lathe chart sets.
        serviceMonitorSelector = { matchLabels = { release = "kube-prometheus-stack" } }
        ruleSelector           = { matchLabels = { release = "kube-prometheus-stack" } }
        retention              = "15d"
      }
    }
  })]
}

# The custom metrics API for the chart's HPA fallback (inference.autoscaling.keda: false): vLLM's
# queue gauges per pod, under the names the HPA asks for. Resource metrics stay metrics-server's
# and external metrics KEDA's, so the adapter serves custom metrics only.
locals {
  vllm_pod_metrics = [for gauge in ["num_requests_waiting", "num_requests_running"] : {
    seriesQuery  = "vllm:${gauge}{namespace!=\"\",pod!=\"\"}"
    resources    = { overrides = { namespace = { resource = "namespace" }, pod = { resource = "pod" } } }
    name         = { as = "vllm_${gauge}" }
    metricsQuery = "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"
  }]
}

resource "helm_release" "prometheus_adapter" {
  count      = var.enable_prometheus_adapter ? 1 : 0
  name       = "prometheus-adapter"
  repository = "https://prometheus-community.github.io/helm-charts"
  chart      = "prometheus-adapter"
  version    = var.prometheus_adapter_version
  namespace  = helm_release.kube_prometheus_stack.namespace
  atomic     = true
  values = [yamlencode({
    prometheus = { url = "http://kube-prometheus-stack-prometheus.monitoring.svc", port = 9090 }
    rules      = { default = false, custom = local.vllm_pod_metrics }
  })]
}

resource "helm_release" "lathe" {
  name             = "lathe"
  chart            = var.chart_path
  namespace        = var.namespace
  create_namespace = true
  atomic           = true
  timeout          = 1200
  values = concat(var.lathe_values, [yamlencode({
    mlflow = {
      artifacts                 = { type = "s3", s3Uri = "s3://${var.artifacts_bucket}/mlflow" }
      serviceAccountAnnotations = { "eks.amazonaws.com/role-arn" = var.mlflow_role_arn }
    }
    ray = {
      enabled                   = true
      serviceAccountAnnotations = { "eks.amazonaws.com/role-arn" = var.ray_role_arn }
    }
  })])
  depends_on = [helm_release.kuberay_operator, helm_release.kube_prometheus_stack, helm_release.prometheus_adapter]
}
