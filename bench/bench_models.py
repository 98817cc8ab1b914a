"""Benchmark 6: model compute — forward + backward + Adam step samples/s of each headline model at paper-sized inputs.

Each model is built with its registered defaults, which are the papers' input geometry: ``sec2sec`` 15 one-second
segments of one 64×64 frame and 40 × 32 MFCC; ``mcat`` 100 frames at 64×64, a 40 × 480 MFCC clip and a 1,000-word
bag of words (First Impressions, Table 3.1); ``van`` 30 frames at 224×224 with 32×32 patches, MFCC and a 128-wide
graph embedding (TikTok, Table 4.1). Random batches of those shapes; one warm-up step, then timed steps.

The epoch projections divide a training split by the measured rate: First Impressions has 6,000 training videos
(the paper's MCAT epoch: 1 min 26 s on one RTX 3090 Ti, Table 3.3; the GPU target ≤ 8.6 s) and the TikTok set
88,279 videos with a 70 % training split, 61,795 (the paper's VAN epoch: 35.54 min, Table 4.3; target ≤ 3.6 min);
LIRIS-ACCEDE 9,800 videos split 70/10/20, 6,860 (no epoch time in the paper).
Those targets are for a GPU; this benchmark runs on CPU unless ``--device cuda``:

    .venv/bin/python bench/bench_models.py                       # --quick: CPU, batch 8, 3 steps per model
    .venv/bin/python bench/bench_models.py --full                # more steps
    .venv/bin/python bench/bench_models.py --device cuda --batch-size 64 --full   # on a GPU machine (bf16 autocast)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import load_average, machine_info, median, table, write_result  # noqa: E402

__all__ = ["run", "main", "MODELS", "PAPER"]

#: headline model → task
MODELS = {"sec2sec": "emotion", "mcat": "personality", "van": "popularity"}
#: paper scale: training videos per epoch, the paper's epoch time in seconds, the GPU target in seconds
PAPER = {"mcat": {"dataset": "First Impressions", "train_videos": 6_000, "paper_epoch_s": 86.0,
                  "gpu_target_epoch_s": 8.6},
         "van": {"dataset": "TikTok", "train_videos": 61_795, "paper_epoch_s": 35.54 * 60,
                 "gpu_target_epoch_s": 3.6 * 60},
         "sec2sec": {"dataset": "LIRIS-ACCEDE", "train_videos": 6_860, "paper_epoch_s": None,
                     "gpu_target_epoch_s": None}}
_SIZES = {"tiny": dict(steps=1, batch=2), "quick": dict(steps=3, batch=8), "full": dict(steps=10, batch=16)}
_TINY = dict(dim=16, heads=2, cnn_width=8, lstm_hidden=16, vision_grid=2, n_segments=3, frame_size=32, n_mfcc=8,
             mfcc_frames=16, n_frames=4, patch_size=16, patch_dim=4, vocab_size=20, graph_dim=8, vector_tokens=2,
             audio_chunk=4)


def _measure(name: str, mode: str, batch_size: int, steps: int, device: str) -> dict[str, Any]:
    import torch

    from models.base import example_batch
    from models.registry import create_model

    task = MODELS[name]
    overrides: dict[str, Any] = {}
    if mode == "tiny":
        fields = set(create_model(name, task=task).config_dict())
        overrides = {k: v for k, v in _TINY.items() if k in fields}
    torch.manual_seed(0)
    model = create_model(name, task=task, **overrides).to(device)
    optimizer = model.configure_optimizer(1e-4, 0.0)
    batch = {k: v.to(device) for k, v in example_batch(model, batch_size).items()}
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda")
           else contextlib.nullcontext())
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with amp:
            out = model(batch)
        out.loss.backward()
        optimizer.step()

    step()  # warm-up
    times = []
    for _ in range(steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    per_step = median(times)
    sps = batch_size / per_step
    paper = PAPER[name]
    epoch_s = paper["train_videos"] / sps
    cfg = model.config_dict()
    geometry = {k: cfg[k] for k in ("n_segments", "frames_per_segment", "n_frames", "frame_size", "patch_size",
                                    "n_mfcc", "mfcc_frames", "vocab_size", "graph_dim", "dim") if k in cfg}
    return {"model": name, "task": task, "inputs": list(model.inputs), "geometry": geometry,
            "n_params": int(sum(p.numel() for p in model.parameters())), "batch_size": batch_size,
            "seconds_per_step": per_step, "samples_per_s": sps, "dataset": paper["dataset"],
            "train_videos": paper["train_videos"], "epoch_s_projected": epoch_s,
            "paper_epoch_s": paper["paper_epoch_s"], "gpu_target_epoch_s": paper["gpu_target_epoch_s"]}


def run(mode: str = "quick", *, device: str = "cpu", batch_size: int | None = None, threads: int = 1,
        models: list[str] | None = None) -> dict[str, Any]:
    """Measure every headline model (see the module docstring); returns the JSON-able result."""
    import torch

    if mode not in _SIZES:
        raise ValueError(f"mode={mode!r}: expected one of {sorted(_SIZES)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine; use --device cpu")
    torch.set_num_threads(threads)
    load_before = load_average()
    t_start = time.perf_counter()
    size = _SIZES[mode]
    b = batch_size or size["batch"]
    rows = [_measure(name, mode, b, size["steps"], device) for name in (models or list(MODELS))]
    return {"benchmark": "models", "mode": mode, "device": device, "threads": threads,
            "command": f"python bench/bench_models.py --{mode} --device {device}", "models": rows,
            "seconds": time.perf_counter() - t_start, "load_avg_1m_before": load_before,
            "load_avg_1m_after": load_average(), "machine": machine_info()}


def render(res: dict[str, Any]) -> str:
    """The benchmark's table as text."""
    rows = []
    for r in res["models"]:
        target = r["gpu_target_epoch_s"]
        rows.append({"model": f"{r['model']} ({r['task']})", "params": f"{r['n_params'] / 1e6:.2f}M",
                     "batch": r["batch_size"], "s/step": r["seconds_per_step"], "samples/s": r["samples_per_s"],
                     "train set": f"{r['dataset']} ({r['train_videos']:,})",
                     "epoch (projected)": f"{r['epoch_s_projected'] / 60:.1f} min",
                     "paper epoch": "-" if r["paper_epoch_s"] is None else f"{r['paper_epoch_s'] / 60:.1f} min",
                     "GPU target": "-" if target is None else f"≤ {target / 60:.2f} min"})
    head = (f"model compute, forward+backward+step ({res['mode']}, {res['device']}, {res['threads']} threads; "
            f"load avg {res['load_avg_1m_before']:.1f} → {res['load_avg_1m_after']:.1f})")
    return table(head, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="batch 8, 3 timed steps per model (default)")
    mode.add_argument("--full", action="store_true", help="batch 16, 10 timed steps per model")
    mode.add_argument("--tiny", action="store_true", help="seconds-long smoke run (tiny models)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    parser.add_argument("--batch-size", type=int, default=None, help="override the batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--models", nargs="*", default=None, help=f"subset of {list(MODELS)}")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/models.json)")
    args = parser.parse_args(argv)
    name = "full" if args.full else "tiny" if args.tiny else "quick"
    res = run(name, device=args.device, batch_size=args.batch_size, threads=args.threads, models=args.models)
    path = write_result("models", res, args.out)
    print(render(res))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
