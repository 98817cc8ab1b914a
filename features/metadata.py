"""The ``metadata`` stage's pure function: content-agnostic features known at upload time (MTAF Table 1).

:func:`metadata_record` turns a manifest row and the video's probe record into the stage's record (fields declared in
:data:`features.schema.STAGE_SCHEMAS` ``["metadata"]``). :data:`MANIFEST_COLUMNS` are the manifest columns it reads
(the stage's fingerprint hashes them); :data:`META_COLUMNS` are the record fields that form the ``meta`` modality.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["UPLOADER_COLUMNS", "MANIFEST_COLUMNS", "META_COLUMNS", "metadata_record"]

#: the TikTok adapter's uploader counts (manifest columns), log-scaled into the record as ``log_<column>``
UPLOADER_COLUMNS = ("author_followers", "author_following", "author_hearts", "author_videos")
#: manifest columns :func:`metadata_record` reads, besides the probe record
MANIFEST_COLUMNS = ("create_time", "desc", "duration_meta", "song_id", *UPLOADER_COLUMNS, "author_verified",
                    "hashtag_count", "caption_length")
#: record fields that form the ``meta`` modality (MTAF's content-agnostic features; counts are log(1 + n); a field a
#: dataset lacks is nan and becomes the training mean, i.e. 0 after standardising)
META_COLUMNS = ("duration", "width", "height", "aspect", "fps", "has_audio", "upload_hour", "upload_weekday",
                "desc_words", "hashtags", "caption_chars", *(f"log_{c}" for c in UPLOADER_COLUMNS), "verified")


def _log_count(value: Any) -> float:
    """log(1 + count) of a manifest count (MTAF log-scales its counts); nan when the dataset does not have it."""
    if isinstance(value, bool) or not _present(value):
        return float("nan")
    return float(np.log1p(max(float(value), 0.0)))


def _present(value: Any) -> bool:
    """The manifest has this value (not None, nan, or pandas' NA)."""
    return value is not None and not pd.isna(value)


def metadata_record(row: dict, probe_rec: dict) -> dict[str, Any]:
    """Content-agnostic features known at upload time (MTAF Table 1): geometry, duration, timing, caption, and —
    from whichever manifest columns the dataset has (the TikTok adapter keeps them) — the uploader's log-scaled
    follower / following / like / video counts, the verified flag, the hashtag count and the caption length.
    A dataset without an uploader column gets nan there (the pack builder turns nan into the training mean)."""
    created = row.get("create_time")
    ts = pd.Timestamp(created, unit="s", tz="UTC") if _present(created) else None
    desc = row.get("desc") if isinstance(row.get("desc"), str) else ""
    w, h = probe_rec.get("display_width") or 0, probe_rec.get("display_height") or 0
    return {
        "duration": float(probe_rec.get("duration") or 0.0),
        "width": int(w), "height": int(h),
        "aspect": float(w / h) if h else 0.0,
        "fps": float(probe_rec.get("fps") or 0.0),
        "has_audio": bool(probe_rec.get("has_audio")),
        "upload_hour": int(ts.hour) if ts is not None else -1,
        "upload_weekday": int(ts.weekday()) if ts is not None else -1,
        "desc_words": len(desc.split()),
        "hashtags": int(row["hashtag_count"]) if _present(row.get("hashtag_count")) else desc.count("#"),
        "caption_chars": int(row["caption_length"]) if _present(row.get("caption_length")) else len(desc),
        "has_song": isinstance(row.get("song_id"), str),
        **{f"log_{c}": _log_count(row.get(c)) for c in UPLOADER_COLUMNS},
        "verified": float(bool(row["author_verified"])) if _present(row.get("author_verified")) else float("nan"),
    }
