"""A task's native thread pools (BLAS, OpenMP) are sized to its cpu request, not the machine."""

from __future__ import annotations

import dagster as dg
import numpy as np  # noqa: F401 (loads numpy's BLAS, as every task process has it loaded)
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from ktx_dagster import transformation


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


@pytest.mark.parametrize(("cpu", "expected"), [("200m", 1), ("1", 1), ("1.5", 1), ("2", 2)])
def test_a_tasks_blas_threads_follow_its_cpu_request(cpu, expected):
    seen: list[list[int]] = []

    @transformation(name=f"threads_{cpu.replace('.', '_')}", cpu=cpu, memory="100Mi", format="json")
    def probe() -> dict:
        seen.append(_blas_threads())
        return {}

    with threadpool_limits(limits=4, user_api="blas"):  # a machine with 4 cores' worth of BLAS threads
        before = _blas_threads()
        if not before or max(before) < 2:
            pytest.skip("numpy's BLAS here has a single thread: nothing to limit")
        assert dg.materialize_to_memory([probe]).success
        assert _blas_threads() == before  # restored after the task
    assert seen == [[min(expected, b) for b in before]]
