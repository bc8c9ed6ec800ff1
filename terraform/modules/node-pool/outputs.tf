output "node_group_name" {
  description = "Name of the managed node group."
  value       = aws_eks_node_group.this.node_group_name
}

output "node_role_arn" {
  description = "IAM role of the nodes."
  value       = aws_iam_role.node.arn
}

output "labels" {
  description = "Kubernetes labels every node of the pool carries."
  value       = aws_eks_node_group.this.labels
}

output "taints" {
  description = "Taints every node of the pool carries, in the EKS API's spelling (effect NO_SCHEDULE and so on)."
  value       = var.taints
}
