"""Smoke test of bench/bench_embed.py: every part runs end to end in its tiny mode and measures what it says."""

from __future__ import annotations

import math

import pytest

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
    batching = res["stage_batching"]
    assert batching["clips"] == 4 and batching["frames"] == 4 * 8 and batching["encoder"] == "tiny"
    assert _positive(batching["per_video_frames_per_s"]) and _positive(batching["batched_frames_per_s"])
    assert _positive(batching["two_workers_frames_per_s"]) and _positive(batching["two_workers_vs_one"])
    assert "batched across clips" in bench_embed.render(res) and "two worker threads" in bench_embed.render(res)
    assert [r["model"] for r in res["epochs"]] == ["sec2sec", "mcat", "van"]
    assert all(_positive(r[f"{kind}_{part}_s"]) for r in res["epochs"] for kind in ("raw", "embeddings")
               for part in ("epoch", "loader", "epoch_cpu"))
    assert all(r["raw_vs_embeddings_cpu"] == r["raw_epoch_cpu_s"] / r["embeddings_epoch_cpu_s"] for r in res["epochs"])
    mcat = res["epochs"][1]  # the pack geometry each side trains on; MCAT's one text token is the sentence vector
    assert mcat["raw_inputs"]["vision"] == [4, 3, 16, 16] and mcat["embedding_inputs"]["text_sentence_emb"] == [16]
    assert all(r["videos"] == 6 and r["batch"] == 3 for r in res["epochs"])  # an epoch of two steps
    assert res["met"]["gpu_base_frames_per_s"] is None  # no base encoder on a GPU in this run: no verdict
    assert isinstance(res["met"]["epoch_raw_vs_embeddings"], bool)
    assert "raw/emb" in bench_embed.render(res) and not list(tmp_path.glob("embed-*"))  # encoders cleaned up


def test_embed_benchmark_measures_the_epoch_table_on_its_own(tmp_path):
    res = bench_embed.run("tiny", epochs_only=True, threads=1, work_dir=tmp_path)
    assert res["encoders"] == [] and res["stage"] is None and res["threads"] == 1
    assert [r["model"] for r in res["epochs"]] == ["sec2sec", "mcat", "van"]
    assert res["command"].endswith("--epochs-only") and "raw/emb" in bench_embed.render(res)
    van = bench_embed.run("tiny", epochs_only=True, threads=1, work_dir=tmp_path, models=("van",), repeats=1)
    assert [r["model"] for r in van["epochs"]] == ["van"] and van["command"].endswith("--epochs-only --models van")
    with pytest.raises(ValueError, match=r"models=\('nope',\): expected some of \['sec2sec', 'mcat', 'van'\]"):
        bench_embed.run("tiny", epochs_only=True, work_dir=tmp_path, models=("nope",))
