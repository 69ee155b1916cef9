"""Partition discovery from the data dir and the fan-in / fan-out mappings between tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_no_inputs_message_names_folder_pattern_what_is_there_and_the_fix(tmp_path):
    files = FilePartitions("parts", "in", "part_*.txt")
    root = UPath(tmp_path)
    assert files.no_inputs_message(root) == (
        f"no input files for partitions 'parts': nothing matches 'part_*.txt' in {root / 'in'} (the folder does not "
        "exist). Fix: write the input files there, named like 'part_*.txt', or point the data dir (data_dir: / "
        "KTX_DATA_DIR) at the root that holds them; then run again")
    (tmp_path / "in").mkdir()
    assert "(the folder is empty)" in files.no_inputs_message(root)
    for name in ("Part_1.txt", "part_1.csv", "notes.md", "x"):
        (tmp_path / "in" / name).write_text("")
    assert "(the folder holds 4 other file(s): Part_1.txt, notes.md, part_1.csv, ...)" in files.no_inputs_message(root)
    hinted = FilePartitions("parts", "in", "part_*.txt", inputs_hint="run make samples")
    assert "Fix: run make samples, or point the data dir" in hinted.no_inputs_message(root)
    chunks = ChunkedPartitions("chunks", upstream=hinted, size=2)
    assert chunks.no_inputs_message(root) == hinted.no_inputs_message(root)


REPO = Path(__file__).resolve().parents[1]


def _ktx(command: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KTX_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home"),
           "KTX_DEPLOYMENT": "local", "KTX_MAX_CONCURRENT": "2"}
    return subprocess.run([sys.executable, "-m", "ktx_dagster", command, "-m", "spotify_mpc.definitions", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.reliability(
    "bad input", case="an empty data dir",
    injected="ktx sync / ktx materialize -m spotify_mpc.definitions with KTX_DATA_DIR pointing at an empty folder",
    seen="\"partitions mpd_slice_files: 0 (0 new)\" then \"no input files for partitions 'mpd_slice_files': nothing "
         "matches 'mpd.slice.*.json' in <data>/spotify_mpc/raw (the folder does not exist). Fix: copy the MPD's "
         "data/mpd.slice.*.json files into <data dir>/spotify_mpc/raw, or write a synthetic contest there with python "
         "-m spotify_mpc.samples write, or point the data dir (data_dir: / KTX_DATA_DIR) at the root that holds them\"; "
         "mpd_slices 'no partitions, so nothing to run', every downstream asset skipped, exit status 1",
    outcome="no run starts and nothing is written; not a zero-partition success; after writing the inputs the "
            "same command registers and materializes them")
def test_an_empty_data_dir_is_told_plainly_and_is_no_success(tmp_path):
    listed = _ktx("sync", tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    folder = tmp_path / "data" / "spotify_mpc" / "raw"
    told = (f"no input files for partitions 'mpd_slice_files': nothing matches 'mpd.slice.*.json' in {folder} "
            "(the folder does not exist). Fix: copy the MPD's data/mpd.slice.*.json files into "
            "<data dir>/spotify_mpc/raw, or write a synthetic contest there with python -m spotify_mpc.samples write")
    assert "partitions mpd_slice_files: 0 (0 new)" in listed.stdout and told in listed.stdout, listed.stdout

    run = _ktx("materialize", tmp_path, "--select", "mpd_slices", "playlists")
    assert run.returncode == 1, run.stdout + run.stderr
    assert told in run.stdout and "mpd_slices: no partitions, so nothing to run" in run.stdout, run.stdout
    assert "playlists: skipped, an upstream transformation failed" in run.stdout
    assert not (tmp_path / "data" / "mpd_slices").exists()

    folder.mkdir(parents=True)
    (folder / "mpd.slice.0-999.json").write_bytes(json.dumps({
        "info": {"slice": "0-999"}, "playlists": [{
            "pid": 7, "name": "x", "modified_at": 1, "num_tracks": 1, "collaborative": "false", "tracks": [{
                "pos": 0, "track_uri": "spotify:track:" + "1" * 22, "artist_uri": "spotify:artist:" + "2" * 22,
                "album_uri": "spotify:album:" + "3" * 22, "track_name": "t", "artist_name": "a", "album_name": "b",
                "duration_ms": 1000}]}]}).encode())
    fixed = _ktx("materialize", tmp_path, "--select", "mpd_slices")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "partitions mpd_slice_files: 1 (1 new)" in fixed.stdout and "no input files" not in fixed.stdout
    assert (tmp_path / "data" / "mpd_slices" / "0-999.parquet").exists()
