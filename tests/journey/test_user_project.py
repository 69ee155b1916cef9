"""A new user's journey: ktx-dagster from a wheel, in a project of their own.

The project is made the way `create-dagster project` lays one out (`src/<pkg>/definitions.py`
with `load_from_defs_folder`, `src/<pkg>/defs/`), in a temporary folder outside this
repository, and it has top-level `assets` and `resources` packages of its own: the names
that clashed when the wheel shipped this repository's examples. Its two transformations are
one file dropped into `defs/` beside the ktx Component's defs.yaml: one task per input file,
and one reduction over every partition, loaded lazily.

Everything runs in the user's virtualenv with the project's folder as the working directory
and nothing of this checkout on the path.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from journey_env import UserEnv, wheel_top_level

pytestmark = pytest.mark.journey

PROJECT_FILES = {
    "pyproject.toml": """
        [project]
        name = "weather"
        version = "0.1.0"
        requires-python = ">=3.11"
        dependencies = ["ktx-dagster"]

        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [tool.setuptools.packages.find]
        where = ["src"]

        [tool.dg]
        directory_type = "project"

        [tool.dg.project]
        root_module = "weather"
    """,
    "src/weather/__init__.py": "",
    "src/weather/definitions.py": """
        from pathlib import Path

        from dagster import definitions, load_from_defs_folder


        @definitions
        def defs():
            return load_from_defs_folder(path_within_project=Path(__file__).parent)
    """,
    "src/weather/defs/__init__.py": "",
    "src/weather/defs/defs.yaml": """
        type: ktx_dagster.components.Transformations
        attributes:
          data_dir: ./data
          max_concurrent: 2
    """,
    # the user's own top-level `resources` and `assets` packages
    "src/resources/__init__.py": """
        STATION_DIR = "raw"
        STATION_PATTERN = "station_*.csv"
    """,
    "src/assets/__init__.py": "",
    "src/assets/cleaning.py": """
        import pandas as pd


        def clean(frame: pd.DataFrame, station: str) -> pd.DataFrame:
            frame = frame.dropna(subset=["temp"]).copy()
            frame["station"] = station
            return frame
    """,
    # the transformations: one file dropped into defs/
    "src/weather/defs/stations.py": """
        import pandas as pd

        from assets.cleaning import clean
        from ktx_dagster import DataDir, FilePartitions, LazyPartitions, transformation
        from resources import STATION_DIR, STATION_PATTERN

        STATIONS = FilePartitions(name="station_files", directory=STATION_DIR, pattern=STATION_PATTERN)


        @transformation(partitions=STATIONS, cpu="100m", memory="200Mi")
        def readings(context, data_dir: DataDir) -> pd.DataFrame:
            path = STATIONS.path_for(data_dir.path, context.partition_key)
            return clean(pd.read_csv(path), context.partition_key)


        @transformation(inputs={"readings": readings}, memory="300Mi")
        def summary(readings: LazyPartitions) -> pd.DataFrame:
            means = [part.groupby("station", as_index=False)["temp"].mean() for _, part in readings.iter_loaded()]
            return pd.concat(means, ignore_index=True)
    """,
    # the project's own tests, as its authors would write them
    "tests/test_stations.py": """
        import dagster as dg
        import pandas as pd

        from ktx_dagster import DataDir
        from weather.defs.stations import STATIONS, readings


        def test_one_station_in_memory(tmp_path):
            (tmp_path / "raw").mkdir()
            (tmp_path / "raw" / "station_7.csv").write_text("temp\\n1.5\\n\\n-2\\n")
            with dg.instance_for_test() as instance:
                instance.add_dynamic_partitions(STATIONS.name, ["station_7"])
                result = dg.materialize_to_memory(
                    [readings], partition_key="station_7", instance=instance,
                    resources={"data_dir": DataDir(root=str(tmp_path))},
                )
            frame = result.output_for_node("readings")
            assert frame["temp"].tolist() == [1.5, -2.0]
            assert set(frame["station"]) == {"station_7"}
    """,
}

STATIONS = {"station_1": [1.0, 3.0], "station_2": [10.0, 20.0], "station_3": [-4.0, 4.0]}


def write_stations(folder: Path, stations: dict[str, list[float]] = STATIONS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, temps in stations.items():
        (folder / f"{name}.csv").write_text("temp\n" + "".join(f"{t}\n" for t in temps))


@pytest.fixture(scope="module")
def project(user_env: UserEnv, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("journey") / "weather"
    for relative, text in PROJECT_FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    write_stations(root / "data" / "raw")
    # as the user does once: their project, editable, into their environment
    user_env.run(["python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", "."],
                 cwd=root, timeout=300)
    return root


def test_the_wheel_adds_one_top_level_package(user_env: UserEnv):
    tops = wheel_top_level(user_env.wheel)
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ktx_dagster"}, tops
    entry_points = user_env.run(
        ["python", "-c", "import importlib.metadata as m; print([str(e) for e in m.entry_points("
         "group='dagster_dg_cli.registry_modules') if e.value.startswith('ktx_dagster')])"], cwd=user_env.venv)
    assert "ktx_dagster.components" in entry_points.stdout


def test_dg_sees_the_component_and_the_project_defs(user_env: UserEnv, project: Path, tmp_path):
    home = str(tmp_path / "home")
    listed = user_env.run(["dg", "list", "components"], cwd=project, DAGSTER_HOME=home)
    assert "ktx_dagster.components.Transformations" in listed.stdout
    checked = user_env.run(["dg", "check", "defs"], cwd=project, DAGSTER_HOME=home)
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    defs = user_env.run(["dg", "list", "defs", "--json"], cwd=project, DAGSTER_HOME=home)
    listed_defs = json.loads(defs.stdout)
    assets = {a["asset_key"] for a in listed_defs["assets"]}
    assert assets == {"readings", "summary"}
    assert {s["name"] for s in listed_defs["sensors"]} == {"station_files_sensor"}
    assert {r["name"] for r in listed_defs["resources"]} >= {"data_dir", "io_manager"}


def test_ktx_materialize_runs_every_partition_of_the_project(user_env: UserEnv, project: Path, tmp_path):
    home = tmp_path / "home"
    proc = user_env.run(["python", "-m", "ktx_dagster", "materialize", "-m", "weather.definitions"],
                        cwd=project, DAGSTER_HOME=str(home), KTX_MAX_CONCURRENT="2")
    assert "partitions station_files: 3 (3 new)" in proc.stdout, proc.stdout
    assert "readings                     3 ok, 0 failed" in proc.stdout, proc.stdout
    assert "summary                      1 ok, 0 failed" in proc.stdout, proc.stdout
    import pandas as pd

    out = project / "data"
    assert pd.read_parquet(out / "readings" / "station_2.parquet")["temp"].tolist() == [10.0, 20.0]
    summary = pd.read_parquet(out / "summary.parquet").set_index("station")["temp"].to_dict()
    assert summary == {"station_1": 2.0, "station_2": 15.0, "station_3": 0.0}
    # the runs are in the user's instance, one per partition plus the reduction
    with sqlite3.connect(home / "history" / "runs.db") as db:
        assert db.execute("select count(*) from runs where status = 'SUCCESS'").fetchone()[0] == 4


def test_dg_launch_materializes_one_partition(user_env: UserEnv, project: Path, tmp_path):
    home = str(tmp_path / "home")
    user_env.run(["ktx", "sync"], cwd=project, DAGSTER_HOME=home)  # the default: ./pyproject.toml's [tool.dg]
    (project / "data" / "readings" / "station_3.parquet").unlink(missing_ok=True)
    proc = user_env.run(["dg", "launch", "--assets", "readings", "--partition", "station_3"], cwd=project,
                        DAGSTER_HOME=home)
    assert "RUN_SUCCESS" in proc.stdout + proc.stderr
    assert (project / "data" / "readings" / "station_3.parquet").stat().st_size > 0


def test_the_projects_own_pytest_with_materialize_to_memory(user_env: UserEnv, project: Path):
    proc = user_env.run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=project)
    assert "1 passed" in proc.stdout


K8S_SCRIPT = """
import json, os, subprocess, sys
from pathlib import Path

from ktx_dagster.testing.pytest_plugin import k8s_test_cluster

base = Path(sys.argv[1])
with k8s_test_cluster(base_dir=base, project_dir=os.getcwd()) as cluster:
    cluster.seed_deploy_config()  # what deploy/minikube applies: instance ConfigMap, env, Secret
    (cluster.data_dir / "raw").mkdir(parents=True, exist_ok=True)
    (cluster.data_dir / "raw" / "station_1.csv").write_text("temp\\n5\\n7\\n")
    env = {**os.environ, "KTX_DEPLOYMENT": "minikube", "KUBECONFIG": cluster.kubeconfig,
           "KTX_K8S_NAMESPACE": cluster.namespace, "KTX_IMAGE": "weather:dev",
           "KTX_DATA_DIR": str(cluster.data_dir), "DAGSTER_HOME": str(base / "home"),
           "KTX_STEP_HEALTH_CHECK_SECONDS": "2", "DAGSTER_STEP_DELEGATING_EXECUTOR_SLEEP_SECONDS": "0.2"}
    proc = subprocess.run(["ktx", "materialize", "--select", "readings", "--partition", "station_1"],
                          env=env, capture_output=True, text=True, timeout=300)
    jobs = cluster.jobs("ktx/transformation=readings")
    pods = cluster.pods("ktx/transformation=readings")
    print(json.dumps({
        "returncode": proc.returncode, "output": proc.stdout[-3000:] + proc.stderr[-3000:],
        "jobs": [j["metadata"]["labels"] for j in jobs],
        "resources": [p["spec"]["containers"][0]["resources"] for p in pods],
        "image": [p["spec"]["containers"][0]["image"] for p in pods],
        "written": (cluster.data_dir / "readings" / "station_1.parquet").exists(),
    }))
"""


@pytest.mark.k8s
def test_one_partition_on_the_emulated_cluster(user_env: UserEnv, project: Path, tmp_path):
    """KTX_DEPLOYMENT=minikube: the partition's step is a Job of its own on the (emulated)
    cluster, with the transformation's cpu and memory, writing where the pods mount the data."""
    script = tmp_path / "k8s_one_partition.py"
    script.write_text(K8S_SCRIPT)
    proc = user_env.run(["python", str(script), str(tmp_path / "cluster")], cwd=project, timeout=600)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["returncode"] == 0, result["output"]
    assert [labels["ktx/partition"] for labels in result["jobs"]] == ["station_1"], result
    assert result["resources"] == [{"requests": {"cpu": "100m", "memory": "200Mi"},
                                    "limits": {"cpu": "100m", "memory": "200Mi"}}]
    assert result["image"] == ["weather:dev"]
    assert result["written"], result["output"]
