# What an empty EKS cluster needs before the Lathe chart can schedule anything: GPUs advertised
# to the scheduler, resource metrics for HPAs, a node autoscaler, an ingress controller, KEDA,
# and (optionally) the Gateway API CRDs. Storage (EBS, EFS and their StorageClasses) is in
# storage.tf. Every add-on has an `enable_*` switch and a pinned version.

locals {
  # The EKS API spells taint effects differently from Kubernetes.
  taint_effects = { NO_SCHEDULE = "NoSchedule", NO_EXECUTE = "NoExecute", PREFER_NO_SCHEDULE = "PreferNoSchedule" }
  gpu_tolerations = [
    for t in var.gpu_taints : { key = t.key, operator = "Exists", effect = local.taint_effects[t.effect] }
  ]
}

# The device plugin alone, not the GPU Operator: the EKS NVIDIA AMI (AL2023_x86_64_NVIDIA) already
# ships the driver and the container toolkit, which the Operator would otherwise install.
resource "helm_release" "nvidia_device_plugin" {
  count      = var.enable_nvidia_device_plugin ? 1 : 0
  name       = "nvidia-device-plugin"
  repository = "https://nvidia.github.io/k8s-device-plugin"
  chart      = "nvidia-device-plugin"
  version    = var.nvidia_device_plugin_version
  namespace  = "kube-system"
  atomic     = true
  values = [yamlencode({
    # The chart's default affinity wants Node Feature Discovery labels, which these nodes lack:
    # select the GPU pool by its own labels instead, and tolerate its taints.
    affinity     = null
    nodeSelector = var.gpu_node_selector
    tolerations  = local.gpu_tolerations
  })]
}

resource "helm_release" "metrics_server" {
  count      = var.enable_metrics_server ? 1 : 0
  name       = "metrics-server"
  repository = "https://kubernetes-sigs.github.io/metrics-server/"
  chart      = "metrics-server"
  version    = var.metrics_server_version
  namespace  = "kube-system"
  atomic     = true
  values = [yamlencode({
    # HPAs (the gateway's) stop scaling while the metrics API is down: two replicas, one always up.
    replicas            = 2
    podDisruptionBudget = { enabled = true, minAvailable = 1 }
  })]
}

module "cluster_autoscaler_role" {
  count             = var.enable_cluster_autoscaler ? 1 : 0
  source            = "../irsa-role"
  name              = "${var.cluster_name}-cluster-autoscaler"
  oidc_provider_arn = var.oidc_provider_arn
  oidc_issuer       = var.oidc_issuer
  service_accounts  = ["kube-system:cluster-autoscaler"]
  inline_policy     = data.aws_iam_policy_document.cluster_autoscaler.json
  tags              = var.tags
}

# The permissions of the autoscaler's AWS guide; resizing is limited to the groups tagged as this
# cluster's (EKS tags every managed node group's Auto Scaling group so).
data "aws_iam_policy_document" "cluster_autoscaler" {
  #checkov:skip=CKV_AWS_356:Describe calls take no resource ARN; resizing is limited by the condition on the cluster's ownership tag, since auto-discovered group names are not known in advance
  #checkov:skip=CKV_AWS_111:Resizing (SetDesiredCapacity, TerminateInstanceInAutoScalingGroup) is allowed only on groups tagged as this cluster's
  statement {
    sid = "Discover"
    actions = [
      "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
      "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
      "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements",
      "eks:DescribeNodegroup",
    ]
    resources = ["*"]
  }
  statement {
    sid       = "ResizeOwnGroups"
    actions   = ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.cluster_name}"
      values   = ["owned"]
    }
  }
}

# cluster-autoscaler over the managed node groups the node-pool module makes (they carry the
# auto-discovery tags and, for scale from zero, their labels and taints as node-template tags).
resource "helm_release" "cluster_autoscaler" {
  count      = var.enable_cluster_autoscaler ? 1 : 0
  name       = "cluster-autoscaler"
  repository = "https://kubernetes.github.io/autoscaler"
  chart      = "cluster-autoscaler"
  version    = var.cluster_autoscaler_version
  namespace  = "kube-system"
  atomic     = true
  values = [yamlencode({
    cloudProvider = "aws"
    awsRegion     = var.region
    autoDiscovery = { clusterName = var.cluster_name }
    # The autoscaler's minor version must match the cluster's.
    image = { tag = var.cluster_autoscaler_image_tag }
    rbac = { serviceAccount = {
      name        = "cluster-autoscaler"
      annotations = { "eks.amazonaws.com/role-arn" = module.cluster_autoscaler_role[0].role_arn }
    } }
    extraArgs = {
      "balance-similar-node-groups" = true
      "skip-nodes-with-system-pods" = false
      expander                      = "least-waste"
    }
  })]
}

# The chart's networkPolicy.gatewayClientNamespaceSelector names this namespace.
resource "helm_release" "ingress_nginx" {
  count            = var.enable_ingress_nginx ? 1 : 0
  name             = "ingress-nginx"
  repository       = "https://kubernetes.github.io/ingress-nginx"
  chart            = "ingress-nginx"
  version          = var.ingress_nginx_version
  namespace        = "ingress-nginx"
  create_namespace = true
  atomic           = true
  values = [yamlencode({
    controller = {
      replicaCount         = 2
      ingressClassResource = { name = "nginx", default = true }
      # Long completions stream for minutes: the default 60 s read timeout would cut them.
      config = { "proxy-read-timeout" = "600", "proxy-send-timeout" = "600" }
      service = { annotations = {
        "service.beta.kubernetes.io/aws-load-balancer-type"                              = "nlb"
        "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled" = "true"
      } }
    }
  })]
}

# KEDA's chart version is its app version; it must match the ScaledObject CRD the chart is
# validated against (deploy/crds/keda-v2.18.3).
resource "helm_release" "keda" {
  count            = var.enable_keda ? 1 : 0
  name             = "keda"
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = var.keda_version
  namespace        = "keda"
  create_namespace = true
  atomic           = true
}

# Gateway API CRDs (standard channel), for the chart's HTTPRoute; off by default since an ingress
# controller is installed. The release manifest is applied object by object.
data "http" "gateway_api_crds" {
  count = var.enable_gateway_api_crds ? 1 : 0
  url   = "https://github.com/kubernetes-sigs/gateway-api/releases/download/${var.gateway_api_version}/standard-install.yaml"
}

locals {
  gateway_api_documents = flatten([
    for release in data.http.gateway_api_crds : [for d in split("\n---", release.response_body) : try(yamldecode(d), null)]
  ])
  gateway_api_objects = {
    for doc in local.gateway_api_documents :
    "${doc.kind}/${doc.metadata.name}" => { for k, v in doc : k => v if k != "status" }
    if try(doc.kind, null) != null
  }
}

resource "kubernetes_manifest" "gateway_api_crds" {
  for_each = local.gateway_api_objects
  manifest = each.value
}
