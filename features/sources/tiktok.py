"""TikTok adapter (popularity + the song–video network).

Input: a JSON-lines file of scraped post records, one object per line::

    {"id": "...", "createTime": <epoch s>, "stats": {"playCount", "shareCount", "commentCount", "diggCount"},
     "music": {"id": "...", "title": "..."}, "desc": "...", "video": {"duration": <s>}}

plus the scrape time: a ``scrapeTime`` field per record when the scraper wrote one, else ``tiktok_scrape.json``
(``{"scrape_time": <epoch s>}``) beside the JSON-lines file, else the ``scrape_time`` argument. Videos are matched by
``<id>.<any media extension>`` under the folder.

Popularity (VAN, eq. 4.6–4.7, after Chen et al. / Ding et al.)::

    p_v = log((n_play + n_share + n_comment + 1) / t_v)        t_v = (scrape_time − createTime) in days
    p̂_v = (p_v − min p) / (max p − min p)

The min and max are taken over **all posts in the file being ingested** (every split), as the paper normalises over the
whole dataset; both ``popularity_raw`` (p) and ``popularity`` (p̂) are stored so a user can renormalise, e.g. on the
training split only. ``t_v`` is floored at one hour (1/24 day) so a post scraped minutes after upload does not explode.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.sources._common import SourceError, find_media, hashed_split, label_error

__all__ = ["popularity_score", "normalise_popularity", "read_tiktok", "MIN_AGE_DAYS"]

#: floor on a post's age, in days, before dividing (see module docstring)
MIN_AGE_DAYS = 1.0 / 24.0


def popularity_score(plays: float, shares: float, comments: float, age_days: float) -> float:
    """p = log((plays + shares + comments + 1) / age_days), with age floored at :data:`MIN_AGE_DAYS`.

    Raises:
        ValueError: a negative or non-finite count or age.
    """
    for name, value in (("plays", plays), ("shares", shares), ("comments", comments), ("age_days", age_days)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}={value!r}: expected a finite non-negative number")
    return math.log((plays + shares + comments + 1.0) / max(age_days, MIN_AGE_DAYS))


def normalise_popularity(p: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1]; a constant vector maps to 0.5 (no information, no division by zero)."""
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return p
    lo, hi = float(np.min(p)), float(np.max(p))
    return np.full_like(p, 0.5) if hi == lo else (p - lo) / (hi - lo)


#: counts above this are refused: they are not exact as floats, and their sum could overflow the log's argument
_MAX_COUNT = 2**53
#: the counts the popularity formula reads must be present; others default to 0
_REQUIRED_COUNTS = ("playCount", "shareCount", "commentCount")


def _count(rec: dict, key: str, where: tuple[Path, int]) -> int:
    stats = rec.get("stats")
    if not isinstance(stats, dict):
        raise label_error(where[0], where[1], "stats", stats, "an object with playCount, shareCount, commentCount")
    if key not in stats and key in _REQUIRED_COUNTS:  # a scrape that lost a count must not pass as 0 plays
        raise label_error(where[0], where[1], f"stats.{key}", "<missing>", "a non-negative count")
    value = stats.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or value > _MAX_COUNT:
        raise label_error(where[0], where[1], f"stats.{key}", value, "a non-negative count up to 2^53")
    return int(value)


def _epoch(value: Any, where: tuple[Path, int | str], column: str) -> float:
    """A finite epoch time in seconds, or a SourceError naming file, row and column."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise label_error(where[0], where[1], column, value, "epoch seconds (a finite number)")
    return float(value)


def read_tiktok(path: str | Path, *, scrape_time: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse TikTok post records into manifest rows and the song–video edge list.

    Args:
        path: a ``.jsonl`` file, or a folder holding exactly one ``*.jsonl`` (videos searched under its folder).
        scrape_time: epoch seconds of the scrape, used when neither the records nor ``tiktok_scrape.json`` have one.

    Returns:
        ``(videos, edges)``: videos with ``video_id``, ``source_path``, ``split`` (hashed 70/10/20),
        ``popularity``, ``popularity_raw``, ``song_id`` (``None`` for no song), ``song_title``, ``desc``,
        ``create_time``, ``age_days``, ``play_count``, ``share_count``, ``comment_count``, ``digg_count``,
        ``duration_meta``; edges with ``video_id``, ``song_id``.

    Raises:
        SourceError: unreadable JSON (line named), a missing/ill-typed field, duplicate ids, a post newer than the
            scrape, or no scrape time at all.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.jsonl"))
        if len(files) != 1:
            raise SourceError(f"path={str(p)!r}: expected exactly one *.jsonl post file, found {len(files)}")
        p = files[0]
    if not p.is_file():
        raise SourceError(f"path={str(p)!r}: no such JSON-lines file")
    root = p.parent
    sidecar = root / "tiktok_scrape.json"
    default_scrape = scrape_time
    if sidecar.is_file():
        try:
            default_scrape = _epoch(json.loads(sidecar.read_text())["scrape_time"], (sidecar, 1), "scrape_time")
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"{sidecar}: expected {{\"scrape_time\": <epoch seconds>}}: {exc}") from exc
    media = {Path(n).stem: path for n, path in find_media(root).items()}
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{p}: line {lineno}: not valid JSON: {exc}") from exc
            if not isinstance(rec, dict):
                raise label_error(p, lineno, "<record>", type(rec).__name__, "a JSON object")
            vid = rec.get("id")
            if not isinstance(vid, (str, int)) or isinstance(vid, bool) or str(vid) == "":
                raise label_error(p, lineno, "id", vid, "a non-empty string")
            vid = str(vid)
            if vid in seen:
                raise SourceError(f"{p}: line {lineno}: duplicate id {vid!r} (first on line {seen[vid]})")
            seen[vid] = lineno
            created = rec.get("createTime")
            if isinstance(created, bool) or not isinstance(created, (int, float)) or not math.isfinite(created):
                raise label_error(p, lineno, "createTime", created, "epoch seconds")
            scrape = rec.get("scrapeTime", default_scrape)
            if scrape is None:
                raise SourceError(f"{p}: no scrape time: add tiktok_scrape.json or pass scrape_time")
            scrape = _epoch(scrape, (p, lineno), "scrapeTime")
            age = (scrape - float(created)) / 86400.0
            if age < 0:
                raise label_error(p, lineno, "createTime", created, f"a time before the scrape ({scrape})")
            plays, shares = _count(rec, "playCount", (p, lineno)), _count(rec, "shareCount", (p, lineno))
            comments, diggs = _count(rec, "commentCount", (p, lineno)), _count(rec, "diggCount", (p, lineno))
            music = rec.get("music") if isinstance(rec.get("music"), dict) else {}
            song = music.get("id")
            if song is not None and (isinstance(song, bool) or not isinstance(song, (str, int))):
                raise label_error(p, lineno, "music.id", song, "a string or an integer id")
            song = str(song) if song not in (None, "") else None
            video = rec.get("video") if isinstance(rec.get("video"), dict) else {}
            duration = video.get("duration")
            rows.append({
                "video_id": vid,
                "source_path": str(media[vid]) if vid in media else None,
                "split": hashed_split(vid),
                "popularity_raw": popularity_score(plays, shares, comments, age),
                "song_id": song,
                "song_title": music.get("title") if isinstance(music.get("title"), str) else None,
                "desc": rec.get("desc") if isinstance(rec.get("desc"), str) else None,
                "create_time": float(created),
                "age_days": age,
                "play_count": plays, "share_count": shares, "comment_count": comments, "digg_count": diggs,
                "duration_meta": float(duration) if isinstance(duration, (int, float)) and not isinstance(
                    duration, bool) and math.isfinite(duration) else None,
            })
    videos = pd.DataFrame.from_records(rows)
    if videos.empty:
        raise SourceError(f"{p}: no post records")
    videos["popularity"] = normalise_popularity(videos["popularity_raw"].to_numpy())
    edges = videos.loc[videos["song_id"].notna(), ["video_id", "song_id"]].reset_index(drop=True)
    return videos, edges
