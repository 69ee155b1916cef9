"""A code location with one transformation that needs more memory than it asks for: what an
under-sized step looks like. Loaded by file path by the test's code server and, mounted at
the same path, by the step container (it imports nothing but ktx_dagster)."""

import ktx_dagster

# The limit leaves the step's interpreter room (Dagster, dagster-k8s and the instance load
# to ~240-280 MiB here): the kill comes from the hoard, at once, not from an interpreter
# paging its own code in and out at the limit (under cgroup v1 that thrash lasted minutes).
GREEDY_MIB = 1500


def _hoard() -> str:
    hoard = bytearray(GREEDY_MIB * 2**20)
    for i in range(0, len(hoard), 4096):  # touch every page, so the memory is really used
        hoard[i] = 1
    return f"survived with {len(hoard)} bytes"


@ktx_dagster.transformation(partitions=["only"], cpu="500m", memory="512Mi")
def greedy(context) -> str:
    """Holds GREEDY_MIB MiB against a 512Mi limit: the kernel's cgroup OOM killer ends it."""
    return _hoard()


@ktx_dagster.transformation(partitions=["only"], cpu="500m", memory="512Mi", retries=1, memory_growth=4.0,
                            max_memory="3Gi")
def grows(context) -> str:
    """The same hoard; its retry after the OOM kill asks for 2048Mi, and gets through."""
    return _hoard()


defs = ktx_dagster.definitions_for(assets=[greedy, grows], deployment="minikube", file_sensors_enabled=False)
