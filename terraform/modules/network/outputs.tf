output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "Private subnets, one per zone: the nodes and the EKS control plane's interfaces go here."
  value       = aws_subnet.private[*].id
}

output "flow_log_group_name" {
  description = "CloudWatch log group holding the VPC flow logs."
  value       = aws_cloudwatch_log_group.flow_logs.name
}

output "public_subnet_ids" {
  description = "Public subnets, one per zone: internet-facing load balancers and NAT gateways."
  value       = aws_subnet.public[*].id
}
