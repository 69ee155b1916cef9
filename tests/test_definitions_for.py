"""`definitions_for`: a code location from a user's transformations, wired for a deployment."""

from __future__ import annotations

import types

import dagster as dg
import pytest

import ktx_dagster
from ktx_dagster import ChunkedPartitions, DataDir, FilePartitions, LazyPartitions, Upstream, definitions_for, transformation

FILES = FilePartitions(name="t_files", directory="in", pattern="f_*.txt")
CHUNKS = ChunkedPartitions(name="t_chunks", upstream=FILES, size=2)


@transformation(partitions=FILES, format="text")
def per_file(context, data_dir: DataDir) -> str:
    return FILES.path_for(data_dir.path, context.partition_key).read_text().upper()


@transformation(partitions=CHUNKS, inputs={"files": Upstream(per_file, mapping=CHUNKS.mapping)})
def per_chunk(files: LazyPartitions) -> list:
    return sorted(files)


@transformation(inputs={"chunks": per_chunk})
def total(chunks: LazyPartitions) -> dict:
    return {key: chunks.load(key) for key in chunks}


def test_the_data_root_has_one_source_of_truth(tmp_path, instance):
    """Only `data_dir` given: the IO manager writes under that same root, and the sensors and
    `sync` read their files there too."""
    (tmp_path / "in").mkdir()
    for i in (1, 2, 3):
        (tmp_path / "in" / f"f_{i}.txt").write_text(f"file {i}")
    defs = definitions_for(assets=[per_file, per_chunk, total], resources={"data_dir": DataDir(root=str(tmp_path))},
                           deployment="local")
    resources = defs.resources
    assert resources["io_manager"].data_dir is resources["data_dir"]
    for source in ktx_dagster.partition_sources([per_file, per_chunk, total]):
        source.sync(instance, resources["data_dir"].path)
    assert instance.get_dynamic_partitions("t_chunks") == ["0", "1"]
    job = defs.resolve_implicit_global_asset_job_def()
    for key in ("f_1", "f_2"):
        assert job.execute_in_process(instance=instance, partition_key=key, asset_selection=[per_file.key]).success
    assert job.execute_in_process(instance=instance, partition_key="0", asset_selection=[per_chunk.key]).success
    assert (tmp_path / "per_file" / "f_2.txt").read_text() == "FILE 2"
    assert (tmp_path / "per_chunk" / "0.json").read_text() == '["f_1","f_2"]'


def test_sensors_come_from_the_assets_own_partitions():
    defs = definitions_for(assets=[per_file, per_chunk, total], deployment="local")
    (sensor,) = defs.sensors  # the files' sensor also registers the chunks: no second sensor
    assert sensor.name == "t_files_sensor"
    assert {k.to_user_string() for k in sensor.asset_selection.resolve(defs.resolve_asset_graph())} == {"per_file"}
    assert [s.name for s in ktx_dagster.partition_sources([total, per_chunk])] == ["t_files", "t_chunks"]
    assert not definitions_for(assets=[per_file], deployment="local", file_sensors_enabled=False).sensors


def test_executor_follows_the_deployment(monkeypatch):
    assert definitions_for(assets=[per_file], deployment="local").executor.name == "ktx_local"
    assert definitions_for(assets=[per_file], deployment="minikube").executor.name == "ktx_k8s_minikube"
    monkeypatch.setenv("KTX_DEPLOYMENT", "minikube")
    assert definitions_for(assets=[per_file]).executor.name == "ktx_k8s_minikube"
    monkeypatch.setenv("KTX_DEPLOYMENT", "laptop")
    with pytest.raises(ValueError, match="KTX_DEPLOYMENT='laptop' is not one of local, minikube, eks"):
        definitions_for(assets=[per_file])


def test_modules_are_collected_and_other_definitions_pass_through():
    module = types.ModuleType("user_transformations")
    module.per_file, module.per_chunk, module.unrelated = per_file, per_chunk, 42
    job = dg.define_asset_job("files_job", selection=[per_file.key])
    defs = definitions_for(assets=[module], deployment="local", jobs=[job])
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} == {"per_file", "per_chunk"}
    assert defs.resolve_job_def("files_job")


def test_two_sources_under_one_name_is_an_error():
    other = FilePartitions(name="t_files", directory="elsewhere", pattern="g_*.csv")

    @transformation(partitions=other)
    def clash(context) -> str:
        return ""

    with pytest.raises(ValueError, match=r"partitions 't_files' are defined twice"):
        ktx_dagster.partition_sources([per_file, clash])


def test_a_wrong_data_dir_resource_is_named():
    with pytest.raises(TypeError, match=r"resources\['data_dir'\] must be a ktx_dagster.DataDir"):
        definitions_for(assets=[per_file], resources={"data_dir": "/tmp/data"}, deployment="local")
