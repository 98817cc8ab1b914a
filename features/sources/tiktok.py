"""TikTok adapter (popularity + the song–video network).

Input: scraped post records in any of the shapes scrapers write — JSON Lines, a JSON array of TikTokApi
``itemStruct`` objects, tiktok-scraper's ``{"collector": [...]}``, the web page state (``ItemModule``,
``SIGI_STATE``, ``__UNIVERSAL_DATA_FOR_REHYDRATION__``), the mobile app API (``aweme_list``), one post per ``.json``
file, yt-dlp ``.info.json`` files, saved pages, CSV exports — detected from the content by
:mod:`features.sources.tiktok_shapes`. A JSON Lines post looks like::

    {"id": "...", "createTime": <epoch s>, "stats": {"playCount", "shareCount", "commentCount", "diggCount"},
     "music": {"id": "...", "title": "..."}, "desc": "...", "video": {"duration": <s>}}

plus the scrape time: the record's own (``scrapeTime``; yt-dlp's ``epoch``) when it has one, else
``tiktok_scrape.json`` (``{"scrape_time": <epoch s>}``) beside the posts, else the ``scrape_time`` argument. Videos
are matched by ``<id>.<any media extension>`` (or a stem ending in ``[<id>]``) under the folder; a yt-dlp info file
by its sibling video. Records without a song keep their row and get no edge.

Popularity (VAN, dissertation eq. 4.12–4.13, after Chen et al. / Ding et al.)::

    p_v = log((n_play + n_share + n_comment + 1) / t_v)        t_v = (scrape_time − createTime) in days
    p̂_v = (p_v − min p) / (max p − min p)

The min and max are taken over **all posts being ingested** (every file, every split), as the paper normalises over the
whole dataset; both ``popularity_raw`` (p) and ``popularity`` (p̂) are stored so a user can renormalise, e.g. on the
training split only. ``t_v`` is floored at one hour (1/24 day) so a post scraped minutes after upload does not explode.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from features.sources._common import SourceError, find_media, hashed_split, label_error
from features.sources.tiktok_shapes import (POST_FILE_SUFFIXES, SHAPES, Post, iter_posts, normalise_post,
                                            parse_columns)

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


def _scrape_sidecar(root: Path) -> float | None:
    sidecar = root / "tiktok_scrape.json"
    if not sidecar.is_file():
        return None
    try:
        value = json.loads(sidecar.read_text(encoding="utf-8"))["scrape_time"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"{sidecar}: expected {{\"scrape_time\": <epoch seconds>}}: {exc}") from exc
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) >= 2**63
            or not math.isfinite(value)):
        raise label_error(sidecar, 1, "scrape_time", value, "epoch seconds (a finite number)")
    return float(value)


def _post_files(folder: Path) -> list[Path]:
    """Every post file under ``folder`` (recursive, sorted; hidden files and folders — e.g. ``vidpipe unpack``'s
    ``.vidpipe-unpack`` ledger —, ``tiktok_scrape.json`` and symlinks that resolve outside ``folder`` skipped)."""
    real = folder.resolve()
    out = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in POST_FILE_SUFFIXES or p.name == "tiktok_scrape.json" \
                or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.is_file() and p.resolve().is_relative_to(real):
            out.append(p)
    return out


_BRACKET_ID = re.compile(r"\[([^\[\]]+)\]$")
_HASHTAG = re.compile(r"#(\w+)")


def _media_index(root: Path) -> tuple[dict[str, Path], dict[Path, Path]]:
    """Media under ``root`` by id (file stem, or the ``[id]`` that ends a yt-dlp ``%(title)s [%(id)s]`` stem) and by
    path without extension."""
    by_id: dict[str, Path] = {}
    by_stem: dict[Path, Path] = {}
    for name, path in find_media(root).items():
        stem = Path(name).stem
        by_id.setdefault(stem, path)
        m = _BRACKET_ID.search(stem)
        if m:
            by_id.setdefault(m.group(1), path)
        by_stem.setdefault(path.with_suffix(""), path)
    return by_id, by_stem


def _place(post: Post) -> str:
    """Where a post is in its file, for messages: ``line N`` (JSON Lines) or ``row N`` (anything else)."""
    return f"{'line' if post.shape == 'jsonl' else 'row'} {reprlib.repr(post.row)}"


def _hashtags(post: Post) -> list[str]:
    """The record's hashtag list; when it has none, the ``#words`` of its caption (order kept, duplicates dropped)."""
    tags = post.hashtags if post.hashtags is not None else tuple(_HASHTAG.findall(post.caption or ""))
    return list(dict.fromkeys(tags))


def read_tiktok(path: str | Path, *, scrape_time: float | None = None,
                columns: str | Mapping[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse TikTok post records, in any shape of :mod:`features.sources.tiktok_shapes`, into manifest rows and the
    song–video edge list.

    Args:
        path: a post file, or a folder whose post files (``*.jsonl``, ``*.ndjson``, ``*.json`` incl. yt-dlp
            ``*.info.json``, ``*.csv``, ``*.html``; recursive) are all read. Videos are searched under the folder (a
            file's folder): ``<id>.<ext>``, ``... [<id>].<ext>``, or, for a yt-dlp info file, its sibling video.
        scrape_time: epoch seconds of the scrape, used when neither the records nor ``tiktok_scrape.json`` have one.
        columns: CSV exports only — ``"FIELD=COLUMN,..."`` (or a mapping) naming the column of a canonical field
            (:data:`~features.sources.tiktok_shapes.CSV_FIELDS`); unmapped fields are found by their usual names.

    Returns:
        ``(videos, edges)``: videos with ``video_id``, ``source_path``, ``split`` (hashed 70/10/20),
        ``popularity``, ``popularity_raw``, ``song_id`` (``None`` for no song), ``song_title``, ``song_artist``,
        ``desc``, ``create_time``, ``scrape_time`` (epoch s, the scrape time used), ``age_days``, ``play_count``,
        ``share_count``, ``comment_count``, ``digg_count``,
        ``collect_count``, ``duration_meta``, ``author``, ``author_followers``, ``author_following``,
        ``author_hearts``, ``author_videos`` (nullable integers), ``author_verified`` (nullable boolean),
        ``hashtag_list`` (a JSON array of names, as text, so it stores and compares as one cell),
        ``hashtag_count``, ``caption_length`` (characters) and ``post_shape`` (the shape the record was read from);
        edges with ``video_id``, ``song_id``.

    Raises:
        SourceError: no shape fits a file (the shapes expected are named), unreadable JSON (line named), a missing or
            ill-typed required field, duplicate ids, a post newer than the scrape, or no scrape time at all.
        ValueError: ``columns`` is malformed, or given for a source that holds no CSV file.
    """
    p = Path(path)
    files, root = _source_files(p)
    mapping = parse_columns(columns)
    if mapping and not any(f.suffix.lower() == ".csv" for f in files):
        raise ValueError(f"columns={columns!r}: maps CSV columns, but path={str(p)!r} holds no .csv file")
    sidecar = _scrape_sidecar(root)
    default_scrape = sidecar if sidecar is not None else scrape_time
    by_id, by_stem = _media_index(root)
    rows: list[dict[str, Any]] = []
    seen: dict[str, tuple[Path, Any]] = {}
    for file in files:
        for raw in iter_posts(file, mapping):
            post = normalise_post(raw)
            _check_first(post, seen)
            media = by_stem.get(post.media_stem) if post.media_stem is not None else None
            rows.append(_post_row(post, _scrape_of(post, default_scrape), media or by_id.get(post.id)))
    if not rows:
        raise SourceError(f"{p}: no post records")
    videos = _videos_frame(rows)
    edges = videos.loc[videos["song_id"].notna(), ["video_id", "song_id"]].reset_index(drop=True)
    return videos, edges


def _source_files(p: Path) -> tuple[list[Path], Path]:
    """``(post files, folder searched for media)`` of the ``path`` argument: a folder's post files, or the one file."""
    if p.is_dir():
        files = _post_files(p)
        if not files:
            raise SourceError(f"path={str(p)!r}: no post files in the folder; expected "
                              f"{', '.join('*' + s for s in POST_FILE_SUFFIXES)} holding one of: {'; '.join(SHAPES)}")
        return files, p
    if p.is_file():
        return [p], p.parent
    raise SourceError(f"path={str(p)!r}: no such post file or folder")


def _check_first(post: Post, seen: dict[str, tuple[Path, Any]]) -> None:
    """Record where ``post`` is in ``seen``; raise when its id was seen before (naming both places)."""
    if post.id in seen:
        first_file, first_place = seen[post.id]
        where = first_place if first_file == post.file else f"{first_file}, {first_place}"
        raise SourceError(f"{post.file}: {_place(post)}: duplicate id {post.id!r} (first in {where})")
    seen[post.id] = (post.file, _place(post))


def _scrape_of(post: Post, default_scrape: float | None) -> float:
    """The scrape time of ``post``: its own, else ``default_scrape`` (the sidecar's or the argument); never before
    the post was created."""
    scrape = post.scrape_time if post.scrape_time is not None else default_scrape
    if scrape is None:
        raise SourceError(f"{post.file}: no scrape time: add tiktok_scrape.json ({{\"scrape_time\": <epoch "
                          f"s>}}) beside the posts, or pass scrape_time (--scrape-time)")
    if scrape < post.create_time:
        raise label_error(post.file, post.row, post.create_time_field, post.create_time,
                          f"a time before the scrape ({scrape})")
    return scrape


def _post_row(post: Post, scrape: float, media: Path | None) -> dict[str, Any]:
    """The manifest row of one post (all columns of :func:`read_tiktok` but ``popularity``)."""
    age = (scrape - post.create_time) / 86400.0
    tags = _hashtags(post)
    return {
        "video_id": post.id,
        "source_path": str(media) if media is not None else None,
        "split": hashed_split(post.id),
        "popularity_raw": popularity_score(post.plays, post.shares, post.comments, age),
        "song_id": post.song_id,
        "song_title": post.song_title,
        "song_artist": post.song_artist,
        "desc": post.caption,
        "create_time": post.create_time,
        "scrape_time": scrape,
        "age_days": age,
        "play_count": post.plays, "share_count": post.shares, "comment_count": post.comments,
        "digg_count": post.diggs, "collect_count": post.collects,
        "duration_meta": post.duration,
        "author": post.author,
        "author_followers": post.author_followers, "author_following": post.author_following,
        "author_hearts": post.author_hearts, "author_videos": post.author_videos,
        "author_verified": post.author_verified,
        "hashtag_list": json.dumps(tags, ensure_ascii=False),
        "hashtag_count": len(tags),
        "caption_length": len(post.caption or ""),
        "post_shape": post.shape,
    }


def _videos_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The manifest of ``rows``: nullable counts and flags, ``None`` for missing text, ``popularity`` min-max
    normalised over every row."""
    videos = pd.DataFrame.from_records(rows)
    for col in _OPTIONAL_COUNTS:
        videos[col] = videos[col].astype("Int64")
    videos["author_verified"] = videos["author_verified"].astype("boolean")
    for col in ("source_path", "song_id", "song_title", "song_artist", "desc", "author"):  # missing text is None
        videos[col] = videos[col].astype(object).where(videos[col].notna(), None)
    videos["popularity"] = normalise_popularity(videos["popularity_raw"].to_numpy())
    return videos


#: manifest columns of counts a record may lack (nullable integers)
_OPTIONAL_COUNTS = ("digg_count", "collect_count", "author_followers", "author_following", "author_hearts",
                    "author_videos")
