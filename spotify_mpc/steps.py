"""Execution functions: one plain function per asset of the Spotify chain, one task each.

Each takes the inputs of ONE partition as plain objects and returns the output object; no
I/O, no Dagster. Where a task reduces many upstream partitions it takes a
`Mapping[key, zero-argument loader]` and loads one at a time. Outputs are DataFrames,
dicts (JSON), str or bytes, so any format-by-type IO manager can store them; the one
exception is `evaluation`, which returns three objects (table, Markdown, PNG) in one
`EvaluationResult` for the caller to split.

Asset (partitioning)                  inputs -> output                             request*   80k: max task
mpd_slices (one per slice file,       raw bytes + file name -> DataFrame, one row  1 / 512Mi  3 s, 120 MiB
  key '0-999')                          per track entry (mpd_io.read_slice)
playlists (part '0','1',...)          its mpd_slices (lazy) -> DataFrame           1 / 1Gi    0.3 s, <100 MiB
part_tracks (part)                    its mpd_slices (lazy) -> DataFrame           1 / 1Gi    4 s, 200 MiB
tracks (unpartitioned)                part_tracks (lazy; statistics parts only)    1 / 1Gi    6 s, 140 MiB
                                        -> DataFrame, row number = track id
train_playlists (part)                playlists[part], tracks -> DataFrame         1 / 1Gi    3 s, 480 MiB
challenge_set (unpartitioned)         train_playlists[test part] -> DataFrame      1 / 512Mi  1 s, 20 MiB
training_challenge_set (unpart.)      train_playlists[training part] -> DataFrame  1 / 512Mi  1 s, 30 MiB
challenge_keys (unpartitioned)        both challenge sets, tracks, official        1 / 1Gi    5 s, 500 MiB
                                        challenge_set.json bytes -> DataFrame
cooccurrence_partials (part x kind)   train_playlists[part], challenge_keys        1 / 2Gi    10 s, 1.3 GiB
                                        -> DataFrame (shard, key, partner, count)
cooccurrence (kind x shard)           cooccurrence_partials[*, kind] (lazy)        1 / 1.5Gi  13 s, 1.3 GiB
                                        -> DataFrame (key, partner, count), top-N
artist_playlists (unpartitioned)      tracks, train_playlists (lazy) -> DataFrame  1 / 512Mi  1 s, 150 MiB
generic_features ('test','training')  that challenge set, tracks, artist_playlists 1 / 512Mi  0.4 s, 140 MiB
                                        -> DataFrame
training_samples (shard)              training_challenge_set, its generic_features 1 / 1Gi    10 s, 420 MiB
                                        tracks, cooccurrence (lazy) -> DataFrame
test_samples (shard)                  challenge_set, its generic_features, tracks, 1 / 1.5Gi  10 s, 730 MiB
                                        cooccurrence (lazy) -> DataFrame
model (unpartitioned)                 training_samples (lazy) -> dict (JSON)       1 / 1Gi    40-65 s, 460 MiB
submission (unpartitioned)            test_samples (lazy), model, challenge_set,   1 / 1Gi    16-32 s, 250 MiB
                                        tracks -> DataFrame (pid, rank, track_id)
evaluation (unpartitioned)            submission, challenge_set, tracks,           1 / 1Gi    9-13 s, 300 MiB
                                        test_samples (lazy; pid, track_id, KINDS)
                                        -> EvaluationResult(table, markdown, png)
challenge_lists (official shard)      challenge_set.json bytes, tracks,            1 / 2Gi    11-18 s, 1.5 GiB
                                        artist_playlists, cooccurrence (lazy),
                                        model -> DataFrame (pid, rank, track_id)
challenge_submission (unpart.)        challenge_set.json bytes, tracks,            1 / 1Gi    a few s
                                        challenge_lists (lazy) -> CSV str (verified)
* memory measured by bench/spotify_logic.py on the 80k contest: peak RSS growth during the
  task plus the size of its inputs as in-memory objects (largest one for lazy inputs). The
  tasks are single-threaded numpy: request 1 cpu and run with OPENBLAS_NUM_THREADS=1 (BLAS
  threads on these small matrices only contend). Leave headroom for Parquet decoding in the
  IO manager: the biggest inputs are the `total` partials (tens of millions of rows per part).
  The 80k whole chain is ~630 cpu-seconds (~10.5 min on one core, ~6 on two).
  Two assets are additions to the original chain: challenge_keys (the key vocabulary,
  computed once instead of in every partial task) and challenge_lists (the official set
  scored in shards, size.official_shards, so no task holds 10,000 playlists' candidates).

Parts: slices sorted by first pid, part i = slices[i*k:(i+1)*k] (k = slices_per_part). The
last part is the test part, the second-to-last the training-challenge part, the rest are
statistics parts; only statistics parts feed tracks, co-occurrence and artist detection, so
no hidden answer leaks into a feature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ktx_dagster import LazyPartitions
from spotify_mpc import artists, challenge, cooccurrence as cooc_mod, evaluation as evaluation_mod, features
from spotify_mpc import model as model_mod
from spotify_mpc import mpd_io, standardize, submission as submission_mod
from spotify_mpc.challenge import ChallengeView
from spotify_mpc.cooccurrence import KINDS
from spotify_mpc.sizes import ContestSize

Loader = Callable[..., Any]
EvaluationResult = evaluation_mod.EvaluationResult


# --------------------------------------------------------------------------- partitioning


@dataclass(frozen=True)
class PartRoles:
    statistics: tuple[str, ...]
    training: str
    test: str

    @staticmethod
    def of(n_parts: int) -> "PartRoles":
        if n_parts < 3:
            raise ValueError(f"the contest needs >= 3 parts (statistics, training challenge, test); got {n_parts}. "
                             "Use more slices or fewer slices per part (KTX_SLICES_PER_PART)")
        keys = [str(i) for i in range(n_parts)]
        return PartRoles(tuple(keys[:-2]), keys[-2], keys[-1])


def part_keys(slice_keys: list[str], slices_per_part: int) -> dict[str, list[str]]:
    """Part key -> its slice keys ('0-999', ...), slices sorted by first pid."""
    ordered = sorted(slice_keys, key=lambda k: int(k.split("-")[0]))
    return {str(i // slices_per_part): ordered[i:i + slices_per_part] for i in range(0, len(ordered), slices_per_part)}


def sample_shard_rows(pids: np.ndarray, shard: int, n_shards: int) -> np.ndarray:
    """Rows (of the pid-sorted challenge set) in sample shard `shard`: every n-th playlist."""
    order = np.argsort(pids, kind="stable")
    return np.sort(order[shard::n_shards])


def _loaded(mapping: Mapping[str, Loader], keys=None, **read_options: Any) -> Iterator[Any]:
    for key in (mapping if keys is None else keys):
        item = mapping[key]
        yield item(**read_options) if callable(item) else item


def _kind_shard(key: Any) -> tuple[str, int]:
    """(kind, shard) from a tuple or a multi-partition key string like 'total|3' or '3|total'."""
    if isinstance(key, tuple):
        return str(key[0]), int(key[1])
    a, b = str(key).split("|")
    return (a, int(b)) if a in KINDS else (b, int(a))


def _cooc_lookup(tables: Mapping[Any, Loader], n_shards: int) -> cooc_mod.CoocLookup:
    return cooc_mod.CoocLookup({_kind_shard(k): v for k, v in tables.items()}, n_shards)


# --------------------------------------------------------------------------- assets


def mpd_slices(raw: bytes, file_name: str, other_slices: Mapping[str, Loader] | None = None) -> pd.DataFrame:
    """The slice parsed. other_slices: the other slice files present (key -> loader of their
    bytes); one whose pid range overlaps this one's is read, and a pid in both raises naming
    both files and the pid, so a duplicate is caught whichever parts the two slices fall in."""
    frame = mpd_io.read_slice(raw, file_name)
    mine = mpd_io.pid_range(Path(file_name).name)
    for key, load in (other_slices or {}).items():
        theirs = mpd_io.pid_range(mpd_io.slice_file_name(key))
        if mine is None or theirs is None or theirs[0] > mine[1] or theirs[1] < mine[0]:
            continue  # disjoint ranges (every real MPD slice): no pid can be in both
        try:
            other = mpd_io.read_slice(load(), mpd_io.slice_file_name(key))
        except mpd_io.MpdFormatError:
            continue  # its own partition reports it
        both = np.intersect1d(frame["pid"].unique(), other["pid"].unique())
        if len(both):
            raise mpd_io.MpdFormatError(
                f"{file_name} and {mpd_io.slice_file_name(key)}", f"pid {both[0]}",
                f"is in both slices ({len(both)} pid(s) repeated)",
                "a pid belongs to exactly one slice: drop the repeated playlists from one file "
                "(or remove a copied slice), then re-run both slices' partitions")
    return frame


def playlists(slices: Mapping[str, Loader]) -> pd.DataFrame:
    return standardize.part_playlists(_unique_pids_across(slices))


def _unique_pids_across(slices: Mapping[str, Loader]) -> Iterator[pd.DataFrame]:
    """The part's slices, one at a time; a pid already seen in another slice of the part raises,
    naming both slice files and the pid (each slice alone is valid, so only here do they meet)."""
    seen_pids = np.zeros(0, dtype=np.int64)
    seen_in: list[tuple[str, np.ndarray]] = []
    for key, frame in zip(slices, _loaded(slices)):
        pids = np.unique(frame["pid"].to_numpy(np.int64))
        repeated = pids[np.isin(pids, seen_pids)]
        if len(repeated):
            pid = int(repeated[0])
            other = next(k for k, p in seen_in if pid in p)
            raise mpd_io.MpdFormatError(
                f"{mpd_io.slice_file_name(other)} and {mpd_io.slice_file_name(key)}", f"pid {pid}",
                f"is in both slices ({len(repeated)} pid(s) repeated)",
                "a pid belongs to exactly one slice: drop the repeated playlists from one file "
                "(or remove a copied slice), then re-run this part")
        seen_pids = np.concatenate([seen_pids, pids])
        seen_in.append((key, pids))
        yield frame


def part_tracks(slices: Mapping[str, Loader]) -> pd.DataFrame:
    return standardize.part_track_table(_loaded(slices))


def tracks(part_tracks: Mapping[str, Loader], n_parts: int) -> pd.DataFrame:
    """Global track table from the statistics parts only (held-out parts are skipped unloaded).

    n_parts is the contest's number of parts (it decides the roles), whichever parts are passed.
    """
    roles = PartRoles.of(n_parts)
    return standardize.reduce_track_tables(_loaded(part_tracks, [k for k in part_tracks if k in roles.statistics]))


def train_playlists(playlists: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    return standardize.renumber(playlists, tracks)


def challenge_set(test_part: pd.DataFrame, size: ContestSize) -> pd.DataFrame:
    return challenge.sample_challenge_set(test_part, size.test_per_category, seed=size.seed + 1)


def training_challenge_set(training_part: pd.DataFrame, size: ContestSize) -> pd.DataFrame:
    return challenge.sample_challenge_set(training_part, size.train_per_category, seed=size.seed + 2)


def challenge_views(challenge_set: pd.DataFrame, training_challenge_set: pd.DataFrame,
                    official_challenge: bytes | None = None, tracks: pd.DataFrame | None = None) -> list[ChallengeView]:
    views = [ChallengeView.from_frame(challenge_set), ChallengeView.from_frame(training_challenge_set)]
    if official_challenge is not None:
        if tracks is None:
            raise ValueError("the official challenge set needs the tracks table to renumber its seeds")
        views.append(_official(official_challenge, tracks)[1])
    return views


def challenge_keys(challenge_set: pd.DataFrame, training_challenge_set: pd.DataFrame, tracks: pd.DataFrame,
                   official_challenge: bytes | None = None) -> pd.DataFrame:
    """Every co-occurrence key the challenge sets ask about: kind, key (int64 code).

    Computed once, so each cooccurrence_partials task reads this small table instead of
    parsing the official challenge set and the track table again.
    """
    keys = cooc_mod.challenge_keys(challenge_views(challenge_set, training_challenge_set, official_challenge, tracks))
    return pd.DataFrame({"kind": np.repeat(list(keys), [len(v) for v in keys.values()]),
                         "key": np.concatenate(list(keys.values())).astype(np.int64)})


def cooccurrence_partials(part: pd.DataFrame, part_key: str, kind: str, challenge_keys: pd.DataFrame,
                          size: ContestSize, n_parts: int) -> pd.DataFrame:
    """Counts of `kind` over one part, restricted to the challenge keys; held-out parts -> empty."""
    if part_key not in PartRoles.of(n_parts).statistics:
        return cooc_mod.empty_partial()
    vocab = np.sort(challenge_keys.loc[challenge_keys["kind"] == kind, "key"].to_numpy(np.int64))
    return cooc_mod.partial_counts(part, kind, vocab, size.cooc_shards)


def cooccurrence(partials: Mapping[Any, Loader], shard: int, size: ContestSize, kind: str | None = None) -> pd.DataFrame:
    """One (kind, shard): that kind's partials of all parts (one loaded at a time) -> top-N partners.

    `partials` may hold only this kind's parts (keyed by part), or every (part, kind) with
    multi-partition keys such as '3|total' or ('3', 'total'); then `kind` selects.
    """
    keys = [k for k in partials if kind is None or _part_kind(k)[1] in (kind, None)]
    # Partials are written grouped by shard: read only this shard's row groups of each part.
    only_shard = {"filters": [("shard", "=", shard)]} if isinstance(partials, LazyPartitions) else {}
    return cooc_mod.reduce_shard(_loaded(partials, keys, **only_shard), shard, size.top_n)


def _part_kind(key: Any) -> tuple[str, str | None]:
    parts = list(key) if isinstance(key, tuple) else str(key).split("|")
    if len(parts) == 1:
        return str(parts[0]), None
    a, b = map(str, parts)
    return (b, a) if a in KINDS else (a, b)


def artist_playlists(tracks: pd.DataFrame, train_playlists: Mapping[str, Loader], n_parts: int) -> pd.DataFrame:
    roles = PartRoles.of(n_parts)
    parts = _loaded(train_playlists, [k for k in train_playlists if k in roles.statistics])
    return artists.detect_artist_playlists(tracks, parts)


def generic_features(challenge_frame: pd.DataFrame, tracks: pd.DataFrame, artist_playlists: pd.DataFrame) -> pd.DataFrame:
    """Asset `generic_features` for one challenge set (partition 'test' or 'training')."""
    view = ChallengeView.from_frame(challenge_frame)
    return features.generic_features(view, features.TrackStats.from_tracks(tracks), artist_playlists)


def _samples(challenge_frame: pd.DataFrame, generic: pd.DataFrame, tracks: pd.DataFrame,
             cooc: Mapping[Any, Loader], shard: int, n_shards: int, size: ContestSize,
             negatives: int | None) -> pd.DataFrame:
    view = ChallengeView.from_frame(challenge_frame)
    view = view.subset(sample_shard_rows(view.pids, shard, n_shards))
    batches = features.iter_samples(view, generic, features.TrackStats.from_tracks(tracks),
                                    _cooc_lookup(cooc, size.cooc_shards), size.candidates,
                                    negatives=negatives, seed=size.seed + shard)
    return pd.concat([samples for _, samples in batches], ignore_index=True)


def training_samples(training_challenge_set: pd.DataFrame, generic_features: pd.DataFrame, tracks: pd.DataFrame,
                     cooccurrence: Mapping[Any, Loader], shard: int, size: ContestSize) -> pd.DataFrame:
    return _samples(training_challenge_set, generic_features, tracks, cooccurrence, shard,
                    size.train_sample_shards, size, negatives=size.negatives)


def test_samples(challenge_set: pd.DataFrame, generic_features: pd.DataFrame, tracks: pd.DataFrame,
                 cooccurrence: Mapping[Any, Loader], shard: int, size: ContestSize) -> pd.DataFrame:
    return _samples(challenge_set, generic_features, tracks, cooccurrence, shard, size.test_sample_shards,
                    size, negatives=None)


def model(training_samples: Mapping[str, Loader], size: ContestSize) -> dict:
    xs, ys = [], []
    for df in _loaded(training_samples):
        xs.append(df[features.FEATURES].to_numpy(np.float32))
        ys.append(df["label"].to_numpy(np.float32))
    x, y = np.concatenate(xs), np.concatenate(ys)
    m = model_mod.train(x, y, feature_names=features.FEATURES, epochs=size.epochs, batch_size=size.batch_size,
                        lr=size.learning_rate, seed=size.seed)
    m["rows"], m["positives"] = int(len(y)), int(y.sum())
    return m


def _lists_for(view: ChallengeView, samples: pd.DataFrame, trained: dict, n_tracks: int) -> np.ndarray:
    scores = model_mod.predict(trained, samples[trained["feature_names"]].to_numpy(np.float32))
    return _ranked_lists(view, samples, scores, n_tracks)


def _ranked_lists(view: ChallengeView, samples: pd.DataFrame, scores: np.ndarray, n_tracks: int) -> np.ndarray:
    """(len(view), 500) lists: the samples' candidates by descending score, filled by popularity."""
    rows = pd.Index(view.pids).get_indexer(samples["pid"].to_numpy())
    ranked = submission_mod.rank_candidates(rows, samples["track_id"].to_numpy(np.int64), scores, len(view))
    return submission_mod.fill_popular(ranked, [view.seeds(i) for i in range(len(view))], n_tracks)


def submission(test_samples: Mapping[str, Loader], model: dict, challenge_set: pd.DataFrame,
               tracks: pd.DataFrame) -> pd.DataFrame:
    """Top 500 per challenge playlist: pid, rank (1..500), track_id. One sample shard in memory at a time."""
    return _lists_by_shard(ChallengeView.from_frame(challenge_set), test_samples, len(tracks),
                           lambda view, samples: _lists_for(view, samples, model, len(tracks)))


def _lists_by_shard(view: ChallengeView, test_samples: Mapping[str, Loader], n_tracks: int,
                    lists_for: Callable[[ChallengeView, pd.DataFrame], np.ndarray],
                    **read_options: Any) -> pd.DataFrame:
    """pid, rank, track_id for every playlist of `view`, one sample shard in memory at a time."""
    frames = []
    for samples in _loaded(test_samples, **read_options):
        pids = np.unique(samples["pid"].to_numpy())
        sub = view.subset(np.searchsorted(view.pids, pids))
        frames.append(submission_mod.lists_frame(sub.pids, lists_for(sub, samples)))
    out = pd.concat(frames, ignore_index=True)
    missing = np.setdiff1d(view.pids, out["pid"].unique())
    if len(missing):  # a playlist with no candidates at all still gets its 500 popular tracks
        sub = view.subset(np.searchsorted(view.pids, missing))
        lists = submission_mod.popularity_lists([sub.seeds(i) for i in range(len(sub))], n_tracks)
        out = pd.concat([out, submission_mod.lists_frame(sub.pids, lists)], ignore_index=True)
    return out.sort_values(["pid", "rank"]).reset_index(drop=True)


def evaluation(submission: pd.DataFrame, challenge_set: pd.DataFrame, tracks: pd.DataFrame,
               test_samples: Mapping[str, Loader]) -> EvaluationResult:
    """Model vs two baselines without a learned model, per category and overall: the test
    candidates by co-occurrence with the seeds alone (submission.cooccurrence_scores), and
    the most popular tracks. One sample shard in memory at a time, only the columns needed."""
    view = ChallengeView.from_frame(challenge_set)
    n_tracks = len(tracks)
    # The IO manager reads only these columns; in-memory loaders (tests, inprocess) take no options.
    columns = {"columns": ["pid", "track_id", *KINDS]} if isinstance(test_samples, LazyPartitions) else {}
    by_cooccurrence = _lists_by_shard(
        view, test_samples, n_tracks,
        lambda sub, samples: _ranked_lists(sub, samples, submission_mod.cooccurrence_scores(samples), n_tracks),
        **columns)
    lists = {
        "model": submission_mod.lists_from_frame(submission, view.pids),
        "cooccurrence": submission_mod.lists_from_frame(by_cooccurrence, view.pids),
        "popularity": submission_mod.popularity_lists([view.seeds(i) for i in range(len(view))], n_tracks),
    }
    return evaluation_mod.evaluate(view, lists, tracks["artist_id"].to_numpy(np.int64))


def _official(official_challenge: bytes, tracks: pd.DataFrame) -> tuple[mpd_io.ChallengeSet, ChallengeView]:
    cs = mpd_io.read_challenge_set(official_challenge, "challenge_set.json")
    return cs, ChallengeView.from_official(cs.playlists, cs.seeds, tracks)


def _official_shard(official_challenge: bytes, tracks: pd.DataFrame, shard: int, n_shards: int) -> ChallengeView:
    """One shard of the official set, only its seeds renumbered (a twentieth of the URI lookups).
    An unseen seed's negative id may differ from the whole set's; only its sign is ever used."""
    cs = mpd_io.read_challenge_set(official_challenge, "challenge_set.json",
                                   select=lambda pids: sample_shard_rows(pids, shard, n_shards))
    return ChallengeView.from_official(cs.playlists, cs.seeds, tracks)


def challenge_lists(official_challenge: bytes, tracks: pd.DataFrame, artist_playlists: pd.DataFrame,
                    cooccurrence: Mapping[Any, Loader], model: dict, shard: int, size: ContestSize) -> pd.DataFrame:
    """Top 500 for one shard of the official challenge set: pid, rank, track_id.

    Sharded like test_samples so no task scores all 10,000 official playlists; every
    co-occurrence table is read about once per 1,000 playlists of a shard.
    """
    view = _official_shard(official_challenge, tracks, shard, size.official_shards)
    stats = features.TrackStats.from_tracks(tracks)
    generic = features.generic_features(view, stats, artist_playlists)
    lookup = _cooc_lookup(cooccurrence, size.cooc_shards)
    frames = [submission_mod.lists_frame(sub.pids, _lists_for(sub, samples, model, len(tracks)))
              for sub, samples in features.iter_samples(view, generic, stats, lookup, size.candidates)]
    known = lookup.coverage("total")
    if known < 0.5 and (view.seed_tracks >= 0).any():
        raise ValueError(f"only {known:.0%} of the official seeds were counted in `cooccurrence`; pass the "
                         "official challenge_set.json to cooccurrence_partials (official_challenge=...)")
    if not frames:
        return submission_mod.lists_frame(np.zeros(0, np.int64), np.zeros((0, submission_mod.K), np.int64))
    return pd.concat(frames, ignore_index=True)


def challenge_submission(official_challenge: bytes, tracks: pd.DataFrame, challenge_lists: Mapping[str, Loader],
                         team: str = "ktx-dagster", email: str = "ktx-dagster@example.com") -> str:
    """The official CSV for challenge_set.json from all challenge_lists shards, checked by the
    verifier before it is returned (a violation raises, naming the line and the rule)."""
    cs, view = _official(official_challenge, tracks)
    lists = submission_mod.lists_from_frame(pd.concat(list(_loaded(challenge_lists)), ignore_index=True), view.pids)
    text = submission_mod.to_csv(view.pids, lists, tracks["track_uri"].to_numpy(), team, email)
    submission_mod.verify(text, cs)
    return text


ASSETS = ("mpd_slices", "playlists", "part_tracks", "tracks", "train_playlists", "challenge_set",
          "training_challenge_set", "challenge_keys", "cooccurrence_partials", "cooccurrence", "artist_playlists",
          "generic_features", "training_samples", "test_samples", "model", "submission", "evaluation",
          "challenge_lists", "challenge_submission")
