"""The project's own code location on Kubernetes: every partition step its own Job/pod.

Nothing test-specific runs here: workspace.yaml's locations (`assets.definitions`, `spotify_mpc.definitions`) with
KTX_DEPLOYMENT=minikube, loaded by a code server as `dagster dev -w workspace.yaml` loads it;
runs launched by the UI's own GraphQL mutation and started by the DEFAULT run launcher
(a run worker process that creates one Job per step through the ktx k8s executor).

Against the emulator by default, its pods containers of the real image (`ktx-dagster:test`,
runtime "docker") when a Docker daemon holds it (always in `make test`), local processes
otherwise; against a real cluster with KTX_TEST_KUBECONFIG (see k8s_harness.py for the other
KTX_TEST_* settings). With container pods the instance is on PostgreSQL, as on Minikube: a
container reaches it over loopback, not through this machine's files.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterRunStatus

from assets.hello_world import HELLO_WORLD_FILES
from assets.logic.greeting import greet_lines
from assets.samples import write_hello_world_sample
from k8s_harness import (
    INSTANCE_YAML,
    REPO_ROOT,
    TEST_IMAGE,
    DagsterK8sHarness,
    data_sandbox,
    postgres_instance_yaml,
    project_harness,
)
from ktx_dagster.executors.k8s import sanitize_label_value
from ktx_dagster.data_dir import data_root
from ktx_dagster.testing.pytest_plugin import k8s_test_cluster

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

PARTS = 2  # Hello World partitions that succeed
HELLO_WORLD_RESOURCES = {"cpu": "200m", "memory": "250Mi"}  # @transformation(cpu=..., memory=...)
DYNAMIC_PARTITIONS = ("hello_world_files", "mpd_slice_files", "mpd_parts")


@dataclass
class Project:
    harness: DagsterK8sHarness
    data_dir: Path  # KTX_DATA_DIR of the launching side; pods see it as /mnt/data
    cache: dict = field(default_factory=dict)  # state shared by this module's tests

    def hand_to_pods(self) -> None:
        """Inputs written here belong to the step pods' user, as files on a node's data mount
        belong to its owner (container pods cannot write into a root-owned folder)."""
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, 10001, 10001)


def _pod_runtime() -> str:
    """Containers of the image when a daemon holds it (required in make test), else processes."""
    from ktx_dagster.testing import docker_pods
    from ktx_dagster.testing.containers import docker_client, require_image

    if os.environ.get("KTX_REQUIRE_DOCKER") or (docker_pods.docker_available(docker_client())
                                                and docker_pods.image_present(TEST_IMAGE, docker_client())):
        require_image(TEST_IMAGE)
        return "docker"
    return "process"


@pytest.fixture(scope="module")
def project(tmp_path_factory, request) -> Iterator[Project]:
    runtime, instance_yaml = None, INSTANCE_YAML  # a real cluster: its own PostgreSQL (KTX_TEST_DAGSTER_HOME)
    if not os.environ.get("KTX_TEST_KUBECONFIG"):
        runtime = _pod_runtime()
        if runtime == "docker":
            pg = request.getfixturevalue("ktx_postgres").create_database(f"ktx_{uuid.uuid4().hex[:10]}")
            instance_yaml = postgres_instance_yaml(pg)
    with k8s_test_cluster(tmp_path_factory.mktemp("k8s"), project_dir=REPO_ROOT, runtime=runtime) as cluster, \
            data_sandbox(cluster) as (data, host_path):
        with project_harness(cluster, tmp_path_factory.mktemp("dagster_home_project"), data, host_path,
                             instance_yaml=instance_yaml) as h:
            before = {name: set(h.instance.get_dynamic_partitions(name)) for name in DYNAMIC_PARTITIONS}
            yield Project(h, data)
            # On a real cluster this is your dev instance: drop the partitions only we added
            # (their files lived in the sandbox). Runs stay in the history, tagged as usual.
            for name, keys in before.items():
                for key in set(h.instance.get_dynamic_partitions(name)) - keys:
                    h.instance.delete_dynamic_partition(name, key)


def _step_jobs(h: DagsterK8sHarness, run_id: str, count: int) -> dict[str, list[dict]]:
    """The run's Jobs by step key (the `dagster/op` label), once `count` have finished."""
    by_step: dict[str, list[dict]] = {}
    for job in h.finished_jobs(f"dagster/run-id={run_id}", count, timeout=120):
        by_step.setdefault(job["metadata"]["labels"]["dagster/op"], []).append(job)
    return by_step


def _assert_step_pod(h: DagsterK8sHarness, job: dict, transformation: str, partition: str, resources: dict) -> dict:
    meta, spec = job["metadata"], job["spec"]
    labels = meta["labels"]
    assert labels["ktx/transformation"] == transformation
    assert labels["ktx/partition"] == sanitize_label_value(partition)
    assert meta["annotations"]["ktx/partition-key"] == partition
    assert labels["dagster/code-location"] == h.location_of(transformation)
    assert spec["template"]["metadata"]["labels"]["ktx/partition"] == sanitize_label_value(partition)
    (container,) = spec["template"]["spec"]["containers"]
    # the transformation's own cpu/memory, as requests and (equal) limits
    assert container["resources"] == {"requests": resources, "limits": resources}
    assert container["image"] == TEST_IMAGE
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KTX_DATA_DIR"] == "/mnt/data"
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["ktx-data"]["hostPath"]["path"].startswith("/mnt/data")
    pods = h.cluster.pods(label_selector=f"job-name={meta['name']}")
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"], h.debug()
    return pods[0]


def test_hello_world_partitions_run_in_their_own_pods(project):
    """N Hello World partitions + one with a broken input (retried once, then failed)."""
    h, data = project.harness, project.data_dir
    root = data_root(str(data))
    write_hello_world_sample(root, parts=PARTS)
    raw = root / HELLO_WORLD_FILES.directory
    (raw / "part_bad.txt").write_bytes(b"fine\n\xff\xfe not utf-8\n")
    project.hand_to_pods()
    HELLO_WORLD_FILES.sync(h.instance, root)
    keys = [f"part_{i}" for i in range(1, PARTS + 1)]
    assert set(keys) | {"part_bad"} <= set(h.instance.get_dynamic_partitions(HELLO_WORLD_FILES.name))

    run_ids = {key: h.materialize("hello_world", key) for key in [*keys, "part_bad"]}
    runs = h.wait(list(run_ids.values()), timeout=240)
    from dagster._core.launcher import DefaultRunLauncher

    assert type(h.instance.run_launcher) is DefaultRunLauncher  # as with plain `dagster dev`

    for key in keys:
        run_id = run_ids[key]
        assert runs[run_id].status == DagsterRunStatus.SUCCESS, h.debug()
        assert runs[run_id].tags["dagster/partition"] == key
        # exactly one Job (one pod) per partition: the task's checks run in its own step
        by_step = _step_jobs(h, run_id, 1)
        assert sorted(by_step) == ["hello_world"] and len(by_step["hello_world"]) == 1, by_step
        task_pod = _assert_step_pod(h, by_step["hello_world"][0], "hello_world", key, HELLO_WORLD_RESOURCES)
        checked = {e.dagster_event.asset_check_evaluation_data.check_name
                   for e in h.events(run_id, DagsterEventType.ASSET_CHECK_EVALUATION)}
        assert checked == {"every_line_greeted", "line_count_matches_input", "non_empty"}
        # `kubectl get jobs -l ktx/transformation=hello_world,ktx/partition=part_N`
        selected = h.cluster.jobs(label_selector=f"ktx/transformation=hello_world,ktx/partition={key}")
        assert {j["metadata"]["name"] for j in selected} >= {j[0]["metadata"]["name"] for j in by_step.values()}

        # the pod wrote the output under the data dir the launching side sees
        source = (raw / f"{key}.txt").read_text()
        assert (data / "hello_world" / f"{key}.txt").read_text() == greet_lines(source)

        # events in the instance, written by the step pods
        types = [r.dagster_event.event_type for r in h.events(run_id)]
        assert types.count(DagsterEventType.STEP_WORKER_STARTING) == 1
        assert types.count(DagsterEventType.STEP_SUCCESS) == 1
        starting = [r.user_message for r in h.events(run_id, DagsterEventType.STEP_WORKER_STARTING)]
        assert any(by_step["hello_world"][0]["metadata"]["name"] in m for m in starting)
        (mat,) = h.events(run_id, DagsterEventType.ASSET_MATERIALIZATION)
        materialization = mat.dagster_event.event_specific_data.materialization
        assert materialization.partition == key
        assert materialization.metadata["path"].value.endswith(f"hello_world/{key}.txt")
        # the task's own log line came out of the pod, not the run worker
        assert f"{key}.txt: 3 lines greeted" in h.cluster.pod_log(task_pod["metadata"]["name"])
        checks = h.events(run_id, DagsterEventType.ASSET_CHECK_EVALUATION)
        assert checks and all(c.dagster_event.event_specific_data.passed for c in checks)

    assert set(keys) <= h.instance.get_materialized_partitions(AssetKey("hello_world"))

    # The broken file: @transformation(retries=1) -> a second Job for the retry, then failure.
    run_id = run_ids["part_bad"]
    assert runs[run_id].status == DagsterRunStatus.FAILURE
    by_step = _step_jobs(h, run_id, 2)
    assert sorted(by_step) == ["hello_world"]
    first, second = sorted(by_step["hello_world"], key=lambda j: j["metadata"]["name"])
    assert second["metadata"]["name"] == first["metadata"]["name"] + "-1"
    for job in (first, second):
        _assert_step_pod(h, job, "hello_world", "part_bad", HELLO_WORLD_RESOURCES)
    types = [r.dagster_event.event_type for r in h.events(run_id)]
    assert types.count(DagsterEventType.STEP_UP_FOR_RETRY) == 1
    assert DagsterEventType.ASSET_CHECK_EVALUATION not in types  # the checks never ran: nothing was stored
    (failure,) = h.events(run_id, DagsterEventType.STEP_FAILURE)
    message = failure.dagster_event.event_specific_data.error.to_string()  # "Exceeded max_retries", caused by
    assert "part_bad.txt" in message and "is not UTF-8" in message, message
    assert not (data / "hello_world" / "part_bad.txt").exists()


SPOTIFY_PLAYLISTS = 40  # playlists in the one generated slice (the real MPD has 1000)


def _spotify(project: Project):
    """Generate one small slice file and register its partitions (once per module)."""
    spotify_assets = pytest.importorskip("spotify_mpc.assets")
    h, data = project.harness, project.data_dir
    if AssetKey("mpd_slices") not in _location_assets(h):
        pytest.skip("the spotify_mpc code location is not in workspace.yaml")
    if "spotify" not in project.cache:
        from spotify_mpc import generate

        raw = data / spotify_assets.RAW_DIR
        # python -m spotify_mpc.generate --slices 1 --out DIR --seed 7 (small playlists count)
        assert generate.main(["--slices", "1", "--out", str(raw), "--seed", "7", "--playlists-per-slice",
                              str(SPOTIFY_PLAYLISTS), "--challenge-size", "0", "--quiet"]) == 0
        (slice_file,) = sorted(raw.glob("mpd.slice.*.json"))
        project.hand_to_pods()
        spotify_assets.PARTS.sync(h.instance, data_root(str(data)))  # the slice, then the part holding it
        slice_key = spotify_assets.SLICE_FILES.key_for(slice_file.name)
        assert slice_key in h.instance.get_dynamic_partitions(spotify_assets.SLICE_FILES.name)
        parts = h.instance.get_dynamic_partitions(spotify_assets.PARTS.name)
        assert parts, "no playlists part registered"
        project.cache["spotify"] = (spotify_assets, slice_key, parts[0])
    return project.cache["spotify"]


def _materialize_one_step(project: Project, module, asset: str, key: str) -> None:
    h, data = project.harness, project.data_dir
    run_id = h.materialize(asset, key)
    run = h.wait([run_id], timeout=180)[run_id]
    assert run.status == DagsterRunStatus.SUCCESS, h.debug()
    # one Job: the task, its checks (spotify_mpc/checks.py) in the same step
    by_step = _step_jobs(h, run_id, 1)
    assert sorted(by_step) == [asset] and len(by_step[asset]) == 1, by_step
    _assert_step_pod(h, by_step[asset][0], asset, key, _declared_resources(module, asset))
    assert h.events(run_id, DagsterEventType.ASSET_CHECK_EVALUATION), "the checks did not run in the step"
    (mat,) = h.events(run_id, DagsterEventType.ASSET_MATERIALIZATION)
    assert mat.dagster_event.event_specific_data.materialization.partition == key
    assert (data / asset / f"{key}.parquet").stat().st_size > 0
    project.cache.setdefault("done", set()).add((asset, key))


def test_spotify_mpd_slice_in_its_own_pod(project):
    """The first step of the Spotify chain: one `mpd_slices` partition (one slice file) in
    its own pod with the transformation's 1 cpu / 1Gi."""
    import pandas as pd

    module, slice_key, _part = _spotify(project)
    _materialize_one_step(project, module, "mpd_slices", slice_key)
    frame = pd.read_parquet(project.data_dir / "mpd_slices" / f"{slice_key}.parquet")
    assert frame["pid"].nunique() == SPOTIFY_PLAYLISTS


@pytest.mark.heavy
def test_spotify_playlists_part_in_its_own_pod(project):
    """The next step: the `playlists` part that reads that slice (fan-in through the
    ChunkedPartitionMapping), again its own pod. Heavy: one more run + pod (~20 s here)."""
    import pandas as pd

    module, slice_key, part = _spotify(project)
    if ("mpd_slices", slice_key) not in project.cache.get("done", set()):
        _materialize_one_step(project, module, "mpd_slices", slice_key)
    _materialize_one_step(project, module, "playlists", part)
    frame = pd.read_parquet(project.data_dir / "playlists" / f"{part}.parquet")
    assert frame["pid"].nunique() == SPOTIFY_PLAYLISTS  # every playlist of the one slice


def _location_assets(h: DagsterK8sHarness) -> set:
    ctx = h.workspace.create_request_context()
    return {node.asset_key for name in ctx.code_location_names
            for repo in ctx.get_code_location(name).get_repositories().values()
            for node in repo.get_asset_node_snaps()}


def _declared_resources(module, asset: str) -> dict:
    """requests (== limits) from the transformation's op tags, as its decorator declared them."""
    import json

    tag = getattr(module, asset).op.tags["dagster-k8s/config"]
    config = json.loads(tag) if isinstance(tag, str) else tag
    resources = config["container_config"]["resources"]
    assert resources["requests"] == resources["limits"]
    return resources["requests"]
