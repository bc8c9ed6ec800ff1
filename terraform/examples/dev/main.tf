# A dev environment on EKS: network, cluster, a CPU and a GPU node pool, the artifacts bucket,
# workload identity for MLflow and Ray, then KubeRay, kube-prometheus-stack and Lathe.
#
#   terraform init && terraform apply -var artifacts_bucket=my-lathe-dev-artifacts
#
# Before the apply reaches the Lathe release, create the Secrets the chart references
# (lathe-postgresql in the lathe namespace, grafana-admin in monitoring): see terraform/README.md.

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
  instance_types = ["m6i.2xlarge"]
  min_size       = 2
  desired_size   = 2
  max_size       = 6
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
  namespace        = local.namespace
  chart_path       = "${path.root}/../../../helm/lathe"
  lathe_values     = [file("${path.root}/../../../helm/lathe/ci/production-gpu-values.yaml")]
  artifacts_bucket = module.storage.bucket_name
  mlflow_role_arn  = module.mlflow_identity.role_arn
  ray_role_arn     = module.ray_identity.role_arn
  depends_on       = [module.cpu_pool, module.gpu_pool]
}
