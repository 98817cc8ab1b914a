"""Determinism: the same inputs, parameters and seed give identical features and, on CPU, identical training.

Features must not depend on how the work was scheduled (one worker or two, big or small batches). Training and graph
pre-training on CPU must repeat bit for bit with the same seed, and differ with another seed (so the check can fail).
GPU kernels (cuDNN convolutions, scatter-add atomics in PyG) are not bit-reproducible by default: see RELIABILITY.md.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from features.store import open_store
from tests.reliability.conftest import (DATASET, EXTRACT_CONFIG, TRAIN_MODEL, TRAIN_OVERRIDES, check_store, committed,
                                        extraction_stages, ingest_folder, make_graph_store, make_training_store)


def test_features_do_not_depend_on_scheduling(runner, clean_media, tmp_path):
    ingest_folder(tmp_path / "a", clean_media)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    base = {"dataset": DATASET, "stages": extraction_stages(), "config": dict(EXTRACT_CONFIG)}
    a = runner.run("extract", kwargs={**base, "root": str(tmp_path / "a"), "workers": 1, "batch_size": 8})
    b = runner.run("extract", kwargs={**base, "root": str(tmp_path / "b"), "workers": 2, "batch_size": 1})
    assert a.exit == 0 and b.exit == 0, (a.log[-2000:], b.log[-2000:])
    assert committed(tmp_path / "a") == committed(tmp_path / "b")
    check_store(tmp_path / "b", reference=tmp_path / "a")  # every array byte for byte, every record field


def _history(result) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in result]


def _train(store, seed: int, run_id: str) -> tuple[dict, dict]:
    from pipelines.train import run_training

    run = run_training(store, TRAIN_MODEL, "emotion", epochs=3, overrides=TRAIN_OVERRIDES, device="cpu", seed=seed,
                       run_id=run_id, record=False, resume=False)
    weights = torch.load(run["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    return run, weights


def test_training_is_bit_reproducible_on_cpu(tmp_path):
    make_training_store(tmp_path)
    store = open_store(tmp_path, DATASET)
    a, wa = _train(store, 3, "a")
    b, wb = _train(store, 3, "b")
    c, wc = _train(store, 4, "c")
    assert a["metrics"] == b["metrics"] and a["val_metrics"] == b["val_metrics"] and a["best_epoch"] == b["best_epoch"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa), "another seed gave the same weights: seeding is ignored"


def test_graph_pretraining_is_bit_reproducible_on_cpu(tmp_path):
    from features.graph import build_graph
    from models.gat import GATConfig, embed, pretrain_link_prediction

    make_graph_store(tmp_path)
    store = open_store(tmp_path, DATASET)
    graph = build_graph(store.edges(), sorted(store.manifest()["video_id"]))
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = GATConfig(epochs=15, hidden=8, out=4, heads=2, seed=seed)
        result = pretrain_link_prediction(graph, cfg)
        runs[name] = (embed(result.encoder, graph)["video"], result.metrics)
    assert runs["a"][0].tobytes() == runs["b"][0].tobytes() and runs["a"][1] == runs["b"][1]
    assert runs["a"][0].tobytes() != runs["c"][0].tobytes()


def test_graph_pretraining_ignores_other_threads_drawing_random_numbers(tmp_path):
    """Under Prefect another thread draws from Python's ``random`` at arbitrary moments; the GAT must not notice."""
    import random
    import threading

    from features.graph import build_graph
    from models.gat import GATConfig, embed, pretrain_link_prediction

    make_graph_store(tmp_path)
    store = open_store(tmp_path, DATASET)
    graph = build_graph(store.edges(), sorted(store.manifest()["video_id"]))
    cfg = GATConfig(epochs=15, hidden=8, out=4, heads=2, seed=0)
    quiet = embed(pretrain_link_prediction(graph, cfg).encoder, graph)["video"]
    stop = threading.Event()

    def noisy() -> None:
        while not stop.is_set():
            random.getrandbits(32)

    thread = threading.Thread(target=noisy, daemon=True)
    thread.start()
    try:
        busy = embed(pretrain_link_prediction(graph, cfg).encoder, graph)["video"]
    finally:
        stop.set()
        thread.join()
    assert busy.tobytes() == quiet.tobytes()



def test_compaction_does_not_depend_on_write_order_or_intermediate_compactions(tmp_path):
    """The same committed outputs give the same view and the same index rows, whatever the order they were written
    in and however many compactions ran on the way."""
    import pyarrow.parquet as pq

    ids = [f"v{i:02d}" for i in range(12)]

    def write(store, vid: str) -> None:
        i = ids.index(vid)
        x = np.random.default_rng(i).integers(0, 255, (3, 4, 4, 3), dtype=np.uint8)
        store.write("frames", vid, f"{i:032x}", version=1, arrays={"x": x, "ok": np.array(i % 2 == 0)},
                    record={"i": i})
        store.write("probe", vid, f"p{i:031x}", version=1, record={"fps": float(i)})

    a = open_store(tmp_path / "a", DATASET, create=True)
    for vid in ids:
        write(a, vid)
    a.compact(shard_videos=5)
    b = open_store(tmp_path / "b", DATASET, create=True)
    for k, vid in enumerate(reversed(ids)):
        write(b, vid)
        if k in (3, 7):
            b.compact(shard_videos=5)
    b.compact(shard_videos=5)
    for stage in ("frames", "probe"):
        ea, eb = a.entries(stage), b.entries(stage)
        assert {v: (r.fingerprint, r.record) for v, r in ea.items()} == {v: (r.fingerprint, r.record)
                                                                          for v, r in eb.items()}
        for vid in ids:
            got, want = b.read(stage, vid), a.read(stage, vid)
            assert {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in got.items()} == \
                {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in want.items()}

    def rows(store) -> list[tuple]:
        """Index rows without what differs by design (commit times, random shard names → their order)."""
        import json as _json
        from pathlib import Path

        current = _json.loads((Path(store.path) / "compact" / "CURRENT.json").read_text())
        out = []
        for stage in sorted(current["stages"]):
            for rel in current["stages"][stage]["parts"]:
                if rel:
                    for r in pq.read_table(Path(store.path) / "compact" / rel).to_pylist():
                        out.append((stage, r["video_id"], r["fingerprint"], r["params"], r["record"]))
        return sorted(out)

    assert rows(a) == rows(b)
    c = open_store(tmp_path / "c", DATASET, create=True)  # the same order as a: the same shards, row for row
    for vid in ids:
        write(c, vid)
    c.compact(shard_videos=5)
    assert [(r.data.split(":")[2] if r.data else None) for r in c.entries("frames").values()] == \
        [(r.data.split(":")[2] if r.data else None) for r in a.entries("frames").values()]
