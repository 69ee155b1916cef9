"""The Spotify Million Playlist chain's code location: `dagster dev -w workspace.yaml`,
`ktx materialize -m spotify_mpc.definitions`."""

import ktx_dagster
from executors import executor_for_examples
from resources import resources_for
from spotify_mpc import assets

defs = ktx_dagster.definitions_for(
    assets=[assets],
    resources=resources_for(),
    executor=executor_for_examples(),
)
