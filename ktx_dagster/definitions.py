"""The code location: every transformation, with the executor and resources of this deployment.

`dagster dev -w workspace.yaml` loads `defs`; `python -m ktx_dagster` uses the same objects.
"""

import dagster as dg

import assets.checks
import assets.hello_world
import spotify_mpc.assets
import spotify_mpc.checks
from executors import deployment, executor_for, resources_for
from ktx_dagster.sensors import file_sensors

DEPLOYMENT = deployment()

# Inputs whose files decide the partitions ("one task per file"); synced by the CLI and sensors.
# ChunkedPartitions (MPD parts) follow their files: syncing them registers the slices first.
PARTITION_SOURCES = [
    assets.hello_world.HELLO_WORLD_FILES,
    spotify_mpc.assets.SLICE_FILES,
    spotify_mpc.assets.PARTS,
]

ASSETS = dg.load_assets_from_modules([assets.hello_world, spotify_mpc.assets])

defs = dg.Definitions(
    assets=ASSETS,
    # Checks on every stored partition; sensors turn new input files into partitions + runs.
    asset_checks=[*assets.checks.CHECKS, *spotify_mpc.checks.CHECKS],
    sensors=file_sensors(PARTITION_SOURCES, ASSETS),
    resources=resources_for(DEPLOYMENT),
    executor=executor_for(DEPLOYMENT),
)
