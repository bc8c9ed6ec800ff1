variable "name" {
  description = "Name of the IAM role (e.g. lathe-dev-ebs-csi)."
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

variable "service_accounts" {
  description = "ServiceAccounts that may assume the role, each as NAMESPACE:NAME (e.g. kube-system:ebs-csi-controller-sa)."
  type        = list(string)
  validation {
    condition     = length(var.service_accounts) > 0 && alltrue([for sa in var.service_accounts : can(regex("^[a-z0-9-]+:[a-z0-9.-]+$", sa))])
    error_message = "service_accounts must be a non-empty list of NAMESPACE:NAME."
  }
}

variable "policy_arns" {
  description = "IAM policies attached to the role (e.g. AWS's AmazonEBSCSIDriverPolicy)."
  type        = list(string)
  default     = []
}

variable "inline_policy" {
  description = "JSON of an inline policy for the role (null: none)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
