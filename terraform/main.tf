# EKS Auto Mode cluster in its own VPC (terraform-aws-modules). Auto Mode brings the nodes
# (Karpenter-managed, general-purpose pool; GPU instances on demand), the Pod Identity agent,
# EBS CSI and load balancing, so there is no node group to size by hand.

# A closed set of zones (not "whatever the region has today"), so the subnets never move.
data "aws_availability_zones" "available" {
  state = "available"
  filter {
    name   = "zone-name"
    values = [for suffix in var.availability_zone_suffixes : "${var.region}${suffix}"]
  }
}

data "aws_caller_identity" "current" {}

locals {
  azs         = data.aws_availability_zones.available.names
  bucket_name = var.bucket_name != "" ? var.bucket_name : "${var.name}-data-${data.aws_caller_identity.current.account_id}"
  tags = merge(
    {
      Project   = "ktx-dagster"
      ManagedBy = "terraform"
    },
    var.tags,
  )
}

module "vpc" {
  # checkov:skip=CKV_TF_1: Registry module pinned by version constraint; the Terraform registry protocol has no commit hashes and .terraform.lock.hcl pins the providers.
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 5.16"

  name = var.name
  cidr = var.vpc_cidr
  azs  = local.azs

  private_subnets = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets  = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, 48 + i)]

  enable_nat_gateway = true
  single_nat_gateway = true # one NAT for a batch cluster; see README "Cost"

  public_subnet_tags = {
    "kubernetes.io/role/elb" = 1
  }
  private_subnet_tags = {
    "kubernetes.io/role/internal-elb" = 1
  }
}

module "eks" {
  # checkov:skip=CKV_TF_1: Registry module pinned by version constraint; the Terraform registry protocol has no commit hashes and .terraform.lock.hcl pins the providers.
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 20.31"

  cluster_name    = var.name
  cluster_version = var.kubernetes_version

  cluster_endpoint_public_access           = true
  cluster_endpoint_public_access_cidrs     = var.cluster_endpoint_public_access_cidrs
  enable_cluster_creator_admin_permissions = true

  cluster_compute_config = {
    enabled    = true
    node_pools = ["general-purpose"]
  }

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  # IRSA: the OIDC provider the pod role trusts.
  enable_irsa = true
}
