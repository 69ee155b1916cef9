# PostgreSQL for the Dagster instance (runs, events, partitions): the webserver, the daemon,
# every run pod and every step pod share it. In the private subnets, reachable only from the
# cluster's nodes; its password goes into the Kubernetes Secret the Helm chart reads
# (`make eks-deploy`), never into a file of this repository.

resource "random_password" "dagster_db" {
  length  = 32
  special = false # it travels in a connection URL
}

resource "aws_db_subnet_group" "dagster" {
  name       = "${var.name}-dagster"
  subnet_ids = module.vpc.private_subnets
}

resource "aws_security_group" "dagster_db" {
  # checkov:skip=CKV2_AWS_5: Attached to aws_db_instance.dagster below (checkov does not follow vpc_security_group_ids).
  name        = "${var.name}-dagster-db"
  description = "PostgreSQL of the Dagster instance, reachable from the EKS cluster only"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "dagster_db_from_cluster" {
  security_group_id            = aws_security_group.dagster_db.id
  referenced_security_group_id = module.eks.cluster_primary_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "PostgreSQL from the cluster's pods (Auto Mode nodes carry the cluster primary security group)"
}

resource "aws_db_instance" "dagster" {
  # checkov:skip=CKV_AWS_118: Enhanced monitoring needs an extra IAM role and costs more than this instance; CloudWatch's basic RDS metrics stay on.
  # checkov:skip=CKV_AWS_157: Multi-AZ doubles the price; the instance holds Dagster's run history, which a restore from the daily snapshots recovers.
  # checkov:skip=CKV_AWS_293: Deletion protection would make `make eks-destroy` fail; the cluster is meant to be torn down when idle. Set deletion_protection for a long-lived deployment.
  # checkov:skip=CKV2_AWS_60: No final snapshot is taken (skip_final_snapshot), so there is nothing to copy tags to.
  # checkov:skip=CKV_AWS_353: Performance Insights is a paid extra for a db.t4g.micro Dagster instance.
  # checkov:skip=CKV2_AWS_30: Query logging of Dagster's own storage queries is noise; connections and errors are logged (postgresql log export below).
  identifier     = "${var.name}-dagster"
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  allocated_storage     = 20
  max_allocated_storage = 100
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.ktx.arn

  db_name  = "dagster"
  username = "dagster"
  password = random_password.dagster_db.result

  db_subnet_group_name   = aws_db_subnet_group.dagster.name
  vpc_security_group_ids = [aws_security_group.dagster_db.id]
  publicly_accessible    = false

  iam_database_authentication_enabled = true
  auto_minor_version_upgrade          = true
  backup_retention_period             = 7
  copy_tags_to_snapshot               = true
  enabled_cloudwatch_logs_exports     = ["postgresql"]
  skip_final_snapshot                 = true
  deletion_protection                 = false
  apply_immediately                   = true
}
