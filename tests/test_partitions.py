"""Partition discovery from the data dir and the fan-in / fan-out mappings between tasks."""

from __future__ import annotations

import dagster as dg
import pytest
from upath import UPath

from ktx_dagster import ChunkedPartitions, FilePartitions, LazyPartitions, Upstream, transformation
from ktx_dagster.partitions import natural_sorted
from ktx_dagster.data_dir import DataDir
from ktx_dagster.io_manager import data_resources

SLICES = FilePartitions("slices", "raw", "mpd.slice.*.json", key="match")


def test_natural_sort():
    assert natural_sorted(["part_10", "part_2", "part_1"]) == ["part_1", "part_2", "part_10"]
    assert natural_sorted(["1000-1999", "0-999", "10000-10999"]) == ["0-999", "1000-1999", "10000-10999"]


def test_discovery_picks_up_a_new_file_and_never_forgets(tmp_path, instance):
    files = FilePartitions("parts", "in", "part_*.txt")
    root = UPath(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "part_1.txt").write_text("a")
    (tmp_path / "in" / "other.csv").write_text("not matched")
    assert files.sync(instance, root) == ["part_1"]
    (tmp_path / "in" / "part_2.txt").write_text("b")
    assert files.sync(instance, root) == ["part_2"]
    assert files.sync(instance, root) == []
    (tmp_path / "in" / "part_1.txt").unlink()
    files.sync(instance, root)
    assert instance.get_dynamic_partitions("parts") == ["part_1", "part_2"]
    assert files.path_for(root, "part_2") == root / "in" / "part_2.txt"


def test_key_from_wildcard_match(tmp_path):
    (tmp_path / "raw").mkdir()
    for name in ("mpd.slice.1000-1999.json", "mpd.slice.0-999.json", "challenge_set.json"):
        (tmp_path / "raw" / name).write_text("{}")
    assert SLICES.discover(UPath(tmp_path)) == ["0-999", "1000-1999"]
    assert SLICES.filename_for("0-999") == "mpd.slice.0-999.json"


def test_bad_file_name_error_names_the_file(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "part_a,b.txt").write_text("x")
    with pytest.raises(ValueError, match=r"part_a,b\.txt.*rename the file"):
        FilePartitions("p", "in", "part_*.txt").discover(UPath(tmp_path))


def test_missing_folder_means_no_partitions(tmp_path):
    assert FilePartitions("p", "nowhere", "*.txt").discover(UPath(tmp_path)) == []


def test_pattern_validation():
    with pytest.raises(ValueError, match="exactly one"):
        FilePartitions("p", "in", "part.txt")


def _chunked_chain(chunk_size):
    parts = ChunkedPartitions("parts", SLICES, size=chunk_size)

    @transformation(partitions=SLICES)
    def slice_ids(context, data_dir: DataDir) -> list:
        return [context.partition_key]

    @transformation(partitions=parts, inputs={"slices": Upstream(slice_ids, mapping=parts.mapping)})
    def part(slices: dict[str, list]) -> list:
        return [key for key in slices]

    @transformation(inputs={"parts": Upstream(part, mapping=dg.AllPartitionMapping())})
    def everything(parts: LazyPartitions) -> dict:
        return {key: load() for key, load in parts.items()}

    return parts, [slice_ids, part, everything]


def test_chunked_fan_in_and_all_partitions_reduction(tmp_path, instance):
    root = tmp_path / "data"
    (root / "raw").mkdir(parents=True)
    for start in range(0, 5000, 1000):
        (root / "raw" / f"mpd.slice.{start}-{start + 999}.json").write_text("{}")
    parts, assets = _chunked_chain(2)
    assert parts.sync(instance, UPath(root)) == ["0", "1", "2"]
    resources = data_resources(root)
    slice_ids, part, everything = assets
    for key in instance.get_dynamic_partitions("slices"):
        assert dg.materialize([slice_ids], partition_key=key, resources=resources, instance=instance).success
    for key in ("0", "1", "2"):
        assert dg.materialize(assets, selection=[part], partition_key=key, resources=resources, instance=instance).success
    result = dg.materialize(assets, selection=[everything], resources=resources, instance=instance)
    assert result.output_for_node("everything") == {
        "0": ["0-999", "1000-1999"],
        "1": ["2000-2999", "3000-3999"],
        "2": ["4000-4999"],  # the last chunk is short, and still a dict
    }


def test_chunked_mapping_downstream_direction(instance, tmp_path):
    parts = ChunkedPartitions("parts", SLICES, size=3)
    instance.add_dynamic_partitions("slices", [f"{i}000-{i}999" for i in range(7)])
    instance.add_dynamic_partitions("parts", ["0", "1", "2"])
    mapping = parts.mapping
    up_def, down_def = SLICES.definition, parts.definition
    down = mapping.get_downstream_partitions_for_partitions(
        up_def.subset_with_partition_keys(["3000-3999", "6000-6999"]), up_def, down_def,
        dynamic_partitions_store=instance,
    )
    assert sorted(down.get_partition_keys()) == ["1", "2"]
    up = mapping.get_upstream_mapped_partitions_result_for_partitions(
        down_def.subset_with_partition_keys(["2"]), down_def, up_def, dynamic_partitions_store=instance
    )
    assert list(up.partitions_subset.get_partition_keys()) == ["6000-6999"]


def test_per_shard_reduction_over_all_parts(tmp_path, instance):
    """(part x kind) partials reduced into (kind x shard): each reducer reads every part of its kind."""
    part_kind = dg.MultiPartitionsDefinition(
        {"part": dg.StaticPartitionsDefinition(["0", "1", "2"]), "kind": dg.StaticPartitionsDefinition(["a", "b"])}
    )
    kind_shard = dg.MultiPartitionsDefinition(
        {"kind": dg.StaticPartitionsDefinition(["a", "b"]), "shard": dg.StaticPartitionsDefinition(["0", "1"])}
    )

    @transformation(partitions=part_kind)
    def partial(context) -> dict:
        key = context.partition_key.keys_by_dimension
        return {"part": key["part"], "kind": key["kind"]}

    mapping = dg.MultiPartitionMapping(
        {"kind": dg.DimensionPartitionMapping("kind", dg.IdentityPartitionMapping())}
    )

    @transformation(partitions=kind_shard, inputs={"partials": Upstream(partial, mapping=mapping)})
    def reduced(context, partials: LazyPartitions) -> dict:
        loaded = [load() for load in partials.values()]
        return {"kind": {p["kind"] for p in loaded}.pop(), "parts": sorted(p["part"] for p in loaded)}

    resources = data_resources(tmp_path)
    for key in part_kind.get_partition_keys():
        assert dg.materialize([partial], partition_key=key, resources=resources, instance=instance).success
    result = dg.materialize(
        [partial, reduced], selection=[reduced], partition_key=dg.MultiPartitionKey({"kind": "b", "shard": "1"}),
        resources=resources, instance=instance,
    )
    assert result.output_for_node("reduced") == {"kind": "b", "parts": ["0", "1", "2"]}
