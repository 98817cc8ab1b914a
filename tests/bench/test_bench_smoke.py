"""Smoke test of the benchmark suite: every benchmark runs end to end in its tiny mode, so the scripts cannot rot.

No timing is asserted here (speed targets live in BENCHMARKS.md, measured side by side); what is asserted is that
each benchmark measured what it says, on real media and real stores, and that the summary reports every target.
"""

from __future__ import annotations

import math
import os
import subprocess

import pytest

from bench import bench_extract, bench_graph, bench_incremental, bench_models, bench_scaling, bench_training
from bench import run_all
from bench._media import ClipSpec, clone_names, make_clip, media_sets


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-media")


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_media_sets_are_cached_by_content_and_cloned_by_link(media_dir):
    assert [len(v) for v in media_sets("full").values()] == [100, 10, 1]
    assert media_sets("full")["long1080"][0].seconds == 600
    spec = ClipSpec(seconds=1, width=64, height=36, fps=10, variant=3)
    first = make_clip(spec, media_dir)
    stamp = first.stat().st_mtime_ns
    assert make_clip(spec, media_dir) == first and first.stat().st_mtime_ns == stamp  # reused, not regenerated
    assert make_clip(ClipSpec(seconds=1, width=64, height=36, fps=10, variant=4), media_dir) != first
    links = clone_names([first], media_dir / "clones", 3)
    assert [p.name for p in links] == ["v00000.mp4", "v00001.mp4", "v00002.mp4"]
    assert {p.stat().st_ino for p in links} == {first.stat().st_ino}
    with pytest.raises(ValueError, match="width=63"):
        ClipSpec(seconds=1, width=63, height=36)
    with pytest.raises(ValueError, match="mode='huge'"):
        media_sets("huge")


def test_extract_benchmark_measures_every_method_against_the_floor(media_dir):
    res = bench_extract.run("tiny", rss=False, media_dir=media_dir)
    assert set(res["sets"]) == {"short720", "minute1080", "long1080"}
    assert len(res["clips"]) == 3
    for row in res["clips"]:
        for method in ("floor", "default", "keyframe", "frames", "naive"):
            assert _positive(row[f"{method}_s"]), (method, row)
        assert _positive(row["default_vs_floor"]) and _positive(row["naive_vs_frames"])
    assert set(res["met"]) == set(bench_extract.TARGETS)
    assert res["met"]["peak_rss_mb"] is None  # not measured in this run, so no verdict
    assert "default ≤ 1.0× floor" in bench_extract.render(res)


def test_rss_sampler_counts_this_process_and_its_children():
    child = subprocess.Popen(["sleep", "2"])
    try:
        peak: dict = {}
        now = bench_extract._rss_sampler(None, peak)
    finally:
        child.kill()
        child.wait()
    assert now["self_mb"] > 10 and now["child_mb"] > 0  # `sleep` is another executable: counted
    assert peak["worker_mb"] == pytest.approx(now["self_mb"] + now["child_mb"])


@pytest.mark.usefixtures("prefect_harness")
def test_scaling_benchmark_runs_every_arm(media_dir, tmp_path):
    res = bench_scaling.run("tiny", dask=False, media_dir=media_dir, work_dir=tmp_path)
    assert [r["arm"] for r in res["arms"]] == ["direct", "flow-1", "flow-2"]
    assert all(r["videos"] == 2 and _positive(r["videos_per_s"]) for r in res["arms"])
    assert res["summary"]["scaling_dask_2"] is None and isinstance(res["met"]["prefect_overhead"], bool)
    assert "Prefect overhead" in bench_scaling.render(res)


@pytest.mark.usefixtures("prefect_harness")
def test_incremental_benchmark_skips_everything_then_redoes_only_the_changed(media_dir, tmp_path):
    # run() itself raises if the no-change rerun recomputes anything or the changed rerun redoes other videos
    res = bench_incremental.run("tiny", videos=4, media_dir=media_dir, work_dir=tmp_path)
    assert res["changed_videos"] == 1 and res["index_records"] == 4 * 6  # 4 videos × 6 stages committed
    # the vocabulary is keyed on transcript text: re-extracting one video re-keys no other video's bag of words
    assert res["changed"]["stages"]["text"] == {"done": 1, "skipped": 3, "failed": 0}
    assert _positive(res["no_change"]["wall_s"]) and _positive(res["no_change"]["plan_s"])
    assert _positive(res["changed"]["just_those_wall_s"])
    assert set(res["met"]) == {"no_change_seconds", "changed"}


def test_training_benchmark_compares_pack_and_ram_feeding(tmp_path):
    res = bench_training.run("tiny", work_dir=tmp_path)
    assert [r["model"] for r in res["models"]] == list(bench_training.MODELS)
    for r in res["models"]:
        assert set(r["samples_per_s"]) == {"ram", "pack", "pack-lazy"}
        assert all(_positive(v) for v in r["samples_per_s"].values())
        assert _positive(r["build_vs_read"]) and r["pack_mb"] > 0
    assert "pack/ram" in bench_training.render(res)


def test_lazy_and_in_memory_packs_feed_identical_batches(tmp_path):
    """The training benchmark compares arms that must feed the same data: a PackLoader over open HDF5 datasets
    (read as slices per run of rows) yields exactly the in-memory batches, sharded or not."""
    import h5py
    import numpy as np

    from models.data import PackLoader

    rng = np.random.default_rng(0)
    arrays = {"vision": rng.integers(0, 256, (7, 2, 3, 4, 4), dtype=np.uint8),
              "target": rng.random((7, 1)).astype(np.float32)}
    with h5py.File(tmp_path / "p.h5", "w") as h5:
        for k, v in arrays.items():
            h5.create_dataset(k, data=v, chunks=(1, *v.shape[1:]), compression="lzf")
    with h5py.File(tmp_path / "p.h5", "r") as h5:
        lazy = {k: h5[k] for k in arrays}
        for world in (1, 2):
            for rank in range(world):
                kw = dict(batch_size=3, shuffle=True, seed=1, rank=rank, world_size=world)
                mem = list(PackLoader(arrays, ["vision", "target"], np.arange(7), **kw))
                got = list(PackLoader(lazy, ["vision", "target"], np.arange(7), **kw))
                assert len(got) == len(mem) and all(
                    all(torch_equal(g[k], m[k]) for k in m) for g, m in zip(got, mem))


def torch_equal(a, b) -> bool:
    import torch

    return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))


def test_models_benchmark_projects_epochs_from_samples_per_second():
    res = bench_models.run("tiny")
    rows = {r["model"]: r for r in res["models"]}
    assert set(rows) == set(bench_models.MODELS)
    for r in rows.values():
        assert _positive(r["samples_per_s"])
        assert r["epoch_s_projected"] == pytest.approx(r["train_videos"] / r["samples_per_s"])
    assert rows["mcat"]["gpu_target_epoch_s"] == pytest.approx(8.6)
    with pytest.raises(ValueError, match="mode='huge'"):
        bench_models.run("huge")


def test_graph_benchmark_and_the_summary_of_every_target(media_dir, tmp_path):
    graph = bench_graph.run(epochs=1, num_songs=10, num_videos=120, threads=1)
    assert graph["graph"]["videos"] == 120 and _positive(graph["seconds_100_epochs_projected"])
    assert graph["meets_target"] is None  # the 60-s target is for the paper-size graph only
    models = bench_models.run("tiny", models=["sec2sec"])
    summary = run_all.summarise("tiny", {"graph": {"status": "ok", "seconds": 1.0, "result": graph},
                                         "models": {"status": "ok", "seconds": 1.0, "result": models},
                                         "scaling": {"status": "skipped: time budget spent", "seconds": 0.0}})
    targets = {r["target"] for r in summary["targets"]}
    assert "graph: 100 epochs ≤ 60 s on 2 cores (projected)" in targets
    assert "skipped: time budget spent" in targets
    summary.update(seconds=2.0, load_avg_1m_before=0.0, load_avg_1m_after=0.0, machine={"cpu_count": os.cpu_count()})
    text = run_all.render(summary)
    assert "scaling skipped: time budget spent" in text and "models: sec2sec samples/s" in text
    with pytest.raises(ValueError, match="unknown benchmark"):
        run_all.run_all("tiny", only=["nope"])


@pytest.mark.slow  # ~2 min on 2 loaded cores: 24 videos at full shapes and ten interpreter start-ups
def test_store_scale_benchmark_measures_both_layouts(tmp_path):
    from bench import bench_store_scale

    res = bench_store_scale.run("tiny", sizes=[24], work=tmp_path, flow=False, repeats=1, log=lambda *_: None)
    (row,) = res["sizes"]
    before, after = row["before"], row["after"]
    assert row["videos"] == 24 and row["compact_stats"]["folded"] == 24 * 6  # 5 per-video stages + text
    assert after["files"] < before["files"] / 5, (before["files"], after["files"])
    for m in (before, after):
        assert all(_positive(float(m[k])) for k in ("plan_s", "inspect_s", "read_ms", "pack_s", "plan_rss_mb"))
    assert set(res["met"]) == {"files_per_video", "plan_seconds", "inspect_seconds", "read_ms", "pack"}
    assert res["met"]["plan_seconds"] is None  # judged at 100,000 videos only
    assert "store at scale" in bench_store_scale.render(res)


@pytest.mark.slow  # a temporary and a real Prefect server start, ~1-4 min on 2 loaded cores
def test_cli_benchmark_times_every_command_and_the_server_records_the_runs(tmp_path):
    from bench import bench_cli

    res = bench_cli.run(videos=6, repeats=1, tree=bench_cli.ROOT, work=tmp_path)
    rows = {r["command"]: r for r in res["rows"]}
    assert set(rows) == {"help", "inspect", "extract_noop", "extract_noop_server"}
    assert all(_positive(r["wall_s"]) and r["cpu_s"] > 0 for r in rows.values())
    assert res["server_runs_recorded"] >= 2  # the warm-up run and the timed one: no-op runs are still flow runs
