"""What the run's log says of a straggler: a step running past its transformation's
``expected_duration``. Told once per step, by the Kubernetes executor's health check (with the
pod and node) or, elsewhere, by the step's own process (with its pid and host)."""

from __future__ import annotations


def straggler_message(where: str, elapsed: float, expected: float, running_on: str) -> str:
    """`where`: transformation[partition]; `running_on`: "pod X on node Y" or "process N on host H"."""
    return (f"{where} is still running after {elapsed:.1f}s, past its expected duration of {expected:g}s "
            f"(@transformation(expected_duration=...)); it runs as {running_on}.")
