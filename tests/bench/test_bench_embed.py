"""Smoke test of bench/bench_embed.py: every part runs end to end in its tiny mode and measures what it says."""

from __future__ import annotations

import math

from bench import bench_embed


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_embed_benchmark_measures_encoders_stage_and_epochs(tmp_path):
    res = bench_embed.run("tiny", device="cpu", work_dir=tmp_path)
    (enc,) = res["encoders"]
    assert enc["encoder"] == "tiny" and enc["device"] == "cpu" and enc["image"] == 32
    assert _positive(enc["frames_per_s"]) and _positive(enc["audio_s_per_s"])
    stage = res["stage"]
    assert stage["frames"] == 15 + 100 and _positive(stage["stage_s"]) and _positive(stage["floor_s"])
    assert [r["model"] for r in res["epochs"]] == ["sec2sec", "mcat", "van"]
    assert all(_positive(r["raw_epoch_s"]) and _positive(r["embeddings_epoch_s"]) for r in res["epochs"])
    assert res["met"]["gpu_base_frames_per_s"] is None  # no base encoder on a GPU in this run: no verdict
    assert isinstance(res["met"]["epoch_raw_vs_embeddings"], bool)
    assert "raw/emb" in bench_embed.render(res) and not list(tmp_path.glob("embed-*"))  # encoders cleaned up
