"""The code location: every transformation, with the executor and resources of this deployment.

`dagster dev -w workspace.yaml` loads `defs`; `python -m ktx_dagster` uses the same objects.
"""

import dagster as dg

import assets.hello_world
from executors import deployment, executor_for, resources_for

DEPLOYMENT = deployment()

# Inputs whose files decide the partitions ("one task per file"); synced by the CLI and sensors.
PARTITION_SOURCES = [assets.hello_world.HELLO_WORLD_FILES]

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets.hello_world]),
    resources=resources_for(DEPLOYMENT),
    executor=executor_for(DEPLOYMENT),
)
