"""Hello World's code location: `dagster dev -w workspace.yaml`, `ktx materialize -m assets.definitions`."""

import ktx_dagster
from assets import hello_world
from executors import executor_for_examples
from resources import resources_for

defs = ktx_dagster.definitions_for(
    assets=[hello_world],
    resources=resources_for(),
    executor=executor_for_examples(),
)
