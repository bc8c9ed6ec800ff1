# Storage the chart's claims bind to: EBS through its CSI driver with a default `gp3` class
# (ReadWriteOnce: Qdrant, MLflow, PostgreSQL), and EFS through its CSI driver with an `efs` class
# (ReadWriteMany: the Ray pods' shared claim). Both drivers are EKS add-ons with IRSA roles.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

module "ebs_csi_role" {
  count             = var.enable_ebs_csi ? 1 : 0
  source            = "../irsa-role"
  name              = "${var.cluster_name}-ebs-csi"
  oidc_provider_arn = var.oidc_provider_arn
  oidc_issuer       = var.oidc_issuer
  service_accounts  = ["kube-system:ebs-csi-controller-sa"]
  policy_arns       = ["arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"]
  tags              = var.tags
}

resource "aws_eks_addon" "ebs_csi" {
  count                       = var.enable_ebs_csi ? 1 : 0
  cluster_name                = var.cluster_name
  addon_name                  = "aws-ebs-csi-driver"
  addon_version               = var.ebs_csi_version
  service_account_role_arn    = module.ebs_csi_role[0].role_arn
  resolve_conflicts_on_update = "OVERWRITE"
  # The node plugin must run on the tainted GPU pool too (a vLLM pod's volumes are EBS).
  configuration_values = jsonencode({ node = { tolerateAllTaints = true } })
  tags                 = var.tags
}

resource "kubernetes_storage_class_v1" "gp3" {
  count = var.enable_ebs_csi ? 1 : 0
  metadata {
    name        = "gp3"
    annotations = { "storageclass.kubernetes.io/is-default-class" = "true" }
  }
  storage_provisioner    = "ebs.csi.aws.com"
  volume_binding_mode    = "WaitForFirstConsumer" # a volume is made in the zone of the pod's node
  allow_volume_expansion = true
  reclaim_policy         = "Delete"
  parameters             = { type = "gp3", encrypted = "true", fsType = "ext4" }
  depends_on             = [aws_eks_addon.ebs_csi]
}

# --- EFS: the ReadWriteMany file system ---

# AWS's default key policy, written out: the account administers the key through IAM; EFS uses
# it through grants made on the caller's behalf.
data "aws_iam_policy_document" "efs_key" {
  #checkov:skip=CKV_AWS_109:A key policy: its Resource * is this key alone, and kms:* for the account root is AWS's default key policy, which hands access control to IAM
  #checkov:skip=CKV_AWS_111:A key policy: its Resource * is this key alone; write access is granted to the account root (through IAM)
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

resource "aws_kms_key" "efs" {
  count               = var.enable_efs ? 1 : 0
  description         = "${var.cluster_name}: encryption of the shared EFS file system"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.efs_key.json
  tags                = var.tags
}

resource "aws_efs_file_system" "shared" {
  count            = var.enable_efs ? 1 : 0
  creation_token   = "${var.cluster_name}-shared"
  encrypted        = true
  kms_key_id       = aws_kms_key.efs[0].arn
  performance_mode = "generalPurpose"
  throughput_mode  = "elastic" # bursts for checkpoint writes without provisioning throughput
  lifecycle_policy {
    transition_to_ia = "AFTER_30_DAYS"
  }
  tags = merge(var.tags, { Name = "${var.cluster_name}-shared" })
}

resource "aws_efs_backup_policy" "shared" {
  count          = var.enable_efs ? 1 : 0
  file_system_id = aws_efs_file_system.shared[0].id
  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_security_group" "efs" {
  count       = var.enable_efs ? 1 : 0
  name        = "${var.cluster_name}-efs"
  description = "NFS from the cluster's nodes to the shared EFS file system"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "efs_nfs" {
  count                        = var.enable_efs ? 1 : 0
  security_group_id            = aws_security_group.efs[0].id
  description                  = "NFS from the nodes (EKS cluster security group)"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = var.node_security_group_id
}

resource "aws_efs_mount_target" "shared" {
  count           = var.enable_efs ? length(var.private_subnet_ids) : 0
  file_system_id  = aws_efs_file_system.shared[0].id
  subnet_id       = var.private_subnet_ids[count.index]
  security_groups = [aws_security_group.efs[0].id]
}

module "efs_csi_role" {
  count             = var.enable_efs ? 1 : 0
  source            = "../irsa-role"
  name              = "${var.cluster_name}-efs-csi"
  oidc_provider_arn = var.oidc_provider_arn
  oidc_issuer       = var.oidc_issuer
  service_accounts  = ["kube-system:efs-csi-controller-sa", "kube-system:efs-csi-node-sa"]
  policy_arns       = ["arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"]
  tags              = var.tags
}

resource "aws_eks_addon" "efs_csi" {
  count                       = var.enable_efs ? 1 : 0
  cluster_name                = var.cluster_name
  addon_name                  = "aws-efs-csi-driver"
  addon_version               = var.efs_csi_version
  service_account_role_arn    = module.efs_csi_role[0].role_arn
  resolve_conflicts_on_update = "OVERWRITE"
  tags                        = var.tags
}

# Dynamic provisioning: each claim gets an access point (its own directory and POSIX owner).
# Retain: a deleted claim leaves its datasets and checkpoints on the file system.
resource "kubernetes_storage_class_v1" "efs" {
  count = var.enable_efs ? 1 : 0
  metadata {
    name = "efs"
  }
  storage_provisioner = "efs.csi.aws.com"
  reclaim_policy      = "Retain"
  parameters = {
    provisioningMode = "efs-ap"
    fileSystemId     = aws_efs_file_system.shared[0].id
    directoryPerms   = "700"
    basePath         = "/lathe"
  }
  depends_on = [aws_eks_addon.efs_csi, aws_efs_mount_target.shared]
}

# --- Lathe's namespace and the Ray pods' shared claim (ray.sharedStorageClaim) ---

resource "kubernetes_namespace_v1" "lathe" {
  metadata {
    name = var.lathe_namespace
  }
}

resource "kubernetes_persistent_volume_claim_v1" "ray_shared" {
  count = var.enable_efs && var.ray_shared_claim != "" ? 1 : 0
  metadata {
    name      = var.ray_shared_claim
    namespace = kubernetes_namespace_v1.lathe.metadata[0].name
  }
  spec {
    access_modes       = ["ReadWriteMany"]
    storage_class_name = kubernetes_storage_class_v1.efs[0].metadata[0].name
    resources {
      requests = { storage = var.ray_shared_claim_size } # EFS is elastic; the size is nominal
    }
  }
  wait_until_bound = false
}
