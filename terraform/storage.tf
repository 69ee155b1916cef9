# Data bucket (KTX_DATA_DIR = s3://<bucket>/ktx) and image repository, both encrypted with
# one customer-managed KMS key.

resource "aws_kms_key" "ktx" {
  description             = "${var.name}: data bucket and image repository"
  deletion_window_in_days = 14
  enable_key_rotation     = true
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "ktx" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.ktx.key_id
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_111: This is a KMS *key policy*: "*" means this key only, and the single statement is AWS's default that delegates to IAM (the pod role gets kms:Decrypt/GenerateDataKey on this key ARN only).
  # checkov:skip=CKV_AWS_356: Same: in a key policy the resource "*" is the key itself.
  # checkov:skip=CKV_AWS_109: Same: the account root statement is the AWS default key policy; who may use the key is decided by IAM policies.
  # Key administration stays with the account (IAM policies decide who may use it).
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_s3_bucket" "data" {
  # checkov:skip=CKV_AWS_18: Access logs of an intermediate-data bucket would need a second bucket and cost more than the data is worth; CloudTrail data events can be enabled account-wide when needed.
  # checkov:skip=CKV_AWS_144: Cross-region replication doubles storage for data every pipeline can regenerate from its raw inputs.
  # checkov:skip=CKV2_AWS_62: Nothing consumes bucket events; Dagster tracks every write itself.
  bucket = local.bucket_name
  # `terraform destroy` empties the versioned bucket (every version and delete marker) first:
  # it holds pipeline data that the raw inputs regenerate. Keep your raw inputs elsewhere.
  force_destroy = true
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.ktx.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    id     = "expire-old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.data_noncurrent_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }
}

# TLS only: deny any request that is not over HTTPS.
data "aws_iam_policy_document" "data_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.data.arn,
      "${aws_s3_bucket.data.arn}/*",
    ]
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

resource "aws_s3_bucket_policy" "data" {
  bucket = aws_s3_bucket.data.id
  policy = data.aws_iam_policy_document.data_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.data]
}

resource "aws_ecr_repository" "ktx" {
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"
  force_delete         = true # destroy removes the images too (rebuilt from the repository)

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.ktx.arn
  }
}

resource "aws_ecr_lifecycle_policy" "ktx" {
  repository = aws_ecr_repository.ktx.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 30 most recent images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = 30
      }
      action = { type = "expire" }
    }]
  })
}
