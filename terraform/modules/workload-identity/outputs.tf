output "role_arn" {
  description = "ARN of the role; annotate the ServiceAccount with eks.amazonaws.com/role-arn = this."
  value       = aws_iam_role.this.arn
}
