variable "region" {
  description = "AWS region for every resource."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name prefix of the cluster, VPC, repository, role and key."
  type        = string
  default     = "ktx-dagster"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name: 3-31 lowercase letters, digits and '-', starting with a letter."
  }
}

variable "availability_zone_suffixes" {
  description = "Zones of the region to use (suffixes of the zone names): the VPC gets one private and one public subnet in each."
  type        = list(string)
  default     = ["a", "b", "c"]
}

variable "bucket_name" {
  description = "Globally unique S3 bucket for KTX_DATA_DIR (s3://<bucket>/ktx). Empty: <name>-data-<account id>."
  type        = string
  default     = ""
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version: one in standard support (terraform/eks_versions.json, checked by tests/static/test_terraform.py)."
  type        = string
  default     = "1.35"
}

variable "db_instance_class" {
  description = "RDS instance class of the Dagster instance's PostgreSQL."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_engine_version" {
  description = "PostgreSQL major version of the Dagster instance."
  type        = string
  default     = "16"
}

variable "vpc_cidr" {
  description = "CIDR of the VPC."
  type        = string
  default     = "10.42.0.0/16"
}

variable "dagster_namespace" {
  description = "Namespace of the Dagster Helm release (its service account gets the pod role)."
  type        = string
  default     = "dagster"
}

variable "dagster_service_accounts" {
  description = "Service accounts in dagster_namespace allowed to assume the pod role (IRSA)."
  type        = list(string)
  default     = ["dagster", "ktx-step"] # ktx-step: the step pods' own account (make eks-deploy creates it)
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public EKS API endpoint (your office/VPN; kubectl and helm run from there)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "data_noncurrent_days" {
  description = "Days to keep noncurrent versions of data objects (re-runs overwrite outputs)."
  type        = number
  default     = 14
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}
