variable "name" {
  description = "Name of the environment; prefixes every resource."
  type        = string
  default     = "lathe-dev"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lowercase letters, digits or dashes."
  }
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "availability_zones" {
  description = "Two or three zones of the region (pick ones that offer the GPU instance type)."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]
}

variable "admin_cidrs" {
  description = "CIDRs allowed to reach the Kubernetes API (your office or VPN); empty: private endpoint only."
  type        = list(string)
  default     = []
}

variable "cpu_instance_types" {
  description = "Instance types of the CPU pool (everything but vLLM and Ray GPU workers runs there)."
  type        = list(string)
  default     = ["m6i.2xlarge"]
}

variable "cpu_max_nodes" {
  description = "Most CPU nodes: the production values' CPU pods at their maxima (8 Ray CPU workers of 4 CPU / 16Gi, the gateway at 20 replicas), rolling-update surge and the cluster add-ons, bin-packed (tests/unit/k8s/test_capacity.py)."
  type        = number
  default     = 10
}

variable "gpu_instance_types" {
  description = "GPU instance types for vLLM and Ray GPU workers (16 vCPU / 64 GiB: an 8B model's 32Gi vLLM pod and a 48Gi Ray GPU worker fit one node)."
  type        = list(string)
  default     = ["g5.4xlarge"]
}

variable "gpu_max_nodes" {
  description = "Most GPU nodes: every GPU pod the production values can run at once (3 model replicas + 2 rollout surges + 4 Ray GPU workers) plus one spare."
  type        = number
  default     = 10
}

variable "artifacts_bucket" {
  description = "Globally unique bucket name for MLflow artifacts and checkpoints."
  type        = string
}

variable "gateway_api_crds" {
  description = "Install the Gateway API v1.4.1 CRDs (for the chart's HTTPRoute; bring a Gateway controller)."
  type        = bool
  default     = false
}
