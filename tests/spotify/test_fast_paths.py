"""The vectorized co-occurrence counting and reduction equal a plain-Python reference on small
random parts (every kind, several shard counts, unknown tracks, empty vocabularies), the
sort-based `unique` equals np.unique, and the all-rows-at-once popularity fill and metrics
equal their per-playlist versions on random lists (repeats, seeds among the candidates,
unseen ids, empty rows)."""

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from spotify_mpc import cooccurrence as co
from spotify_mpc import metrics, model, mpd_io
from spotify_mpc import submission as sub
from spotify_mpc.arrays import first_occurrence, tie_ranks, unique
from spotify_mpc.submission import fill_popular
from spotify_mpc.text import title_ngram_pairs

from .records import track

TITLES = ["Rock", "rock!", "jazz", "chill vibes", None, "Rock on"]


def random_part(rng: np.random.Generator, n_playlists: int = 12, n_tracks: int = 15) -> pd.DataFrame:
    rows = []
    for pid in rng.permutation(np.arange(100, 100 + n_playlists)):  # not in pid order
        length = int(rng.integers(1, 14))
        tracks = rng.integers(-3, n_tracks, length)  # negative: a track unknown to the statistics
        name = TITLES[int(rng.integers(len(TITLES)))]
        rows += [(int(pid), pos, int(t), name) for pos, t in enumerate(tracks)]
    df = pd.DataFrame(rows, columns=["pid", "pos", "track_id", "name"])
    return df.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)


def playlists_of(part: pd.DataFrame) -> list[tuple[list[int], object]]:
    part = part.sort_values(["pid", "pos"])
    return [(g["track_id"].tolist(), g["name"].iloc[0]) for _, g in part.groupby("pid", sort=True)]


def position_key(tracks: list[int], i: int, kind: str) -> int | None:
    if kind in ("forward", "forward_10"):
        return tracks[i]
    width = 2 if kind == "forward_10_pair" else 3
    if i < width - 1:
        return None
    cols = [np.array([tracks[i - (width - 1 - j)]]) for j in range(width)]
    return int((co.pair_codes if width == 2 else co.triple_codes)(*cols)[0])


def reference_counts(part: pd.DataFrame, kind: str) -> tuple[Counter, Counter]:
    """(key, partner) -> count and key -> key count, straight from the module's definitions."""
    pairs, key_counts = Counter(), Counter()
    for tracks, name in playlists_of(part):
        if kind in ("total", "ngram_track"):
            keys = set(tracks) if kind == "total" else set(title_ngram_pairs([name])[1].tolist())
            partners = {t for t in tracks if t >= 0}
            for k in keys:
                key_counts[k] += 1
                for t in partners:
                    if kind == "ngram_track" or t != k:
                        pairs[(k, t)] += 1
            continue
        window = 1 if kind == "forward" else co.WINDOW
        for i in range(len(tracks)):
            k = position_key(tracks, i, kind)
            if k is None or k < 0:
                continue
            if i + 1 < len(tracks):
                key_counts[k] += 1
            for j in range(i + 1, min(i + window, len(tracks) - 1) + 1):
                if tracks[j] != tracks[i] and tracks[j] >= 0:
                    pairs[(k, tracks[j])] += 1
    return pairs, key_counts


def vocabulary(rng: np.random.Generator, part: pd.DataFrame, kind: str) -> np.ndarray:
    """Some keys that occur in the part, some that do not; sometimes none at all."""
    pairs, key_counts = reference_counts(part, kind)
    known = np.array(sorted(k for k in key_counts if k >= 0), dtype=np.int64)
    if rng.random() < 0.1 or not len(known):
        return np.zeros(0, np.int64)
    chosen = rng.choice(known, size=int(rng.integers(1, len(known) + 1)), replace=False)
    extra = np.array([10_000, 2**40 + 7], dtype=np.int64)[: int(rng.integers(0, 3))]
    return np.unique(np.concatenate([chosen, extra]))


@pytest.mark.parametrize("kind", co.KINDS)
def test_partial_counts_equal_the_reference_on_random_parts(kind):
    rng = np.random.default_rng(co.KINDS.index(kind))
    for _ in range(25):
        part = random_part(rng)
        vocab = vocabulary(rng, part, kind)
        n_shards = int(rng.integers(1, 6))
        df = co.partial_counts(part, kind, vocab, n_shards)
        pairs, key_counts = reference_counts(part, kind)
        in_vocab = set(vocab.tolist())
        got_pairs = {(k, p): c for k, p, c in zip(df.key, df.partner, df["count"]) if p >= 0}
        got_counts = {k: c for k, p, c in zip(df.key, df.partner, df["count"]) if p < 0}
        assert got_pairs == {kp: c for kp, c in pairs.items() if kp[0] in in_vocab}
        assert got_counts == {k: key_counts.get(k, 0) for k in in_vocab}
        assert (np.diff(df["shard"].to_numpy()) >= 0).all()  # grouped by shard
        assert (df["shard"] == co.shard_of(df["key"].to_numpy(), n_shards)).all()


def test_reduce_shard_equals_summing_and_ranking_in_python():
    rng = np.random.default_rng(7)
    for _ in range(20):
        parts = [random_part(rng, n_playlists=10) for _ in range(int(rng.integers(1, 4)))]
        vocab = vocabulary(rng, pd.concat(parts), "total")
        n_shards, top_n = int(rng.integers(1, 4)), int(rng.integers(1, 6))
        partials = [co.partial_counts(p, "total", vocab, n_shards) for p in parts] + [co.empty_partial()]
        for shard in range(n_shards):
            out = co.reduce_shard(iter(partials), shard, top_n)
            summed, key_counts = Counter(), Counter()
            for p in partials:
                rows = p[p["shard"] == shard]
                for k, q, c in zip(rows.key, rows.partner, rows["count"]):
                    (key_counts if q < 0 else summed)[(k,) if q < 0 else (k, q)] += c
            expected = set()
            for (k,), c in key_counts.items():
                partners = sorted(((-n, q) for (kk, q), n in summed.items() if kk == k))[:top_n]
                expected |= {(k, -1, c)} | {(k, q, -n) for n, q in partners}
            assert set(zip(out.key, out.partner, out["count"])) == expected
            keys = out["key"].to_numpy()
            assert (np.diff(keys) >= 0).all()
            first_of_key = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, bool)
            assert (out["partner"].to_numpy()[first_of_key] == -1).all()  # each key's count row first


def test_unique_equals_numpy_unique():
    rng = np.random.default_rng(3)
    for dtype in (np.int64, np.int32, np.int8, bool):
        for n in (0, 1, 2, 50, 5000):
            a = rng.integers(-20, 20, n).astype(dtype)
            got, want = unique(a), np.unique(a)
            assert got.dtype == want.dtype and np.array_equal(got, want)
    with pytest.raises(TypeError, match="integer"):
        unique(np.array([1.0, np.nan]))


def test_a_code_beyond_an_int32_key_column_is_unknown_not_wrapped():
    # Track keys are stored as int32; 2**32 + 1 would wrap to 1 if searched as int32.
    part = pd.DataFrame({"pid": [0, 0, 1, 1], "pos": [0, 1, 0, 1], "track_id": [1, 2, 1, 3], "name": ["a"] * 4})
    table = co.reduce_shard([co.partial_counts(part, "total", np.array([1], np.int64), 1)], 0)
    assert table["key"].dtype == np.int32
    lookup = co.CoocLookup({("total", 0): table}, 1)
    m, key_counts = lookup.rows("total", np.array([1, 2**32 + 1]), 4)
    assert key_counts.tolist() == [2, 0] and m[1].nnz == 0 and m[0].nnz == 2
    assert lookup.coverage("total") == 0.5
    pre = co.CoocLookup({("total", 0): table}, 1).prefetch({"total": np.array([1, 2**32 + 1])})
    m, key_counts = pre.rows("total", np.array([1, 2**32 + 1]), 4)
    assert key_counts.tolist() == [2, 0] and m[1].nnz == 0


def fill_popular_per_row(ranked, seeds, n_tracks, k):
    """submission.fill_popular as it was written first, one playlist at a time (a row left short
    raises: the first version raised through numpy's broadcasting, except with exactly one id
    left, which it then repeated k times)."""
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
        if len(r) != k:
            raise ValueError(f"row {i} is short")
        out[i] = r
    return out


def test_first_occurrence_equals_numpy_unique_return_index():
    rng = np.random.default_rng(11)
    for n in (0, 1, 2, 7, 300):
        for high in (3, 1000):  # many repeats, or (mostly) none
            a = rng.integers(-5, high, n)
            want = np.zeros(n, bool)
            want[np.unique(a, return_index=True)[1]] = True
            assert np.array_equal(first_occurrence(a), want)


def test_fill_popular_equals_the_per_row_fill():
    rng = np.random.default_rng(5)
    for trial in range(200):
        k = int(rng.integers(1, 12))
        n_tracks = k + int(rng.integers(0, 30))
        n_rows = int(rng.integers(0, 8))
        # repeats, seeds among the candidates, unseen (negative) seeds, rows with nothing ranked or no seed
        ranked = [rng.integers(0, n_tracks + 5, int(rng.integers(0, 3 * k))) for _ in range(n_rows)]
        seeds = [rng.integers(-3, n_tracks, int(rng.integers(0, 6))) for _ in range(n_rows)]
        try:
            want = fill_popular_per_row(ranked, seeds, n_tracks, k)
        except ValueError:  # too few tracks besides the seeds: both must refuse
            with pytest.raises(ValueError):
                fill_popular(ranked, seeds, n_tracks, k)
            continue
        got = fill_popular(ranked, seeds, n_tracks, k)
        assert got.dtype == want.dtype and np.array_equal(got, want), trial


def test_fill_popular_edge_rows():
    k, n_tracks = 5, 20
    cases = [
        ([np.array([3, 3, 3])], [np.array([3])]),  # every candidate a repeated seed
        ([np.arange(10)], [np.zeros(0, np.int64)]),  # more candidates than k
        ([np.array([4, 1, 4, 0])], [np.array([-1, -2, 2])]),  # repeats and unseen seeds
        ([np.zeros(0, np.int64)] * 3, [np.arange(5), np.arange(0), np.array([19])]),
    ]
    for ranked, seeds in cases:
        assert np.array_equal(fill_popular(ranked, seeds, n_tracks, k), fill_popular_per_row(ranked, seeds, n_tracks, k))
    assert fill_popular([], [], n_tracks, k).shape == (0, k)


def _random_challenge(rng, n, width, n_tracks, n_artists):
    lengths = rng.integers(1, 2 * width, n)
    lengths[rng.random(n) < 0.2] = 1
    hidden = rng.integers(-4, n_tracks, int(lengths.sum()))  # repeats and unseen ids
    hidden_artists = rng.integers(-2, n_artists, len(hidden))
    rec = rng.integers(0, n_tracks, (n, width))  # repeats in a list too
    if n:
        rec[0] = rng.permutation(n_tracks)[:width] if width <= n_tracks else rec[0]
    track_artist = rng.integers(0, n_artists, n_tracks)
    return np.r_[0, np.cumsum(lengths)], hidden, hidden_artists, rec, track_artist[rec]


def test_all_scores_equal_the_per_playlist_metrics_bit_for_bit():
    rng = np.random.default_rng(9)
    for trial in range(150):
        n, width = int(rng.integers(0, 12)), int(rng.integers(1, 40))
        k = int(rng.integers(1, 2 * width))  # shorter and longer than the lists
        n_tracks = int(rng.integers(2, 3 * width + 3))
        ptr, hidden, hidden_artists, rec, rec_artists = _random_challenge(rng, n, width, n_tracks, 6)
        rp, nd, cl = metrics.all_scores(ptr, hidden, hidden_artists, rec, rec_artists, k=k)
        for i in range(n):
            h, ha = hidden[ptr[i]:ptr[i + 1]], hidden_artists[ptr[i]:ptr[i + 1]]
            assert rp[i] == metrics.r_precision(h, ha, rec[i], rec_artists[i]), (trial, i)
            assert nd[i] == metrics.ndcg(h, rec[i], k=k), (trial, i)
            assert cl[i] == metrics.clicks(h, rec[i], k=k), (trial, i)
        assert cl.dtype == np.int64 and len(rp) == len(nd) == n


def test_all_scores_on_full_lists_sum_many_gains_as_ndcg_does():
    # 500-long lists with hundreds of hits: DCG sums of more than 128 terms (numpy's pairwise block)
    rng = np.random.default_rng(4)
    n, width = 6, 500
    rec = np.stack([rng.permutation(2000)[:width] for _ in range(n)])
    hidden = [rng.choice(rec[i], int(m), replace=False) for i, m in enumerate([1, 7, 8, 129, 300, 500])]
    ptr = np.r_[0, np.cumsum([len(h) for h in hidden])]
    hidden = np.concatenate(hidden)
    artists = rng.integers(0, 50, 2000)
    rp, nd, cl = metrics.all_scores(ptr, hidden, artists[hidden], rec, artists[rec])
    for i in range(n):
        h = hidden[ptr[i]:ptr[i + 1]]
        assert rp[i] == metrics.r_precision(h, artists[h], rec[i], artists[rec[i]])
        assert nd[i] == metrics.ndcg(h, rec[i]) and cl[i] == metrics.clicks(h, rec[i])


def test_all_scores_refuses_a_playlist_without_hidden_tracks():
    with pytest.raises(ValueError, match="without hidden tracks"):
        metrics.all_scores(np.array([0, 2, 2]), np.array([1, 2]), np.array([0, 0]), np.zeros((2, 3), int),
                           np.zeros((2, 3), int))


def _verdict(text, cs, k):
    try:
        return sub.verify(text, cs, k=k)
    except sub.SubmissionError as err:
        return str(err)


def test_verify_judges_every_line_as_the_field_by_field_rules_do(monkeypatch):
    pids, n_seeds = np.array([1000000, 1000001, 1000002]), [0, 1, 1]  # seed: track 0
    cs = mpd_io.read_challenge_set(json.dumps({"date": "d", "version": "v1", "name": "challenge_set", "playlists": [
        {"name": "x", "num_holdouts": 10, "pid": int(p), "num_tracks": 10 + m, "num_samples": m,
         "tracks": [track(j, j) for j in range(m)]} for p, m in zip(pids, n_seeds)]}).encode())
    uris = np.array([f"spotify:track:{i:022d}" for i in range(40)], dtype=object)
    k = 5
    lists = np.tile(np.arange(5, 5 + k), (3, 1))
    lines = sub.to_csv(pids, lists, uris, "team", "a@b.c").splitlines()
    u = uris[5]
    edits = [
        lambda ls: ls,
        lambda ls: ls[:2] + [ls[2].replace(", ", " ,  ", 2)] + ls[3:],  # other blanks: still valid
        lambda ls: ls[:2] + [ls[2].replace(", ", ",\t")] + ls[3:],
        lambda ls: ls[:2] + [ls[2].replace(u + ", ", u + "s, ", 1).replace("spotify:track:", "potify:track:", 2)
                             .replace("potify:track:", "spotify:track:", 1)] + ls[3:],  # a 37 + 35 split
        lambda ls: ls[:2] + [ls[2].replace(u, u[:-1] + "!")] + ls[3:],
        lambda ls: ls[:2] + [ls[2].replace(u, u[:-1] + "é")] + ls[3:],
        lambda ls: ls[:2] + [ls[2].replace(u, u.upper())] + ls[3:],
        lambda ls: ls[:2] + [ls[2].replace("1000000", "١٠٠٠٠٠٠")] + ls[3:],  # non-ASCII digits: int() takes them
        lambda ls: ls[:2] + [ls[2].replace("1000000", "+1000000")] + ls[3:],
        lambda ls: ls[:2] + [ls[2].replace("1000000", "01000000")] + ls[3:],
        lambda ls: ls[:2] + [ls[2] + ", " + u] + ls[3:],  # k + 1 tracks
        lambda ls: ls[:2] + [ls[2].replace(uris[6], u)] + ls[3:],  # a repeat
        lambda ls: ls[:3] + [ls[3].replace(uris[6], uris[0])] + ls[4:],  # a seed
        lambda ls: ls[:2] + [ls[2].replace("1000000", "1000001")] + ls[3:],  # pid twice
        lambda ls: ls[:2] + [ls[2].replace("1000000", "7")] + ls[3:],
        lambda ls: ls[:4],
        lambda ls: ls[:2] + ["", "# note"] + ls[2:],
    ]
    fast = [_verdict("\n".join(edit(lines)), cs, k) for edit in edits]
    monkeypatch.setattr(sub, "_well_formed", lambda line, k: None)  # every line through the field rules
    slow = [_verdict("\n".join(edit(lines)), cs, k) for edit in edits]
    assert fast == slow
    assert fast[0] == fast[1] == fast[2] == 3 and fast[7] == 3 and "URIs" in fast[3] and "distinct" in fast[11]


def test_lists_from_frame_equals_sorting_the_frame():
    rng = np.random.default_rng(2)
    pids = rng.choice(np.arange(10**6, 10**6 + 50), 12, replace=False)
    lists = rng.integers(0, 1000, (12, 7))
    frame = sub.lists_frame(pids, lists)
    blocks = pd.concat([frame.iloc[i * 7:(i + 1) * 7] for i in rng.permutation(12)])  # shards of whole lists
    halves = pd.concat([frame.assign(rank=frame["rank"] * 2 - 1), frame.assign(rank=frame["rank"] * 2)])
    for shuffled in (frame, frame.sample(frac=1.0, random_state=1), frame.iloc[::-1], blocks):
        want_df = shuffled.sort_values(["pid", "rank"])  # the first version's sort
        want = want_df["track_id"].to_numpy().reshape(-1, 7)[pd.Index(want_df["pid"].to_numpy()[::7]).get_indexer(pids)]
        got = sub.lists_from_frame(shuffled, pids)
        assert got.dtype == np.int64 and np.array_equal(got, want) and np.array_equal(got, lists)
    # each list in two halves far apart (odd ranks, then even ones): only a sort puts them together
    want_df = halves.sort_values(["pid", "rank"])
    want = want_df["track_id"].to_numpy().reshape(-1, 14)[pd.Index(want_df["pid"].to_numpy()[::14]).get_indexer(pids)]
    assert np.array_equal(sub.lists_from_frame(halves, pids), want)
    # blocks of k rows with ranks ascending, but two pids in each
    a, b = (pd.DataFrame({"pid": [p] * 7, "rank": np.arange(1, 8, dtype=np.int16), "track_id": rng.integers(0, 99, 7)})
            for p in (5, 6))
    mixed = pd.concat([a, b.assign(rank=b["rank"] + 7), b, a.assign(rank=a["rank"] + 7, track_id=a["track_id"] + 100)])
    want_df = mixed.sort_values(["pid", "rank"])
    assert np.array_equal(sub.lists_from_frame(mixed, np.array([6, 5])),
                          want_df["track_id"].to_numpy().reshape(2, 14)[::-1])
    with pytest.raises(ValueError, match="no list for pid"):
        sub.lists_from_frame(frame, np.r_[pids, 5])


def _train_plain(x, y, epochs, seed, batch_size=1024, lr=1e-3):
    """model.train's loop with the network, its gradients and Adam as plain expressions (the first
    version); the model's in-place steps must give the same weights bit for bit."""
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    mean, std = x.mean(axis=0, dtype=np.float64), x.std(axis=0, dtype=np.float64)
    std[std < 1e-9] = 1.0
    xs = ((x - mean) / std).astype(np.float32)
    p = {k: v.astype(np.float32) for k, v in model.init_params(x.shape[1], seed).items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    rng, t, losses = np.random.default_rng(seed + 1), 0, []
    for _ in range(epochs):
        order, total = rng.permutation(len(y)), 0.0
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = xs[idx], y[idx]
            h1 = np.maximum(xb @ p["W1"] + p["b1"], 0.0)
            h2 = np.maximum(h1 @ p["W2"] + p["b2"], 0.0)
            z = (h2 @ p["W3"] + p["b3"]).ravel()
            total += model.bce_with_logits(z, yb) * len(idx)
            dz = ((model.sigmoid(z) - yb) / len(yb))[:, None]
            g = {"W3": h2.T @ dz, "b3": dz.sum(axis=0)}
            dh2 = (dz @ p["W3"].T) * (h2 > 0)
            g["W2"], g["b2"] = h1.T @ dh2, dh2.sum(axis=0)
            dh1 = (dh2 @ p["W2"].T) * (h1 > 0)
            g["W1"], g["b1"] = xb.T @ dh1, dh1.sum(axis=0)
            t += 1
            for k, gk in g.items():
                m[k] *= 0.9
                m[k] += (1 - 0.9) * gk
                v[k] *= 0.999
                v[k] += (1 - 0.999) * gk * gk
                p[k] -= lr * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
        losses.append(total / max(len(y), 1))
    return {k: a.tolist() for k, a in p.items()}, losses


def test_training_gives_the_weights_of_the_plain_expressions():
    rng = np.random.default_rng(8)
    for n, seed in ((3000, 0), (2500, 3), (700, 1)):  # a last batch shorter than 1024, one batch only
        x = (rng.standard_normal((n, 6)) * [1, 5, 0.1, 1, 1, 0]).astype(np.float32)  # a constant column too
        y = ((x[:, 0] + rng.standard_normal(n)) > 1.0).astype(np.float32)
        got = model.train(x, y, feature_names=list("abcdef"), epochs=3, seed=seed)
        params, losses = _train_plain(x, y, epochs=3, seed=seed)
        assert got["params"] == params and got["train_loss"] == losses


def rank_candidates_by_lexsort(rows, tracks, scores, n_rows, k):
    """submission.rank_candidates as it was written first."""
    order = np.lexsort((tracks, -scores, rows))
    r = rows[order]
    starts = np.searchsorted(r, np.arange(n_rows + 1))
    t = tracks[order]
    return [t[starts[i]:min(starts[i + 1], starts[i] + k)] for i in range(n_rows)]


def test_rank_candidates_equals_the_lexsort():
    rng = np.random.default_rng(6)
    for trial in range(300):
        n, n_rows, k = int(rng.integers(0, 60)), int(rng.integers(1, 6)), int(rng.integers(1, 8))
        rows = rng.integers(-1, n_rows + 1, n)  # rows outside 0..n_rows-1 are left out
        tracks = rng.integers(-2, 30, n)  # repeats within a row
        scores = rng.choice([0.0, -0.0, 0.25, 0.5, 1.0, np.inf], n) if trial % 3 == 0 else rng.random(n)  # ties
        if trial % 5 == 0:
            scores = scores.astype(np.float32)
        if trial % 7 == 0 and n:
            scores[int(rng.integers(n))] = np.nan  # the lexsort fallback
        got = sub.rank_candidates(rows, tracks, scores, n_rows, k)
        want = rank_candidates_by_lexsort(rows, tracks, scores, n_rows, k)
        assert len(got) == len(want) and all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(got, want))


def test_tie_ranks_count_the_strictly_smaller_values():
    rng = np.random.default_rng(1)
    for values in (rng.random(50), rng.integers(0, 5, 50), np.array([0.0, -0.0, 1.0, -0.0]), np.zeros(0)):
        assert np.array_equal(tie_ranks(values), [(values < v).sum() for v in values])
    with pytest.raises(ValueError, match="NaN"):
        tie_ranks(np.array([1.0, np.nan]))
