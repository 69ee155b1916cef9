"""This repository's executor per deployment: where the examples' steps run.

    local     ktx-dagster's local executor: a partition's steps in its run's process, a
              process per step only where steps can run side by side, at most
              KTX_MAX_CONCURRENT at once
    minikube  a Kubernetes Job per step in namespace `ktx`, image `ktx-dagster:dev` (what
              `deploy/minikube/up.sh` builds and applies); KTX_* env overrides, see the README
    eks       a Kubernetes Job per step in namespace `dagster`, the image pushed to ECR
              (KTX_IMAGE), data on S3

Handed to `ktx_dagster.definitions_for(executor=...)` by both code locations.
"""

from __future__ import annotations

import dagster as dg

from ktx_dagster import deployment, executor_for


def executor_for_examples(name: str | None = None) -> dg.ExecutorDefinition:
    # Both code locations run their steps the way ktx-dagster does by default for a
    # deployment; a project that needs more (a tag concurrency limit, another image per
    # location) configures it here.
    return executor_for(deployment(name))
