"""The Spotify Million Playlist (MPD) solution, as plain Python.

Logic modules (no Dagster imports), one job each:

- `sizes`        contest size presets (mini, 80k, full)
- `generate`     synthetic MPD slices + challenge set in the exact real formats (`vocab`: words)
- `mpd_io`       read slice files / challenge sets (real or synthetic) into DataFrames
- `text`         title normalization and character n-grams (`hashing`: stable 63-bit keys)
- `standardize`  part tables, track-table reduction, renumbering to integer ids
- `challenge`    the 10 challenge categories sampled from held-out playlists
- `cooccurrence` the six co-occurrence kinds, per part, sharded by key; top-N reduction
- `artists`      artist-named playlists, detected offline from the data
- `features`     generic features, candidates, per-candidate features and labels
- `model`        the 128-64-1 network in numpy (forward, backward, Adam)
- `metrics`      R-precision (artist credit), organizers' NDCG, recommended-songs clicks
- `submission`   top-500 lists, popularity fill, official CSV export and its verifier
- `evaluation`   metrics per category for the model and the popularity baseline
- `steps`        one execution function per asset of the chain (what Dagster wraps)
- `inprocess`    the whole chain in one process through `steps` (tests, benchmarks)
"""
