"""Contest sizes: every number that differs between a seconds-long test contest and the real one.

`mini` exercises every asset in well under a minute; `80k` is the original's small contest
(80 slices: 6 statistics parts, 1 training-challenge part, 1 test part); `full` is the 1M
contest. Select with KTX_SPOTIFY_SIZE (default mini); KTX_SLICES_PER_PART overrides the
part size of any preset, KTX_CHALLENGE_PER_CATEGORY the playlists per category of both
challenge sets (smaller parts hold fewer long playlists to sample from).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from spotify_mpc.features import CandidateParams


@dataclass(frozen=True)
class ContestSize:
    name: str
    slices: int  # slice files generated / expected
    playlists_per_slice: int  # 1000 in the real MPD
    slices_per_part: int  # part i = slices[i*k:(i+1)*k], sorted by first pid
    test_per_category: int  # challenge_set: 10 categories x this many playlists
    train_per_category: int  # training_challenge_set
    official_challenge_size: int  # playlists in the generated challenge_set.json
    cooc_shards: int  # co-occurrence shards per kind (by key)
    test_sample_shards: int  # test_samples partitions
    train_sample_shards: int  # training_samples partitions
    official_shards: int  # challenge_lists partitions (the official challenge set, scored in shards)
    candidates: CandidateParams = field(default_factory=CandidateParams)
    negatives: int = 300  # random negatives kept per training playlist
    top_n: int = 1000  # partners kept per co-occurrence key
    epochs: int = 10
    batch_size: int = 1024
    learning_rate: float = 1e-3
    seed: int = 0

    @property
    def n_parts(self) -> int:
        return -(-self.slices // self.slices_per_part)


PRESETS: dict[str, ContestSize] = {
    "mini": ContestSize(
        name="mini", slices=8, playlists_per_slice=500, slices_per_part=2, test_per_category=40,
        train_per_category=40, official_challenge_size=100, cooc_shards=2, test_sample_shards=2,
        train_sample_shards=2, official_shards=2,
        candidates=CandidateParams(popular=300, artist=200, cooc=600, ngram=300),
        negatives=150, epochs=6),
    "80k": ContestSize(
        name="80k", slices=80, playlists_per_slice=1000, slices_per_part=10, test_per_category=500,
        train_per_category=500, official_challenge_size=10_000, cooc_shards=10, test_sample_shards=10,
        train_sample_shards=10, official_shards=20,
        candidates=CandidateParams(popular=1000, artist=500, cooc=2000, ngram=1000),
        negatives=300, epochs=10),
    "full": ContestSize(
        name="full", slices=1000, playlists_per_slice=1000, slices_per_part=10, test_per_category=500,
        train_per_category=500, official_challenge_size=10_000, cooc_shards=40, test_sample_shards=10,
        train_sample_shards=10, official_shards=20,
        candidates=CandidateParams(popular=1000, artist=500, cooc=3000, ngram=3000),
        negatives=300, epochs=10),
}


def get_size(name: str | None = None) -> ContestSize:
    """A preset by name, or from KTX_SPOTIFY_SIZE / KTX_SLICES_PER_PART."""
    name = name or os.environ.get("KTX_SPOTIFY_SIZE", "mini")
    if name not in PRESETS:
        raise ValueError(f"unknown contest size {name!r}; choose one of {sorted(PRESETS)} (KTX_SPOTIFY_SIZE)")
    size = PRESETS[name]
    overrides = {}
    for env, fields in (("KTX_SLICES_PER_PART", ("slices_per_part",)),
                        ("KTX_CHALLENGE_PER_CATEGORY", ("test_per_category", "train_per_category"))):
        raw = os.environ.get(env, "").strip()
        if not raw:
            continue
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{env}={raw!r} must be a whole number >= 1")
        overrides.update({f: int(raw) for f in fields})
    return replace(size, **overrides)
