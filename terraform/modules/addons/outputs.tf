output "lathe_namespace" {
  description = "Namespace made for Lathe (its Secrets go here before the release)."
  value       = kubernetes_namespace_v1.lathe.metadata[0].name
}

output "storage_classes" {
  description = "StorageClasses made here: gp3 (default, ReadWriteOnce) and efs (ReadWriteMany)."
  value       = concat(kubernetes_storage_class_v1.gp3[*].metadata[0].name, kubernetes_storage_class_v1.efs[*].metadata[0].name)
}

output "efs_file_system_id" {
  description = "ID of the shared EFS file system (null when enable_efs is false)."
  value       = one(aws_efs_file_system.shared[*].id)
}

output "ray_shared_claim" {
  description = "Name of the ReadWriteMany claim for ray.sharedStorageClaim (null when none was made)."
  value       = one(kubernetes_persistent_volume_claim_v1.ray_shared[*].metadata[0].name)
}
