# Object storage for MLflow artifacts and Ray checkpoints: private (every public access
# blocked, TLS only), encrypted with a customer-managed KMS key, versioned.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

# The key policy AWS would apply by default, written out: the account administers the key through
# IAM; the workload-identity roles get kms:Decrypt and kms:GenerateDataKey from their IAM policies.
data "aws_iam_policy_document" "artifacts_key" {
  #checkov:skip=CKV_AWS_109:A key policy: its Resource * is this key alone, and kms:* for the account root is AWS's default key policy, which hands access control to IAM
  #checkov:skip=CKV_AWS_111:A key policy: its Resource * is this key alone; write access is granted to the account root (through IAM) and, where present, to one AWS service under a condition
  #checkov:skip=CKV_AWS_356:A key policy: Resource * is the only resource a key policy can name, and means this key
  statement {
    sid       = "AccountAdministersThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "artifacts" {
  description         = "${var.bucket_name}: encryption of MLflow artifacts and checkpoints"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.artifacts_key.json
  tags                = var.tags
}

resource "aws_s3_bucket" "artifacts" {
  #checkov:skip=CKV_AWS_18:MLflow proxies every artifact transfer (--serve-artifacts) and logs it; object-level audit belongs to the account's CloudTrail data events, not a log bucket per module
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice of the environment (a second region and bucket); versioning and the noncurrent-version lifecycle guard against deletion here
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events; the MLflow registry is the index of what the bucket holds
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.artifacts.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    id     = "expire-old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
  depends_on = [aws_s3_bucket_versioning.artifacts]
}

data "aws_iam_policy_document" "tls_only" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "artifacts" {
  bucket     = aws_s3_bucket.artifacts.id
  policy     = data.aws_iam_policy_document.tls_only.json
  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}
