output "bucket_name" {
  description = "Name of the artifacts bucket."
  value       = aws_s3_bucket.artifacts.bucket
}

output "bucket_arn" {
  description = "ARN of the artifacts bucket (for IAM policies)."
  value       = aws_s3_bucket.artifacts.arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the bucket; readers and writers need kms:Decrypt/GenerateDataKey on it."
  value       = aws_kms_key.artifacts.arn
}
