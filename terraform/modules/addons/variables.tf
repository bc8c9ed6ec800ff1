# --- The cluster the add-ons go into (cluster, network and node-pool module outputs) ---

variable "cluster_name" {
  description = "Name of the EKS cluster."
  type        = string
}

variable "region" {
  description = "AWS region of the cluster (the cluster autoscaler calls the regional Auto Scaling API)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider; the add-ons' IRSA roles trust it."
  type        = string
}

variable "oidc_issuer" {
  description = "The cluster's OIDC issuer without https://."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cluster (the EFS security group lives in it)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the nodes; EFS gets a mount target in each."
  type        = list(string)
}

variable "node_security_group_id" {
  description = "Security group of the nodes (the EKS cluster security group); EFS admits NFS from it."
  type        = string
}

variable "gpu_node_selector" {
  description = "Labels of the GPU nodes; the NVIDIA device plugin runs there."
  type        = map(string)
  default     = { "lathe.dev/accelerator" = "nvidia" }
}

variable "gpu_taints" {
  description = "Taints of the GPU pools (the node-pool module's taints output); the device plugin tolerates each."
  type = list(object({
    key    = string
    value  = string
    effect = string
  }))
  default = []
}

variable "lathe_namespace" {
  description = "Namespace Lathe is installed in; created here so its Secrets and the shared claim can exist before the release."
  type        = string
  default     = "lathe"
}

variable "ray_shared_claim" {
  description = "Name of the ReadWriteMany claim made on EFS for the chart's ray.sharedStorageClaim (empty: none)."
  type        = string
  default     = "lathe-ray-shared"
}

variable "ray_shared_claim_size" {
  description = "Requested size of the shared claim (nominal on EFS, which grows as it fills)."
  type        = string
  default     = "500Gi"
}

variable "tags" {
  description = "Tags added to every AWS resource."
  type        = map(string)
  default     = {}
}

# --- Switches: on where the Lathe chart needs the add-on ---

variable "enable_nvidia_device_plugin" {
  description = "Install the NVIDIA device plugin, which advertises nvidia.com/gpu (without it no GPU pod schedules)."
  type        = bool
  default     = true
}

variable "enable_metrics_server" {
  description = "Install metrics-server (the resource metrics API the gateway's HPA reads)."
  type        = bool
  default     = true
}

variable "enable_cluster_autoscaler" {
  description = "Install the cluster autoscaler, which sizes the node pools between their min and max."
  type        = bool
  default     = true
}

variable "enable_ingress_nginx" {
  description = "Install ingress-nginx (the chart's ingress class and network policy name it)."
  type        = bool
  default     = true
}

variable "enable_keda" {
  description = "Install KEDA (the chart's inference.autoscaling.keda ScaledObjects need it)."
  type        = bool
  default     = true
}

variable "enable_ebs_csi" {
  description = "Install the EBS CSI driver and the default gp3 StorageClass (the chart's claims)."
  type        = bool
  default     = true
}

variable "enable_efs" {
  description = "Create the EFS file system, its CSI driver, the efs StorageClass and the shared Ray claim (ReadWriteMany)."
  type        = bool
  default     = true
}

variable "enable_gateway_api_crds" {
  description = "Install the Gateway API CRDs (standard channel) for the chart's HTTPRoute; needs a Gateway controller of your choice."
  type        = bool
  default     = false
}

# --- Versions: Helm chart versions, EKS add-on versions and one image tag, all pinned ---

variable "nvidia_device_plugin_version" {
  description = "Chart version of nvidia-device-plugin (https://nvidia.github.io/k8s-device-plugin)."
  type        = string
  default     = "0.20.0"
}

variable "metrics_server_version" {
  description = "Chart version of metrics-server (https://kubernetes-sigs.github.io/metrics-server/; 3.13.1 runs metrics-server 0.8.1)."
  type        = string
  default     = "3.13.1"
}

variable "cluster_autoscaler_version" {
  description = "Chart version of cluster-autoscaler (https://kubernetes.github.io/autoscaler; 9.44.0 is the last for Kubernetes 1.31)."
  type        = string
  default     = "9.44.0"
}

variable "cluster_autoscaler_image_tag" {
  description = "Image tag of the cluster autoscaler: its minor version must be the cluster's Kubernetes minor."
  type        = string
  default     = "v1.31.5"
}

variable "ingress_nginx_version" {
  description = "Chart version of ingress-nginx (https://kubernetes.github.io/ingress-nginx; 4.15.1 runs controller 1.15.1)."
  type        = string
  default     = "4.15.1"
}

variable "keda_version" {
  description = "Chart version of KEDA (https://kedacore.github.io/charts); must match the CRDs in deploy/crds/keda-v*."
  type        = string
  default     = "2.18.3"
}

variable "ebs_csi_version" {
  description = "EKS add-on version of aws-ebs-csi-driver (aws eks describe-addon-versions --addon-name aws-ebs-csi-driver)."
  type        = string
  default     = "v1.64.0-eksbuild.1"
}

variable "efs_csi_version" {
  description = "EKS add-on version of aws-efs-csi-driver (aws eks describe-addon-versions --addon-name aws-efs-csi-driver)."
  type        = string
  default     = "v3.4.1-eksbuild.1"
}

variable "gateway_api_version" {
  description = "Gateway API release whose standard CRDs are installed (deploy/crds/ vendors its HTTPRoute)."
  type        = string
  default     = "v1.4.1"
}
