"""features/trend.py: snapshots from a scrape's manifest, one post's series from its snapshots (interpolation, order,
duplicates, falling counts, posts scraped once), the dataset-level ``early_trend`` input and its digest."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.sources.tiktok import read_tiktok
from features.trend import (SNAPSHOT_COLUMNS, TREND_HOURS, early_trend, history_digest, mtaf_score,
                            restated_snapshots, scrape_snapshots, trend_series)
from names import EARLY_TREND
from tests.features.sources import tiktok_fixtures as fx

HOURS = (24.0, 48.0)


def test_series_interpolates_between_snapshots_from_zero_at_posting_and_holds_the_last():
    # y = 10 at 12 h, 40 at 36 h: 24 h lies halfway (25); 48 h is after the last snapshot (held at 40)
    got = trend_series([12.0, 36.0], [10.0, 40.0], hours=HOURS)
    np.testing.assert_allclose(got, np.log1p([25.0, 40.0]))
    # the zero at posting: a first snapshot at 48 h with y = 80 reads 40 at 24 h
    np.testing.assert_allclose(trend_series([48.0, 60.0], [80.0, 90.0], hours=HOURS), np.log1p([40.0, 80.0]))


def test_out_of_order_duplicate_and_falling_snapshots():
    ordered = trend_series([12.0, 36.0, 50.0], [10.0, 40.0, 60.0], hours=HOURS)
    np.testing.assert_allclose(trend_series([50.0, 12.0, 36.0], [60.0, 10.0, 40.0], hours=HOURS), ordered)
    # one scrape time recorded twice: the row recorded last wins
    np.testing.assert_allclose(trend_series([12.0, 36.0, 12.0], [99.0, 40.0, 10.0], hours=HOURS),
                               np.log1p([25.0, 40.0]))
    # a count that falls (40 → 30) is held at its running maximum
    np.testing.assert_allclose(trend_series([12.0, 36.0, 40.0], [10.0, 40.0, 30.0], hours=HOURS),
                               np.log1p([25.0, 40.0]))
    # snapshots before posting or with a missing count are ignored
    np.testing.assert_allclose(trend_series([-3.0, 12.0, 20.0, 36.0], [5.0, 10.0, math.nan, 40.0], hours=HOURS),
                               np.log1p([25.0, 40.0]))


@pytest.mark.parametrize("times,scores", [
    ([12.0], [10.0]),  # scraped once
    ([12.0, 12.0], [10.0, 11.0]),  # twice, at one time
    ([49.0, 70.0], [10.0, 20.0]),  # first scraped after the window (48 h here)
    ([12.0, 36.0], [math.nan, 40.0]),  # one usable snapshot
    ([], []),
])
def test_posts_without_two_usable_snapshots_in_reach_have_no_series(times, scores):
    assert trend_series(times, scores, hours=HOURS) is None


@pytest.mark.parametrize("hours", [(), (48.0, 24.0), (0.0, 24.0), (24.0, 24.0)])
def test_bad_hours_are_refused(hours):
    with pytest.raises(ValueError, match="hours="):
        trend_series([1.0, 2.0], [1.0, 2.0], hours=hours)


def test_snapshot_times_and_scores_must_pair_up():
    with pytest.raises(ValueError, match="hours_since_post has shape"):
        trend_series([1.0, 2.0], [1.0], hours=HOURS)


def _history(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["video_id", "scrape_time", "create_time", "play_count", "digg_count",
                                        "comment_count", "share_count", "collect_count"])
    for col in SNAPSHOT_COLUMNS[3:]:
        frame[col] = frame[col].astype("Int64")
    return frame


def test_early_trend_reads_eq1_scores_with_collects_as_favourites_and_masks_the_rest():
    h = 3600.0
    table = _history([
        ("a", 12 * h, 0.0, 100, 7, 10, 4, 20),  # y = 0.2·20 + 0.3·10 + 0.5·4 = 9
        ("once", 30 * h, 0.0, 5, 1, 1, 1, 1),
        ("a", 36 * h, 0.0, 900, 70, 30, 20, 60),  # y = 12 + 9 + 10 = 31
        ("b", 30 * h, 1000.0, 50, 5, None, 2, 2),  # a missing comment count: not usable
        ("b", 40 * h, 1000.0, 60, 6, 4, 2, 3),
    ])
    series, mask = early_trend(table, ["once", "a", "b", "never"], hours=HOURS)
    assert series.shape == (4, 2) and series.dtype == np.float32 and mask.tolist() == [False, True, False, False]
    np.testing.assert_allclose(series[1], np.log1p([mtaf_score(20, 10, 4) + (31 - 9) / 2, 31.0]), rtol=1e-6)
    assert not series[[0, 2, 3]].any()  # no series: zeros, never values that look like data
    # no collect counts anywhere: likes are the favourites (as mtaf_popularity does)
    likes = table.assign(collect_count=pd.Series([pd.NA] * len(table), dtype="Int64"))
    series, mask = early_trend(likes, ["a"], hours=HOURS)
    np.testing.assert_allclose(series[0, 1], np.log1p(mtaf_score(70, 30, 20)), rtol=1e-6)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['share_count'\]"):
        early_trend(table.drop(columns="share_count"), ["a"])


def test_snapshots_of_a_ytdlp_scrape_carry_its_own_crawl_time(tmp_path):
    for i, text in enumerate((fx.YTDLP_A, fx.YTDLP_B)):
        (tmp_path / f"p{i}.info.json").write_text(text, encoding="utf-8")
    videos, _ = read_tiktok(tmp_path, scrape_time=1.0)  # the files' own `epoch` wins over the argument
    snaps = scrape_snapshots(videos).set_index("video_id")
    assert list(snaps.reset_index().columns) == list(SNAPSHOT_COLUMNS)
    a = snaps.loc["7261234500000000001"]
    assert (a["scrape_time"], a["create_time"]) == (1716000000.0, 1715000000.0)
    assert (a["play_count"], a["digg_count"], a["comment_count"], a["share_count"]) == (250000, 31000, 410, 800)
    assert pd.isna(a["collect_count"])  # yt-dlp has no favourites count
    assert scrape_snapshots(pd.DataFrame({"video_id": ["x"], "valence": [1.0]})).empty  # not a scrape


def test_history_digest_follows_only_the_videos_asked_for():
    table = _history([("a", 1.0, 0.0, 1, 1, 1, 1, 1), ("b", 1.0, 0.0, 1, 1, 1, 1, 1)])
    base = history_digest(table, ["a"])
    bumped = table.copy()
    bumped.loc[1, "play_count"] = 2
    assert history_digest(bumped, ["a"]) == base
    assert history_digest(bumped, ["a", "b"]) != history_digest(table, ["a", "b"])
    assert history_digest(table.iloc[:0], ["a"]) == "no-scrape-history" == history_digest(pd.DataFrame(), ["a"])


def test_the_model_reads_the_key_and_length_the_pack_writes():
    from models import create_model

    model = create_model("mtaf", modalities=(), trend_len=len(TREND_HOURS))  # models/mtaf.py documents trend_len=5
    series, mask = early_trend(pd.DataFrame(columns=list(SNAPSHOT_COLUMNS)), ["a", "b"])
    assert model.inputs == (EARLY_TREND,) and series.shape == (2, 5) and mask.shape == (2,)


def _reference(times, scores, hours):
    """The rules written out one post at a time with np.interp (an independent oracle for the vectorised code)."""
    t, y = np.asarray(times, dtype=float), np.asarray(scores, dtype=float)
    ok = np.isfinite(t) & np.isfinite(y) & (t >= 0)
    last = {}
    for ti, yi in zip(t[ok], y[ok]):
        last[ti] = yi  # the last recorded of equal times
    if len(last) < 2 or min(last) > hours[-1]:
        return None
    ts = np.array(sorted(last))
    ys = np.maximum.accumulate([last[x] for x in ts])
    return np.log1p(np.interp(hours, np.r_[0.0, ts], np.r_[0.0, ys]))


def test_many_posts_at_once_match_the_rules_one_post_at_a_time():
    rng = np.random.default_rng(3)
    rows = []
    for i in range(60):  # 0–5 snapshots each: repeated times, shuffled order, falling and missing counts
        times = rng.choice([6.0, 20.0, 30.0, 55.0, 100.0, 150.0], size=rng.integers(0, 6))
        for t in times:
            comments = None if rng.random() < 0.1 else int(rng.integers(0, 500))
            rows.append((f"v{i}", 1e6 + t * 3600, 1e6, 0, int(rng.integers(0, 500)), comments,
                         int(rng.integers(0, 500)), None))
    table = _history(rows)
    ids = [f"v{i}" for i in range(60)] + ["absent"]
    series, mask = early_trend(table, ids, hours=TREND_HOURS)
    for i, vid in enumerate(ids):
        mine = table[table["video_id"] == vid]
        scores = mtaf_score(mine["digg_count"].astype(float), mine["comment_count"].astype(float),
                            mine["share_count"].astype(float))
        want = _reference((mine["scrape_time"] - 1e6) / 3600, scores, np.array(TREND_HOURS))
        assert mask[i] == (want is not None), vid
        np.testing.assert_allclose(series[i], want if want is not None else 0.0, rtol=1e-6, err_msg=vid)
    assert 10 < mask.sum() < 60  # both kinds of post occur


def test_a_rescrape_read_with_a_stale_scrape_time_is_named():
    history = _history([("a", 10.0, 0.0, 1, 1, 1, 1, None), ("b", 10.0, 0.0, 1, 1, 1, 1, None)])
    same = history.copy()
    assert restated_snapshots(history, same) == []  # the same scrape ingested twice: nothing restated
    stale = _history([("a", 10.0, 0.0, 9, 9, 9, 9, None), ("b", 10.0, 0.0, 1, 1, 1, 1, None),
                      ("c", 10.0, 0.0, 5, 5, 5, 5, None)])
    assert restated_snapshots(history, stale) == ["a"]  # b unchanged, c new
    assert restated_snapshots(history.iloc[:0], stale) == [] == restated_snapshots(history, stale.iloc[:0])
