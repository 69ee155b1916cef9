"""The mini Spotify contest end to end as Dagster assets: generated slices in a temp data dir,
every partition of every asset materialized with the real IO manager, then the evaluation and
the official export checked."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest

from ktx_dagster.testing.materialize import materialize_in_process
from ktx_dagster.data_dir import data_root
from ktx_dagster.io_manager import data_resources
from spotify_mpc import assets as spotify
from spotify_mpc import mpd_io, submission
from spotify_mpc.sizes import get_size


@pytest.fixture(scope="module")
def contest(tmp_path_factory):
    root = tmp_path_factory.mktemp("spotify") / "data"
    size = get_size("mini")
    subprocess.run(
        [sys.executable, "-m", "spotify_mpc.generate", "--slices", str(size.slices), "--out",
         str(root / spotify.RAW_DIR), "--seed", "7", "--challenge-size", str(size.official_challenge_size),
         "--playlists-per-slice", str(size.playlists_per_slice), "--quiet"],
        check=True, timeout=300,
    )
    with dg.instance_for_test() as instance:
        spotify.PARTS.sync(instance, data_root(str(root)))
        resources = data_resources(root)
        all_assets = [a for a in vars(spotify).values() if isinstance(a, dg.AssetsDefinition)]
        runs = materialize_in_process(all_assets, instance, resources)
        yield root, instance, runs


def test_every_asset_materialized_with_its_partitions(contest):
    root, instance, runs = contest
    size = get_size("mini")
    assert runs["mpd_slices"] == size.slices
    assert runs["playlists"] == runs["train_playlists"] == size.n_parts
    assert runs["cooccurrence_partials"] == size.n_parts * 6
    assert runs["cooccurrence"] == 6 * size.cooc_shards
    assert runs["challenge_lists"] == size.official_shards
    for name in ("tracks", "challenge_keys", "model", "submission", "evaluation", "challenge_submission"):
        assert runs[name] == 1
    first = f"0-{size.playlists_per_slice - 1}"
    assert (root / "mpd_slices" / f"{first}.parquet").exists()
    assert (root / "cooccurrence" / "total" / "0.arrow").exists()  # kind/shard layout, in the format assets.py declares


def test_model_beats_popularity_baseline(contest):
    root, instance, _ = contest
    table = pd.read_parquet(root / "evaluation.parquet")
    overall = table[table["category"] == "overall"].set_index("method")
    assert overall.at["model", "r_precision"] > overall.at["popularity", "r_precision"]
    assert overall.at["model", "ndcg"] > overall.at["popularity", "ndcg"]
    assert overall.at["model", "clicks"] < overall.at["popularity", "clicks"]  # fewer clicks is better
    event = instance.get_latest_materialization_event(dg.AssetKey("evaluation"))
    meta = event.asset_materialization.metadata
    assert "| category |" in meta["scores"].value
    assert meta["plot"].value.startswith("![metrics per category](data:image/png;base64,")
    assert meta["model_ndcg"].value == pytest.approx(overall.at["model", "ndcg"])
    # The co-occurrence-only ranking, read from test_samples' parquet shards (only the columns it needs).
    assert meta["cooccurrence_r_precision"].value == pytest.approx(overall.at["cooccurrence", "r_precision"])
    assert overall.at["popularity", "ndcg"] < overall.at["cooccurrence", "ndcg"] < overall.at["model", "ndcg"]


def test_official_export_passes_the_verifier(contest):
    root, _, _ = contest
    text = (root / "challenge_submission.txt").read_text()
    challenge = mpd_io.read_challenge_set((root / spotify.RAW_DIR / "challenge_set.json").read_bytes(), "challenge_set.json")
    submission.verify(text, challenge)  # raises naming the line and the rule
    first = next(line for line in text.splitlines() if line and not line.startswith("#"))
    assert first.startswith("team_info,")
