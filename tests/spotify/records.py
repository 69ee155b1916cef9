"""Hand-written MPD records in the real format, for tests."""

from __future__ import annotations

import json


def track(pos: int, n: int, artist: int = 0, album: int = 0, **extra) -> dict:
    """A track entry in the real format; ids become 22-character base62 strings."""
    t = {"pos": pos, "artist_name": f"Artist {artist}", "track_uri": f"spotify:track:{n:022d}",
         "artist_uri": f"spotify:artist:{artist:022d}", "track_name": f"Song {n}",
         "album_uri": f"spotify:album:{album:022d}", "duration_ms": 200_000 + n, "album_name": f"Album {album}"}
    t.update(extra)
    return t


def playlist(pid: int, name: str | None, tracks: list[dict], **extra) -> dict:
    pl = {"name": name, "collaborative": "false", "pid": pid, "modified_at": 1500000000 + pid,
          "num_tracks": len(tracks), "num_albums": len({t["album_uri"] for t in tracks}), "num_followers": 1,
          "tracks": tracks, "num_edits": 2, "duration_ms": sum(t["duration_ms"] for t in tracks),
          "num_artists": len({t["artist_uri"] for t in tracks})}
    if name is None:
        del pl["name"]
    pl.update(extra)
    return pl


def slice_doc(first: int, last: int, playlists: list[dict]) -> dict:
    return {"info": {"generated_on": "2017-12-03 08:41:42.057563", "slice": f"{first}-{last}", "version": "v1"},
            "playlists": playlists}


def dumps(doc: dict) -> bytes:
    return json.dumps(doc, indent=4).encode()  # the real files are indented
