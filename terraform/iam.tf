# The pods' AWS identity (IRSA): the Dagster service accounts may assume this role, and the
# role may only read/write the data bucket (and use its KMS key). No AdministratorAccess,
# no access keys anywhere.

data "aws_iam_policy_document" "pod_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [module.eks.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:sub"
      values   = [for sa in var.dagster_service_accounts : "system:serviceaccount:${var.dagster_namespace}:${sa}"]
    }
  }
}

resource "aws_iam_role" "pods" {
  name                 = "${var.name}-pods"
  description          = "ktx-dagster pods (IRSA): the data bucket only"
  assume_role_policy   = data.aws_iam_policy_document.pod_trust.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "pods_data" {
  statement {
    sid       = "ListDataBucket"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.data.arn]
  }
  statement {
    sid = "ReadWriteDataObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.data.arn}/*"]
  }
  statement {
    sid       = "UseDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.ktx.arn]
  }
}

resource "aws_iam_policy" "pods_data" {
  name        = "${var.name}-pods-data"
  description = "Read/write s3://${local.bucket_name} for ktx-dagster pods"
  policy      = data.aws_iam_policy_document.pods_data.json
}

resource "aws_iam_role_policy_attachment" "pods_data" {
  role       = aws_iam_role.pods.name
  policy_arn = aws_iam_policy.pods_data.arn
}
