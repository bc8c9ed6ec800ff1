# A dev environment on EKS: network, cluster, a CPU and a GPU node pool, the cluster add-ons
# (NVIDIA device plugin, EBS and EFS storage, metrics-server, cluster-autoscaler, ingress-nginx,
# KEDA), the artifacts bucket, workload identity for MLflow and Ray, then KubeRay,
# kube-prometheus-stack, prometheus-adapter and Lathe.
#
#   terraform init && terraform apply -var artifacts_bucket=my-lathe-dev-artifacts
#
# Before the apply reaches the Lathe release, create the Secrets the chart references
# (in the lathe namespace, which the addons module makes, and grafana-admin in monitoring):
# see terraform/README.md.

locals {
  namespace = "lathe"
}

module "network" {
  source             = "../../modules/network"
  name               = var.name
  availability_zones = var.availability_zones
  single_nat_gateway = true
}

module "cluster" {
  source              = "../../modules/cluster"
  name                = var.name
  subnet_ids          = module.network.private_subnet_ids
  public_access_cidrs = var.admin_cidrs
}

module "cpu_pool" {
  source         = "../../modules/node-pool"
  cluster_name   = module.cluster.name
  name           = "cpu"
  subnet_ids     = module.network.private_subnet_ids
  instance_types = var.cpu_instance_types
  min_size       = 2
  desired_size   = 2
  max_size       = var.cpu_max_nodes
  labels         = { "lathe.dev/accelerator" = "none" }
}

module "gpu_pool" {
  source         = "../../modules/node-pool"
  cluster_name   = module.cluster.name
  name           = "gpu"
  subnet_ids     = module.network.private_subnet_ids
  instance_types = var.gpu_instance_types
  ami_type       = "AL2023_x86_64_NVIDIA"
  disk_size_gb   = 200
  min_size       = 0
  desired_size   = 1
  max_size       = var.gpu_max_nodes
  labels         = { "lathe.dev/accelerator" = "nvidia" }
  # Only pods that tolerate it (vLLM, Ray GPU workers) are scheduled on GPU nodes.
  taints = [{ key = "nvidia.com/gpu", value = "present", effect = "NO_SCHEDULE" }]
}

module "addons" {
  source                  = "../../modules/addons"
  cluster_name            = module.cluster.name
  region                  = var.region
  oidc_provider_arn       = module.cluster.oidc_provider_arn
  oidc_issuer             = module.cluster.oidc_issuer
  vpc_id                  = module.network.vpc_id
  private_subnet_ids      = module.network.private_subnet_ids
  node_security_group_id  = module.cluster.node_security_group_id
  gpu_taints              = module.gpu_pool.taints
  lathe_namespace         = local.namespace
  enable_gateway_api_crds = var.gateway_api_crds
  # The add-ons' pods (controllers, DaemonSets) need nodes to start on.
  depends_on = [module.cpu_pool, module.gpu_pool]
}

module "storage" {
  source        = "../../modules/storage"
  bucket_name   = var.artifacts_bucket
  force_destroy = true
}

module "mlflow_identity" {
  source            = "../../modules/workload-identity"
  name              = "${var.name}-mlflow"
  oidc_provider_arn = module.cluster.oidc_provider_arn
  oidc_issuer       = module.cluster.oidc_issuer
  namespace         = local.namespace
  service_account   = "lathe-mlflow"
  bucket_arn        = module.storage.bucket_arn
  kms_key_arn       = module.storage.kms_key_arn
  prefixes          = ["mlflow/"]
}

module "ray_identity" {
  source            = "../../modules/workload-identity"
  name              = "${var.name}-ray"
  oidc_provider_arn = module.cluster.oidc_provider_arn
  oidc_issuer       = module.cluster.oidc_issuer
  namespace         = local.namespace
  service_account   = "lathe-ray"
  bucket_arn        = module.storage.bucket_arn
  kms_key_arn       = module.storage.kms_key_arn
  prefixes          = ["checkpoints/", "datasets/"]
}

module "platform" {
  source           = "../../modules/platform"
  namespace        = module.addons.lathe_namespace
  chart_path       = "${path.root}/../../../helm/lathe"
  lathe_values     = [file("${path.root}/../../../helm/lathe/ci/production-gpu-values.yaml")]
  artifacts_bucket = module.storage.bucket_name
  mlflow_role_arn  = module.mlflow_identity.role_arn
  ray_role_arn     = module.ray_identity.role_arn
  # The chart's ScaledObjects, claims and GPU pods need KEDA, the StorageClasses and the device plugin.
  depends_on = [module.cpu_pool, module.gpu_pool, module.addons]
}
