"""A code location with one transformation that needs more memory than it asks for: what an
under-sized step looks like. Loaded by file path by the test's code server and, mounted at
the same path, by the step container (it imports nothing but ktx_dagster)."""

import ktx_dagster

GREEDY_MIB = 400


def _hoard() -> str:
    hoard = bytearray(GREEDY_MIB * 2**20)
    for i in range(0, len(hoard), 4096):  # touch every page, so the memory is really used
        hoard[i] = 1
    return f"survived with {len(hoard)} bytes"


@ktx_dagster.transformation(partitions=["only"], cpu="200m", memory="64Mi")
def greedy(context) -> str:
    """Holds GREEDY_MIB MiB against a 64Mi limit: the kernel's cgroup OOM killer ends it."""
    return _hoard()


@ktx_dagster.transformation(partitions=["only"], cpu="200m", memory="64Mi", retries=1, memory_growth=10.0,
                            max_memory="768Mi")
def grows(context) -> str:
    """The same hoard; its retry after the OOM kill asks for 640Mi, and gets through."""
    return _hoard()


defs = ktx_dagster.definitions_for(assets=[greedy, grows], deployment="minikube", file_sensors_enabled=False)
