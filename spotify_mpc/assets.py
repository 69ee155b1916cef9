"""The Spotify Million Playlist solution as a chain of partitioned assets.

Thin Dagster glue: each asset reads its inputs (through the IO manager, or raw files through
the data dir), calls one execution function of `spotify_mpc.steps`, and returns its output.
Partitions are the tasks:

    mpd_slices             one per slice file  <data>/spotify_mpc/raw/mpd.slice.<a>-<b>.json
    playlists, part_tracks one per part of KTX_SLICES_PER_PART slices (keys 0, 1, ...)
    train_playlists        one per part
    cooccurrence_partials  part x kind
    challenge_keys         one task: the keys the challenge sets ask about
    cooccurrence           kind x shard (each reads that kind of every part, one at a time)
    generic_features       test / training
    training_samples, test_samples   one per shard
    challenge_lists        one per shard of the official challenge set
    tracks, challenge sets, artist_playlists, model, submission, evaluation,
    challenge_submission   one task each

The contest size (KTX_SPOTIFY_SIZE: mini, 80k, full) fixes shard counts and sample sizes.
`tracks` and `cooccurrence` are stored as Arrow IPC files (format="arrow"): each is read whole
by tens of tasks (every samples and challenge_lists task reads all 60 co-occurrence tables),
and a memory-mapped read costs them nothing where parquet would be decoded by every one.
Memory requests (= limits on Kubernetes) are the peak RSS measured by `bench/spotify.py
--slices 80` plus 25-50% headroom; the full contest needs its own measurement.
"""


import base64

import dagster as dg
import pandas as pd

from ktx_dagster import CheckContext, ChunkedPartitions, DataDir, FilePartitions, LazyPartitions, Upstream, transformation
from spotify_mpc import checks, steps
from spotify_mpc.cooccurrence import KINDS
from spotify_mpc.sizes import get_size

SIZE = get_size()
RAW_DIR = "spotify_mpc/raw"
CHALLENGE_FILE = "challenge_set.json"
GROUP = "spotify_mpc"

SLICE_FILES = FilePartitions(
    name="mpd_slice_files", directory=RAW_DIR, pattern="mpd.slice.*.json", key="match",
    inputs_hint=f"copy the MPD's data/mpd.slice.*.json files into <data dir>/{RAW_DIR}, or write a synthetic "
                "contest there with python -m spotify_mpc.samples write",
)
PARTS = ChunkedPartitions(name="mpd_parts", upstream=SLICE_FILES, size=SIZE.slices_per_part)
KIND_PARTITIONS = dg.StaticPartitionsDefinition(list(KINDS))
PART_X_KIND = dg.MultiPartitionsDefinition({"part": PARTS.definition, "kind": KIND_PARTITIONS})
KIND_X_SHARD = dg.MultiPartitionsDefinition(
    {"kind": KIND_PARTITIONS, "shard": dg.StaticPartitionsDefinition([str(s) for s in range(SIZE.cooc_shards)])}
)
CHALLENGE_SETS = dg.StaticPartitionsDefinition(["test", "training"])
TRAIN_SHARDS = dg.StaticPartitionsDefinition([str(s) for s in range(SIZE.train_sample_shards)])
TEST_SHARDS = dg.StaticPartitionsDefinition([str(s) for s in range(SIZE.test_sample_shards)])

ALL = dg.AllPartitionMapping()


def part_roles(context: dg.AssetExecutionContext | CheckContext) -> steps.PartRoles:
    """Which parts are statistics, training and test, from the parts registered now."""
    return steps.PartRoles.of(len(context.instance.get_dynamic_partitions(PARTS.name)))


def _official_challenge(data_dir: DataDir) -> bytes | None:
    path = data_dir.path / RAW_DIR / CHALLENGE_FILE
    return path.read_bytes() if path.exists() else None


@transformation(partitions=SLICE_FILES, cpu="1", memory="1Gi", group=GROUP, format="parquet",
                checks=checks.SLICE_CHECKS)
def mpd_slices(context: dg.AssetExecutionContext, data_dir: DataDir) -> pd.DataFrame:
    """One slice file of the MPD (real or generated), parsed: one row per track entry."""
    path = SLICE_FILES.path_for(data_dir.path, context.partition_key)
    others = {key: (lambda key=key: SLICE_FILES.path_for(data_dir.path, key).read_bytes())
              for key in SLICE_FILES.discover(data_dir.path) if key != context.partition_key}
    frame = steps.mpd_slices(path.read_bytes(), str(path), others)
    context.log.info(f"{path.name}: {frame['pid'].nunique()} playlists, {len(frame)} track entries")
    return frame


@transformation(partitions=PARTS, inputs={"slices": Upstream(mpd_slices, mapping=PARTS.mapping)},
                cpu="1", memory="1Gi", group=GROUP, format="parquet", checks=checks.PLAYLIST_CHECKS)
def playlists(slices: LazyPartitions) -> pd.DataFrame:
    """The part's playlists: pid, name, modified_at, track URIs in order (standardize)."""
    return steps.playlists(slices)


@transformation(partitions=PARTS, inputs={"slices": Upstream(mpd_slices, mapping=PARTS.mapping)},
                cpu="1", memory="1Gi", group=GROUP, format="parquet")
def part_tracks(slices: LazyPartitions) -> pd.DataFrame:
    """The part's track table: URIs, names, duration, occurrence count, mean modified_at."""
    return steps.part_tracks(slices)


@transformation(inputs={"part_tracks": Upstream(part_tracks, mapping=ALL)}, cpu="1", memory="1536Mi",
                group=GROUP, format="arrow", checks=checks.TRACK_CHECKS)
def tracks(context: dg.AssetExecutionContext, part_tracks: LazyPartitions) -> pd.DataFrame:
    """Global track table reduced over the statistics parts, one part in memory at a time;
    the row number is the integer track id (most popular first)."""
    table = steps.tracks(part_tracks, len(part_tracks))
    context.log.info(f"{len(table)} tracks from {len(part_roles(context).statistics)} statistics parts")
    return table


@transformation(partitions=PARTS, cpu="1", memory="1280Mi", group=GROUP, format="parquet",
                checks=checks.TRAIN_PLAYLIST_CHECKS)
def train_playlists(playlists: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    """The part's playlists with integer track ids."""
    return steps.train_playlists(playlists, tracks)


@transformation(inputs={"parts": Upstream(train_playlists, mapping=ALL)}, cpu="1", memory="512Mi",
                group=GROUP, format="parquet", checks=checks.CHALLENGE_SET_CHECKS)
def challenge_set(context: dg.AssetExecutionContext, parts: LazyPartitions) -> pd.DataFrame:
    """The test challenge set: the 10 official categories sampled from the last (held-out) part."""
    return steps.challenge_set(parts.load(part_roles(context).test), SIZE)


@transformation(inputs={"parts": Upstream(train_playlists, mapping=ALL)}, cpu="1", memory="512Mi",
                group=GROUP, format="parquet", checks=checks.CHALLENGE_SET_CHECKS)
def training_challenge_set(context: dg.AssetExecutionContext, parts: LazyPartitions) -> pd.DataFrame:
    """The training challenge set, from the second-to-last (held-out) part."""
    return steps.training_challenge_set(parts.load(part_roles(context).training), SIZE)


@transformation(cpu="1", memory="1280Mi", group=GROUP, format="parquet")
def challenge_keys(
    data_dir: DataDir, challenge_set: pd.DataFrame, training_challenge_set: pd.DataFrame, tracks: pd.DataFrame,
) -> pd.DataFrame:
    """Every co-occurrence key the challenge sets ask about (kind, key), computed once so each
    partial task reads this small table instead of re-parsing the challenge sets."""
    return steps.challenge_keys(challenge_set, training_challenge_set, tracks, _official_challenge(data_dir))


@transformation(
    partitions=PART_X_KIND,
    inputs={"part": Upstream(train_playlists, mapping=dg.MultiToSingleDimensionPartitionMapping("part"))},
    cpu="1", memory="2Gi", group=GROUP, format="parquet",
)
def cooccurrence_partials(
    context: dg.AssetExecutionContext, part: pd.DataFrame, challenge_keys: pd.DataFrame,
) -> pd.DataFrame:
    """Counts of one co-occurrence kind over one part, for keys of the challenge sets only;
    held-out parts contribute nothing."""
    key = context.partition_key.keys_by_dimension
    n_parts = len(context.instance.get_dynamic_partitions(PARTS.name))
    return steps.cooccurrence_partials(part, key["part"], key["kind"], challenge_keys, SIZE, n_parts)


@transformation(
    partitions=KIND_X_SHARD,
    inputs={"partials": Upstream(cooccurrence_partials, mapping=dg.MultiPartitionMapping(
        {"kind": dg.DimensionPartitionMapping("kind", dg.IdentityPartitionMapping())}))},
    cpu="1", memory="1792Mi", group=GROUP, format="arrow",
)
def cooccurrence(context: dg.AssetExecutionContext, partials: LazyPartitions) -> pd.DataFrame:
    """One (kind, shard): that kind's partials of every part, reduced to the top-N partners per key."""
    shard = int(context.partition_key.keys_by_dimension["shard"])
    return steps.cooccurrence(partials, shard, SIZE)


@transformation(inputs={"parts": Upstream(train_playlists, mapping=ALL)}, cpu="1", memory="1Gi",
                group=GROUP, format="parquet")
def artist_playlists(tracks: pd.DataFrame, parts: LazyPartitions) -> pd.DataFrame:
    """Titles that name a popular artist (and are not a common phrase), found offline."""
    return steps.artist_playlists(tracks, parts, len(parts))


@transformation(partitions=CHALLENGE_SETS, cpu="1", memory="1Gi", group=GROUP, format="parquet")
def generic_features(
    context: dg.AssetExecutionContext, challenge_set: pd.DataFrame, training_challenge_set: pd.DataFrame,
    tracks: pd.DataFrame, artist_playlists: pd.DataFrame,
) -> pd.DataFrame:
    """Per challenge playlist: seeds, title, n-grams, last seed keys, popularity, artist flag."""
    frame = challenge_set if context.partition_key == "test" else training_challenge_set
    return steps.generic_features(frame, tracks, artist_playlists)


def _samples_inputs(which: str) -> dict[str, Upstream]:
    return {
        "generic": Upstream(generic_features, mapping=dg.SpecificPartitionsPartitionMapping([which])),
        "cooc": Upstream(cooccurrence, mapping=ALL),
    }


@transformation(partitions=TRAIN_SHARDS, inputs=_samples_inputs("training"), cpu="1", memory="2Gi",
                group=GROUP, format="parquet")
def training_samples(
    context: dg.AssetExecutionContext, training_challenge_set: pd.DataFrame, generic: pd.DataFrame,
    tracks: pd.DataFrame, cooc: LazyPartitions,
) -> pd.DataFrame:
    """Candidates + features + label for one shard of the training challenge set."""
    return steps.training_samples(training_challenge_set, generic, tracks, cooc, int(context.partition_key), SIZE)


@transformation(partitions=TEST_SHARDS, inputs=_samples_inputs("test"), cpu="1", memory="2Gi",
                group=GROUP, format="parquet")
def test_samples(
    context: dg.AssetExecutionContext, challenge_set: pd.DataFrame, generic: pd.DataFrame,
    tracks: pd.DataFrame, cooc: LazyPartitions,
) -> pd.DataFrame:
    """Candidates + features (+ label, for evaluation only) for one shard of the test set."""
    return steps.test_samples(challenge_set, generic, tracks, cooc, int(context.partition_key), SIZE)


@transformation(inputs={"samples": Upstream(training_samples, mapping=ALL)}, cpu="1", memory="1536Mi",
                group=GROUP, format="json")
def model(context: dg.AssetExecutionContext, samples: LazyPartitions) -> dict:
    """The original's network (128-64-1, ReLU, sigmoid, BCE, Adam), trained on CPU in numpy."""
    trained = steps.model(samples, SIZE)
    losses = trained["train_loss"]
    context.add_output_metadata({
        "training_rows": trained["rows"], "positives": trained["positives"],
        **({"final_loss": float(losses[-1])} if losses else {}),
    })
    return trained


@transformation(inputs={"samples": Upstream(test_samples, mapping=ALL)}, cpu="1", memory="1280Mi",
                group=GROUP, format="parquet", checks=checks.SUBMISSION_CHECKS)
def submission(samples: LazyPartitions, model: dict, challenge_set: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    """Top 500 tracks per test playlist by predicted probability: pid, rank, track_id."""
    return steps.submission(samples, model, challenge_set, tracks)


@transformation(inputs={"samples": Upstream(test_samples, mapping=ALL)}, cpu="1", memory="1Gi", group=GROUP,
                format="parquet")
def evaluation(
    context: dg.AssetExecutionContext, submission: pd.DataFrame, challenge_set: pd.DataFrame, tracks: pd.DataFrame,
    samples: LazyPartitions,
) -> pd.DataFrame:
    """R-precision, NDCG and clicks per category and overall: the model against a co-occurrence-only
    ranking of the same candidates and the popularity baseline."""
    result = steps.evaluation(submission, challenge_set, tracks, samples)
    png = base64.b64encode(result.png).decode()
    metadata: dict[str, object] = {
        "scores": dg.MetadataValue.md(result.markdown),
        "plot": dg.MetadataValue.md(f"![metrics per category](data:image/png;base64,{png})"),
    }
    # Overall scores as numbers too, so the asset page plots them across materializations.
    for _, row in result.table[result.table["category"] == "overall"].iterrows():
        for metric in ("r_precision", "ndcg", "clicks"):
            metadata[f"{row['method']}_{metric}"] = float(row[metric])
    context.add_output_metadata(metadata)
    context.log.info("evaluation:\n" + result.markdown)
    return result.table


OFFICIAL_SHARDS = dg.StaticPartitionsDefinition([str(s) for s in range(SIZE.official_shards)])


def _require_official(data_dir: DataDir) -> bytes:
    official = _official_challenge(data_dir)
    if official is None:
        raise FileNotFoundError(
            f"{data_dir.path / RAW_DIR / CHALLENGE_FILE}: no challenge set; drop the official "
            "challenge_set.json there (or generate one with python -m spotify_mpc.generate)"
        )
    return official


@transformation(partitions=OFFICIAL_SHARDS, inputs={"cooc": Upstream(cooccurrence, mapping=ALL)}, cpu="1",
                memory="2Gi", group=GROUP, format="parquet")
def challenge_lists(
    context: dg.AssetExecutionContext, data_dir: DataDir, tracks: pd.DataFrame, artist_playlists: pd.DataFrame,
    cooc: LazyPartitions, model: dict,
) -> pd.DataFrame:
    """Top 500 for one shard of the official challenge set (so no task scores all of it)."""
    return steps.challenge_lists(_require_official(data_dir), tracks, artist_playlists, cooc, model,
                                 int(context.partition_key), SIZE)


@transformation(inputs={"lists": Upstream(challenge_lists, mapping=ALL)}, cpu="1", memory="1536Mi",
                group=GROUP, format="text")
def challenge_submission(
    context: dg.AssetExecutionContext, data_dir: DataDir, tracks: pd.DataFrame, lists: LazyPartitions,
) -> str:
    """The official submission CSV for challenge_set.json, checked by our verifier of the rules."""
    text = steps.challenge_submission(_require_official(data_dir), tracks, lists)
    context.add_output_metadata({"playlists": sum(1 for line in text.splitlines() if line and line[0].isdigit())})
    return text
