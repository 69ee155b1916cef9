"""Synthetic Million Playlist Dataset: slice files and a challenge set in the exact real formats.

    python -m spotify_mpc.generate --slices 80 --out data/spotify/raw --seed 0 [--challenge-size 10000]

Why synthetic: the real MPD is licensed and cannot be downloaded here. Why this structure:
co-occurrence methods only find something if playlists are coherent, so the generator has
latent themes (genres/moods) owning artists, artists owning albums and tracks, and titles
drawn from the theme, from generic phrases, or from the playlist's main artist's name.
Popularity is heavy-tailed (Zipf-like artist and track weights plus a flatter "long tail"
draw), albums are sometimes added in order (so "what comes next" carries signal), and
a few popular artists are named like common words ("Summer") to keep artist-name detection
honest.

Determinism: the catalogue depends only on the seed; a slice depends only on (seed, slice
index, playlists per slice); the challenge set only on (seed, its size). So slices made by
separate calls with the same seed share one catalogue and never contradict each other.
Strings (names, URIs) are derived by hashing ids, so only tracks actually used are named.

Resuming: every file is written whole or not at all (`*.partial`, then renamed), and a slice or
challenge set already in --out is kept, not rewritten; so an interrupted run of the full 1,000
slices is finished by running the same command again, and the statistics cover every slice.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spotify_mpc import vocab
from spotify_mpc.challenge import CATEGORIES, min_length
from spotify_mpc.hashing import splitmix64

# Catalogue size, fixed (it must not depend on how many slices one call writes).
N_ARTISTS = 300_000
N_THEMES = len(vocab.THEMES)
TAIL_ARTIST_EXP, TAIL_TRACK_EXP = 0.7, 0.1  # flatter than hits: the long tail
ALBUM_LEN_P = [0.45, 0.15, 0.1, 0.1, 0.12, 0.08]
ALBUMS_BASE, ALBUMS_TOP = 1.5, 80.0  # mean extra albums of any artist / of the top artist
HEAD_TRACK_EXP = 1.5  # >1 concentrates theme draws on an artist's hits
ALBUM_EXP, TRACK_EXP = 1.0, 0.7  # within an artist: first album and first tracks sell most
ARTIST_OFFSET, ARTIST_EXP, FOCUS_EXP = 300.0, 1.9, 1.0  # Zipf exponent of artist popularity; of focus-artist choice
MIN_LEN, MAX_LEN = 5, 250
T_START, T_END = 1262304000, 1509494400  # 2010-01-01 .. 2017-11-01, as in the MPD

_BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_KIND_SALT = {"track": 1, "artist": 2, "album": 3, "tname": 4, "aname": 5, "lname": 6, "dur": 7}

# Real statistics per 100k playlists (mpd-format.md), printed beside ours.
REAL_PER_100K = {"entries": 6_677_800, "entries_dedup": 6_589_079, "unique_tracks": 681_805,
                 "unique_artists": 110_063, "unique_albums": 271_413}
# ...and of the whole 1M (the MPD's stats.txt; mpd-format.md rounds them): distinct counts do
# not scale linearly with the playlists, so the full contest is compared with these.
REAL_1M = {"entries": 66_346_428, "unique_tracks": 2_262_292, "unique_artists": 295_860, "unique_albums": 734_684}


def _u01(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _sample_range(cum: np.ndarray, lo: np.ndarray, hi: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index in [lo, hi) drawn with weights whose running sum is `cum` (inverse CDF)."""
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
    total = cum[hi - 1] - base
    target = base + u * total
    order = np.argsort(target)  # sorted needles keep the binary searches cache-friendly
    idx = np.empty(len(target), dtype=np.int64)
    idx[order] = np.searchsorted(cum, target[order], side="right")
    return np.clip(idx, lo, hi - 1)


@dataclass
class Catalogue:
    """Artists, albums and tracks as integer arrays; names come later, by hashing ids."""

    seed: int
    theme_share: np.ndarray
    artist_theme: np.ndarray  # [A]
    artist_weight: np.ndarray  # [A] popularity, artist id = popularity rank
    artist_first_track: np.ndarray  # [A] tracks of an artist are contiguous
    artist_n_tracks: np.ndarray
    theme_artists: np.ndarray  # artist ids grouped by theme
    theme_artist_start: np.ndarray  # [T+1] offsets into theme_artists
    cum_artist: np.ndarray  # running sum of artist weights in theme_artists order
    theme_track_start: np.ndarray  # [T+1] tracks are grouped by theme too
    track_artist: np.ndarray
    track_album: np.ndarray
    cum_in_artist: np.ndarray  # running sum of within-artist track weights
    cum_head: np.ndarray  # running sum of popularity weights (hits)
    cum_tail: np.ndarray  # running sum of flattened weights (the long tail)
    word_artists: dict[int, str]
    artist_name_table: list[str] | None = None
    fragment_cache: dict[int, str] = field(default_factory=dict)

    @property
    def n_tracks(self) -> int:
        return len(self.track_artist)


@functools.lru_cache(maxsize=2)  # about 1 s to build; tests and one process reuse it
def build_catalogue(seed: int) -> Catalogue:
    rng = np.random.default_rng([seed, 0xCA7A])
    ranks = np.arange(N_THEMES, dtype=np.float64)
    theme_share = (ranks + 3.0) ** -0.9
    theme_share /= theme_share.sum()
    artist_theme = rng.choice(N_THEMES, N_ARTISTS, p=theme_share).astype(np.int16)
    a = np.arange(N_ARTISTS, dtype=np.float64)
    artist_weight = (a + ARTIST_OFFSET) ** -ARTIST_EXP

    # Lay artists out grouped by theme, so "a track of theme z" is one contiguous range.
    layout = np.argsort(artist_theme, kind="stable")
    pop = (200.0 / (a + 200.0)) ** 0.8  # popular artists have many albums
    n_albums = 1 + rng.poisson(ALBUMS_BASE + ALBUMS_TOP * pop)
    lay_albums = n_albums[layout]
    album_artist = np.repeat(layout, lay_albums)
    n_alb_total = len(album_artist)
    album_len = rng.choice([1, 2, 4, 6, 10, 13], n_alb_total, p=ALBUM_LEN_P)  # singles .. LPs
    track_album = np.repeat(np.arange(n_alb_total), album_len).astype(np.int32)
    track_artist = album_artist[track_album].astype(np.int32)
    n = len(track_album)

    album_start = np.concatenate([[0], np.cumsum(album_len)[:-1]])
    k_in_album = np.arange(n) - album_start[track_album]
    first_album_of = np.zeros(N_ARTISTS, dtype=np.int64)
    first_album_of[layout] = np.concatenate([[0], np.cumsum(lay_albums)[:-1]])
    j_album = np.arange(n_alb_total) - first_album_of[album_artist]
    w_in = ((j_album[track_album] + 1.0) ** -ALBUM_EXP) * ((k_in_album + 1.0) ** -TRACK_EXP)
    w_in *= rng.lognormal(0.0, 0.7, n)
    w_in /= np.bincount(track_artist, weights=w_in, minlength=N_ARTISTS)[track_artist]

    n_tracks_of = np.bincount(track_artist, minlength=N_ARTISTS)
    first_track = np.zeros(N_ARTISTS, dtype=np.int64)
    first_track[layout] = np.concatenate([[0], np.cumsum(n_tracks_of[layout])[:-1]])
    theme_counts_tracks = np.bincount(artist_theme[track_artist], minlength=N_THEMES)
    theme_counts_artists = np.bincount(artist_theme, minlength=N_THEMES)

    # Artists with everyday-word names, among the popular ones.
    word_ids = rng.choice(np.arange(30, 1500), len(vocab.WORD_ARTIST_NAMES), replace=False)
    return Catalogue(
        seed=seed,
        theme_share=theme_share,
        artist_theme=artist_theme,
        artist_weight=artist_weight,
        artist_first_track=first_track,
        artist_n_tracks=n_tracks_of,
        theme_artists=layout,
        theme_artist_start=np.concatenate([[0], np.cumsum(theme_counts_artists)]),
        cum_artist=np.cumsum(artist_weight[layout] ** FOCUS_EXP),
        theme_track_start=np.concatenate([[0], np.cumsum(theme_counts_tracks)]),
        track_artist=track_artist,
        track_album=track_album,
        cum_in_artist=np.cumsum(w_in),
        cum_head=np.cumsum(artist_weight[track_artist] * w_in ** HEAD_TRACK_EXP),
        cum_tail=np.cumsum(artist_weight[track_artist] ** TAIL_ARTIST_EXP * w_in ** TAIL_TRACK_EXP),
        word_artists={int(i): name for i, name in zip(word_ids, vocab.WORD_ARTIST_NAMES)},
    )


# --------------------------------------------------------------------------- playlists


@dataclass
class Playlists:
    """Sampled playlists as arrays (before any JSON)."""

    titles: list[str]
    theme: np.ndarray
    title_artist: np.ndarray  # artist id the title names, -1 if none
    lengths: np.ndarray
    entry_playlist: np.ndarray  # playlist index of each entry, in position order
    entry_track: np.ndarray
    rng: np.random.Generator


def sample_playlists(cat: Catalogue, rng: np.random.Generator, m: int,
                     min_lengths: np.ndarray | None = None) -> Playlists:
    theme = rng.choice(N_THEMES, m, p=cat.theme_share)
    theme2 = rng.choice(N_THEMES, m, p=cat.theme_share)
    # Length: 5 + gamma tail, mean about 66 (MPD: 5..250, mean 66.3).
    lengths = np.clip(MIN_LEN + np.floor(rng.gamma(1.15, 54.5, m)), MIN_LEN, MAX_LEN).astype(np.int64)
    if min_lengths is not None:
        lengths = np.maximum(lengths, min_lengths)

    # Focus artists: 4 per playlist, drawn from the theme by popularity.
    lo = cat.theme_artist_start[theme]
    hi = cat.theme_artist_start[theme + 1]
    focus = cat.theme_artists[_sample_range(cat.cum_artist, np.repeat(lo, 4), np.repeat(hi, 4),
                                            rng.random(m * 4))].reshape(m, 4)

    kind = rng.random(m)  # < 0.06 artist title, < 0.58 theme title, else generic
    is_artist_pl = kind < 0.06
    # An artist-titled playlist is about a popular artist: redraw its main artist among hits.
    if is_artist_pl.any():
        k = int(is_artist_pl.sum())
        hits = _sample_range(cat.cum_artist, lo[is_artist_pl], hi[is_artist_pl], rng.random(k) ** 3)
        focus[is_artist_pl, 0] = cat.theme_artists[hits]

    n = int(lengths.sum())
    pl = np.repeat(np.arange(m), lengths)
    u_src = rng.random(n)
    art_pl = is_artist_pl[pl]
    # Source of each entry: focus artists, theme hits, theme long tail, second theme, global.
    p_focus = np.where(art_pl, 0.72, 0.30)
    p_head = p_focus + np.where(art_pl, 0.16, 0.40)
    p_tail = p_head + np.where(art_pl, 0.08, 0.16)
    p_second = p_tail + np.where(art_pl, 0.02, 0.09)
    tracks = np.empty(n, dtype=np.int64)

    src = np.select([u_src < p_focus, u_src < p_head, u_src < p_tail, u_src < p_second],
                    [0, 1, 2, 3], default=4)
    sel = np.flatnonzero(src == 0)
    if len(sel):
        pj = np.where(art_pl[sel][:, None], [0.75, 0.1, 0.08, 0.07], [0.4, 0.25, 0.2, 0.15])
        j = (rng.random(len(sel))[:, None] > np.cumsum(pj, axis=1)).sum(axis=1).clip(0, 3)
        art = focus[pl[sel], j]
        first = cat.artist_first_track[art]
        tracks[sel] = _sample_range(cat.cum_in_artist, first, first + cat.artist_n_tracks[art],
                                    rng.random(len(sel)))
    for code, cum, th in ((1, cat.cum_head, theme), (2, cat.cum_tail, theme), (3, cat.cum_head, theme2)):
        sel = np.flatnonzero(src == code)
        t = th[pl[sel]]
        tracks[sel] = _sample_range(cum, cat.theme_track_start[t], cat.theme_track_start[t + 1],
                                    rng.random(len(sel)))
    sel = np.flatnonzero(src == 4)
    tracks[sel] = _sample_range(cat.cum_head, np.zeros(len(sel), np.int64),
                                np.full(len(sel), cat.n_tracks), rng.random(len(sel)))

    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    first_pos = np.zeros(n, dtype=bool)
    first_pos[starts] = True
    # Album runs: sometimes the next entry is the next track of the same album.
    run = (rng.random(n) < 0.13) & ~first_pos
    run_start = np.flatnonzero(~run)
    run_id = np.cumsum(~run) - 1
    offset = np.arange(n) - run_start[run_id]
    base = tracks[run_start[run_id]]
    cand = np.minimum(base + offset, cat.n_tracks - 1)
    ok = run & (cat.track_album[cand] == cat.track_album[base])
    tracks = np.where(ok, cand, tracks)

    # Repeats within a playlist happen (about 1.3% of entries in the MPD) but are rarer than
    # sampling with replacement makes them: redraw most duplicates from the theme's long tail.
    for _ in range(2):
        order = np.lexsort((np.arange(n), tracks, pl))
        dup_sorted = np.zeros(n, dtype=bool)
        dup_sorted[1:] = (pl[order][1:] == pl[order][:-1]) & (tracks[order][1:] == tracks[order][:-1])
        dup = order[dup_sorted]
        keep = rng.random(len(dup)) < 0.3
        dup = dup[~keep]
        t = theme[pl[dup]]
        tracks[dup] = _sample_range(cat.cum_tail, cat.theme_track_start[t],
                                    cat.theme_track_start[t + 1], rng.random(len(dup)))

    titles = _titles(cat, rng, theme, focus[:, 0], kind)
    title_artist = np.where(is_artist_pl, focus[:, 0], -1)
    return Playlists(titles, theme, title_artist, lengths, pl, tracks, rng)


def _titles(cat: Catalogue, rng: np.random.Generator, theme: np.ndarray, main_artist: np.ndarray,
            kind: np.ndarray) -> list[str]:
    names = artist_names(cat, main_artist[kind < 0.06])
    it = iter(names)
    pick = rng.random(len(theme))
    case = rng.random(len(theme))
    out = []
    for i in range(len(theme)):
        if kind[i] < 0.06:
            name = next(it)
            out.append(name if case[i] < 0.7 else (name.lower() if case[i] < 0.95 else name.upper()))
        elif kind[i] < 0.58:
            phr = vocab.THEMES[theme[i]][1]
            # Zipf over a theme's phrasings: the plain word dominates, as "country" does.
            w = 1.0 / np.arange(1, len(phr) + 1)
            out.append(phr[int(np.searchsorted(np.cumsum(w) / w.sum(), pick[i]))])
        else:
            out.append(vocab.GENERIC_TITLES[int(pick[i] * len(vocab.GENERIC_TITLES))])
    return out


# --------------------------------------------------------------------------- names and URIs


def uris(seed: int, kind: str, ids: np.ndarray) -> np.ndarray:
    """22-character base62 ids, e.g. spotify:track:<22 chars>, stable per (seed, kind, id)."""
    ids = np.asarray(ids, dtype=np.uint64)
    salt = np.uint64(seed * 16 + _KIND_SALT[kind])
    lanes = np.arange(22, dtype=np.uint64)
    h = splitmix64(splitmix64(ids[:, None] ^ (salt << np.uint64(40))) + lanes[None, :])
    chars = _BASE62[(h % np.uint64(62)).astype(np.int64)].astype(np.uint8)
    text = chars.view(f"S22").ravel().astype(str)
    return np.char.add(f"spotify:{kind}:", text)


def _hash_table(seed: int, kind: str, ids: np.ndarray, n_words: int, mod: int) -> list[list[int]]:
    """n_words pseudo-random ints in [0, mod) per id, as plain Python lists (fast to index)."""
    h = splitmix64(np.asarray(ids, dtype=np.uint64)[:, None] * np.uint64(8)
                   + np.arange(n_words, dtype=np.uint64)[None, :]
                   + np.uint64(seed * 16 + _KIND_SALT[kind]) * np.uint64(1 << 40))
    return (h % np.uint64(mod)).astype(np.int64).tolist()


def artist_names(cat: Catalogue, ids: np.ndarray) -> list[str]:
    if cat.artist_name_table is None:  # all artists at once, then plain lookups
        syl, pre, suf = vocab.SYLLABLES, vocab.ARTIST_PREFIXES, vocab.ARTIST_SUFFIXES
        names = []
        for r in _hash_table(cat.seed, "aname", np.arange(N_ARTISTS), 7, 2520):
            first = (syl[r[0] % len(syl)] + syl[r[1] % len(syl)]).capitalize()
            if r[4] % 3:  # two words ("Kalo Vexri") or one ("Kalo")
                first += " " + (syl[r[2] % len(syl)] + syl[r[3] % len(syl)]).capitalize()
            names.append(pre[r[5] % len(pre)] + first + suf[r[6] % len(suf)])
        for a, name in cat.word_artists.items():
            names[a] = name
        cat.artist_name_table = names
    table = cat.artist_name_table
    return [table[a] for a in np.asarray(ids).tolist()]


def _phrases(seed: int, kind: str, ids: np.ndarray) -> list[str]:
    words = vocab.WORDS
    out = []
    for r in _hash_table(seed, kind, ids, 4, 2520 * len(words)):
        k = 1 + r[3] % 3
        out.append(" ".join(words[x % len(words)].capitalize() for x in r[:k]))
    return out


def track_names(cat: Catalogue, ids: np.ndarray, artist_of_feat: list[str]) -> list[str]:
    sufs = vocab.TRACK_SUFFIXES
    pick = _hash_table(cat.seed, "tname", ids, 1, len(sufs))
    return [p + sufs[s[0]].replace("{artist}", a)
            for p, s, a in zip(_phrases(cat.seed, "tname", ids), pick, artist_of_feat)]


def album_names(cat: Catalogue, album_ids: np.ndarray) -> list[str]:
    return _phrases(cat.seed, "lname", album_ids)


def durations(cat: Catalogue, ids: np.ndarray) -> np.ndarray:
    h = splitmix64(np.asarray(ids, dtype=np.uint64) + np.uint64(cat.seed * 16 + _KIND_SALT["dur"]) * np.uint64(1 << 40))
    z = _u01(h) + _u01(splitmix64(h))  # triangular around 220 s
    return (110_000 + z * 110_000).astype(np.int64)


def track_fragments(cat: Catalogue, ids: np.ndarray) -> dict[int, str]:
    """JSON text of each track's fields (everything but `pos`), in the MPD's key order.

    Names are built from vocab words without quotes or backslashes, so no escaping is needed.
    Fragments are cached on the catalogue: slices written by one call share most tracks.
    """
    ids = np.asarray(ids, dtype=np.int64)
    cache = cat.fragment_cache
    new = ids[[t not in cache for t in ids.tolist()]] if cache else ids
    if len(new):
        art = cat.track_artist[new]
        alb = cat.track_album[new]
        a_names = artist_names(cat, art)
        t_names = track_names(cat, new, artist_names(cat, (art + 7919) % N_ARTISTS))
        l_names = album_names(cat, alb)
        t_uri, a_uri = uris(cat.seed, "track", new).tolist(), uris(cat.seed, "artist", art).tolist()
        l_uri = uris(cat.seed, "album", alb).tolist()
        for t, an, tu, au, tn, lu, du, ln in zip(new.tolist(), a_names, t_uri, a_uri, t_names, l_uri,
                                                 durations(cat, new).tolist(), l_names):
            cache[t] = (f'"artist_name": "{an}", "track_uri": "{tu}", "artist_uri": "{au}", '
                        f'"track_name": "{tn}", "album_uri": "{lu}", "duration_ms": {du}, "album_name": "{ln}"')
    return cache


# --------------------------------------------------------------------------- slices


def slice_name(first_pid: int, last_pid: int) -> str:
    return f"mpd.slice.{first_pid}-{last_pid}.json"


def slice_playlists(cat: Catalogue, slice_index: int, per_slice: int = 1000) -> Playlists:
    rng = np.random.default_rng([cat.seed, 0x511CE, slice_index, per_slice])
    return sample_playlists(cat, rng, per_slice)


def _distinct_per_playlist(pl: np.ndarray, values: np.ndarray, m: int) -> np.ndarray:
    pairs = np.unique(pl.astype(np.int64) << 32 | values.astype(np.int64))
    return np.bincount((pairs >> 32).astype(np.int64), minlength=m)


def _tracks_json(positions: list[int], tracks: list[int], frags: dict[int, str]) -> str:
    return ", ".join(f'{{"pos": {q}, {frags[t]}}}' for q, t in zip(positions, tracks))


def render_slice(cat: Catalogue, slice_index: int, per_slice: int = 1000) -> tuple[str, str, Playlists]:
    """(file name, JSON text, sampled arrays) of one slice."""
    p = slice_playlists(cat, slice_index, per_slice)
    rng = p.rng
    first_pid = slice_index * per_slice
    pl, tr = p.entry_playlist, p.entry_track
    frags = track_fragments(cat, np.unique(tr))
    starts = np.concatenate([[0], np.cumsum(p.lengths)])
    n_albums = _distinct_per_playlist(pl, cat.track_album[tr], per_slice)
    n_artists = _distinct_per_playlist(pl, cat.track_artist[tr], per_slice)
    duration = np.bincount(pl, weights=durations(cat, tr), minlength=per_slice).astype(np.int64)
    # Recent years dominate the MPD; followers and edits are small and skewed.
    modified = (T_END - (T_END - T_START) * rng.random(per_slice) ** 2.5).astype(np.int64)
    modified -= modified % 1000  # MPD timestamps are rounded
    followers = 1 + np.floor(rng.pareto(1.6, per_slice)).astype(np.int64)
    edits = 1 + rng.poisson(2 + p.lengths / 20)
    collab = rng.random(per_slice) < 0.02
    has_desc = rng.random(per_slice)
    tracks_all = tr.tolist()
    texts = []
    for i in range(per_slice):
        meta = {"name": p.titles[i], "collaborative": "true" if collab[i] else "false",
                "pid": first_pid + i, "modified_at": int(modified[i]), "num_tracks": int(p.lengths[i]),
                "num_albums": int(n_albums[i]), "num_followers": int(followers[i])}
        if has_desc[i] < 0.02:  # about 2% of MPD playlists have a description, some empty
            meta["description"] = "" if has_desc[i] < 0.003 else f"my {vocab.THEMES[p.theme[i]][0]} songs"
        meta.update({"num_edits": int(edits[i]), "duration_ms": int(duration[i]),
                     "num_artists": int(n_artists[i])})
        head = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items())
        body = _tracks_json(list(range(int(p.lengths[i]))), tracks_all[starts[i]:starts[i + 1]], frags)
        texts.append(f'{{{head}, "tracks": [{body}]}}')
    info = {"generated_on": "2017-12-03 08:41:42.057563", "slice": f"{first_pid}-{first_pid + per_slice - 1}",
            "version": "v1"}
    text = '{"info": ' + json.dumps(info) + ', "playlists": [\n' + ",\n".join(texts) + "\n]}\n"
    return slice_name(first_pid, first_pid + per_slice - 1), text, p


# --------------------------------------------------------------------------- challenge set

def render_challenge_set(cat: Catalogue, size: int = 10_000) -> tuple[str, dict]:
    """JSON text of challenge_set.json (pids from 1,000,000) and its hidden answers by pid."""
    if size % len(CATEGORIES):
        raise ValueError(f"--challenge-size must be a multiple of {len(CATEGORIES)}, got {size}")
    per = size // len(CATEGORIES)
    rng = np.random.default_rng([cat.seed, 0xC4A1, size])
    mins = np.repeat([min_length(k) for _, k, _ in CATEGORIES], per)
    p = sample_playlists(cat, rng, size, min_lengths=mins)
    uniq = np.unique(p.entry_track)
    frags = track_fragments(cat, uniq)
    starts = np.concatenate([[0], np.cumsum(p.lengths)])
    out, answers = [], {}
    for i in range(size):
        has_name, k, random_seeds = CATEGORIES[i // per]
        entries = p.entry_track[starts[i]:starts[i + 1]]
        n = len(entries)
        pos = np.sort(rng.choice(n, k, replace=False)) if random_seeds else np.arange(k)
        pid = 1_000_000 + i
        meta = {"name": p.titles[i]} if has_name else {}
        meta.update({"num_holdouts": n - k, "pid": pid, "num_tracks": n})
        tracks = _tracks_json(pos.tolist(), entries[pos].tolist(), frags)
        tail = f', "num_samples": {k}'
        head = ", ".join(f"{json.dumps(a)}: {json.dumps(b)}" for a, b in meta.items())
        out.append(f'{{{head}, "tracks": [{tracks}]{tail}}}')
        hidden = np.setdiff1d(np.arange(n), pos)
        answers[pid] = uris(cat.seed, "track", entries[hidden]).tolist()
    text = ('{"date": "2018-01-16 08:47:28.198015", "version": "v1", "playlists": [\n'
            + ",\n".join(out) + '\n], "name": "challenge_set"}\n')
    return text, answers


# --------------------------------------------------------------------------- statistics


def statistics(cat: Catalogue, samples: list[Playlists]) -> dict[str, float]:
    pl_off = 0
    pls, trs, lens = [], [], []
    for p in samples:
        pls.append(p.entry_playlist + pl_off)
        trs.append(p.entry_track)
        lens.append(p.lengths)
        pl_off += len(p.lengths)
    pl, tr, lens = np.concatenate(pls), np.concatenate(trs), np.concatenate(lens)
    dedup = len(np.unique(pl.astype(np.int64) * cat.n_tracks + tr))
    ut = np.unique(tr)
    counts = np.bincount(np.searchsorted(ut, tr))
    top = np.sort(counts)[::-1]
    return {
        "playlists": pl_off, "entries": len(tr), "entries_dedup": dedup, "unique_tracks": len(ut),
        "unique_artists": len(np.unique(cat.track_artist[ut])), "unique_albums": len(np.unique(cat.track_album[ut])),
        "mean_length": float(lens.mean()), "min_length": int(lens.min()), "max_length": int(lens.max()),
        "tracks_seen_once": float((counts == 1).mean()),
        "top1000_share": float(top[:1000].sum() / len(tr)),
        "top_track_playlist_share": float(top[0] / pl_off),
        "top_artist_entry_share": float(np.bincount(cat.track_artist[tr]).max() / len(tr)),
    }


def format_statistics(stats: dict[str, float]) -> str:
    scale = stats["playlists"] / 100_000
    lines = [f"{'statistic':<26}{'synthetic':>14}{'real MPD (same #playlists)':>30}"]
    for key, value in stats.items():
        real = REAL_PER_100K.get(key)
        if stats["playlists"] == 1_000_000 and key in REAL_1M:
            ref = f"{REAL_1M[key]:,}"
        elif key in ("entries", "entries_dedup") and real:
            ref = f"{real * scale:,.0f}"
        elif real and scale == 1:
            ref = f"{real:,}"
        elif real:
            ref = f"({real:,} per 100k)"
        else:
            ref = {"mean_length": "66.3", "min_length": "5", "max_length": "250"}.get(key, "")
        shown = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
        lines.append(f"{key:<26}{shown:>14}{ref:>30}")
    return "\n".join(lines)


def _write_atomically(path: Path, text: str) -> None:
    """A file is either whole or absent: an interrupted run leaves only `*.partial` files."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_slice(job: tuple[int, int, int, str, bool]) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """Worker: write one slice unless it is already there (resuming); returns (lengths, tracks,
    written) for the statistics, or None when the slice exists and no statistics are wanted."""
    seed, index, per_slice, out, want_stats = job
    first_pid = index * per_slice
    path = Path(out) / slice_name(first_pid, first_pid + per_slice - 1)
    if path.exists():
        if not want_stats:
            return None
        p = slice_playlists(build_catalogue(seed), index, per_slice)  # the same arrays, no JSON
        return p.lengths, p.entry_track, False
    name, text, p = render_slice(build_catalogue(seed), index, per_slice)
    _write_atomically(Path(out) / name, text)
    return p.lengths, p.entry_track, True


def _write_challenge(job: tuple[int, int, str]) -> None:
    seed, size, out = job
    path = Path(out) / "challenge_set.json"
    if not path.exists():
        text, _ = render_challenge_set(build_catalogue(seed), size)
        _write_atomically(path, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, required=True, help="number of slice files")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--challenge-size", type=int, default=10_000,
                    help="challenge_set.json playlists (multiple of 10; 0 = none)")
    ap.add_argument("--playlists-per-slice", type=int, default=1000,
                    help="1000 in the real MPD; smaller only for tiny test contests")
    ap.add_argument("--first-slice", type=int, default=0, help="index of the first slice to write")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="worker processes (output is identical for any number)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    cat = build_catalogue(args.seed)  # built once; forked workers share it
    jobs = [(args.seed, s, args.playlists_per_slice, str(args.out), not args.quiet)
            for s in range(args.first_slice, args.first_slice + args.slices)]
    workers = max(1, min(args.jobs, len(jobs)))
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pending = pool.map_async(_write_challenge, [(args.seed, args.challenge_size, str(args.out))]) \
                if args.challenge_size else None
            results = pool.map(_write_slice, jobs, chunksize=1)
            if pending is not None:
                pending.get()
            # Let the workers finish on their own: leaving the `with` terminates them with
            # SIGTERM, which a process whose SIGTERM is ignored (Dagster maps it to SIGINT's
            # handler, ignored in a shell's background job) never honours, and the join hangs.
            pool.close()
            pool.join()
    else:
        results = [_write_slice(j) for j in jobs]
        if args.challenge_size:
            _write_challenge((args.seed, args.challenge_size, str(args.out)))
    written = sum(1 for r in results if r is not None and r[2])
    if not args.quiet:
        samples = [Playlists([], np.zeros(0), np.zeros(0), lengths, np.repeat(np.arange(len(lengths)), lengths),
                             tracks, None) for lengths, tracks, _ in results]
        print(format_statistics(statistics(cat, samples)))
        kept = args.slices - written
        print(f"wrote {written} slices to {args.out}" + (f" ({kept} already there, kept)" if kept else "")
              + f" in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
