"""Backfills through the webserver's GraphQL API, run by the real daemon's run queue.

1. A backfill of every Hello World partition completes, at most KTX_MAX_CONCURRENT_RUNS runs
   at a time, and leaves every partition materialized with its checks passing.
2. One input is broken (invalid UTF-8): a new backfill fails exactly that partition, with an
   error that names the file.
3. The input is fixed and the failed backfill is re-executed "from failure" (the UI's
   Re-execute button): only that partition runs, and now everything is materialized.
"""

from __future__ import annotations

import pytest

from dagster_stack import MAX_CONCURRENT_RUNS, SAMPLE_KEYS

pytestmark = [pytest.mark.ui, pytest.mark.timeout(900)]

ASSET = "hello_world"


def _status_counts(backfill: dict) -> dict:
    (counts,) = [s for s in backfill["assetBackfillData"]["assetBackfillStatuses"] if s["assetKey"]["path"] == [ASSET]]
    return counts


def _report(name: str, backfill: dict, stack) -> None:
    runs = [r for r in backfill["runs"] if r.get("startTime") and r.get("endTime")]
    took = (backfill.get("endTimestamp") or 0) - backfill["timestamp"]
    mean = sum(r["endTime"] - r["startTime"] for r in runs) / max(1, len(runs))
    print(f"{name}: {backfill['status']} in {took:.1f}s, {len(runs)} runs, mean run {mean:.1f}s, "
          f"peak concurrency {stack.max_overlap(runs)}")


def _runs_by_partition(stack, backfill: dict) -> dict[str, list[dict]]:
    by_key: dict[str, list[dict]] = {}
    for run in backfill["runs"]:
        by_key.setdefault(stack.partition_of(run), []).append(run)
    return by_key


def test_backfill_fail_fix_and_retry_failed(ui_stack):
    stack = ui_stack
    keys = sorted(stack.partitions(ASSET)["partitionKeys"])
    assert set(SAMPLE_KEYS) <= set(keys), keys

    # 1. Everything, with bounded concurrency.
    first = stack.wait_backfill(stack.launch_backfill(ASSET, title="all partitions"))
    _report("all partitions", first, stack)
    assert first["status"] == "COMPLETED_SUCCESS", first
    counts = _status_counts(first)
    assert counts["numPartitionsTargeted"] == len(keys)
    assert counts["numPartitionsMaterialized"] == len(keys) and counts["numPartitionsFailed"] == 0
    runs = _runs_by_partition(stack, first)
    assert sorted(runs) == keys and all(len(r) == 1 and r[0]["status"] == "SUCCESS" for r in runs.values())
    assert 1 <= stack.max_overlap(first["runs"]) <= MAX_CONCURRENT_RUNS
    node = stack.partitions(ASSET)
    assert node["partitionStats"]["numMaterialized"] == len(keys)
    assert stack.check_results(ASSET, "part_1") == {
        "every_line_greeted": True, "line_count_matches_input": True, "non_empty": True,
    }

    # 2. Break one input: exactly that partition fails, with an error naming the file.
    broken = stack.data / "hello_world" / "raw" / "part_2.txt"
    good = broken.read_bytes()
    broken.write_bytes(b"line 1\n\xff\xfe not utf-8\n")
    second = stack.wait_backfill(stack.launch_backfill(ASSET, title="with a broken input"))
    _report("broken input", second, stack)
    assert second["status"] == "COMPLETED_FAILED", second
    counts = _status_counts(second)
    assert counts["numPartitionsFailed"] == 1
    assert counts["numPartitionsMaterialized"] == len(keys) - 1
    runs = _runs_by_partition(stack, second)
    failed = {key for key, rs in runs.items() if any(r["status"] == "FAILURE" for r in rs)}
    assert failed == {"part_2"}
    errors = stack.step_failures(runs["part_2"][0]["id"])
    assert any("part_2.txt" in e and "not UTF-8" in e for e in errors), errors
    statuses = stack.partitions(ASSET)["assetPartitionStatuses"]
    assert statuses["failedPartitions"] == ["part_2"]

    # 3. Fix it and re-execute only what failed.
    broken.write_bytes(good)
    retry_id = stack.retry_failed(second["id"])
    third = stack.wait_backfill(retry_id)
    _report("retry failed", third, stack)
    assert third["status"] == "COMPLETED_SUCCESS", third
    assert sorted(_runs_by_partition(stack, third)) == ["part_2"]
    assert _status_counts(third)["numPartitionsTargeted"] == 1
    node = stack.partitions(ASSET)
    assert node["partitionStats"]["numFailed"] == 0
    assert node["partitionStats"]["numMaterialized"] == len(keys)
    assert all(stack.check_results(ASSET, "part_2").values())
