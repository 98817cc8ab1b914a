"""``refresh``: plan (dry run changes nothing), run only what changed (features, graph), report stale packs, then idle.

The dataset is a small TikTok scrape: 40 posts over 5 songs (enough links for the GAT's link split), of which only 4
have a downloaded video — as in real scrapes; the others are recorded once as missing sources and never worked on. Between the first
extraction and the refresh one post (with video) is added, one video file is re-encoded with other content, and one
post is deleted together with its video.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import open_store
from features.packs import pack_fingerprint
from pipelines.extract import ExtractConfig
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
    """Ingested, extracted and graph-embedded; three recorded runs (their packs: two popularity, one emotion)."""
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
                      ("emotion-audio",): "fresh"}
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
