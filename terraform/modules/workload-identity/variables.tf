variable "name" {
  description = "Name of the IAM role (e.g. lathe-dev-mlflow)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (cluster module output)."
  type        = string
}

variable "oidc_issuer" {
  description = "The cluster's OIDC issuer without https:// (cluster module output)."
  type        = string
}

variable "namespace" {
  description = "Namespace of the Kubernetes ServiceAccount that assumes the role."
  type        = string
}

variable "service_account" {
  description = "Name of the Kubernetes ServiceAccount (the chart's lathe-mlflow or lathe-ray)."
  type        = string
}

variable "bucket_arn" {
  description = "Bucket the workload reads and writes."
  type        = string
}

variable "prefixes" {
  description = "Key prefixes inside the bucket the workload may use (e.g. [\"mlflow/\"]); least privilege."
  type        = list(string)
  validation {
    condition     = length(var.prefixes) > 0 && alltrue([for p in var.prefixes : can(regex("^[A-Za-z0-9._-]+/$", p))])
    error_message = "prefixes must be non-empty key prefixes ending with a slash."
  }
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the bucket."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
