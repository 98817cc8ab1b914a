"""MTAF's early popularity trend, built from repeated scrapes of the same posts (paper 003, Ou et al.).

The paper (§2.3 "Temporal Trend Representations"; results in its Table 4) feeds a bi-directional GRU with each
micro-video's early popularity series — its eq. 1 score ``y = 0.2·favourites + 0.3·comments + 0.5·shares`` as it
grows after release — and predicts the score on day 6 (§2.4). A scrape sees a post's counts at one moment, so
vidpipe records every scrape of a dataset as **snapshots** (:func:`scrape_snapshots`: one row per post and scrape,
stored by :meth:`features.store.Store.append_scrape_history` at each ``vidpipe ingest`` / ``vidpipe refresh``) and
turns a post's snapshots into the series at fixed hours after posting (:func:`trend_series`, :func:`early_trend`).
The synthetic source's ``rescrapes`` option writes such a history, with a planted growth curve per post
(:mod:`features.sources.synthetic`, "Early popularity trend"), so MTAF's Table 4 runs without a real re-scrape.

Where vidpipe departs from the paper (which does not say how its series was sampled):

* **Steps.** :data:`TREND_HOURS` = 24, 48, 72, 96, 120 h — the score at the end of days 1–5, the days before the
  paper's day-6 target. The paper's platform logged the series; vidpipe **interpolates** it linearly in time between
  snapshots, with the post at zero counts at its creation time, and holds the last snapshot's counts after it (a
  lower bound: counts only grow).
* **Scale.** Values are ``log(1 + y)``, as the paper log-scales counts (§2.3, content-agnostic representations).
* **Target.** vidpipe's ``popularity_mtaf`` label is eq. 1 at the latest scrape
  (:func:`features.packs.mtaf_popularity`), not at day 6. When the latest scrape falls inside the window, the series
  ends on that scrape's own score, i.e. on the unnormalised label: the trend then predicts the label almost exactly,
  which a reader of Table 4 should know before comparing figures. Scrapes that run past day 5 avoid it.

Data rules (:func:`trend_series`):

* **Scraped once** (or all snapshots at one time): no series — the video's ``early_trend_mask`` is False and MTAF
  masks its trend branch. A single snapshot plus the zero at creation would be a straight line through the label.
* **No snapshot inside the window** (first scraped after :data:`TREND_HOURS`' last hour): no series either; the early
  trend was not observed.
* **Out of order** snapshots are sorted by scrape time; **duplicates** (one scrape time twice) keep the row recorded
  last; a snapshot **before the post's creation** or with a missing count is ignored.
* **Counts that go down** between scrapes (TikTok removes fake likes; pages round "1.2M"): the score is held at its
  running maximum — cumulative counts never fall, so a drop is read as noise in the later reading, not as lost
  popularity.

Shapes: ``early_trend`` (N, T_e) float32 with T_e = len(hours), ``early_trend_mask`` (N,) bool. The pack key
``early_trend`` is :data:`names.EARLY_TREND`, the name the MTAF model reads.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["TREND_HOURS", "TREND_VERSION", "SNAPSHOT_COLUMNS", "MTAF_WEIGHTS", "favourite_column",
           "mtaf_score", "scrape_snapshots", "restated_snapshots", "trend_series", "early_trend", "history_digest"]

#: hours after posting at which the series is read (days 1–5: the paper predicts the day-6 score)
TREND_HOURS: tuple[float, ...] = (24.0, 48.0, 72.0, 96.0, 120.0)
#: code version of the series: bump when :func:`early_trend` gives other values for the same snapshots
TREND_VERSION = 1
#: columns of the scrape history table: the post, when it was scraped (epoch s), when it was posted (epoch s), counts
SNAPSHOT_COLUMNS = ("video_id", "scrape_time", "create_time", "play_count", "digg_count", "comment_count",
                    "share_count", "collect_count")
#: eq. 1 weights of (favourites, comments, shares)
MTAF_WEIGHTS = (0.2, 0.3, 0.5)
_COUNTS = SNAPSHOT_COLUMNS[3:]


def favourite_column(table: pd.DataFrame) -> str | None:
    """The column holding eq. 1's favourites: ``collect_count`` (TikTok's "favorites") where the table has any, else
    ``digg_count`` (likes) where it has any, else ``None``."""
    return next((c for c in ("collect_count", "digg_count") if c in table.columns and table[c].notna().any()), None)


def mtaf_score(favourites, comments, shares):
    """MTAF eq. 1, y = 0.2·favourites + 0.3·comments + 0.5·shares (element-wise on numbers, arrays or Series)."""
    w_fav, w_comment, w_share = MTAF_WEIGHTS
    return w_fav * favourites + w_comment * comments + w_share * shares


def scrape_snapshots(videos: pd.DataFrame) -> pd.DataFrame:
    """One snapshot row per post of an ingested scrape: :data:`SNAPSHOT_COLUMNS`, counts as nullable integers.

    ``videos`` is a manifest; the TikTok adapter gives ``scrape_time`` (the dump's own crawl time — ``scrapeTime``,
    yt-dlp's ``epoch`` — else ``tiktok_scrape.json``, else ``--scrape-time``; it refuses a scrape with none), the
    post's ``create_time`` and the counts. A manifest without ``scrape_time``, ``create_time`` or the play / comment
    / share counts (a source other than TikTok) has no snapshots: an empty frame with the columns. A count the scrape
    lacks (``collect_count`` in many shapes) is missing (``<NA>``).
    """
    needed = ("video_id", "scrape_time", "create_time", "play_count", "comment_count", "share_count")
    if any(c not in videos.columns for c in needed):
        return _empty_snapshots()
    out = pd.DataFrame({"video_id": videos["video_id"].astype(str).to_numpy(),
                        "scrape_time": videos["scrape_time"].astype("float64").to_numpy(),
                        "create_time": videos["create_time"].astype("float64").to_numpy()})
    for col in _COUNTS:
        out[col] = (videos[col] if col in videos.columns else pd.Series(pd.NA, index=videos.index)).astype(
            "Int64").to_numpy()
    return out


def restated_snapshots(history: pd.DataFrame, snapshots: pd.DataFrame) -> list[str]:
    """Ids of posts whose snapshot repeats a (post, scrape time) of ``history`` with other counts — the sign of a
    re-scrape read with a stale scrape time (e.g. ``--scrape-time`` recorded at ingest and reused by refresh), whose
    counts would replace the earlier ones instead of adding a point to the series. Sorted."""
    key = ["video_id", "scrape_time"]
    if history.empty or snapshots.empty:
        return []
    cols = [c for c in SNAPSHOT_COLUMNS if c in history.columns and c in snapshots.columns]
    both = history[cols].drop_duplicates(key, keep="last").merge(snapshots[cols], on=key, suffixes=("_old", ""))
    counts = [c for c in cols if c in _COUNTS]
    differ = np.zeros(len(both), dtype=bool)
    for c in counts:
        old, new = both[f"{c}_old"].astype("Float64"), both[c].astype("Float64")
        differ |= ((old != new).fillna(False) | (old.isna() != new.isna())).to_numpy(dtype=bool)
    return sorted(set(both.loc[differ, "video_id"].astype(str)))


def _empty_snapshots() -> pd.DataFrame:
    frame = pd.DataFrame({"video_id": pd.Series([], dtype=object), "scrape_time": pd.Series([], dtype="float64"),
                          "create_time": pd.Series([], dtype="float64")})
    for col in _COUNTS:
        frame[col] = pd.Series([], dtype="Int64")
    return frame


def _check_hours(hours: Sequence[float]) -> np.ndarray:
    at = np.asarray(hours, dtype=np.float64)
    if at.ndim != 1 or at.size == 0 or not np.all(at > 0) or np.any(np.diff(at) <= 0):
        raise ValueError(f"hours={tuple(hours)!r}: expected increasing positive hours after posting")
    return at


def _series(post: np.ndarray, t: np.ndarray, y: np.ndarray, n_posts: int,
            at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rules of the module docstring for many posts at once (vectorised: one pass per read-out hour).

    Shapes:
        post (R,) int post index in [0, n_posts), t (R,) hours after posting, y (R,) eq. 1 scores, rows in recorded
        order; at (T_e,) → log(1 + y) (n_posts, T_e) float64 (zeros where there is no series), valid (n_posts,) bool
    """
    ok = np.isfinite(t) & np.isfinite(y) & (t >= 0) & (y >= 0)
    post, t, y, pos = post[ok], t[ok], y[ok], np.flatnonzero(ok)
    order = np.lexsort((-pos, t, post))  # by post, then time, the last recorded first among equal times
    post, t, y = post[order], t[order], y[order]
    keep = np.ones(post.size, dtype=bool)
    keep[1:] = (post[1:] != post[:-1]) | (t[1:] != t[:-1])  # one snapshot per (post, time): the last recorded
    post, t, y = post[keep], t[keep], y[keep]
    y = pd.Series(y).groupby(post).cummax().to_numpy()  # cumulative counts never fall
    count = np.bincount(post, minlength=n_posts)
    start = np.cumsum(count) - count
    first_t = np.full(n_posts, np.inf)
    first_t[count > 0] = t[start[count > 0]]
    valid = (count >= 2) & (first_t <= at[-1])
    out = np.zeros((n_posts, at.size))
    if not valid.any():
        return out, valid
    # per post, k = how many snapshots are at or before each hour (a search in (post, time) order)
    span = float(max(t.max(), at[-1])) + 1.0
    key = post * span + t
    g = np.flatnonzero(valid)
    for j, h in enumerate(at):
        k = np.searchsorted(key, g * span + h, side="right") - start[g]
        last = start[g] + count[g] - 1
        right = np.minimum(start[g] + k, last)  # the first snapshot after h (the last one when none is)
        left = right - 1
        t0 = np.where(k > 0, t[np.maximum(left, 0)], 0.0)  # before the first snapshot: zero counts at posting
        y0 = np.where(k > 0, y[np.maximum(left, 0)], 0.0)
        t1, y1 = t[right], y[right]
        frac = np.where(t1 > t0, (h - t0) / np.where(t1 > t0, t1 - t0, 1.0), 1.0)
        value = np.where(k >= count[g], y[last], y0 + np.clip(frac, 0.0, 1.0) * (y1 - y0))  # after the last: held
        out[g, j] = np.log1p(value)
    return out, valid


def trend_series(hours_since_post: Sequence[float], scores: Sequence[float], *,
                 hours: Sequence[float] = TREND_HOURS) -> np.ndarray | None:
    """One post's series: ``log(1 + y)`` at ``hours`` after posting, from its snapshots (module docstring rules).

    Args:
        hours_since_post: when each snapshot was taken, in hours after the post's creation, in the order recorded
            (any order in time; the last recorded of equal times wins).
        scores: the eq. 1 score y at each snapshot (nan for a snapshot missing a count).
        hours: the read-out hours, increasing and positive.

    Returns:
        (T_e,) float64 with T_e = len(hours), or ``None`` when the post has fewer than two usable snapshot times or
        none inside the window (``hours[-1]``).

    Raises:
        ValueError: ``hours_since_post`` and ``scores`` differ in length, or ``hours`` is empty, not increasing or
            not positive.
    """
    at = _check_hours(hours)
    t = np.asarray(hours_since_post, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64)
    if t.shape != y.shape or t.ndim != 1:
        raise ValueError(f"hours_since_post has shape {t.shape} and scores {y.shape}; expected equal 1-D shapes")
    series, valid = _series(np.zeros(t.size, dtype=np.int64), t, y, 1, at)
    return series[0] if valid[0] else None


def early_trend(snapshots: pd.DataFrame, video_ids: Sequence[str], *,
                hours: Sequence[float] = TREND_HOURS) -> tuple[np.ndarray, np.ndarray]:
    """The ``early_trend`` input of ``video_ids`` from a scrape history table (:data:`SNAPSHOT_COLUMNS`).

    Favourites are :func:`favourite_column` of the whole table (one choice for every post, as in
    :func:`features.packs.mtaf_popularity`); a post's hours are counted from its latest snapshot's ``create_time``.
    Rows are used in table order (the order they were recorded) for the duplicate rule of :func:`trend_series`.

    Shapes:
        → (N, T_e) float32 series (zeros where there is none), (N,) bool mask; N = len(video_ids), T_e = len(hours)

    Raises:
        ValueError: ``snapshots`` lacks a column of :data:`SNAPSHOT_COLUMNS` other than a favourite count, or
            ``hours`` is empty, not increasing or not positive.
    """
    at = _check_hours(hours)
    n = len(video_ids)
    missing = [c for c in SNAPSHOT_COLUMNS if c not in snapshots.columns and c not in ("digg_count", "collect_count")]
    if missing:
        raise ValueError(f"snapshots lacks column(s) {missing}; expected the scrape history columns "
                         f"{list(SNAPSHOT_COLUMNS)}")
    fav = favourite_column(snapshots)
    if fav is None or snapshots.empty:
        return np.zeros((n, at.size), dtype=np.float32), np.zeros(n, dtype=bool)
    row_of = pd.Series(np.arange(n), index=pd.Index([str(v) for v in video_ids]))
    post = row_of.reindex(snapshots["video_id"].astype(str).to_numpy()).to_numpy(dtype=np.float64)
    mine = np.isfinite(post) & np.isfinite(snapshots["scrape_time"].astype("float64").to_numpy())  # other videos out
    rows = snapshots[mine]
    post = post[mine].astype(np.int64)
    scrape = rows["scrape_time"].astype("float64").to_numpy()
    created = rows["create_time"].astype("float64").to_numpy()
    latest = pd.Series(scrape).groupby(post).idxmax()  # each post's latest snapshot gives its creation time
    t = (scrape - pd.Series(created[latest.to_numpy()], index=latest.index).reindex(post).to_numpy()) / 3600.0
    counts = rows[[fav, "comment_count", "share_count"]].astype("float64")  # <NA> → nan
    y = mtaf_score(counts[fav], counts["comment_count"], counts["share_count"]).to_numpy()
    series, valid = _series(post, t, y, n, at)
    return series.astype(np.float32), valid


def history_digest(snapshots: pd.DataFrame, video_ids: Sequence[str]) -> str:
    """A content digest of the snapshots of ``video_ids`` (rows in recorded order), for pack fingerprints: the series
    of those videos changes only when it does."""
    if snapshots.empty or "video_id" not in snapshots.columns:
        return "no-scrape-history"
    rows = snapshots[snapshots["video_id"].astype(str).isin(set(map(str, video_ids)))]
    rows = rows[[c for c in SNAPSHOT_COLUMNS if c in rows.columns]].reset_index(drop=True)
    h = hashlib.blake2b(digest_size=16)
    h.update(",".join(rows.columns).encode())
    h.update(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())
    return h.hexdigest()
