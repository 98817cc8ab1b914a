import shutil

import numpy as np
import pytest

from features import open_store
from pipelines.extract import ExtractConfig, STAGES
from tests.pipelines.conftest import DATASET, N_VIDEOS

CFG = ExtractConfig(n_frames=16, asr="none")


def _extract(root, **kw):
    from flows import extract_features

    kw.setdefault("config", CFG)
    return extract_features(dataset=kw.pop("dataset", DATASET), root=str(root), batch_size=6, **kw)


def test_every_stage_has_outputs_with_expected_shapes(synthetic_store):
    store = open_store(synthetic_store, DATASET)
    summary = store.summary(list(STAGES))
    assert all(summary["stages"][s]["done"] == N_VIDEOS for s in STAGES), summary
    vid = store.manifest()["video_id"].iloc[0]
    fr = store.read("frames", vid)
    assert fr["per_second"].dtype == np.uint8 and fr["per_second"].shape == (15, 64, 64, 3)
    assert fr["per_second_valid"].shape == (15,) and 3 <= fr["per_second_valid"].sum() <= 6
    assert fr["uniform"].shape == (16, 64, 64, 3) and fr["uniform_valid"].all()
    au = store.read("audio", vid)
    assert au["segments"].dtype == np.float32 and au["segments"].shape[:3] == (15, 3, 20)
    assert au["clip"].shape == (20, 256)
    probe = store.table("probe").set_index("video_id")
    assert (probe["duration"] > 2.5).all() and (probe["duration"] < 6.5).all()
    assert store.read("text", vid)["bow"].ndim == 1
    tr = store.read("transcripts", vid)
    assert tr["source"] == "dataset" and tr["text"]


def test_no_audio_videos_are_masked_not_zero_data(synthetic_store):
    store = open_store(synthetic_store, DATASET)
    probe = store.table("probe").set_index("video_id")
    silent = probe.index[~probe["has_audio"].astype(bool)]
    assert len(silent) >= 1
    au = store.read("audio", silent[0])
    assert not au["segments_mask"].any() and not bool(au["clip_valid"]) and au["has_audio"] is False


def test_rerun_with_nothing_changed_skips_everything(synthetic_copy):
    result = _extract(synthetic_copy)
    for stage in STAGES:
        counts = result["stages"][stage]
        assert counts["done"] == 0 and counts["skipped"] == N_VIDEOS, (stage, counts)


def test_changed_parameter_recomputes_only_that_stage(synthetic_copy):
    cfg = CFG.model_copy(update={"n_mfcc": 13})
    result = _extract(synthetic_copy, config=cfg)
    assert result["stages"]["audio"]["done"] == N_VIDEOS
    assert result["stages"]["frames"]["done"] == 0 and result["stages"]["probe"]["done"] == 0
    store = open_store(synthetic_copy, DATASET)
    assert store.read("audio", store.manifest()["video_id"].iloc[0])["segments"].shape[2] == 13


def test_changed_file_recomputes_only_that_video_and_deleted_is_dropped(synthetic_copy):
    from flows import ingest

    src = synthetic_copy / "_sources" / DATASET
    ingest(dataset=DATASET, source="synthetic", root=str(synthetic_copy), path=str(src), videos=N_VIDEOS, seed=7,
           min_duration=3.0, max_duration=6.0)
    first = _extract(synthetic_copy)  # manifest now points at the copy's media: same content → all skipped
    assert first["stages"]["frames"]["done"] == 0
    store = open_store(synthetic_copy, DATASET)
    m = store.manifest().sort_values("video_id")
    a, b = m["source_path"].iloc[0], m["source_path"].iloc[1]
    if a.rsplit(".", 1)[-1] != b.rsplit(".", 1)[-1]:
        b = next(p for p in m["source_path"].iloc[2:] if p.rsplit(".", 1)[-1] == a.rsplit(".", 1)[-1])
    shutil.copyfile(b, a)  # same container, other content
    result = _extract(synthetic_copy)
    assert result["stages"]["probe"]["done"] == 1 and result["stages"]["frames"]["done"] == 1
    assert result["stages"]["frames"]["skipped"] == N_VIDEOS - 1
    gone = m["video_id"].iloc[-1]
    store.write_manifest(m[m["video_id"] != gone], store.edges())
    result = _extract(synthetic_copy)
    assert result["removed"] >= 5 and store.entry("frames", gone) is None


def test_single_stage_rerun_with_refresh(synthetic_copy):
    result = _extract(synthetic_copy, stages=["metadata"], refresh=True)
    assert set(result["stages"]) == {"metadata"} and result["stages"]["metadata"]["done"] == N_VIDEOS


def test_bad_videos_are_recorded_and_never_fail_the_run(synthetic_store, tmp_path, prefect_harness):
    from flows import ingest

    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted((synthetic_store / "_sources" / DATASET / "videos").glob("*.mp4"))[:2]
    for p in good:
        shutil.copy(p, folder / p.name)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "noise.mkv").write_bytes(np.random.default_rng(0).bytes(5000))
    data = good[0].read_bytes()
    (folder / "-dash name ü.mp4").write_bytes(data[: len(data) // 3])  # truncated, odd name
    root = tmp_path / "r"
    ingest(dataset="mixed", source="folder", root=str(root), path=str(folder))
    result = _extract(root, dataset="mixed")
    store = open_store(root, "mixed")
    assert store.summary(list(STAGES))["stages"]["frames"]["done"] >= 2
    fails = store.failures()
    assert {"empty", "noise"} <= set(fails["video_id"])
    assert fails["error"].str.len().gt(10).all()
    assert result["failed_videos"] >= 2
    again = _extract(root, dataset="mixed")  # known failures are not retried without --refresh
    assert again["stages"]["probe"]["done"] == 0
