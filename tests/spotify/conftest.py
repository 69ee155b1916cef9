"""Fixtures for the Spotify solution: hand-written MPD records and one generated mini contest."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # tiny matrices: threads only add overhead

import pytest

from spotify_mpc import generate
from spotify_mpc.sizes import get_size


@pytest.fixture(scope="session")
def mini_size():
    return get_size("mini")


@pytest.fixture(scope="session")
def mini_dir(tmp_path_factory, mini_size):
    out = tmp_path_factory.mktemp("mpd_mini")
    generate.main(["--slices", str(mini_size.slices), "--out", str(out), "--seed", "0",
                   "--challenge-size", str(mini_size.official_challenge_size),
                   "--playlists-per-slice", str(mini_size.playlists_per_slice), "--quiet"])
    return out


@pytest.fixture(scope="session")
def mini_contest(mini_dir, mini_size):
    from spotify_mpc.inprocess import Timings, run_contest

    return run_contest(mini_dir, mini_size, Timings())
