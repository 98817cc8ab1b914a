"""MTAF's early trend end to end: three yt-dlp scrapes of the same TikTok posts (each file with its own crawl
time, ``epoch``) → ``ingest``, then ``refresh`` per re-scrape → the scrape history → the ``early_trend`` pack
input → ``vidpipe train --model mtaf --task popularity_mtaf --set trend_len=5`` for one epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from features import open_store
from features.packs import pack_fingerprint
from tests.features.sources import tiktok_fixtures as fx
from tests.media_factory import make_video

DATASET = "tk"
T0 = 1_715_000_000  # the first post's creation time
SCRAPE_HOURS = (20, 44, 100)  # hours after T0 of the three scrapes
N_POSTS = 10  # post i is created 2·i hours after T0; the last one is in the third scrape only


def _post_id(i: int) -> str:
    return f"72612345000000{i:05d}"


def _scrape(src: Path, k: int) -> None:
    """Scrape ``k`` as yt-dlp writes it: one ``.info.json`` per post (yt-dlp rewrites them on a re-scrape). Post i
    grows linearly from its creation: per hour (1 + i)·(100 views, 10 likes, 1 comment, 2 reposts)."""
    epoch = T0 + SCRAPE_HOURS[k] * 3600
    for i in range(N_POSTS if k == 2 else N_POSTS - 1):
        hours = SCRAPE_HOURS[k] - 2 * i
        rate = (1 + i) * hours
        info = json.loads(fx.YTDLP_B)
        info.update({"id": _post_id(i), "timestamp": T0 + 2 * i * 3600, "epoch": epoch, "view_count": 100 * rate,
                     "like_count": 10 * rate, "comment_count": rate, "repost_count": 2 * rate,
                     "webpage_url": f"https://www.tiktok.com/@mika.moves/video/{_post_id(i)}"})
        (src / f"{_post_id(i)}.info.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_repeated_scrapes_feed_mtafs_early_trend(tmp_path, prefect_harness):
    from flows import extract_features, ingest, refresh
    from pipelines.cli import app

    src, root = tmp_path / "src", tmp_path / "root"
    src.mkdir()
    for i in range(3):  # a few posts have their video (the meta input); the others are missing sources
        make_video(src / f"{_post_id(i)}.mp4", duration=1.0, size=(32, 24))
    _scrape(src, 0)
    assert ingest(dataset=DATASET, source="tiktok", path=str(src), root=str(root))["snapshots"] == N_POSTS - 1
    extract_features(dataset=DATASET, root=str(root), stages=["probe", "metadata"])
    for k in (1, 2):
        _scrape(src, k)
        did = refresh(dataset=DATASET, root=str(root))["did"]
        assert did["ingest"]["snapshots"] == N_POSTS - (k < 2)
    store = open_store(root, DATASET)
    history = store.scrape_history()
    assert len(history) == 3 * (N_POSTS - 1) + 1
    assert sorted(set(history["scrape_time"])) == [float(T0 + h * 3600) for h in SCRAPE_HOURS]

    out = CliRunner().invoke(app, ["train", DATASET, "--model", "mtaf", "--task", "popularity_mtaf", "--epochs", "1",
                                   "--batch-size", "4", "--set", "trend_len=5", "--set", 'modalities=["meta"]',
                                   "--set", "dim=16", "--set", "heads=2", "--set", "hidden=16", "--root", str(root),
                                   "--json"])
    assert out.exit_code == 0, out.output
    run = store.runs().iloc[-1]
    assert run["modalities"] == ["meta", "early_trend"] and run["epochs_run"] == 1
    assert np.isfinite(run["metrics"]["mse"])
    arrays, _ = store.read_pack(run["pack"])
    ids = [str(v) for v in arrays["video_id"]]
    mask = dict(zip(ids, arrays["early_trend_mask"].tolist()))
    assert mask == {_post_id(i): i < N_POSTS - 1 for i in range(N_POSTS)}  # the last post was scraped once
    # post 0: y = 0.2·likes + 0.3·comments + 0.5·reposts = 3.3 per hour, so interpolation is exact; at 120 h (after
    # the last scrape, at 100 h) the last value is held
    np.testing.assert_allclose(arrays["early_trend"][ids.index(_post_id(0))],
                               np.log1p(3.3 * np.array([24, 48, 72, 96, 100])), rtol=1e-5)
    # post 3 (created at 6 h, rate 4): first scraped at 14 h, so 24 h lies between its first two scrapes
    np.testing.assert_allclose(arrays["early_trend"][ids.index(_post_id(3))],
                               np.log1p(4 * 3.3 * np.array([24, 48, 72, 94, 94])), rtol=1e-5)
    assert not arrays["early_trend"][ids.index(_post_id(N_POSTS - 1))].any()
    # the pack follows the scrape history: one more snapshot of a post makes it stale (refresh reports it)
    inputs = ["meta", "early_trend"]
    assert pack_fingerprint(store, inputs, "popularity_mtaf") == run["pack"]
    with store.lock():
        store.append_scrape_history(history[history["video_id"] == _post_id(1)].assign(scrape_time=float(T0 + 9e5)))
    assert pack_fingerprint(store, inputs, "popularity_mtaf") != run["pack"]
