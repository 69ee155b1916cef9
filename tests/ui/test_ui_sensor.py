"""The file sensor under the real daemon: a new input file becomes a partition and a run.

Drop `part_9.txt` into the data dir: within a few ticks the sensor registers partition
`part_9` and requests a run of hello_world for just that partition, which materializes it
(checks included). Then remove the file: the partition and its materialization stay.
"""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]

ASSET = "hello_world"
SENSOR = "hello_world_files_sensor"
NEW_KEY = "part_9"


def test_new_file_becomes_partition_and_run(ui_stack):
    stack = ui_stack
    assert NEW_KEY not in stack.partitions(ASSET)["partitionKeys"]
    ticks = stack.sensor_ticks(SENSOR)
    assert ticks, "the sensor is RUNNING by default and must have ticked by now"
    before_existing = {k for k in stack.partitions(ASSET)["partitionKeys"]}

    new_file = stack.data / "hello_world" / "raw" / f"{NEW_KEY}.txt"
    new_file.write_text("a new line\nand another\n")
    deadline = time.monotonic() + 180

    def sensor_run_succeeded():
        runs = stack.runs("ktx/sensor", "hello_world_files")
        mine = [r for r in runs if stack.partition_of(r) == NEW_KEY]
        assert not any(r["status"] == "FAILURE" for r in mine), mine
        return mine and all(r["status"] == "SUCCESS" for r in mine) and mine

    runs = stack.wait_for(sensor_run_succeeded, deadline, f"the sensor's run of {NEW_KEY}", interval=1)
    assert len(runs) == 1  # one run, for just the new partition
    node = stack.partitions(ASSET)
    assert NEW_KEY in node["partitionKeys"]
    assert NEW_KEY in node["assetPartitionStatuses"]["materializedPartitions"]
    # Only the new key was requested: no other partition got a sensor run.
    all_sensor_runs = stack.runs("ktx/sensor", "hello_world_files")
    assert {stack.partition_of(r) for r in all_sensor_runs} == {NEW_KEY}
    assert before_existing | {NEW_KEY} == set(node["partitionKeys"])
    output = stack.data / "hello_world" / f"{NEW_KEY}.txt"
    assert output.read_text() == "Hello World: a new line\nHello World: and another\n"
    assert all(stack.check_results(ASSET, NEW_KEY).values())

    # Removing the input never deletes the partition or its history.
    content = new_file.read_text()
    new_file.unlink()
    try:
        seen = stack.sensor_ticks(SENSOR, limit=1)[0]["timestamp"]
        stack.wait_for(
            lambda: any(t["timestamp"] > seen and t["status"] in ("SKIPPED", "SUCCESS")
                        for t in stack.sensor_ticks(SENSOR)),
            time.monotonic() + 60, "a sensor tick after the removal",
        )
        node = stack.partitions(ASSET)
        assert NEW_KEY in node["partitionKeys"]
        assert NEW_KEY in node["assetPartitionStatuses"]["materializedPartitions"]
        assert len(stack.runs("ktx/sensor", "hello_world_files")) == 1
    finally:
        # The stack is shared: a partition left without its input would fail the next
        # test's backfill of every partition. Putting the file back runs nothing (the
        # sensor's cursor holds the key).
        new_file.write_text(content)
