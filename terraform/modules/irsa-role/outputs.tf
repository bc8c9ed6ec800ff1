output "role_arn" {
  description = "ARN of the role; the controller's ServiceAccount carries it as eks.amazonaws.com/role-arn."
  value       = aws_iam_role.this.arn
}
