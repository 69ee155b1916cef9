"""A partition run on the Kubernetes deployment whose KUBECONFIG names a file that does not
exist, or a server that does not answer: the run fails before any Job exists, saying which
file (or server), which setting and how to fix it; the same partition with a good kubeconfig
runs as before."""

from __future__ import annotations

import socket

import pytest
import yaml
from dagster import DagsterRunStatus

from k8s_code_location import KEYS
from k8s_harness import dagster_harness

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(240)]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_text(h, run_id: str) -> str:
    """Everything the run's log says: messages and errors (what the UI shows)."""
    out = []
    for record in h.events(run_id):
        event = record.dagster_event
        out.append(event.message or "")
        data = event.event_specific_data
        error = getattr(data, "error", None)
        if error is not None:
            out.append(error.to_string())
    return "\n".join(out)


@pytest.mark.reliability(
    "bad input", case="a missing or unreachable kubeconfig",
    injected="KUBECONFIG pointing at a file that does not exist, or at a kubeconfig whose server is a closed "
             "loopback port, for the code location that runs a partition on the Kubernetes deployment",
    seen="the run fails with 'KUBECONFIG=<path>: no such kubeconfig file ...' or 'the Kubernetes API server "
         "https://127.0.0.1:<port> does not answer (...); it comes from the kubeconfig <path> (KUBECONFIG)', then "
         "'No Job was created. Fix: point KUBECONFIG (or KTX_KUBECONFIG) at ... KTX_KUBE_CONTEXT ...'",
    outcome="only that run fails, before any Job exists; the same partition with a good kubeconfig succeeds")
@pytest.mark.parametrize("problem", ["missing", "unreachable"])
def test_a_missing_or_unreachable_kubeconfig_fails_the_run_plainly_and_creates_no_job(harness, tmp_path, problem):
    cluster = harness.cluster
    cluster.require_emulator()  # the bad kubeconfig replaces the test cluster's own
    if problem == "missing":
        kubeconfig = tmp_path / "no-such-dir" / "kubeconfig.yaml"
        expected = f"KUBECONFIG={kubeconfig}: no such kubeconfig file"
    else:
        config = yaml.safe_load(open(cluster.kubeconfig))
        server = f"http://127.0.0.1:{_closed_port()}"
        for entry in config["clusters"]:
            entry["cluster"]["server"] = server
        kubeconfig = tmp_path / "kubeconfig.yaml"
        kubeconfig.write_text(yaml.safe_dump(config))
        expected = f"the Kubernetes API server {server} does not answer"
    with dagster_harness(cluster, tmp_path / "home", extra_env={"KUBECONFIG": str(kubeconfig)}) as bad:
        run_id = bad.launch("square_job", KEYS[0])
        run = bad.wait([run_id])[run_id]
        assert run.status == DagsterRunStatus.FAILURE
        text = _run_text(bad, run_id)
    assert expected in text, text[-3000:]
    assert "Fix: point KUBECONFIG (or KTX_KUBECONFIG) at the kubeconfig" in text and "KTX_KUBE_CONTEXT" in text
    if problem == "unreachable":
        assert f"kubeconfig {kubeconfig} (KUBECONFIG)" in text
    assert cluster.jobs(label_selector=f"dagster/run-id={run_id}") == []  # nothing half-created
    # the same partition, with the cluster's own kubeconfig: unaffected
    good = harness.launch("square_job", KEYS[0])
    assert harness.wait([good])[good].status == DagsterRunStatus.SUCCESS, harness.debug()
