"""Top-500 lists, the popularity fill, the official CSV and an independent verifier.

A list is always 500 distinct tracks and never a seed: candidates ranked by the model (or by
the co-occurrence-only baseline's score) come first, then the most popular remaining tracks
fill it up (track id = popularity rank).
The verifier re-reads the CSV text with nothing but the challenge set and checks the
official rules, naming the line and the rule of the first violation.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd

from spotify_mpc.cooccurrence import KINDS
from spotify_mpc.mpd_io import ChallengeSet

K = 500
TRACK_URI = re.compile(r"^spotify:track:[0-9A-Za-z]{22}$")


def rank_candidates(rows: np.ndarray, tracks: np.ndarray, scores: np.ndarray, n_rows: int,
                    k: int = K) -> list[np.ndarray]:
    """Per playlist row: its candidate tracks by descending score (ties: popular first), at most k."""
    order = np.lexsort((tracks, -scores, rows))
    r = rows[order]
    starts = np.searchsorted(r, np.arange(n_rows + 1))
    t = tracks[order]
    return [t[starts[i]:min(starts[i + 1], starts[i] + k)] for i in range(n_rows)]


def cooccurrence_scores(samples: pd.DataFrame) -> np.ndarray:
    """The co-occurrence-only baseline's score of each candidate (no learned model).

    The sum over the six KINDS of the candidate's co-occurrence score with the playlist's keys
    (its seeds, seed pairs/triples, title n-grams). Each kind's score is already normalized
    where it is made (features.py): a sum over the playlist's keys of count / (key count + 5),
    i.e. of the estimated chance that a playlist holding the key also holds the candidate, so
    kinds and keys are on one scale (a probability each) and summing them is meaningful. The
    samples hold log1p of it, undone here. Rescaling each kind per playlist (by its max over
    the candidates, or by the seed count) was tried and ranked worse on the mini and 80k
    contests: it gives the one-key kinds (last pair/triple) as much say as all seeds' totals.
    The baseline kept is the strongest of these, so the learned ranker is measured against it.
    """
    return sum(np.expm1(samples[kind].to_numpy(np.float64)) for kind in KINDS)


def fill_popular(ranked: list[np.ndarray], seeds: list[np.ndarray], n_tracks: int, k: int = K) -> np.ndarray:
    """(n_rows, k) track ids: each ranked list made distinct, seed-free, and filled by popularity."""
    if n_tracks < k:
        raise ValueError(f"only {n_tracks} known tracks; a submission needs {k} per playlist")
    out = np.empty((len(ranked), k), dtype=np.int64)
    for i, (r, s) in enumerate(zip(ranked, seeds)):
        _, first = np.unique(r, return_index=True)
        r = r[np.sort(first)]
        r = r[~np.isin(r, s)][:k]
        need = k - len(r)
        if need:
            pool = np.arange(min(n_tracks, k + len(s) + len(r)))
            pool = pool[~np.isin(pool, s) & ~np.isin(pool, r)][:need]
            r = np.concatenate([r, pool])
        out[i] = r
    return out


def popularity_lists(seeds: list[np.ndarray], n_tracks: int, k: int = K) -> np.ndarray:
    """The baseline: the k most popular tracks that are not seeds."""
    return fill_popular([np.zeros(0, np.int64)] * len(seeds), seeds, n_tracks, k)


def to_csv(pids: np.ndarray, lists: np.ndarray, track_uris: np.ndarray, team: str, email: str) -> str:
    """Official submission text: team_info line, then '<pid>, <uri_1>, ..., <uri_500>' per playlist."""
    if "," in team or "," in email:
        raise ValueError("team name and e-mail must not contain commas")
    buf = io.StringIO()
    buf.write("# RecSys Challenge 2018 submission\n")
    buf.write(f"team_info,{team},{email}\n")
    uris = np.asarray(track_uris, dtype=object)
    for pid, row in zip(np.asarray(pids).tolist(), lists):
        buf.write(f"{pid}, " + ", ".join(uris[row].tolist()) + "\n")
    return buf.getvalue()


class SubmissionError(ValueError):
    def __init__(self, line: int | None, rule: str, detail: str):
        self.line, self.rule = line, rule
        where = f"line {line}" if line is not None else "submission"
        super().__init__(f"{where}: violates '{rule}': {detail}")


def verify(csv_text: str, challenge: ChallengeSet, k: int = K) -> int:
    """Check the official rules; returns the number of playlist lines, raises SubmissionError."""
    seeds = {pid: set(g) for pid, g in challenge.seeds.groupby("pid")["track_uri"]}
    expected = set(challenge.playlists["pid"].tolist())
    seen: set[int] = set()
    team_seen = False
    for n, raw in enumerate(csv_text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if not team_seen:
            if fields[0] != "team_info" or len(fields) != 3 or not fields[1] or not fields[2]:
                raise SubmissionError(n, "first line is team_info,<team name>,<contact email>", repr(line[:80]))
            team_seen = True
            continue
        try:
            pid = int(fields[0])
        except ValueError:
            raise SubmissionError(n, "each line starts with a challenge pid", repr(fields[0])) from None
        if pid not in expected:
            raise SubmissionError(n, "only challenge-set pids", f"pid {pid} is not in the challenge set")
        if pid in seen:
            raise SubmissionError(n, "every challenge pid exactly once", f"pid {pid} appears again")
        seen.add(pid)
        uris = fields[1:]
        if len(uris) != k:
            raise SubmissionError(n, f"exactly {k} tracks per playlist", f"pid {pid} has {len(uris)}")
        bad = next((u for u in uris if not TRACK_URI.match(u)), None)
        if bad is not None:
            raise SubmissionError(n, "tracks are spotify:track:<22 base62> URIs", repr(bad))
        if len(set(uris)) != k:
            raise SubmissionError(n, f"{k} distinct tracks", f"pid {pid} repeats {k - len(set(uris))} track(s)")
        clash = seeds.get(pid, set()).intersection(uris)
        if clash:
            raise SubmissionError(n, "no seed track may be recommended", f"pid {pid}: {sorted(clash)[0]}")
    if not team_seen:
        raise SubmissionError(None, "first line is team_info,<team name>,<contact email>", "no team_info line")
    missing = expected - seen
    if missing:
        raise SubmissionError(None, "every challenge pid exactly once",
                              f"{len(missing)} pid(s) missing, e.g. {min(missing)}")
    return len(seen)


def lists_frame(pids: np.ndarray, lists: np.ndarray) -> pd.DataFrame:
    """Long form of lists: pid, rank (1-based), track_id."""
    n, k = lists.shape
    return pd.DataFrame({"pid": np.repeat(pids, k), "rank": np.tile(np.arange(1, k + 1, dtype=np.int16), n),
                         "track_id": lists.ravel().astype(np.int32)})


def lists_from_frame(df: pd.DataFrame, pids: np.ndarray) -> np.ndarray:
    df = df.sort_values(["pid", "rank"])
    k = int(df["rank"].max())
    lists = df["track_id"].to_numpy().reshape(-1, k)
    got = df["pid"].to_numpy()[::k]
    pos = pd.Index(got).get_indexer(pids)
    if (pos < 0).any():
        raise ValueError(f"submission has no list for pid {pids[pos < 0][0]}")
    return lists[pos].astype(np.int64)
