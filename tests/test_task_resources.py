import json
import re

import pytest

from ktx_dagster import TaskResources, TaskResourcesError, transformation
from ktx_dagster.task_resources import parse_quantity


@pytest.mark.parametrize(
    "text, value",
    [("250Mi", 250 * 2**20), ("1Gi", 2**30), ("14.7Gi", int(14.7 * 2**30)), ("1500M", 1500 * 10**6), ("200m", 0.2), ("1", 1), (2, 2)],
)
def test_parse_quantity(text, value):
    assert float(parse_quantity(text, field_name="memory")) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["250MB", "1.5 gb", "lots", "", "-1Gi", "0", True, None])
def test_bad_memory_names_transformation_field_and_fix(bad):
    with pytest.raises(TaskResourcesError) as err:
        TaskResources(memory=bad, owner="standardize")
    msg = str(err.value)
    assert "standardize" in msg and "memory" in msg
    assert "Mi" in msg or "greater than zero" in msg


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
