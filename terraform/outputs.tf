output "region" {
  description = "AWS region."
  value       = var.region
}

output "cluster_name" {
  description = "EKS cluster name."
  value       = module.eks.cluster_name
}

output "data_bucket" {
  description = "S3 bucket for the data dir."
  value       = aws_s3_bucket.data.bucket
}

output "data_dir" {
  description = "KTX_DATA_DIR for the Helm values."
  value       = "s3://${aws_s3_bucket.data.bucket}/ktx"
}

output "ecr_repository_url" {
  description = "Push the image here (tags are immutable)."
  value       = aws_ecr_repository.ktx.repository_url
}

output "pod_role_arn" {
  description = "IAM role for the Dagster service accounts (eks.amazonaws.com/role-arn annotation)."
  value       = aws_iam_role.pods.arn
}

output "kubeconfig_command" {
  description = "Point kubectl/helm at the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.eks.cluster_name}"
}

output "dagster_db_host" {
  description = "PostgreSQL host of the Dagster instance (the Helm chart's postgresqlHost)."
  value       = aws_db_instance.dagster.address
}

output "dagster_db_password" {
  description = "PostgreSQL password of the Dagster instance: make eks-deploy puts it into the dagster-postgresql-secret Secret."
  value       = random_password.dagster_db.result
  sensitive   = true
}
