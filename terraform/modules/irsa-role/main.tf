# IAM Roles for Service Accounts for the cluster's own controllers (CSI drivers, the cluster
# autoscaler): a role that only the named ServiceAccounts can assume, with AWS-managed policies
# and/or one inline policy. Workloads of Lathe use the workload-identity module instead, which
# also scopes the role to bucket prefixes.

data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:sub"
      values   = [for sa in var.service_accounts : "system:serviceaccount:${sa}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  assume_role_policy = data.aws_iam_policy_document.trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "managed" {
  for_each   = toset(var.policy_arns)
  role       = aws_iam_role.this.name
  policy_arn = each.value
}

resource "aws_iam_role_policy" "inline" {
  count  = var.inline_policy == null ? 0 : 1
  name   = "controller"
  role   = aws_iam_role.this.id
  policy = var.inline_policy
}
