output "name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "endpoint" {
  description = "URL of the Kubernetes API server."
  value       = aws_eks_cluster.this.endpoint
}

output "certificate_authority_data" {
  description = "Base64 CA certificate of the API server (for the kubernetes and helm providers)."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider; workload identity roles trust it."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "oidc_issuer" {
  description = "OIDC issuer URL without https://, the prefix of the `sub` condition in IRSA trust policies."
  value       = replace(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://", "")
}

output "node_security_group_id" {
  description = "The EKS cluster security group, which managed node groups' nodes carry."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}
