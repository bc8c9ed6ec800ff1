output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.cluster.name
}

output "kubeconfig_command" {
  description = "Command that writes a kubeconfig entry for the cluster."
  value       = "aws eks update-kubeconfig --name ${module.cluster.name} --region ${var.region}"
}

output "artifacts_bucket" {
  description = "Bucket holding MLflow artifacts (mlflow/) and Ray checkpoints (checkpoints/)."
  value       = module.storage.bucket_name
}

output "grafana_port_forward" {
  description = "Command that opens Grafana on http://127.0.0.1:3000."
  value       = module.platform.grafana_port_forward
}

output "gpu_node_labels" {
  description = "Labels of the GPU nodes (the chart's inference.gpuNodeSelector must match one)."
  value       = module.gpu_pool.labels
}

output "storage_classes" {
  description = "StorageClasses the add-ons made (gp3 is the default; efs is ReadWriteMany)."
  value       = module.addons.storage_classes
}

output "ray_shared_claim" {
  description = "ReadWriteMany claim for the chart's ray.sharedStorageClaim."
  value       = module.addons.ray_shared_claim
}
