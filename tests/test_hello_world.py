"""Hello World end to end: in memory, with a temp data dir, and through the multiprocess
executor with a persistent instance, as `make demo` runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg

from assets.hello_world import HELLO_WORLD_FILES, hello_world
from assets.logic.greeting import greet_lines
from assets.samples import write_hello_world_sample
from ktx_dagster.data_dir import DataDir, data_root
from ktx_dagster.io_manager import data_resources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_greet_lines():
    assert greet_lines("a\nb\n") == "Hello World: a\nHello World: b\n"
    assert greet_lines("a\r\nb") == "Hello World: a\r\nHello World: b"
    assert greet_lines("") == ""


def _inputs(data_dir):
    raw = data_dir / "hello_world" / "raw"
    raw.mkdir(parents=True)
    (raw / "part_1.txt").write_text("alpha\nbeta\n")
    (raw / "part_2.txt").write_text("gamma\n")
    return raw


def test_materialize_to_memory(data_dir, instance):
    _inputs(data_dir)
    assert HELLO_WORLD_FILES.sync(instance, data_root()) == ["part_1", "part_2"]
    result = dg.materialize_to_memory(
        [hello_world], partition_key="part_1", instance=instance, resources={"data_dir": DataDir()}
    )
    assert result.output_for_node("hello_world") == "Hello World: alpha\nHello World: beta\n"


def test_materialize_writes_every_partition(data_dir, instance):
    _inputs(data_dir)
    HELLO_WORLD_FILES.sync(instance, data_root())
    resources = data_resources()
    for key in ("part_1", "part_2"):
        result = dg.materialize([hello_world], partition_key=key, instance=instance, resources=resources)
        meta = result.asset_materializations_for_node("hello_world")[0].metadata
        assert meta["lines"].value == (2 if key == "part_1" else 1)
        assert meta["task_peak_rss_mb"].value > 0
    assert (data_dir / "hello_world" / "part_2.txt").read_text() == "Hello World: gamma\n"


def test_bad_input_fails_only_its_partition_and_rerun_fixes_it(data_dir, instance):
    raw = _inputs(data_dir)
    (raw / "part_3.txt").write_bytes(b"ok\n\xff\xfe broken\n")
    HELLO_WORLD_FILES.sync(instance, data_root())
    resources = data_resources()
    bad = dg.materialize([hello_world], partition_key="part_3", instance=instance, resources=resources, raise_on_error=False)
    error = next(e for e in bad.all_events if e.is_step_failure).event_specific_data.error.to_string()
    assert "part_3.txt" in error and "not UTF-8" in error and "re-run" in error
    assert not (data_dir / "hello_world" / "part_3.txt").exists()
    assert dg.materialize([hello_world], partition_key="part_1", instance=instance, resources=resources).success
    (raw / "part_3.txt").write_text("ok\nfixed\n")
    assert dg.materialize([hello_world], partition_key="part_3", instance=instance, resources=resources).success
    assert (data_dir / "hello_world" / "part_3.txt").read_text() == "Hello World: ok\nHello World: fixed\n"


def test_cli_materializes_all_partitions_in_processes_of_their_own(tmp_path):
    """`ktx materialize -m assets.definitions`: real runs, each in a process of its own, a persistent instance."""
    env = {**os.environ, "KTX_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home"),
           "KTX_MAX_CONCURRENT": "2"}
    write_hello_world_sample(data_root(str(tmp_path / "data")), parts=3)
    proc = subprocess.run([sys.executable, "-m", "ktx_dagster", "materialize", "-m", "assets.definitions", "--select", "hello_world"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "hello_world                  3 ok, 0 failed" in proc.stdout
    for i in (1, 2, 3):
        assert (tmp_path / "data" / "hello_world" / f"part_{i}.txt").read_text().startswith("Hello World: line 1")
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / "home"))) as inst:
        records = inst.fetch_materializations(dg.AssetKey("hello_world"), limit=10).records
        assert sorted(r.partition_key for r in records) == ["part_1", "part_2", "part_3"]
        runs = inst.get_runs()
        assert len(runs) == 3 and all(r.is_success for r in runs)
        # Every partition ran in a process of its own (forked per run), none in the CLI's process.
        pids = set()
        for r in runs:
            started = [e for e in inst.all_logs(r.run_id) if e.dagster_event
                       and e.dagster_event.event_type_value == "ENGINE_EVENT"
                       and e.user_message.startswith("Executing steps in process")]
            assert len(started) == 1
            pids.add(started[0].user_message)
        assert len(pids) == 3
