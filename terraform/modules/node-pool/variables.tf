variable "cluster_name" {
  description = "EKS cluster the pool joins."
  type        = string
}

variable "name" {
  description = "Name of the node group (e.g. cpu, gpu); also the value of the lathe.dev/node-pool label."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}$", var.name))
    error_message = "name must be up to 21 lowercase letters, digits or dashes."
  }
}

variable "subnet_ids" {
  description = "Private subnets the nodes run in."
  type        = list(string)
}

variable "instance_types" {
  description = "EC2 instance types, in order of preference (e.g. [\"m6i.2xlarge\"] or [\"g5.2xlarge\"])."
  type        = list(string)
  validation {
    condition     = length(var.instance_types) > 0
    error_message = "Give at least one instance type."
  }
}

variable "ami_type" {
  description = "EKS AMI family: AL2023_x86_64_STANDARD for CPU, AL2023_x86_64_NVIDIA for GPU nodes (drivers included)."
  type        = string
  default     = "AL2023_x86_64_STANDARD"
  validation {
    condition     = contains(["AL2023_x86_64_STANDARD", "AL2023_x86_64_NVIDIA", "AL2023_ARM_64_STANDARD", "BOTTLEROCKET_x86_64", "BOTTLEROCKET_x86_64_NVIDIA"], var.ami_type)
    error_message = "ami_type must be an AL2023 or Bottlerocket EKS AMI type."
  }
}

variable "capacity_type" {
  description = "ON_DEMAND or SPOT."
  type        = string
  default     = "ON_DEMAND"
  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.capacity_type)
    error_message = "capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "disk_size_gb" {
  description = "Root volume size of each node, in GiB (images of vLLM and Ray are large)."
  type        = number
  default     = 100
  validation {
    condition     = var.disk_size_gb >= 50
    error_message = "disk_size_gb must be at least 50."
  }
}

variable "min_size" {
  description = "Fewest nodes (0 lets an autoscaler empty a GPU pool)."
  type        = number
  default     = 0
  validation {
    condition     = var.min_size >= 0
    error_message = "min_size cannot be negative."
  }
}

variable "desired_size" {
  description = "Nodes at creation (later changes are left to the cluster autoscaler)."
  type        = number
  default     = 1
}

variable "max_size" {
  description = "Most nodes."
  type        = number
  validation {
    condition     = var.max_size >= 1
    error_message = "max_size must be at least 1."
  }
}

variable "labels" {
  description = "Kubernetes labels on the nodes, besides lathe.dev/node-pool = name."
  type        = map(string)
  default     = {}
}

variable "taints" {
  description = "Kubernetes taints on the nodes; the GPU pool takes nvidia.com/gpu=present:NoSchedule so only GPU pods land there."
  type = list(object({
    key    = string
    value  = string
    effect = string
  }))
  default = []
  validation {
    condition     = alltrue([for t in var.taints : contains(["NO_SCHEDULE", "NO_EXECUTE", "PREFER_NO_SCHEDULE"], t.effect)])
    error_message = "taint effects must be NO_SCHEDULE, NO_EXECUTE or PREFER_NO_SCHEDULE."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
