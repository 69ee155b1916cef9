import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ktx_dagster import TaskResources, TaskResourcesError, transformation
from ktx_dagster.task_resources import parse_quantity


@pytest.mark.parametrize(
    "text, value",
    [("250Mi", 250 * 2**20), ("1Gi", 2**30), ("14.7Gi", int(14.7 * 2**30)), ("1500M", 1500 * 10**6), ("200m", 0.2), ("1", 1), (2, 2)],
)
def test_parse_quantity(text, value):
    assert float(parse_quantity(text, field_name="memory")) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["250MB", "1.5 gb", "lots", "", "-1Gi", "0", True, None, "1.5GG", " 1Gi", "1e3Mi"])
def test_bad_memory_names_transformation_field_and_fix(bad):
    with pytest.raises(TaskResourcesError) as err:
        TaskResources(memory=bad, owner="standardize")
    msg = str(err.value)
    assert msg.startswith(f"transformation 'standardize': memory={bad!r} ")
    assert "e.g. '250Mi', '4Gi', '1500M'" in msg or "use a string like '250Mi'" in msg


@pytest.mark.parametrize("bad", ["-1", "-500m", "0", "-0.5"])
def test_negative_cpu_names_transformation_field_and_fix(bad):
    with pytest.raises(TaskResourcesError) as err:
        TaskResources(cpu=bad, owner="standardize")
    assert str(err.value) == (f"transformation 'standardize': cpu={bad!r} must be greater than zero; "
                              "use e.g. '200m', '1', '1.5'")


PROJECT = """
import ktx_dagster
from ktx_dagster import DataDir, FilePartitions, transformation

WORDS = FilePartitions(name="words", directory="raw", pattern="word_*.txt")


@transformation(partitions=WORDS, cpu="{cpu}", memory="{memory}")
def shout(context, data_dir: DataDir) -> str:
    return WORDS.path_for(data_dir.path, context.partition_key).read_text().upper()


defs = ktx_dagster.definitions_for(assets=[shout])
"""


def _ktx_materialize(tmp_path: Path, cpu: str, memory: str) -> subprocess.CompletedProcess:
    (tmp_path / "project.py").write_text(PROJECT.format(cpu=cpu, memory=memory))
    env = {**os.environ, "KTX_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home"),
           "KTX_DEPLOYMENT": "local", "KTX_MAX_CONCURRENT": "1"}
    return subprocess.run([sys.executable, "-m", "ktx_dagster", "materialize", "-f", str(tmp_path / "project.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("setting, expected", [
    pytest.param({"memory": "1.5GG"}, "memory='1.5GG' is not a Kubernetes quantity; use e.g. '250Mi', '4Gi', '1500M'",
                 id="memory", marks=pytest.mark.reliability(
                     "bad input", case="a memory setting like 1.5GG",
                     injected="@transformation(memory='1.5GG') in a project's code, then ktx materialize -f project.py",
                     seen="ktx exits 2 (nothing ran) before any run; stderr: the traceback to project.py line 8 (the "
                          "decorator), ending 'TaskResourcesError: transformation 'shout': memory='1.5GG' is not a "
                          "Kubernetes quantity; use e.g. '250Mi', '4Gi', '1500M''",
                     outcome="refused when the code loads: no run starts, no partition is touched, earlier outputs "
                             "intact; after the fix the same command materializes every partition")),
    pytest.param({"cpu": "-1"}, "cpu='-1' must be greater than zero; use e.g. '200m', '1', '1.5'",
                 id="cpu", marks=pytest.mark.reliability(
                     "bad input", case="a negative cpu",
                     injected="@transformation(cpu='-1') in a project's code, then ktx materialize -f project.py",
                     seen="ktx exits 2 (nothing ran) before any run; stderr: the traceback to project.py line 8 (the "
                          "decorator), ending 'TaskResourcesError: transformation 'shout': cpu='-1' must be greater "
                          "than zero; use e.g. '200m', '1', '1.5''",
                     outcome="refused when the code loads: no run starts, no partition is touched, earlier outputs "
                             "intact; after the fix the same command materializes every partition")),
])
def test_a_bad_resource_setting_is_refused_before_any_run_and_the_fix_runs(tmp_path, setting, expected):
    (tmp_path / "data" / "raw").mkdir(parents=True)
    for word in ("one", "two"):
        (tmp_path / "data" / "raw" / f"word_{word}.txt").write_text(word)
    good = {"cpu": "100m", "memory": "64Mi"}
    first = _ktx_materialize(tmp_path, **good)
    assert first.returncode == 0, first.stdout + first.stderr
    outputs = {p.name: p.read_bytes() for p in (tmp_path / "data" / "shout").iterdir()}
    assert outputs == {"word_one.txt": b"ONE", "word_two.txt": b"TWO"}
    (tmp_path / "data" / "raw" / "word_one.txt").write_text("uno")  # new input the bad run must not process

    bad = _ktx_materialize(tmp_path, **{**good, **setting})
    assert bad.returncode == 2 and "partition" not in bad.stdout, bad.stdout + bad.stderr
    assert "ktx: the code location failed to load; nothing ran" in bad.stderr
    # The traceback of the user's code points at the decorator's line; its last line is the error.
    assert f'project.py", line 8' in bad.stderr, bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == f"ktx_dagster.task_resources.TaskResourcesError: transformation 'shout': {expected}"
    assert {p.name: p.read_bytes() for p in (tmp_path / "data" / "shout").iterdir()} == outputs

    fixed = _ktx_materialize(tmp_path, **good)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (tmp_path / "data" / "shout" / "word_one.txt").read_bytes() == b"UNO"


def test_mb_hint_explains_binary_units():
    with pytest.raises(TaskResourcesError, match="spells binary units 'Mi'"):
        TaskResources(memory="250MB", owner="x")


def test_cpu_below_one_millicore_rejected():
    with pytest.raises(TaskResourcesError, match="below 1m"):
        TaskResources(cpu="0.0001", owner="x")


def test_limit_below_request_rejected():
    with pytest.raises(TaskResourcesError, match="memory_limit"):
        TaskResources(memory="2Gi", memory_limit="1Gi", owner="x")


def test_bad_gpu_and_tolerations():
    with pytest.raises(TaskResourcesError, match="gpu"):
        TaskResources(gpu=-1, owner="x")
    with pytest.raises(TaskResourcesError, match="unknown fields"):
        TaskResources(tolerations=[{"key": "a", "effekt": "NoSchedule"}], owner="x")


def test_k8s_config_shape():
    res = TaskResources(
        cpu="1", memory="4500Mi", memory_limit="5Gi", ephemeral_storage="10Gi", gpu=1,
        node_selector={"karpenter.sh/capacity-type": "spot"},
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    config = res.k8s_config()
    assert config["container_config"]["resources"] == {
        "requests": {"cpu": "1", "memory": "4500Mi", "ephemeral-storage": "10Gi", "nvidia.com/gpu": "1"},
        "limits": {"cpu": "1", "memory": "5Gi", "ephemeral-storage": "10Gi", "nvidia.com/gpu": "1"},
    }
    assert config["pod_spec_config"]["node_selector"] == {"karpenter.sh/capacity-type": "spot"}
    assert config["pod_spec_config"]["tolerations"][0]["operator"] == "Exists"


def test_transformation_validates_at_definition_time():
    with pytest.raises(TaskResourcesError, match="'greet'.*memory"):

        @transformation(memory="250 megabytes")
        def greet() -> str:
            return "hi"


def test_resources_travel_as_op_tags():
    @transformation(partitions=["a", "b"], cpu="200m", memory="250Mi")
    def small(context) -> str:
        return context.partition_key

    tags = small.op.tags
    assert tags["ktx/transformation"] == "small"
    # Dagster stores dict tags as JSON; dagster-k8s parses it back into the pod spec.
    assert json.loads(tags["dagster-k8s/config"])["container_config"]["resources"]["requests"] == {"cpu": "200m", "memory": "250Mi"}


def test_memory_growth_travels_as_tags_and_is_validated():
    tags = TaskResources(memory="1Gi", memory_growth=2.0, max_memory="3Gi", owner="t").op_tags("t")
    assert tags["ktx/memory-growth"] == "2.0" and tags["ktx/max-memory"] == "3Gi"
    assert TaskResources(memory="256Mi", memory_growth=2, owner="t").op_tags("t")["ktx/max-memory"] == "2048Mi"
    assert "ktx/memory-growth" not in TaskResources(owner="t").op_tags("t")
    for kwargs, fragment in (({"memory_growth": 1.0}, "above 1"), ({"memory_growth": True}, "above 1"),
                             ({"memory_growth": 2.0, "max_memory": "512Mi"}, "below memory='1Gi'"),
                             ({"max_memory": "2Gi"}, "memory_growth, which is not set"),
                             ({"memory_growth": 2.0, "max_memory": "2GB"}, "max_memory='2GB' is not a Kubernetes quantity")):
        with pytest.raises(TaskResourcesError, match=re.escape(fragment)):
            TaskResources(memory="1Gi", owner="t", **kwargs)
