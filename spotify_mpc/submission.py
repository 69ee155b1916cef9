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

from spotify_mpc import arrays
from spotify_mpc.cooccurrence import KINDS
from spotify_mpc.mpd_io import ChallengeSet

K = 500
TRACK_URI = re.compile(r"^spotify:track:[0-9A-Za-z]{22}$")


def rank_candidates(rows: np.ndarray, tracks: np.ndarray, scores: np.ndarray, n_rows: int,
                    k: int = K) -> list[np.ndarray]:
    """Per playlist row: its candidate tracks by descending score (ties: popular first), at most k.

    The order of np.lexsort((tracks, -scores, rows)), got from one sort of an int64 key that packs
    (row, rank of -score, track): its three stable passes over millions of candidates cost ~3x more.
    """
    rows, tracks, scores = np.asarray(rows), np.asarray(tracks), np.asarray(scores)
    n = len(rows)
    r_lo, r_span = arrays.code_space(1, rows)
    t_lo, t_span = arrays.code_space(1, tracks)
    if n and r_span * n * t_span < 2**62 and not (scores.dtype.kind == "f" and np.isnan(scores).any()):
        key = (rows.astype(np.int64) - r_lo) * n + arrays.tie_ranks(-scores)
        key = np.sort(key * t_span + (tracks.astype(np.int64) - t_lo))
        r = key // (n * t_span) + r_lo
        t = (key % t_span + t_lo).astype(tracks.dtype, copy=False)
    else:  # NaN scores (no order to rank) or a key too wide for int64
        order = np.lexsort((tracks, -scores, rows))
        r, t = rows[order], tracks[order]
    starts = np.searchsorted(r, np.arange(n_rows + 1))
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
    """(n_rows, k) track ids: each ranked list made distinct, seed-free, and filled by popularity.

    Row i: its ranked tracks, repeats dropped (the first kept) and seeds dropped, at most k;
    then the most popular tracks (ids 0, 1, ...) that are neither a seed nor already listed.
    All rows at once (tests/spotify/test_fast_paths.py holds the per-row reference).
    """
    if n_tracks < k:
        raise ValueError(f"only {n_tracks} known tracks; a submission needs {k} per playlist")
    n = len(ranked)
    out = np.empty((n, k), dtype=np.int64)
    if n == 0:
        return out
    rows = np.arange(n, dtype=np.int64)
    r_len = np.fromiter(map(len, ranked), np.int64, n)
    s_len = np.fromiter(map(len, seeds), np.int64, n)
    r = np.concatenate(ranked).astype(np.int64, copy=False) if r_len.sum() else np.zeros(0, np.int64)
    s = np.concatenate(seeds).astype(np.int64, copy=False) if s_len.sum() else np.zeros(0, np.int64)
    r_row, s_row = np.repeat(rows, r_len), np.repeat(rows, s_len)
    lo, span = arrays.code_space(n, r, s, np.array([0, k + int(s_len.max())]))  # the pool ids too, see below
    seed_codes = np.sort(arrays.row_codes(s_row, s, lo, span))
    r_codes = arrays.row_codes(r_row, r, lo, span)
    keep = arrays.first_occurrence(r_codes) & ~arrays.isin_sorted(r_codes, seed_codes)
    r_row, r, r_codes = r_row[keep], r[keep], r_codes[keep]
    col = arrays.rank_in_row(r_row, n)
    keep = col < k
    r_row, r, r_codes, col = r_row[keep], r[keep], r_codes[keep], col[keep]
    out[r_row, col] = r
    listed = np.bincount(r_row, minlength=n)
    need = k - listed
    # The first `need` popular ids that are no seed and not listed lie in [0, need + seeds + listed)
    # (at most seeds + listed ids are skipped), so that prefix is searched.
    pool_len = np.minimum(n_tracks, need + s_len + listed)
    pool_len[need == 0] = 0
    p_row = np.repeat(rows, pool_len)
    p = arrays.rank_in_row(p_row, n)
    p_codes = arrays.row_codes(p_row, p, lo, span)
    keep = ~arrays.isin_sorted(p_codes, seed_codes) & ~arrays.isin_sorted(p_codes, np.sort(r_codes))
    p_row, p = p_row[keep], p[keep]
    col = arrays.rank_in_row(p_row, n)
    keep = col < need[p_row]
    p_row, p, col = p_row[keep], p[keep], col[keep]
    short = np.bincount(p_row, minlength=n) < need
    if short.any():
        i = int(np.flatnonzero(short)[0])
        raise ValueError(f"row {i}: only {n_tracks} known tracks, too few to fill {k} besides its seeds")
    out[p_row, listed[p_row] + col] = p
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


_PREFIX = np.frombuffer(b"spotify:track:", np.uint8)
_BASE62 = np.zeros(256, dtype=bool)
_BASE62[np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)] = True


def _well_formed(line: str, k: int) -> tuple[int, list[str]] | None:
    """pid and URIs of a line written exactly as to_csv writes it ('<digits>, <uri>, <uri>, ...',
    k valid URIs), checked with one array operation instead of a regex per URI; None for any
    other line, which the field-by-field rules then judge (and name what is wrong)."""
    fields = line.split(", ")
    pid, uris = fields[0], fields[1:]
    if not (pid.isascii() and pid.isdigit()) or len(uris) != k or set(map(len, uris)) != {36}:
        return None
    text = "".join(uris)
    if not text.isascii():
        return None
    chars = np.frombuffer(text.encode("ascii"), np.uint8).reshape(k, 36)
    if not ((chars[:, :14] == _PREFIX).all() and _BASE62[chars[:, 14:]].all()):
        return None
    return int(pid), uris  # no comma or blank inside: the same fields as split(',') and strip()


def verify(csv_text: str, challenge: ChallengeSet, k: int = K) -> int:
    """Check the official rules; returns the number of playlist lines, raises SubmissionError."""
    seeds: dict[int, set] = {}
    for pid, uri in zip(challenge.seeds["pid"].tolist(), challenge.seeds["track_uri"].tolist()):
        seeds.setdefault(pid, set()).add(uri)
    expected = set(challenge.playlists["pid"].tolist())
    seen: set[int] = set()
    team_seen = False
    for n, raw in enumerate(csv_text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parsed = _well_formed(line, k) if team_seen else None
        if parsed is not None:  # the format rules hold; the pid, distinctness and seed rules follow
            pid, uris = parsed
        else:
            fields = [f.strip() for f in line.split(",")]
        if not team_seen:
            if fields[0] != "team_info" or len(fields) != 3 or not fields[1] or not fields[2]:
                raise SubmissionError(n, "first line is team_info,<team name>,<contact email>", repr(line[:80]))
            team_seen = True
            continue
        if parsed is None:
            try:
                pid = int(fields[0])
            except ValueError:
                raise SubmissionError(n, "each line starts with a challenge pid", repr(fields[0])) from None
        if pid not in expected:
            raise SubmissionError(n, "only challenge-set pids", f"pid {pid} is not in the challenge set")
        if pid in seen:
            raise SubmissionError(n, "every challenge pid exactly once", f"pid {pid} appears again")
        seen.add(pid)
        if parsed is None:
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
    """(len(pids), k) track ids in rank order, row i for pids[i]."""
    pid, rank = df["pid"].to_numpy(np.int64), df["rank"].to_numpy(np.int64)
    tracks = df["track_id"].to_numpy()
    k = int(rank.max()) if len(rank) else 0
    # Frames written by lists_frame (concatenated shards too) are blocks of k rows, one distinct
    # pid each, ranks ascending: sorting by (pid, rank) would only reorder whole blocks, which
    # the pid lookup below does anyway. Anything else is sorted, stable as sort_values is.
    p, r = (pid.reshape(-1, k), rank.reshape(-1, k)) if k > 0 and len(pid) % k == 0 else (None, None)
    if p is None or not ((p == p[:, :1]).all() and (r[:, 1:] > r[:, :-1]).all() and pd.Index(p[:, 0]).is_unique):
        if len(pid):
            key = (pid - pid.min()) * (k - int(rank.min()) + 1) + (rank - rank.min())
            order = np.argsort(key, kind="stable")
            pid, tracks = pid[order], tracks[order]
    lists = tracks.reshape(-1, k)
    got = pid[::k]
    pos = pd.Index(got).get_indexer(pids)
    if (pos < 0).any():
        raise ValueError(f"submission has no list for pid {pids[pos < 0][0]}")
    return lists[pos].astype(np.int64)
