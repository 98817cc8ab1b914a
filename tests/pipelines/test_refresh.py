"""``refresh``: plan (dry run changes nothing), run only what changed (features, graph), report stale packs, then idle.

The dataset is a small TikTok scrape: 40 posts over 5 songs (enough links for the GAT's link split), of which only 4
have a downloaded video — as in real scrapes; the others are recorded once as missing sources and never worked on. Between the first
extraction and the refresh one post (with video) is added, one video file is re-encoded with other content, and one
post is deleted together with its video.

Repeated scrapes of the same posts, recorded by ``ingest`` and ``refresh``, feed MTAF's ``early_trend`` input; the
synthetic source's re-scrapes give every post its planted early trend.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import open_store
from features.packs import pack_fingerprint
from pipelines.extract import ExtractConfig
from tests.features.sources import tiktok_fixtures as fx
from tests.media_factory import make_video

DATASET = "tk"
T0 = 1_700_000_000
PER_VIDEO = ("probe", "frames", "audio", "transcripts", "metadata")
CFG = ExtractConfig(profiles=("uniform",), n_frames=4, n_segments=2, asr="none", clip_frames=16)
GRAPH = {"epochs": 2, "hidden": 8, "out": 4, "heads": 1, "layers": 1}


def _write_posts(src: Path, posts: dict[str, tuple[str, int]]) -> None:
    lines = [json.dumps({"id": vid, "createTime": T0, "music": {"id": song}, "desc": "a #tag",
                         "stats": {"playCount": plays, "shareCount": 0, "commentCount": 0, "diggCount": 0}})
             for vid, (song, plays) in posts.items()]
    (src / "posts.jsonl").write_text("\n".join(lines) + "\n")
    (src / "tiktok_scrape.json").write_text(json.dumps({"scrape_time": T0 + 2 * 86400}))


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def tiktok(tmp_path, prefect_harness):
    """Ingested, extracted and graph-embedded; four recorded runs (their packs: two popularity, one emotion, which
    two training seeds share)."""
    from flows import extract_features, ingest, pretrain_graph

    src, root = tmp_path / "src", tmp_path / "root"
    src.mkdir()
    # p00 / p39 hold the min / max popularity, so later edits leave every other normalised label unchanged
    posts = {f"p{i:02d}": (f"s{i % 5}", 1 if i == 0 else 10 ** 6 if i == 39 else 100 + 10 * i) for i in range(40)}
    _write_posts(src, posts)
    for i in range(1, 5):
        make_video(src / f"p{i:02d}.mp4", duration=1.5, size=(64, 48), tone_hz=300 + 150 * i)
    ingest(dataset=DATASET, source="tiktok", path=str(src), root=str(root))
    extract_features(dataset=DATASET, root=str(root), config=CFG)
    pretrain_graph(dataset=DATASET, root=str(root), **GRAPH)
    store = open_store(root, DATASET)
    runs = {}
    for task, inputs in (("popularity", ["audio_seg"]), ("popularity", ["audio", "graph"]), ("emotion", ["audio"])):
        run_id = f"{task}-{'-'.join(inputs)}"
        runs[run_id] = pack_fingerprint(store, inputs, task)
        store.save_run(run_id, {"run_id": run_id, "model": "any", "task": task, "modalities": inputs,
                                "pack": runs[run_id], "train": {"seed": 0}, "created": f"2026-01-01T00:00:0{len(runs)}"})
    store.save_run("emotion-audio-seed1", {"run_id": "emotion-audio-seed1", "model": "any", "task": "emotion",
                                           "modalities": ["audio"], "pack": runs["emotion-audio"], "train": {"seed": 1},
                                           "created": "2026-01-01T00:00:09"})
    return {"src": src, "root": root, "posts": posts, "runs": runs}


def test_refresh_plans_runs_only_what_changed_then_does_nothing(tiktok, monkeypatch):
    import pipelines.ingest
    import pipelines.refresh
    from flows import refresh
    from pipelines.cli import app

    src, root, posts, runs = tiktok["src"], tiktok["root"], tiktok["posts"], tiktok["runs"]
    store = open_store(root, DATASET)
    graph_before = store.artifact_fingerprint("graph")
    probe_before = store.fingerprints("probe")
    # the change: add p40 (with video), re-encode p02, delete p03 (post and video)
    posts = {**{k: v for k, v in posts.items() if k != "p03"}, "p40": ("s1", 5000)}
    _write_posts(src, posts)
    (src / "p03.mp4").unlink()
    make_video(src / "p40.mp4", duration=1.5, size=(64, 48), tone_hz=1500)
    make_video(src / "p02.mp4", duration=2.0, size=(64, 48), tone_hz=1900)

    # 1. dry run through the CLI: exactly that plan, and not one byte of the store changes
    before = _snapshot(root / DATASET)
    out = CliRunner().invoke(app, ["refresh", DATASET, "--dry-run", "--json", "--root", str(root)])
    assert out.exit_code == 0, out.output
    dry = json.loads(out.stdout.strip().splitlines()[-1])
    plan = dry["plan"]
    assert dry["dry_run"] and dry["did"] is None
    assert plan["videos"] == {"added": ["p40"], "removed": ["p03"], "changed": ["p02"], "pending": [],
                              "unchanged": 38}
    assert plan["edges"] == {"added": 1, "removed": 1}
    assert {s: plan["extract"][s] for s in PER_VIDEO} == {s: ["p02", "p40"] for s in PER_VIDEO}
    assert plan["config"]["n_frames"] == 4 and plan["config"]["profiles"] == ["uniform"]  # the store's parameters
    assert plan["graph"]["action"] == "retrain" and plan["graph"]["params"]["hidden"] == 8
    states = {tuple(p["runs"]): p["state"] for p in plan["packs"]}
    assert states == {("popularity-audio_seg",): "will be stale", ("popularity-audio-graph",): "will be stale",
                      ("emotion-audio", "emotion-audio-seed1"): "fresh"}
    assert _snapshot(root / DATASET) == before

    # 2. the real refresh: re-ingest, extract just p02 and p40, drop p03, retrain the graph, report stale packs
    untouched = {p: h for p, h in before.items() if "p01" in p or "p04" in p}
    reads = []  # the source is read by the plan; the run records the manifest the plan read
    with monkeypatch.context() as patched:
        for module in (pipelines.refresh, pipelines.ingest):
            def counted(kind, *args, _real=module.load_source, **kw):
                reads.append(kind)
                return _real(kind, *args, **kw)

            patched.setattr(module, "load_source", counted)
        result = refresh(dataset=DATASET, root=str(root))
    assert reads == ["tiktok"]
    did = result["did"]
    assert result["plan"]["videos"] == plan["videos"]
    assert did["ingest"]["added"] == 1 and did["ingest"]["removed"] == 1
    for stage in PER_VIDEO:  # p01, p04 skipped by fingerprint; the 36 video-less posts are missing sources, in no count
        assert did["extract"][stage] == {"done": 2, "skipped": 2, "failed": 0}, (stage, did["extract"])
    assert open_store(root, DATASET).summary()["missing"] == 36
    assert did["removed_outputs"] == 6  # p03's five per-video outputs and its bag of words
    assert did["graph"]["cached"] is False
    assert sorted(did["stale_packs"]) == sorted([runs["popularity-audio_seg"], runs["popularity-audio-graph"]])
    store = open_store(root, DATASET)
    assert sorted(store.entries("probe")) == ["p01", "p02", "p04", "p40"]
    assert store.fingerprints("probe")["p02"] != probe_before["p02"]
    assert store.fingerprints("probe")["p01"] == probe_before["p01"]
    after = _snapshot(root / DATASET)
    assert {p: after.get(p) for p in untouched} == untouched  # unchanged videos' outputs: not one byte rewritten
    assert store.artifact_fingerprint("graph") != graph_before
    _, meta = store.read_artifact("graph")
    assert "p40" in meta["video_ids"] and "p03" not in meta["video_ids"] and meta["n_edges"] == 40
    assert pack_fingerprint(store, ["audio"], "emotion") == runs["emotion-audio"]

    # 3. a second refresh finds nothing to do and writes nothing but its memos (cache/: safe to delete); a third
    #    writes nothing at all
    before = _snapshot(root / DATASET)
    again = refresh(dataset=DATASET, root=str(root))
    assert again["plan"]["nothing_to_do"] and again["did"]["extract"] == {} and again["did"]["graph"] is None
    assert again["plan"]["videos"]["unchanged"] == 40
    data = _snapshot(root / DATASET)
    assert {p: h for p, h in data.items() if not p.startswith("cache/")} == {
        p: h for p, h in before.items() if not p.startswith("cache/")}
    out = CliRunner().invoke(app, ["refresh", DATASET, "--root", str(root)])
    assert out.exit_code == 0 and "nothing changed: nothing to do" in out.stdout, out.output
    assert _snapshot(root / DATASET) == data


def test_refresh_needs_a_recorded_source_and_valid_parameters(tmp_path, prefect_harness):
    from prefect.exceptions import ParameterTypeError

    from flows import refresh

    store = open_store(tmp_path, "bare", create=True)
    store.write_manifest(pd.DataFrame({"video_id": ["a"], "source_path": [None]}))  # no source recorded
    with pytest.raises(ValueError, match=r"dataset='bare'.*vidpipe ingest bare"):
        refresh(dataset="bare", root=str(tmp_path))
    with pytest.raises(ParameterTypeError, match="dataset"):
        refresh(dataset="../bare", root=str(tmp_path))


def test_planning_on_a_read_only_store_hashes_but_writes_nothing(tmp_path):
    from features.store import StoreError
    from pipelines.extract import plan_extraction

    store = open_store(tmp_path, "x", create=True)
    make_video(tmp_path / "v.mp4", duration=1.0, size=(32, 24))
    store.write_manifest(pd.DataFrame({"video_id": ["v"], "source_path": [str(tmp_path / "v.mp4")]}))
    before = _snapshot(tmp_path / "x")
    view = store.as_read_only()
    items, _, hashed = plan_extraction(view, view.manifest(), CFG, ["probe"])
    assert [it["row"]["video_id"] for it in items] == ["v"] and hashed == 1  # digested; the memo is not saved
    with pytest.raises(StoreError, match=r"Store\.write_table: .* read-only"):
        view.write_table("digests", pd.DataFrame({"path": ["a"]}))
    assert _snapshot(tmp_path / "x") == before


# MTAF's early trend end to end: repeated scrapes, recorded by ingest and refresh, become the scrape history and
# the ``early_trend`` pack input; the synthetic source's re-scrapes, recorded the same way, give the planted series.
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
    """Three yt-dlp scrapes of the same TikTok posts (each file with its own crawl time, ``epoch``) → ``ingest``, then
    ``refresh`` per re-scrape → the scrape history → the ``early_trend`` pack input → ``vidpipe train --model mtaf
    --task popularity_mtaf --set trend_len=5`` for one epoch."""
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


def test_synthetic_rescrapes_give_every_post_its_planted_early_trend(synthetic_store):
    """The synthetic source's re-scrapes, ingested like a real dataset's successive scrapes, put each post's counts at
    its re-scrape times into the scrape history; the series features.trend builds from them follows the planted growth
    curve and its last point carries MTAF's label (features.sources.synthetic, "Early popularity trend")."""
    import pandas as pd

    from features.trend import TREND_HOURS, early_trend
    from tests.pipelines.conftest import DATASET as SYN, N_VIDEOS, RESCRAPES

    store = open_store(synthetic_store, SYN)
    gt = pd.read_parquet(synthetic_store / "_sources" / SYN / "ground_truth.parquet").set_index("video_id")
    history = store.scrape_history()
    assert len(history) == N_VIDEOS + gt["rescrape_hours"].map(len).sum()
    assert (history.groupby("video_id").size() == 1 + gt["rescrape_hours"].map(len)).all()
    assert gt["rescrape_hours"].map(len).max() == RESCRAPES
    ids = list(gt.index)
    series, mask = early_trend(history, ids)
    assert mask.all()
    hours = np.asarray(TREND_HOURS)
    tau, age = gt["growth_tau_hours"].to_numpy()[:, None], gt["t_days"].to_numpy()[:, None] * 24
    share = np.where(hours < age, np.expm1(-np.minimum(hours, age) / tau) / np.expm1(-age / tau), 1.0)
    planted = np.log1p(np.expm1(gt["mtaf_label_log"].to_numpy())[:, None] * share)  # the noise-free curve
    err = np.abs(series - planted)  # reading noise (5 %), ±3 h jitter, whole counts: observed median 0.02, max 0.17
    assert np.median(err) < 0.05 and err.max() < 0.3
    np.testing.assert_allclose(series[:, -1], gt["mtaf_early_part"], atol=0.2)
    assert np.corrcoef(series[:, -1], gt["mtaf_label_log"])[0, 1] > 0.9


def test_the_stale_pack_plan_sees_the_videos_a_pack_of_the_task_labels():
    from pipelines.refresh import _labelled

    manifest = pd.DataFrame({"video_id": ["a", "b"], "digg_count": [10, None], "comment_count": [1, 2],
                             "share_count": [3, 4]})
    assert _labelled(manifest, "popularity_mtaf") == {"a"}  # computed from the counts, as build_pack does
    assert _labelled(manifest, "emotion") == set() and _labelled(manifest.iloc[:0], "popularity_mtaf") == set()
