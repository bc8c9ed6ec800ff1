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
