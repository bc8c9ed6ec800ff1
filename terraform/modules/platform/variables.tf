variable "namespace" {
  description = "Namespace Lathe is installed in."
  type        = string
  default     = "lathe"
  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS label."
  }
}

variable "chart_path" {
  description = "Path of the Lathe chart (helm/lathe in this repository)."
  type        = string
}

variable "lathe_values" {
  description = "Values files' contents for the Lathe release, applied in order (e.g. file(\"helm/lathe/ci/production-gpu-values.yaml\"))."
  type        = list(string)
  default     = []
}

variable "kuberay_version" {
  description = "Version of the kuberay-operator chart (>= 1.5.1 for RayCluster authOptions; CRDs vendored in deploy/crds/kuberay-v1.6.2)."
  type        = string
  default     = "1.6.2"
}

variable "kube_prometheus_stack_version" {
  description = "Version of the kube-prometheus-stack chart."
  type        = string
  default     = "77.6.2"
}

variable "mlflow_role_arn" {
  description = "IAM role MLflow's ServiceAccount assumes (workload-identity module)."
  type        = string
}

variable "ray_role_arn" {
  description = "IAM role the Ray pods' ServiceAccount assumes (workload-identity module)."
  type        = string
}

variable "artifacts_bucket" {
  description = "Bucket of MLflow artifacts (storage module)."
  type        = string
}

variable "grafana_admin_secret" {
  description = "Existing Secret (in the monitoring namespace) with admin-user and admin-password keys for Grafana."
  type        = string
  default     = "grafana-admin"
}

variable "enable_prometheus_adapter" {
  description = "Install prometheus-adapter, which serves vLLM's queue metrics to the HPA the chart renders when KEDA is off."
  type        = bool
  default     = true
}

variable "prometheus_adapter_version" {
  description = "Chart version of prometheus-adapter (https://prometheus-community.github.io/helm-charts; 5.3.0 runs adapter v0.12.0)."
  type        = string
  default     = "5.3.0"
}
