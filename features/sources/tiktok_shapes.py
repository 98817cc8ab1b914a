"""The shapes TikTok scraper output comes in, detected from the content, each read into one canonical post record.

A file (or every post file in a folder) is read by **what it holds**, not by its name:

======================  =====================================================================================
shape                   what the file holds
======================  =====================================================================================
``jsonl``               JSON Lines: one post object per line (``.jsonl`` / ``.ndjson``, or a ``.json`` that is
                        JSON Lines)
``json-array``          a JSON array of post objects (a dump of TikTokApi ``itemStruct`` objects, an Apify export)
``collector``           tiktok-scraper's ``{"collector": [...]}`` of flat records
``item-module``         the web page state ``{"ItemModule": {<post id>: {...}}}``, alone or inside ``SIGI_STATE``
``rehydration``         ``{"__DEFAULT_SCOPE__": {"webapp.video-detail": {"itemInfo": {"itemStruct": {...}}}}}``,
                        alone or inside ``__UNIVERSAL_DATA_FOR_REHYDRATION__``
``item-detail``         an item-detail API response ``{"itemInfo": {"itemStruct": {...}}}``
``item-list``           an item-list API response ``{"itemList": [...]}`` (also inside a ``{"data": ...}`` wrapper)
``aweme``               a mobile-app API response ``{"aweme_list": [...]}`` or ``{"aweme_detail": {...}}``
``post``                one post object per ``.json`` file (pretty-printed, as page extractors save them)
``yt-dlp``              yt-dlp ``--write-info-json`` output (``<name>.info.json`` beside ``<name>.mp4``), or a
                        playlist dump (``yt-dlp -J``) with its ``entries``
``html``                a saved page holding a ``SIGI_STATE`` or ``__UNIVERSAL_DATA_FOR_REHYDRATION__`` script (its
                        posts report the shape inside the script: ``item-module`` or ``rehydration``)
``csv``                 a CSV export, columns found by name (:data:`CSV_FIELDS`) or mapped with ``columns``
======================  =====================================================================================

Each post object is one of four record layouts, recognised by its keys:

* **web** (TikTokApi ``itemStruct``, ``ItemModule`` entries): ``stats``/``statsV2`` objects, ``music.id``,
  ``video.duration``, ``desc``, ``author`` (object, or a handle string in ``ItemModule``), ``authorStats``,
  ``challenges`` / ``textExtra``. Where ``statsV2`` (string counts) and ``stats`` (numbers) both hold a count, the
  ``statsV2`` value wins when it is a valid count (it is exact beyond 2^31 and is what the page renders); otherwise
  ``stats`` is used. The same rule applies to ``authorStatsV2`` over ``authorStats``.
* **flat** (tiktok-scraper, Apify): top-level ``playCount``, ``shareCount``, ``commentCount``, ``diggCount``,
  ``collectCount``, ``createTime`` or ``createTimeISO``, ``text``, ``musicMeta.musicId/musicName/musicAuthor``,
  ``videoMeta.duration``, ``authorMeta.name/fans/following/heart/video/verified``, ``hashtags``.
* **app** (the mobile API's ``aweme`` objects, snake_case): ``aweme_id``, ``create_time``, ``statistics`` (
  ``play_count``, ``share_count``, ``comment_count``, ``digg_count``, ``collect_count``), ``music.id_str`` (or
  ``music.id``), ``video.duration`` in **milliseconds**, ``desc``, ``cha_list`` / ``text_extra``, ``author``
  (``unique_id``, ``follower_count``, ``following_count``, ``total_favorited``, ``aweme_count``; verified when
  ``custom_verify`` or ``enterprise_verify_reason`` is non-empty — the texts the app shows beside its badge).
* **yt-dlp**: ``id``, ``timestamp``, ``view_count``, ``repost_count``, ``comment_count``, ``like_count``,
  ``duration``, ``description``, ``tags``, ``track``, ``artists`` (or ``artist``), ``uploader``,
  ``channel_follower_count``, and ``epoch`` (the time yt-dlp read the page, used as the scrape time). yt-dlp has no
  music id, so the song id is :func:`track_song_id` of the track and its artists.

Counts may be numbers or strings of digits; times may be epoch seconds (numbers or digit strings) or ISO-8601
(``createTimeISO``; a time without a zone is UTC). The counts the popularity formula reads (plays, shares, comments),
the id and the creation time are required: a missing or ill-typed one is an error naming the file, the row and the
field. Everything else is optional: a value of the wrong type is dropped (``None``), never guessed — except a song
id that is neither a string nor an integer, which is an error (a song edge must not vanish silently). An empty or
missing song id means no song: the post stays, with no edge.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import reprlib
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd

from features.sources._common import SourceError, label_error

__all__ = ["SHAPES", "CSV_FIELDS", "REQUIRED_FIELDS", "MAX_COUNT", "RawPost", "Post", "iter_posts", "parse_columns",
           "normalise_post", "track_song_id", "POST_FILE_SUFFIXES"]

#: the shapes :func:`iter_posts` recognises, as named in its error messages
SHAPES = (
    "JSON Lines of post objects",
    "a JSON array of post objects (TikTokApi itemStruct, tiktok-scraper or Apify records)",
    "tiktok-scraper's {\"collector\": [...]}",
    "the web page state ({\"ItemModule\": {...}}, SIGI_STATE, __UNIVERSAL_DATA_FOR_REHYDRATION__ / "
    "__DEFAULT_SCOPE__, {\"itemInfo\": {\"itemStruct\": ...}}, {\"itemList\": [...]})",
    "a mobile-app API response ({\"aweme_list\": [...]} or {\"aweme_detail\": {...}})",
    "one post object per .json file",
    "yt-dlp .info.json (a video, or a playlist with entries)",
    "a saved TikTok page (.html with a SIGI_STATE or __UNIVERSAL_DATA_FOR_REHYDRATION__ script)",
    "a CSV export (.csv)",
)

#: file name endings a folder is searched for (case-insensitive); ``tiktok_scrape.json`` is the scrape-time sidecar
POST_FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".html", ".htm")

#: counts above this are refused: they are not exact as floats, and their sum could overflow the log's argument
MAX_COUNT = 2**53

#: canonical field → CSV column names tried in order when ``columns`` does not map it (exact name first, then the
#: same name in any letter case). The names cover tiktok-scraper's CSV (``authorMeta.fans``), Apify's CSV
#: (``authorMeta/fans``), flattened itemStructs (``stats.playCount``) and yt-dlp field names.
CSV_FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("id", "video_id", "aweme_id", "item_id", "itemId"),
    "create_time": ("createTime", "create_time", "createTimeISO", "timestamp"),
    "plays": ("playCount", "stats.playCount", "stats/playCount", "play_count", "view_count", "plays"),
    "shares": ("shareCount", "stats.shareCount", "stats/shareCount", "share_count", "repost_count", "shares"),
    "comments": ("commentCount", "stats.commentCount", "stats/commentCount", "comment_count", "comments"),
    "diggs": ("diggCount", "stats.diggCount", "stats/diggCount", "digg_count", "like_count", "diggs"),
    "collects": ("collectCount", "stats.collectCount", "stats/collectCount", "collect_count", "collects"),
    "song_id": ("musicMeta.musicId", "musicMeta/musicId", "music.id", "music/id", "music_id", "song_id"),
    "song_title": ("musicMeta.musicName", "musicMeta/musicName", "music.title", "music/title", "music_title",
                   "song_title", "track"),
    "song_artist": ("musicMeta.musicAuthor", "musicMeta/musicAuthor", "music.authorName", "music/authorName",
                    "music_author", "song_artist", "artist"),
    "duration": ("videoMeta.duration", "videoMeta/duration", "video.duration", "video/duration", "duration"),
    "caption": ("text", "desc", "description", "caption"),
    "hashtags": ("hashtags", "challenges"),
    "author": ("authorMeta.name", "authorMeta/name", "author.uniqueId", "author/uniqueId", "author", "uploader"),
    "author_followers": ("authorMeta.fans", "authorMeta/fans", "authorStats.followerCount",
                         "authorStats/followerCount", "channel_follower_count", "author_followers"),
    "author_following": ("authorMeta.following", "authorMeta/following", "authorStats.followingCount",
                         "authorStats/followingCount", "author_following"),
    "author_hearts": ("authorMeta.heart", "authorMeta/heart", "authorStats.heart", "authorStats/heart",
                      "authorStats.heartCount", "authorStats/heartCount", "author_hearts"),
    "author_videos": ("authorMeta.video", "authorMeta/video", "authorStats.videoCount", "authorStats/videoCount",
                      "author_videos"),
    "author_verified": ("authorMeta.verified", "authorMeta/verified", "author.verified", "author/verified",
                        "author_verified"),
    "scrape_time": ("scrapeTime", "scrape_time"),
}

#: canonical fields every post must have (the id, the creation time and the counts the popularity formula reads)
REQUIRED_FIELDS = ("id", "create_time", "plays", "shares", "comments")

_MISSING = object()


@dataclass(frozen=True)
class RawPost:
    """One post as found: canonical field → (the field's name in the source, its raw value)."""

    fields: dict[str, tuple[str, Any]]  # only the fields the record has
    file: Path  # the file it came from
    row: Any  # where in the file: line (JSON Lines), 1-based position (arrays, CSV rows), post id (ItemModule)
    shape: str  # one of the shape names in the module docstring
    layout: str  # ``web``, ``flat``, ``app``, ``yt-dlp`` or ``csv``: how the record names its fields
    media_stem: Path | None = None  # yt-dlp: the info file's path without ``.info.json`` (its video's stem)


@dataclass(frozen=True)
class Post:
    """One validated post: required fields checked, optional ones typed or ``None``."""

    id: str
    create_time: float  # epoch seconds (UTC)
    create_time_field: str  # the name of the creation time in the source (for error messages)
    plays: int
    shares: int
    comments: int
    file: Path
    row: Any
    shape: str
    media_stem: Path | None = None
    diggs: int | None = None
    collects: int | None = None
    song_id: str | None = None
    song_title: str | None = None
    song_artist: str | None = None
    duration: float | None = None  # seconds, as the record states it
    caption: str | None = None
    hashtags: tuple[str, ...] | None = None  # None: the record has no hashtag list (derive one from the caption)
    author: str | None = None
    author_followers: int | None = None
    author_following: int | None = None
    author_hearts: int | None = None
    author_videos: int | None = None
    author_verified: bool | None = None
    scrape_time: float | None = None  # the record's own scrape time, if it has one


# ---------------------------------------------------------------------------------------------------- values
_DIGITS = re.compile(r"[0-9]+(?:\.0*)?")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?")


def _finite(value: int | float) -> bool:
    """Finite and representable as a float (JSON integers can have thousands of digits)."""
    return abs(value) < 2**63 if isinstance(value, int) else math.isfinite(value)


def _as_count(value: Any) -> int | None:
    """A non-negative integer count from an int, an integral float or a string of ASCII digits; else ``None``."""
    if type(value) is int:  # the common case first: this runs a dozen times per post
        return value if 0 <= value <= MAX_COUNT else None
    if isinstance(value, bool):
        return None
    if type(value) is str and value.isdigit() and value.isascii() and len(value) <= 16:
        return int(value) if int(value) <= MAX_COUNT else None
    if isinstance(value, str):
        s = value.strip()
        if len(s) > 40 or not _DIGITS.fullmatch(s):  # 2^53 has 16 digits; longer text is no count
            return None
        value = int(s.split(".")[0])
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            return None
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_COUNT:
        return value
    return None


def _as_epoch(value: Any) -> float | None:
    """Epoch seconds from a finite number, a string of digits or an ISO-8601 time (UTC when it has no zone)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if _finite(value) else None
    if not isinstance(value, str):
        return None
    s = value.strip()
    if _NUMBER.fullmatch(s):
        return float(s) if math.isfinite(float(s)) else None
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def _as_seconds(value: Any) -> float | None:
    """A finite non-negative duration from a number or a numeric string; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        s = value.strip()
        value = float(s) if _NUMBER.fullmatch(s) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value) and value >= 0:
        return float(value)
    return None


def _as_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    return None


def _as_tags(value: Any) -> tuple[str, ...] | None:
    """Hashtag names from a list of names or of ``{"name"|"title"|"hashtagName": ...}`` objects, or from CSV text
    (a JSON list, or names separated by commas, spaces or ``#``); ``None`` when ``value`` is none of these."""
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            try:
                value = json.loads(s)
            except json.JSONDecodeError:
                return None
        else:
            return tuple(t for t in re.split(r"[\s,#]+", s) if t)
    if not isinstance(value, list):
        return None
    names = []
    for item in value:
        if isinstance(item, dict):
            item = next((item[k] for k in ("name", "title", "hashtagName") if isinstance(item.get(k), str)), None)
        if isinstance(item, str) and item.strip():
            names.append(item.strip().lstrip("#"))
    return tuple(names)


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def track_song_id(track: Any, artists: Any) -> str | None:
    """A stable song id for records that have a track name but no music id (yt-dlp): ``"ta:"`` + 16 hex digits of
    BLAKE2b over the normalised track and the sorted normalised artists (NFKC, case-folded, whitespace collapsed).

    ``None`` when there is no track, or when the track is TikTok's generic ``original sound`` with no artist (that
    name alone would join every creator's own sound into one song).
    """
    if not isinstance(track, str) or not _norm(track):
        return None
    if isinstance(artists, str):
        artists = re.split(r", | & ", artists)
    names = sorted({_norm(a) for a in artists if isinstance(a, str) and _norm(a)}) if isinstance(artists, list) else []
    if _norm(track) == "original sound" and not names:
        return None
    key = "\x1f".join([_norm(track), *names])
    return "ta:" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


# ---------------------------------------------------------------------------------------------------- records
def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def _pick_hashtags(out: dict, rec: dict, lists: tuple[tuple[str, str], ...]) -> None:
    """Collect hashtag names from ``rec``'s lists of tag objects (``(list key, name key)`` pairs) into ``out``.

    The field is set only when at least one of the lists exists (an empty list means "no hashtags", a missing one
    "unknown").
    """
    tags: list[str] = []
    found = False
    for key, name_key in lists:
        items = rec.get(key)
        if isinstance(items, list):
            found = True
            tags += [i[name_key] for i in items if isinstance(i, dict) and isinstance(i.get(name_key), str)]
    if found:
        out["hashtags"] = ("/".join(key for key, _ in lists), tags)


def _pick(out: dict, name: str, candidates: list[tuple[str, Any]], *, valid=None) -> None:
    """Set ``out[name]`` to the first present candidate ``(source name, value)``; with ``valid``, the first whose
    value is valid wins, else the first present (so that an error names it)."""
    present = [(k, v) for k, v in candidates if v is not _MISSING]
    if not present:
        return
    if valid is not None:
        good = [(k, v) for k, v in present if valid(v) is not None]
        if good:
            out[name] = good[0]
            return
    out[name] = present[0]


def _web_fields(rec: dict, where: tuple[Path, Any], users: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    stats, stats2 = rec.get("stats"), rec.get("statsV2")
    if not isinstance(stats, dict) and not isinstance(stats2, dict):
        raise label_error(where[0], where[1], "stats", stats, "an object with playCount, shareCount, commentCount")
    out: dict[str, tuple[str, Any]] = {}
    _pick(out, "id", [("id", rec.get("id", _MISSING))])
    _pick(out, "create_time", [("createTime", rec.get("createTime", _MISSING)),
                               ("createTimeISO", rec.get("createTimeISO", _MISSING))], valid=_as_epoch)
    for name, key in (("plays", "playCount"), ("shares", "shareCount"), ("comments", "commentCount"),
                      ("diggs", "diggCount"), ("collects", "collectCount")):
        _pick(out, name, [(f"statsV2.{key}", _get(stats2, key)), (f"stats.{key}", _get(stats, key))],
              valid=_as_count)
    music = rec.get("music")
    _pick(out, "song_id", [("music.id", _get(music, "id"))])
    _pick(out, "song_title", [("music.title", _get(music, "title"))])
    _pick(out, "song_artist", [("music.authorName", _get(music, "authorName"))])
    _pick(out, "duration", [("video.duration", _get(rec.get("video"), "duration"))])
    _pick(out, "caption", [("desc", rec.get("desc", _MISSING))])
    _pick_hashtags(out, rec, (("challenges", "title"), ("textExtra", "hashtagName")))
    author = rec.get("author")
    if isinstance(author, str):  # ItemModule entries name the author; SIGI_STATE's UserModule holds the profile
        handle = author
        author = users.get("users", {}).get(author) if isinstance(users.get("users"), dict) else None
        out["author"] = ("author", handle)
    elif isinstance(author, dict):
        _pick(out, "author", [("author.uniqueId", author.get("uniqueId", _MISSING))])
    _pick(out, "author_verified", [("author.verified", _get(author, "verified"))])
    a_stats, a_stats2 = rec.get("authorStats"), rec.get("authorStatsV2")
    handle = out.get("author", ("", None))[1]
    if not isinstance(a_stats, dict) and isinstance(users.get("stats"), dict) and isinstance(handle, str):
        a_stats = users["stats"].get(handle)
    for name, keys in (("author_followers", ("followerCount",)), ("author_following", ("followingCount",)),
                       ("author_hearts", ("heart", "heartCount")), ("author_videos", ("videoCount",))):
        cands = [(f"authorStatsV2.{k}", _get(a_stats2, k)) for k in keys]
        cands += [(f"authorStats.{k}", _get(a_stats, k)) for k in keys]
        _pick(out, name, cands, valid=_as_count)
    _pick(out, "scrape_time", [("scrapeTime", rec.get("scrapeTime", _MISSING))])
    return out


def _flat_fields(rec: dict) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {}
    _pick(out, "id", [("id", rec.get("id", _MISSING))])
    _pick(out, "create_time", [("createTime", rec.get("createTime", _MISSING)),
                               ("createTimeISO", rec.get("createTimeISO", _MISSING))], valid=_as_epoch)
    for name, key in (("plays", "playCount"), ("shares", "shareCount"), ("comments", "commentCount"),
                      ("diggs", "diggCount"), ("collects", "collectCount")):
        _pick(out, name, [(key, rec.get(key, _MISSING))])
    music, video, author = rec.get("musicMeta"), rec.get("videoMeta"), rec.get("authorMeta")
    _pick(out, "song_id", [("musicMeta.musicId", _get(music, "musicId"))])
    _pick(out, "song_title", [("musicMeta.musicName", _get(music, "musicName"))])
    _pick(out, "song_artist", [("musicMeta.musicAuthor", _get(music, "musicAuthor"))])
    _pick(out, "duration", [("videoMeta.duration", _get(video, "duration"))])
    _pick(out, "caption", [("text", rec.get("text", _MISSING)), ("desc", rec.get("desc", _MISSING))])
    _pick(out, "hashtags", [("hashtags", rec.get("hashtags", _MISSING))])
    for name, key in (("author", "name"), ("author_followers", "fans"), ("author_following", "following"),
                      ("author_hearts", "heart"), ("author_videos", "video"), ("author_verified", "verified")):
        _pick(out, name, [(f"authorMeta.{key}", _get(author, key))])
    _pick(out, "scrape_time", [("scrapeTime", rec.get("scrapeTime", _MISSING))])
    return out


def _ytdlp_fields(rec: dict) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {}
    _pick(out, "id", [("id", rec.get("id", _MISSING))])
    _pick(out, "create_time", [("timestamp", rec.get("timestamp", _MISSING))])
    for name, key in (("plays", "view_count"), ("shares", "repost_count"), ("comments", "comment_count"),
                      ("diggs", "like_count")):
        _pick(out, name, [(key, rec.get(key, _MISSING))])
    artists = rec.get("artists") if isinstance(rec.get("artists"), list) else rec.get("artist")
    song = track_song_id(rec.get("track"), artists)
    if song is not None:
        out["song_id"] = ("track+artists", song)
    _pick(out, "song_title", [("track", rec.get("track", _MISSING))])
    if isinstance(artists, list):
        out["song_artist"] = ("artists", ", ".join(a for a in artists if isinstance(a, str)))
    else:
        _pick(out, "song_artist", [("artist", rec.get("artist", _MISSING))])
    _pick(out, "duration", [("duration", rec.get("duration", _MISSING))])
    _pick(out, "caption", [("description", rec.get("description", _MISSING)), ("title", rec.get("title", _MISSING))])
    _pick(out, "hashtags", [("tags", rec.get("tags", _MISSING))])
    _pick(out, "author", [("uploader", rec.get("uploader", _MISSING)), ("channel", rec.get("channel", _MISSING))])
    _pick(out, "author_followers", [("channel_follower_count", rec.get("channel_follower_count", _MISSING))])
    _pick(out, "author_verified", [("channel_is_verified", rec.get("channel_is_verified", _MISSING))])
    _pick(out, "scrape_time", [("epoch", rec.get("epoch", _MISSING))])
    return out


def _app_fields(rec: dict) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {}
    stats, music, author, video = rec.get("statistics"), rec.get("music"), rec.get("author"), rec.get("video")
    _pick(out, "id", [("aweme_id", rec.get("aweme_id", _MISSING))])
    _pick(out, "create_time", [("create_time", rec.get("create_time", _MISSING))])
    for name, key in (("plays", "play_count"), ("shares", "share_count"), ("comments", "comment_count"),
                      ("diggs", "digg_count"), ("collects", "collect_count")):
        _pick(out, name, [(f"statistics.{key}", _get(stats, key))])
    _pick(out, "song_id", [("music.id_str", _get(music, "id_str")), ("music.id", _get(music, "id"))],
          valid=lambda v: v if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v) else None)
    _pick(out, "song_title", [("music.title", _get(music, "title"))])
    _pick(out, "song_artist", [("music.author", _get(music, "author"))])
    for key, value in (("video.duration", _get(video, "duration")), ("duration", rec.get("duration", _MISSING))):
        seconds = _as_seconds(value) if value is not _MISSING else None
        if seconds is not None:  # the app API counts milliseconds
            out["duration"] = (key, seconds / 1000.0)
            break
    _pick(out, "caption", [("desc", rec.get("desc", _MISSING))])
    _pick_hashtags(out, rec, (("cha_list", "cha_name"), ("text_extra", "hashtag_name")))
    for name, key in (("author", "unique_id"), ("author_followers", "follower_count"),
                      ("author_following", "following_count"), ("author_hearts", "total_favorited"),
                      ("author_videos", "aweme_count")):
        _pick(out, name, [(f"author.{key}", _get(author, key))])
    badges = [_get(author, k) for k in ("custom_verify", "enterprise_verify_reason")]
    if any(isinstance(b, str) for b in badges):
        out["author_verified"] = ("author.custom_verify", any(isinstance(b, str) and b.strip() for b in badges))
    return out


_FLAT_KEYS = ("playCount", "diggCount", "shareCount", "commentCount", "authorMeta", "musicMeta", "videoMeta")
_YTDLP_KEYS = ("view_count", "repost_count", "extractor_key", "extractor", "webpage_url")


def _layout(rec: dict) -> str | None:
    """``web``, ``app``, ``flat`` or ``yt-dlp`` from the keys a post object has; ``None`` when it is none of them."""
    if "stats" in rec or "statsV2" in rec:
        return "web"
    if "aweme_id" in rec or "statistics" in rec:
        return "app"
    if any(k in rec for k in _YTDLP_KEYS):
        return "yt-dlp"
    if any(k in rec for k in _FLAT_KEYS):
        return "flat"
    return None


def _describe(doc: Any) -> str:
    if isinstance(doc, dict):
        keys = list(doc)
        return f"a JSON object with keys {reprlib.repr(keys[:12])}{' ...' if len(keys) > 12 else ''}"
    if isinstance(doc, list):
        kinds = sorted({type(x).__name__ for x in doc[:100]})
        return f"a JSON array of {len(doc)} item(s) ({', '.join(kinds) or 'empty'})"
    return f"a JSON {type(doc).__name__}"


class _NoShape(SourceError):
    """No shape fits a whole document (as opposed to a bad record inside a recognised one)."""


def _no_shape(path: Path, found: str) -> SourceError:
    return _NoShape(f"{path}: no TikTok post shape fits: expected one of: {'; '.join(SHAPES)}. Found {found}")


def _record(rec: Any, path: Path, row: Any, shape: str, users: Mapping[str, Any] | None = None,
            media_stem: Path | None = None) -> RawPost:
    if not isinstance(rec, dict):
        raise label_error(path, row, "<record>", type(rec).__name__, "a JSON object (a post)")
    layout = _layout(rec)
    if layout is None:
        raise SourceError(f"{path}: row {reprlib.repr(row)}: the record is no known post layout: expected a TikTok "
                          f"web item (stats/statsV2 object), a tiktok-scraper/Apify record (playCount, musicMeta, ...) "
                          f"or a yt-dlp info dict (view_count, ...); its keys are "
                          f"{reprlib.repr(sorted(map(str, rec))[:12])}")
    if layout == "web":
        fields = _web_fields(rec, (path, row), users or {})
    elif layout == "flat":
        fields = _flat_fields(rec)
    elif layout == "app":
        fields = _app_fields(rec)
    else:
        fields = _ytdlp_fields(rec)
        shape = "yt-dlp"
    return RawPost(fields=fields, file=path, row=row, shape=shape, layout=layout, media_stem=media_stem)


# ---------------------------------------------------------------------------------------------------- containers
def _from_document(doc: Any, path: Path, *, top: bool = True) -> Iterator[RawPost]:
    """The posts of one parsed JSON document (see the module docstring for the shapes)."""
    if isinstance(doc, list):
        for i, rec in enumerate(doc, 1):
            yield _record(rec, path, i, "json-array")
        return
    if not isinstance(doc, dict):
        raise _no_shape(path, _describe(doc))
    for envelope in ("SIGI_STATE", "__UNIVERSAL_DATA_FOR_REHYDRATION__", "data"):  # "data": API resellers' wrapper
        if isinstance(doc.get(envelope), dict):
            yield from _from_document(doc[envelope], path, top=False)
            return
    if isinstance(doc.get("collector"), list):
        for i, rec in enumerate(doc["collector"], 1):
            yield _record(rec, path, i, "collector")
        return
    if isinstance(doc.get("ItemModule"), dict):
        users = doc.get("UserModule") if isinstance(doc.get("UserModule"), dict) else {}
        for key, rec in doc["ItemModule"].items():
            if isinstance(rec, dict) and "id" not in rec:
                rec = {**rec, "id": key}
            yield _record(rec, path, key, "item-module", users)
        return
    scope = doc.get("__DEFAULT_SCOPE__")
    item = _get(scope, "webapp.video-detail", "itemInfo", "itemStruct")
    if item is not _MISSING:
        yield _record(item, path, 1, "rehydration")
        return
    if isinstance(scope, dict):
        raise _no_shape(path, f"a __DEFAULT_SCOPE__ without webapp.video-detail.itemInfo.itemStruct (its keys: "
                              f"{list(scope)[:12]})")
    item = _get(doc, "itemInfo", "itemStruct")
    if item is not _MISSING:
        yield _record(item, path, 1, "item-detail")
        return
    if isinstance(doc.get("itemList"), list):
        for i, rec in enumerate(doc["itemList"], 1):
            yield _record(rec, path, i, "item-list")
        return
    if isinstance(doc.get("aweme_list"), list):
        for i, rec in enumerate(doc["aweme_list"], 1):
            yield _record(rec, path, i, "aweme")
        return
    if isinstance(doc.get("aweme_detail"), dict):
        yield _record(doc["aweme_detail"], path, 1, "aweme")
        return
    if doc.get("_type") == "playlist":  # yt-dlp: --write-info-json writes playlists without entries; -J keeps them
        entries = doc.get("entries")
        for i, rec in enumerate(entries if isinstance(entries, list) else [], 1):
            yield _record(rec, path, i, "yt-dlp")
        return
    if top and _layout(doc) is not None:
        stem = Path(str(path)[: -len(".info.json")]) if path.name.lower().endswith(".info.json") else None
        yield _record(doc, path, 1, "post", media_stem=stem)
        return
    raise _no_shape(path, _describe(doc))


class _NotLines(Exception):
    """The first line of a JSON Lines candidate is no JSON value (``error`` says so, if nothing else fits)."""

    def __init__(self, error: SourceError):
        super().__init__(str(error))
        self.error = error


def _json_lines(lines: Iterable[str], path: Path) -> Iterator[RawPost]:
    """One post per line. Lines end at ``\\n`` only: a caption may hold a raw U+2028, which JSON allows."""
    first = True
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            error = SourceError(f"{path}: line {lineno}: not valid JSON: {exc}")
            if first:
                raise _NotLines(error) from exc
            raise error from exc
        first = False
        yield _record(rec, path, lineno, "jsonl")


_PAGE_SCRIPT = re.compile(
    r"<script\b[^>]*\bid=[\"'](SIGI_STATE|__UNIVERSAL_DATA_FOR_REHYDRATION__)[\"'][^>]*>(.*?)</script\s*>",
    re.DOTALL | re.IGNORECASE)


def _html(text: str, path: Path) -> Iterator[RawPost]:
    """The posts of the first page-state script that holds posts (pages may carry both scripts)."""
    found = _PAGE_SCRIPT.findall(text)
    if not found:
        raise _no_shape(path, "an HTML page without a SIGI_STATE or __UNIVERSAL_DATA_FOR_REHYDRATION__ script")
    error: SourceError | None = None
    for name, body in found:
        try:
            doc = json.loads(body)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}: the page's {name} script is not valid JSON: {exc}") from exc
        try:
            posts = list(_from_document(doc, path, top=False))
        except _NoShape as exc:
            error = exc
            continue
        yield from posts
        return
    assert error is not None
    raise error


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text ({exc}); expected one of: {'; '.join(SHAPES)}") from exc


def parse_columns(columns: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"plays=playCount,id=video_id"`` (or a mapping) → ``{canonical field: CSV column}``.

    Raises:
        ValueError: not ``FIELD=COLUMN`` pairs, an unknown canonical field, or a field mapped twice.
    """
    if columns is None:
        return {}
    expected = f"FIELD=COLUMN pairs separated by commas, FIELD one of {list(CSV_FIELDS)}"
    if isinstance(columns, Mapping):
        pairs = [(str(k), v) for k, v in columns.items()]
    elif isinstance(columns, str):
        pairs = []
        for part in columns.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"columns={columns!r}: {part.strip()!r} has no '='; expected {expected}")
            k, v = part.split("=", 1)
            pairs.append((k.strip(), v.strip()))
    else:
        raise ValueError(f"columns={columns!r}: expected {expected}")
    out: dict[str, str] = {}
    for k, v in pairs:
        if k not in CSV_FIELDS:
            raise ValueError(f"columns={columns!r}: unknown field {k!r}; expected {expected}")
        if not isinstance(v, str) or not v:
            raise ValueError(f"columns={columns!r}: field {k!r} maps to {v!r}; expected a column name")
        if k in out:
            raise ValueError(f"columns={columns!r}: field {k!r} is mapped twice")
        out[k] = v
    return out


def _csv(path: Path, mapping: Mapping[str, str]) -> Iterator[RawPost]:
    try:  # every cell as text: ids are 19-digit numbers that a float would round
        with path.open(encoding="utf-8-sig", newline="") as fh:
            header_line = fh.readline()
        # spreadsheet exports in many locales separate by ';' (or tab): the header's most frequent one wins
        sep = max((",", ";", "\t"), key=header_line.count)
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise SourceError(f"{path}: not a readable CSV export (expected UTF-8 text with a header row): {exc}") from exc
    header = [str(c) for c in df.columns]
    lower = {c.lower(): c for c in reversed(header)}
    chosen: dict[str, str] = {}
    for name, aliases in CSV_FIELDS.items():
        if name in mapping:
            if mapping[name] not in header:
                raise SourceError(f"{path}: columns maps {name!r} to {mapping[name]!r}, which is not a column; the "
                                  f"columns are {header}")
            chosen[name] = mapping[name]
            continue
        hit = next((a for a in aliases if a in header), None) or next(
            (lower[a.lower()] for a in aliases if a.lower() in lower), None)
        if hit is not None:
            chosen[name] = hit
    missing = [f for f in REQUIRED_FIELDS if f not in chosen]
    if missing:
        raise SourceError(f"{path}: no column found for {missing} (tried {[CSV_FIELDS[f] for f in missing]}); the "
                          f"columns are {header}: map them with --columns, e.g. "
                          f"--columns {','.join(f'{f}=<column>' for f in missing)}")
    tag_cols = [] if "hashtags" in chosen else [
        c for c in header if re.fullmatch(r"(?:hashtags|challenges)[./]\d+[./](?:name|title)", c)]
    for i, rec in enumerate(df.to_dict("records"), 1):
        fields = {name: (col, rec[col]) for name, col in chosen.items() if rec[col] != "" or name in REQUIRED_FIELDS}
        if tag_cols:
            fields["hashtags"] = ("hashtags/N/name", [rec[c] for c in tag_cols if rec[c] != ""])
        yield RawPost(fields=fields, file=path, row=i, shape="csv", layout="csv")


def iter_posts(path: Path, columns: Mapping[str, str] | None = None) -> Iterator[RawPost]:
    """The posts of one file, by its content (CSV by its ``.csv`` name); see the module docstring for the shapes.

    Raises:
        SourceError: no shape fits (the shapes expected and what was found are named), or unreadable JSON.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _csv(path, columns or {})
        return
    if suffix in (".jsonl", ".ndjson"):
        try:
            with path.open(encoding="utf-8-sig", newline="\n") as fh:  # streamed: it may not fit in memory
                yield from _json_lines(fh, path)
            return
        except UnicodeDecodeError as exc:
            raise SourceError(f"{path}: not UTF-8 text ({exc}); expected JSON Lines of post objects") from exc
        except _NotLines as not_lines:  # maybe one pretty-printed document under a JSON Lines name
            yield from _document_text(_read_text(path), path, not_lines.error)
            return
    yield from _document_text(_read_text(path), path, None)


def _document_text(text: str, path: Path, lines_error: SourceError | None) -> Iterator[RawPost]:
    """The posts of a whole file's text: a saved page, one JSON document, or JSON Lines under a ``.json`` name.
    ``lines_error``: the file was tried as JSON Lines first; raise that error if it is no JSON document either."""
    head = text.lstrip()[:1]
    if head == "<":
        yield from _html(text, path)
        return
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if lines_error is not None:
            raise lines_error from exc
        if exc.msg == "Extra data" and head == "{":  # several JSON values: a .json file holding JSON Lines
            try:
                yield from _json_lines(text.split("\n"), path)
            except _NotLines as not_lines:
                raise not_lines.error from exc
            return
        if not text.strip():
            return
        raise SourceError(f"{path}: not valid JSON ({exc}); expected one of: {'; '.join(SHAPES)}") from exc
    yield from _from_document(doc, path)


# ---------------------------------------------------------------------------------------------------- validation
def normalise_post(raw: RawPost) -> Post:
    """Check the required fields of ``raw`` and type its optional ones.

    Raises:
        SourceError: a required field missing or ill-typed, or a song id that is neither a string nor an integer
            (file, row and the field's name in the source are named).
    """
    f, where = raw.fields, (raw.file, raw.row)

    def required(name: str, convert, expected: str, default_key: str) -> Any:
        key, value = f.get(name, (default_key, _MISSING))
        if value is _MISSING:
            raise label_error(where[0], where[1], key, "<missing>", expected)
        out = convert(value)
        if out is None:
            raise label_error(where[0], where[1], key, value, expected)
        return out

    def optional(name: str, convert) -> Any:
        return convert(f[name][1]) if name in f else None

    names = {"web": ("stats.playCount", "stats.shareCount", "stats.commentCount", "createTime"),
             "app": ("statistics.play_count", "statistics.share_count", "statistics.comment_count", "create_time"),
             "yt-dlp": ("view_count", "repost_count", "comment_count", "timestamp")}.get(
        raw.layout, ("playCount", "shareCount", "commentCount", "createTime"))
    id_key = "aweme_id" if raw.layout == "app" else "id"
    id_key, vid = f.get("id", (id_key, _MISSING))
    if isinstance(vid, bool) or not isinstance(vid, (str, int)) or str(vid).strip() == "":
        raise label_error(where[0], where[1], id_key, "<missing>" if vid is _MISSING else vid,
                          "a non-empty string or integer id")
    count = "a non-negative integer count up to 2^53 (a number or a string of digits)"
    created = required("create_time", _as_epoch, "epoch seconds or an ISO-8601 time", names[3])
    plays = required("plays", _as_count, count, names[0])
    shares = required("shares", _as_count, count, names[1])
    comments = required("comments", _as_count, count, names[2])
    song = None
    if "song_id" in f:
        key, value = f["song_id"]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise label_error(where[0], where[1], key, value, "a string or an integer id")
        song = str(value).strip() or None
    scrape = None
    if "scrape_time" in f:
        scrape = required("scrape_time", _as_epoch, "epoch seconds or an ISO-8601 time", "scrapeTime")
    return Post(
        id=str(vid).strip(), create_time=created, create_time_field=f.get("create_time", (names[3],))[0],
        plays=plays, shares=shares, comments=comments, file=raw.file, row=raw.row, shape=raw.shape,
        media_stem=raw.media_stem,
        diggs=optional("diggs", _as_count), collects=optional("collects", _as_count), song_id=song,
        song_title=optional("song_title", _as_text), song_artist=optional("song_artist", _as_text),
        duration=optional("duration", _as_seconds), caption=optional("caption", _as_text),
        hashtags=optional("hashtags", _as_tags), author=optional("author", _as_text),
        author_followers=optional("author_followers", _as_count),
        author_following=optional("author_following", _as_count),
        author_hearts=optional("author_hearts", _as_count), author_videos=optional("author_videos", _as_count),
        author_verified=optional("author_verified", _as_bool), scrape_time=scrape,
    )
