"""Benchmark 4: training input — pack-fed training vs the same tensors in RAM, and the cost of building a pack.

A store of ``N`` videos is filled with arrays of the pipeline's default geometry (frames: 15 per-second and 100
uniform 64×64 frames plus 30 uniform 224×224 frames; audio: 15 × 3 × 20 × 101 segment MFCCs and a 20 × 256 clip
MFCC; a 1,000-word bag of words; a 32-wide graph embedding; metadata), smooth random content, labels for every task.
For each headline model — ``sec2sec`` (emotion), ``mcat`` (personality), ``van`` (popularity, 224×224 frames) — at
the geometry ``run_training`` gives it:

* **pack build vs store read**: ``build_pack(..., refresh=True)`` against reading every needed stage output of every
  video once with ``Store.read`` (the least any pack builder must do);
* **training samples/s**, interleaved arms, the same model, optimizer and batch order (``shuffle``, seed 0):
  ``ram`` — the batch's rows gathered from float32 torch tensors already in memory (the ceiling);
  ``pack`` — ``PackLoader`` over the pack loaded into memory (what ``run_training`` does: uint8 frames converted per
  batch); ``pack-lazy`` — ``PackLoader`` over the open HDF5 datasets (reads from disk every batch).
  A step is forward + backward + Adam step; the arms alternate step by step (rotating order), each rate is rows /
  median step time, and the batch-fetch time is reported on its own. Target: pack ≥ 0.9 × ram.

    .venv/bin/python bench/bench_training.py          # --quick: 48 videos, 16 interleaved steps per arm
    .venv/bin/python bench/bench_training.py --full   # 256 videos, 60 interleaved steps per arm
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    WORK_DIR, fmt_ratio, load_average, machine_info, median, table, verdict, write_result,
)

__all__ = ["run", "main", "TARGETS", "MODELS", "fill_training_store"]

TARGETS = {"pack_vs_ram": 0.9}
#: headline model → (task, pack vision profile)
MODELS = {"sec2sec": ("emotion", "uniform"), "mcat": ("personality", "uniform"), "van": ("popularity", "uniform_224")}
_SIZES = {"tiny": dict(videos=6, steps=2, repeats=1, batch=2), "quick": dict(videos=48, steps=8, repeats=2, batch=8),
          "full": dict(videos=256, steps=20, repeats=3, batch=16)}
# per-mode array geometry: (S, per-second size, uniform N, uniform size, uniform_224 N, its size, n_mfcc, F, clip F, V)
_GEOMETRY = {"tiny": (3, 16, 4, 16, 4, 32, 8, 8, 16, 20), "quick": (15, 64, 100, 64, 30, 224, 20, 101, 256, 1000),
             "full": (15, 64, 100, 64, 30, 224, 20, 101, 256, 1000)}
_TINY_MODEL = dict(dim=16, heads=2, cnn_width=8, lstm_hidden=16, vision_grid=2, patch_dim=4, vector_tokens=2,
                   audio_chunk=4)
DATASET = "bench-train"


def _smooth_frames(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Blocky random frames (8×8 blocks): about as compressible as real downscaled video frames.

    Shapes:
        returns (n, size, size, 3) uint8
    """
    block = max(1, size // 8)
    coarse = rng.integers(0, 256, size=(n, -(-size // block), -(-size // block), 3), dtype=np.uint8)
    return np.ascontiguousarray(coarse.repeat(block, 1).repeat(block, 2)[:, :size, :size])


def fill_training_store(root: Path, n: int, mode: str, *, seed: int = 0) -> Any:
    """A fresh store of ``n`` videos with frames, audio, text, metadata and graph outputs (see the docstring)."""
    import pandas as pd

    from features import open_store
    from features.packs import TASK_TARGETS

    s, ps, un, us, u2n, u2s, n_mfcc, seg_f, clip_f, vocab = _GEOMETRY[mode]
    shutil.rmtree(Path(root) / DATASET, ignore_errors=True)
    store = open_store(root, DATASET, create=True)
    rng = np.random.default_rng(seed)
    ids = [f"t{i:05d}" for i in range(n)]
    split = np.array(["train"] * n, dtype=object)
    split[int(0.7 * n):int(0.8 * n)] = "val"
    split[int(0.8 * n):] = "test"
    labels = {c: rng.random(n) for cols in TASK_TARGETS.values() for c in cols}
    labels["valence"], labels["arousal"] = (labels["valence"] > 0.5) * 1.0, (labels["arousal"] > 0.5) * 1.0
    store.write_manifest(pd.DataFrame({"video_id": ids, "source_path": None, "split": split, **labels}))
    with store.lock():
        for vid in ids:
            frames = {}
            for name, count, size in (("per_second", s, ps), ("uniform", un, us), ("uniform_224", u2n, u2s)):
                frames[name] = _smooth_frames(rng, count, size)
                frames[f"{name}_valid"] = np.ones(count, bool)
                frames[f"{name}_times"] = np.arange(count, dtype=np.float32)
            store.write("frames", vid, f"fr-{vid}", version=1, arrays=frames,
                        params={"n_segments": s, "frames_per_segment": 1}, record={"profiles": ["per_second"]})
            audio = {"segments": rng.standard_normal((s, 3, n_mfcc, seg_f), dtype=np.float32),
                     "segments_mask": np.ones(s, bool),
                     "clip": rng.standard_normal((n_mfcc, clip_f), dtype=np.float32), "clip_valid": np.array(True)}
            store.write("audio", vid, f"au-{vid}", version=1, arrays=audio, record={"has_audio": True})
            bow = (rng.random(vocab) < 0.02).astype(np.float32)
            store.write("text", vid, f"tx-{vid}", version=1, arrays={"bow": bow}, record={"n_tokens": int(bow.sum())})
            store.write("metadata", vid, f"me-{vid}", version=1,
                        record={"duration": 15.0, "width": 1280, "height": 720, "aspect": 16 / 9, "fps": 30.0,
                                "has_audio": True, "upload_hour": int(rng.integers(24)),
                                "upload_weekday": int(rng.integers(7)), "desc_words": 5, "hashtags": 1})
        store.write_artifact("graph", "bench-graph", arrays={"embedding": rng.standard_normal((n, 32)).astype(
            np.float32)}, meta={"video_ids": ids})
    return store


def _ram_batches(tensors: dict[str, Any], indices: np.ndarray, batch_size: int, epoch: int, seed: int = 0):
    """The PackLoader's batch order (same shuffle, sorted rows), gathered from in-memory float tensors."""
    import torch

    order = indices[np.random.default_rng([seed, epoch]).permutation(len(indices))]
    for start in range(0, len(order), batch_size):
        rows = torch.from_numpy(np.sort(order[start:start + batch_size]))
        yield {k: t.index_select(0, rows) for k, t in tensors.items()}


def _endless(batches):
    """Batches forever: ``batches()`` (a new epoch) every time the previous epoch runs out."""
    while True:
        yield from batches()


def _timed_step(model: Any, optimizer: Any, stream, batch_size: int) -> tuple[float, float, int]:
    """One optimizer step on the next full batch of ``stream`` (an epoch's short last batch is skipped, so every arm
    times the same batch size): (seconds fetching the batch, seconds in total, rows)."""
    while True:
        t0 = time.perf_counter()
        batch = next(stream)
        t1 = time.perf_counter()
        if int(batch["target"].shape[0]) == batch_size:
            break
    optimizer.zero_grad(set_to_none=True)
    out = model(batch)
    out.loss.backward()
    optimizer.step()
    return t1 - t0, time.perf_counter() - t0, int(batch["target"].shape[0])


def _bench_model(store: Any, name: str, mode: str, size: dict[str, int]) -> dict[str, Any]:
    import torch

    from features.packs import build_pack
    from models.data import PackLoader, split_indices
    from models.registry import create_model

    task, profile = MODELS[name]
    extra = _TINY_MODEL if mode == "tiny" else {}
    probe = create_model(name, task=task)
    fields = set(probe.config_dict())
    extra = {k: v for k, v in extra.items() if k in fields}
    inputs = tuple(probe.inputs)
    stage_of = {"vision_seg": "frames", "vision": "frames", "audio_seg": "audio", "audio": "audio", "text": "text",
                "meta": "metadata"}
    stages = sorted({stage_of[k] for k in inputs if k in stage_of})
    ids = list(store.manifest()["video_id"])

    t0 = time.perf_counter()
    for stage in stages:
        for vid in ids:
            store.read(stage, vid)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fp, _ = build_pack(store, inputs, task, vision_profile=profile, refresh=True)
    build_s = time.perf_counter() - t0

    arrays, _ = store.read_pack(fp)
    shapes = {k: tuple(v.shape[1:]) for k, v in arrays.items()}
    overrides = {**probe.cfg.geometry_overrides(inputs, shapes), **extra}
    keys = [*inputs, *[f"{k}_mask" for k in inputs if f"{k}_mask" in arrays], "target"]
    train = split_indices(arrays["split"], "train")
    b = size["batch"]
    tensors = {}
    for k in keys:
        t = torch.from_numpy(np.ascontiguousarray(arrays[k]))
        tensors[k] = t.to(torch.float32).div_(255.0) if t.dtype == torch.uint8 else t
    h5 = store.open_pack(fp)
    pack_mb = h5.id.get_filesize() / 2**20
    try:
        lazy = {k: h5[k] for k in keys}
        loaders = {"pack": PackLoader(arrays, keys, train, batch_size=b, shuffle=True),
                   "pack-lazy": PackLoader(lazy, keys, train, batch_size=b, shuffle=True)}
        epoch = {"n": 0}

        def source(arm: str):
            def batches():
                epoch["n"] += 1
                if arm == "ram":
                    return _ram_batches(tensors, train, b, epoch["n"])
                loaders[arm].set_epoch(epoch["n"])
                return iter(loaders[arm])
            return batches

        torch.manual_seed(0)
        model = create_model(name, task=task, **overrides)
        optimizer = model.configure_optimizer(1e-4, 0.0)
        model.train()
        arms = ["ram", "pack", "pack-lazy"]
        streams = {a: _endless(source(a)) for a in arms}
        for a in arms:  # warm-up: allocator, kernels, the first HDF5 chunk reads
            _timed_step(model, optimizer, streams[a], b)
        # Interleaved step by step (the arm order rotating), so load changes on a shared machine hit every arm alike;
        # rate = rows / median step time.
        step_s: dict[str, list[float]] = {a: [] for a in arms}
        fetch_s: dict[str, list[float]] = {a: [] for a in arms}
        for i in range(size["steps"] * size["repeats"]):
            for arm in arms[i % 3:] + arms[:i % 3]:
                fetch, total, _ = _timed_step(model, optimizer, streams[arm], b)
                step_s[arm].append(total)
                fetch_s[arm].append(fetch)
    finally:
        h5.close()
    results = {a: [b / t for t in v] for a, v in step_s.items()}
    loader_only = {a: [b / t for t in v] for a, v in fetch_s.items()}
    sps = {a: median(v) for a, v in results.items()}
    return {
        "model": name, "task": task, "vision_profile": profile, "inputs": list(inputs),
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "pack_mb": pack_mb,
        "store_read_s": read_s, "pack_build_s": build_s, "build_vs_read": build_s / read_s,
        "samples_per_s": sps, "loader_only_samples_per_s": {a: median(v) for a, v in loader_only.items()},
        "pack_vs_ram": sps["pack"] / sps["ram"], "lazy_vs_ram": sps["pack-lazy"] / sps["ram"],
        "fetch_ms_per_batch": {a: 1000 * median(v) for a, v in fetch_s.items()},
        "batch_size": b, "steps": size["steps"], "repeats": size["repeats"],
    }


def run(mode: str = "quick", *, models: list[str] | None = None, threads: int = 1,
        work_dir: Path = WORK_DIR) -> dict[str, Any]:
    """Fill the store, then measure every headline model (see the module docstring)."""
    import torch

    if mode not in _SIZES:
        raise ValueError(f"mode={mode!r}: expected one of {sorted(_SIZES)}")
    torch.set_num_threads(threads)
    load_before = load_average()
    t_start = time.perf_counter()
    size = _SIZES[mode]
    root = Path(work_dir) / f"training-{mode}"
    t0 = time.perf_counter()
    store = fill_training_store(root, size["videos"], mode)
    fill_s = time.perf_counter() - t0
    rows = [_bench_model(store, name, mode, size) for name in (models or list(MODELS))]
    shutil.rmtree(root, ignore_errors=True)
    worst = min(r["pack_vs_ram"] for r in rows)
    return {
        "benchmark": "training",
        "mode": mode,
        "command": f"python bench/bench_training.py --{mode}",
        "videos": size["videos"],
        "threads": threads,
        "fill_store_s": fill_s,
        "models": rows,
        "summary": {"min_pack_vs_ram": worst},
        "targets": TARGETS,
        "met": {"pack_vs_ram": worst >= TARGETS["pack_vs_ram"]},
        "seconds": time.perf_counter() - t_start,
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": load_average(),
        "machine": machine_info(),
    }


def render(res: dict[str, Any]) -> str:
    """The benchmark's table(s) as text."""
    rows = []
    for r in res["models"]:
        sps = r["samples_per_s"]
        rows.append({"model": f"{r['model']} ({r['task']})", "params": f"{r['n_params'] / 1e6:.2f}M",
                     "ram samples/s": sps["ram"], "pack": sps["pack"], "pack-lazy": sps["pack-lazy"],
                     "pack/ram": fmt_ratio(r["pack_vs_ram"]), "lazy/ram": fmt_ratio(r["lazy_vs_ram"]),
                     "fetch ms/batch ram|pack|lazy": "|".join(f"{r['fetch_ms_per_batch'][a]:.1f}"
                                                             for a in ("ram", "pack", "pack-lazy")),
                     "pack MB": r["pack_mb"], "build/read": fmt_ratio(r["build_vs_read"])})
    targets = [{"target": f"pack-fed ≥ {TARGETS['pack_vs_ram']}× RAM (every model)",
                "measured": fmt_ratio(res["summary"]["min_pack_vs_ram"]),
                "verdict": verdict(res["met"]["pack_vs_ram"])}]
    head = (f"training input ({res['mode']}: {res['videos']} videos, {res['threads']} threads; load avg "
            f"{res['load_avg_1m_before']:.1f} → {res['load_avg_1m_after']:.1f} on "
            f"{res['machine']['cpu_count']} CPUs)")
    return table(head, rows) + "\n" + table("targets", targets)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="48 videos (default)")
    mode.add_argument("--full", action="store_true", help="256 videos, more steps")
    mode.add_argument("--tiny", action="store_true", help="seconds-long smoke run (tiny geometry and models)")
    parser.add_argument("--models", nargs="*", default=None, help=f"subset of {list(MODELS)}")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: the pack/RAM ratio without OpenMP contention on a shared machine)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/training.json)")
    args = parser.parse_args(argv)
    name = "full" if args.full else "tiny" if args.tiny else "quick"
    res = run(name, models=args.models, threads=args.threads)
    path = write_result("training", res, args.out)
    print(render(res))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
