"""Beyond one machine: a Dask cluster gives byte-identical features, an S3 root works end to end, DDP trains.

* Dask: ``extract_features(..., dask_workers=2)`` (a local cluster on 127.0.0.1) vs a serial run, array by array.
* Object storage: moto's S3 server on 127.0.0.1; root ``s3://bucket/prefix``; ingest, extract, read back, rerun.
* DDP: ``python -m torch.distributed.run --nproc_per_node 2 pipelines.ddp`` on gloo (CPU) trains on planted signal;
  rank 0 alone writes checkpoints and the run record; both ranks end with identical weights.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import open_store
from pipelines.extract import STAGES, ExtractConfig
from tests.media_factory import make_video

REPO = Path(__file__).resolve().parents[2]
CFG = ExtractConfig(profiles=("uniform", "per_second"), n_frames=4, n_segments=2, asr="none", clip_frames=16)


def _clips(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        make_video(folder / f"clip{i}.mp4", duration=1.5, size=(64, 48), tone_hz=300 + 250 * i)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_same_outputs(a, b, ids) -> int:
    """Every stage output of every video: identical arrays (dtype, shape, bytes) and records; returns #arrays."""
    n = 0
    for stage in STAGES:
        for vid in ids:
            x, y = a.read(stage, vid), b.read(stage, vid)
            assert x.keys() == y.keys(), (stage, vid)
            for k in x:
                if isinstance(x[k], np.ndarray):
                    assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, (stage, vid, k)
                    assert x[k].tobytes() == y[k].tobytes(), (stage, vid, k)
                    n += 1
                else:  # a missing metadata value is NaN in both
                    assert x[k] == y[k] or (x[k] != x[k] and y[k] != y[k]), (stage, vid, k)
            assert a.entry(stage, vid).fingerprint == b.entry(stage, vid).fingerprint
    return n


# ---------------------------------------------------------------------------------------------------- Dask
@pytest.mark.slow  # ~45-75 s on 2 cores: two spawned worker processes import prefect, pipelines and librosa
def test_dask_cluster_gives_byte_identical_features(tmp_path, prefect_harness):
    from flows import extract_features, ingest

    media = _clips(tmp_path / "media")
    stores = {}
    for name, kw in (("serial", {"workers": 1}), ("dask", {"dask_workers": 2})):
        root = str(tmp_path / name)
        ingest(dataset="d", source="folder", path=str(media), root=root)
        result = extract_features(dataset="d", root=root, config=CFG, batch_size=1, **kw)
        assert all(result["stages"][s]["done"] == 2 for s in STAGES), (name, result)
        stores[name] = open_store(root, "d")
    assert _assert_same_outputs(stores["serial"], stores["dask"], ["clip0", "clip1"]) >= 2 * 7


# ---------------------------------------------------------------------------------------------------- S3
@pytest.fixture
def s3_root(monkeypatch, tmp_path):
    """A moto S3 server on 127.0.0.1 with bucket ``bucket``; yields the root URL ``s3://bucket/prefix``."""
    import fsspec.config
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto's buckets live in this process, not in the server: start each test from none
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"))
    try:
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1", "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                     "VIDPIPE_CACHE": str(tmp_path / "cache")}.items():
            monkeypatch.setenv(k, v)
        # fsspec reads FSSPEC_S3_* once, at import; a process that sets them before importing needs nothing else
        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": f"http://127.0.0.1:{port}"})
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir("bucket")
        yield "s3://bucket/prefix"
    finally:
        server.stop()


def test_s3_root_writes_reads_back_and_reruns_incrementally(tmp_path, s3_root, prefect_harness):
    import s3fs

    from flows import extract_features, ingest, refresh

    media = _clips(tmp_path / "media")
    summary = ingest(dataset="s3ds", source="folder", path=str(media), root=s3_root)
    assert summary["videos"] == 2
    first = extract_features(dataset="s3ds", root=s3_root, config=CFG)
    assert all(first["stages"][s]["done"] == 2 for s in STAGES), first

    keys = s3fs.S3FileSystem().find("bucket/prefix/s3ds")
    assert "bucket/prefix/s3ds/manifest.parquet" in keys and "bucket/prefix/s3ds/tables/probe.parquet" in keys
    # the extraction ends with a compaction: the outputs are in shards, no per-video file is left
    assert any(k.startswith("bucket/prefix/s3ds/compact/shards.zarr/audio/") for k in keys)
    assert not [k for k in keys if k.startswith("bucket/prefix/s3ds/index/")
                or (k.startswith("bucket/prefix/s3ds/features.zarr/") and not k.endswith("/zarr.json"))]
    assert not (tmp_path / "data").exists()  # nothing fell back to a local ./data

    store = open_store(s3_root, "s3ds")  # a fresh handle reads everything back from S3
    assert sorted(store.manifest()["video_id"]) == ["clip0", "clip1"]
    assert store.summary(list(STAGES))["stages"]["audio"] == {"done": 2, "failed": 0, "pending": 0}
    audio = store.read("audio", "clip0")
    assert audio["segments"].shape[:3] == (2, 3, 20) and audio["clip"].shape == (20, 16) and audio["has_audio"]
    assert store.read("frames", "clip1")["uniform"].shape == (4, 64, 64, 3)
    assert list(store.table("probe")["video_id"]) == ["clip0", "clip1"]

    again = extract_features(dataset="s3ds", root=s3_root, config=CFG)  # incremental: nothing recomputed
    assert all(again["stages"][s] == {"done": 0, "skipped": 2, "failed": 0} for s in STAGES), again
    plan = refresh(dataset="s3ds", root=s3_root, dry_run=True)["plan"]  # the refresh planner works on S3 too
    assert plan["nothing_to_do"] and plan["config"]["n_frames"] == 4

    # another machine (its own S3 client) commits an output: this handle sees it at once (no stale listing cache)
    assert sorted(store.entries("probe")) == ["clip0", "clip1"]
    s3fs.S3FileSystem.clear_instance_cache()
    other = open_store(s3_root, "s3ds")
    assert other.fs is not store.fs
    other.write("probe", "late", "fp-late", version=1, record={"duration": 1.0}, arrays={"x": np.arange(3)})
    assert sorted(store.entries("probe")) == ["clip0", "clip1", "late"]
    assert store.read("probe", "late")["x"].tolist() == [0, 1, 2]


def test_s3_run_checkpoint_resolves_on_another_machine(tmp_path, s3_root, monkeypatch):
    """A run recorded on an S3 root keeps its checkpoint in the store (relative), so another machine — another local
    cache — finds it; reports go to the store itself."""
    import torch

    store = open_store(s3_root, "runs3", create=True)
    ckpt = store.checkpoint_dir("r1") / "best.pt"  # machine A's local cache, where the engine writes
    torch.save({"w": torch.arange(4.0)}, ckpt)
    assert store.save_run("r1", {"model": "m", "checkpoint": str(ckpt)}).checkpoint == "runs/r1/best.pt"
    where = store.write_report("r1.md", "# r1")
    assert where == f"{s3_root}/runs3/reports/r1.md" and store.report_names() == ["r1.md"]

    monkeypatch.setenv("VIDPIPE_CACHE", str(tmp_path / "machine-b"))
    other = open_store(s3_root, "runs3")
    path = other.checkpoint_file(other.run("r1").checkpoint)
    assert path is not None and path.is_relative_to(tmp_path / "machine-b")
    assert torch.load(path)["w"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert other.checkpoint_file(str(ckpt)) == ckpt  # an absolute path (an older record) while its file exists


# ---------------------------------------------------------------------------------------------------- DDP
_SPY = '''
"""Run pipelines.ddp with the engine's checkpoint writes, fit results and loader sharding recorded per rank."""
import hashlib, json, os, sys
from pathlib import Path

import models.engine as engine
from models.data import PackLoader

rank = int(os.environ["RANK"])
log = open(f"{os.environ['SPY_LOG']}.{rank}", "a")

def note(**kw):
    log.write(json.dumps({"rank": rank, **kw}) + "\\n")
    log.flush()

_save, _fit, _shard = engine.save_checkpoint, engine.fit, PackLoader.shard

def save_checkpoint(path, model, extra=None):
    note(event="save", name=Path(path).name)
    return _save(path, model, extra)

def fit(model, train_loader, *args, **kwargs):
    result = _fit(model, train_loader, *args, **kwargs)
    blob = b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values())
    note(event="fit", digest=hashlib.sha256(blob).hexdigest(), history=result.history)
    return result

def shard(self, r, w):
    out = _shard(self, r, w)
    note(event="shard", world=w, total=int(len(self.indices)), rows=sum(int(b["target"].shape[0]) for b in out))
    return out

engine.save_checkpoint, engine.fit, PackLoader.shard = save_checkpoint, fit, shard

from pipelines.ddp import main
main(sys.argv[1:])
'''


def test_packloader_shards_cover_every_row_with_equal_batches():
    import torch

    from models.data import PackLoader

    arrays = {"target": np.arange(5, dtype=np.float32)[:, None]}
    full = PackLoader(arrays, ["target"], np.arange(5), batch_size=2, shuffle=True, seed=3)
    shards = [full.shard(r, 2) for r in range(2)]
    for epoch in (1, 2):
        for loader in (full, *shards):
            loader.set_epoch(epoch)
        order = torch.cat([b["target"][:, 0] for b in full]).tolist()
        rows = [torch.cat([b["target"][:, 0] for b in s]).tolist() for s in shards]
        assert [len(s) for s in shards] == [2, 2] and [len(r) for r in rows] == [3, 3]  # padded to 6 = 2 × 3
        assert sorted(set(rows[0]) | set(rows[1])) == sorted(order) == [0, 1, 2, 3, 4]
    assert full.world_size == 1 and shards[1].rank == 1  # shard() returns copies; the original is untouched
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        full.shard(2, 2)


def _planted_store(root: Path, n: int = 48, seed: int = 0) -> None:
    """A store whose audio segments carry the emotion labels: valence ↔ sign of MFCC row 0, arousal ↔ row 1."""
    rng = np.random.default_rng(seed)
    store = open_store(root, "ddp", create=True)
    ids = [f"v{i:02d}" for i in range(n)]
    labels = rng.integers(0, 2, size=(n, 2))
    split = ["train"] * (n * 2 // 3) + ["val"] * (n // 6) + ["test"] * (n - n * 2 // 3 - n // 6)
    store.write_manifest(pd.DataFrame({"video_id": ids, "split": split, "valence": labels[:, 0].astype(float),
                                       "arousal": labels[:, 1].astype(float)}))
    for vid, (val, aro) in zip(ids, labels):
        seg = rng.normal(size=(4, 3, 8, 4)).astype(np.float32)  # (S, 3, n_mfcc, F)
        seg[:, 0, 0, :] += 2.5 * (2 * val - 1)
        seg[:, 0, 1, :] += 2.5 * (2 * aro - 1)
        store.write("audio", vid, f"planted-{vid}", version=1, params={"n_segments": 4},
                    arrays={"segments": seg, "segments_mask": np.ones(4, bool)})


def test_ddp_two_gloo_processes_train_and_rank0_writes_once(tmp_path):
    root = tmp_path / "root"
    _planted_store(root)
    spy = tmp_path / "spy.py"
    spy.write_text(_SPY)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SPY_LOG": str(tmp_path / "spy.log"), "OMP_NUM_THREADS": "1",
           "PREFECT_HOME": str(tmp_path / "prefect-home"), "VIDPIPE_PROGRESS": "0"}
    epochs = 8
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(spy),
           "ddp", "--model", "sec2sec-audio", "--task", "emotion", "--root", str(root), "--device", "cpu",
           "--epochs", str(epochs), "--batch-size", "8", "--lr", "0.005", "--run-id", "ddp-test",
           "--set", "dim=16", "--set", "heads=2", "--set", "lstm_hidden=16", "--set", "cnn_width=8"]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["run_id"] == "ddp-test" and summary["world_size"] == 2 and summary["n_train"] == 32

    events = {r: [json.loads(line) for line in (tmp_path / f"spy.log.{r}").read_text().splitlines()] for r in (0, 1)}
    # each rank trained on its half of the 32 training rows
    shards = {r: [e for e in events[r] if e["event"] == "shard"] for r in (0, 1)}
    assert [(s[0]["world"], s[0]["total"], s[0]["rows"]) for s in shards.values()] == [(2, 32, 16)] * 2
    # rank 0 alone wrote checkpoints: last.pt exactly once per epoch, best.pt at least once; rank 1 never
    saves = [e["name"] for e in events[0] if e["event"] == "save"]
    fits = {r: next(e for e in events[r] if e["event"] == "fit") for r in (0, 1)}
    n_epochs = len(fits[0]["history"])
    assert saves.count("last.pt") == n_epochs and saves.count("best.pt") >= 1
    assert not [e for e in events[1] if e["event"] == "save"]
    ckdir = root / "ddp" / "runs" / "ddp-test"
    assert (ckdir / "best.pt").is_file() and (ckdir / "last.pt").is_file()
    assert [p.name for p in (root / "ddp" / "runs").glob("*.json")] == ["ddp-test.json"]
    # the ranks stayed in sync (gradients all-reduced) and learned the planted signal
    assert fits[0]["digest"] == fits[1]["digest"]
    same = [{k: v for k, v in h.items() if k != "seconds"} for h in fits[0]["history"]]
    assert same == [{k: v for k, v in h.items() if k != "seconds"} for h in fits[1]["history"]]
    losses = [h["train_loss"] for h in fits[0]["history"]]
    assert n_epochs == epochs and losses[-1] < 0.7 * losses[0], losses
    assert summary["metrics"]["accuracy_mean"] >= 0.8 > summary["baseline"]["accuracy_mean"] + 0.1, summary


def _count_s3_requests(monkeypatch) -> "collections.Counter[str]":
    """HTTP requests reaching the moto server, by method (counted in its WSGI entry point)."""
    import collections

    from moto.server import DomainDispatcherApplication

    counts: collections.Counter[str] = collections.Counter()
    real = DomainDispatcherApplication.__call__

    def counting(self, environ, start_response):
        counts[environ["REQUEST_METHOD"]] += 1
        return real(self, environ, start_response)

    monkeypatch.setattr(DomainDispatcherApplication, "__call__", counting)
    return counts


@pytest.mark.slow  # ~3-8 min on 2 loaded cores: every request goes through moto's HTTP server
def test_s3_requests_per_video_before_and_after_compaction(tmp_path, s3_root, monkeypatch):
    """Requests per video on an ``s3://`` root for committing every per-video stage of N videos (then the extraction's
    compaction) and for a no-op plan: before = each output a Zarr group, never compacted (the local stores' commit,
    forced on this handle); after = each output one object (its record followed by its arrays), then compacted."""
    from features.store import Store
    from pipelines.extract import STAGE_VERSIONS, plan_extraction

    counts = _count_s3_requests(monkeypatch)
    n, stages = 24, ["probe", "frames", "audio", "transcripts", "metadata"]
    src = tmp_path / "src"
    src.mkdir()
    manifest = pd.DataFrame({"video_id": [f"v{i:02d}" for i in range(n)], "split": "train",
                             "source_path": [str(src / f"v{i:02d}.mp4") for i in range(n)],
                             "transcript": [f"words {i}" for i in range(n)]})
    for p in manifest["source_path"]:
        Path(p).write_bytes(os.urandom(64))
    figures = {}
    for layout in ("before", "after"):
        store = open_store(f"{s3_root}/{layout}", "s3n", create=True)
        assert store._inline_arrays
        store._inline_arrays = layout == "after"
        store.write_manifest(manifest)
        items, _, _ = plan_extraction(store, manifest, CFG, stages)
        counts.clear()
        for item in items:
            vid, fps = item["row"]["video_id"], item["fps"]
            for stage in stages:
                arrays = {"x": np.full((2, 8, 8, 3), len(vid), np.uint8), "ok": np.ones(2, bool)} \
                    if stage in ("frames", "audio") else None
                store.write(stage, vid, fps[stage], version=STAGE_VERSIONS[stage], arrays=arrays,
                            record={"n": 1}, params=CFG.stage_params(stage))
        if layout == "after":
            store.compact()
        commit = sum(counts.values())
        counts.clear()
        again, _, _ = plan_extraction(open_store(f"{s3_root}/{layout}", "s3n"), manifest, CFG, stages)
        assert again == []
        figures[layout] = {"commit_per_video": commit / n, "noop_plan_per_video": sum(counts.values()) / n}
    print("s3 requests per video:", json.dumps(figures))
    assert figures["after"]["noop_plan_per_video"] <= figures["before"]["noop_plan_per_video"] / 5, figures
    assert figures["after"]["commit_per_video"] <= figures["before"]["commit_per_video"] / 5, figures
    after = Store(f"{s3_root}/after", "s3n")
    assert sorted(after.fingerprints("frames")) == list(manifest["video_id"])
    assert after.read("frames", "v05")["x"].tolist() == np.full((2, 8, 8, 3), 3, np.uint8).tolist()
