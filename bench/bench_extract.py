"""Benchmark 1: per-video extraction against the decode floor, a naive OpenCV baseline, and peak memory per worker.

For every clip of the benchmark sets (``bench/_media.py``) and in every repeat, interleaved so that all methods see
the same load:

* ``floor``: ``ffmpeg -i FILE -f null -`` — decoding every video and audio frame once, the least any full-decode
  extractor must do;
* ``default``: the pipeline's own per-video function (``features.extract_video.extract_video``) for the default
  stages probe + frames (per-second and uniform profiles) + audio/MFCC, with ``ExtractConfig()`` defaults; it
  returns the outputs without storing them, so disk writes are not counted;
* ``keyframe``: the same with ``ExtractConfig(keyframes=True)`` (samples from the nearest keyframes);
* ``frames``: probe + frames only (what the naive baseline does) — on the long video and the first clip of each set;
* ``naive``: OpenCV decoding every frame (``VideoCapture.read``), then keeping the frames nearest to the same sample
  instants, resized and centre-cropped like the pipeline — on the same clips as ``frames``.

Ratios per clip are medians over repeats of ``method / floor``; a set's ratio is the mean over its clips. Peak memory:
one fresh interpreter per set (warmed up on a tiny clip) extracts the set's largest clip with the default stages while
a thread samples, every 5 ms, its RSS plus the RSS of its running ffmpeg/ffprobe children (``/proc``); the largest
sum is what one worker holds at once (``ru_maxrss`` of children would miss that they run concurrently, and counts a
forked child's copy of the parent before ``exec``).

Targets: default ≤ 1.0× the floor on average, keyframe ≤ 0.3× the floor, frames ≥ 3× faster than
naive on the long video, peak RSS per worker ≤ 500 MB whatever the video's length.

    .venv/bin/python bench/bench_extract.py            # --quick (default)
    .venv/bin/python bench/bench_extract.py --full     # the full sets (generates ~20 min of 1080p once, cached)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    fmt_ratio, load_average, machine_info, median, table, timed, verdict, write_result,
)
from bench._media import MEDIA_DIR, MODES, ensure_media, media_sets  # noqa: E402

__all__ = ["run", "main", "TARGETS"]

#: this benchmark's targets
TARGETS = {"default_vs_floor": 1.0, "keyframe_vs_floor": 0.3, "naive_vs_frames_long": 3.0, "peak_rss_mb": 500.0}
_REPEATS = {"tiny": 1, "quick": 3, "full": 3}
_LONG_REPEATS = {"tiny": 1, "quick": 2, "full": 2}


def _pipeline_work(path: Path, todo: list[str], keyframes: bool = False) -> dict[str, Any]:
    """The pipeline's per-video function (:func:`features.extract_video.extract_video`) for ``todo`` stages with the
    default ExtractConfig; outputs are returned, not stored, and a failed stage raises."""
    from features.extract_video import ExtractConfig, StageFailure, extract_video

    cfg = ExtractConfig(keyframes=keyframes)
    out = extract_video({"video_id": path.stem, "source_path": str(path)}, todo, cfg)
    failed = {s: r.error for s, r in out.items() if isinstance(r, StageFailure)}
    if failed:
        raise RuntimeError(f"benchmark extraction of {path.name!r} failed: {failed}")
    return out


def _floor(path: Path) -> None:
    """``ffmpeg -i FILE -f null -``: every stream decoded once, nothing else."""
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-f", "null", "-"],
                   check=True, capture_output=True, timeout=3600)


def _naive_frames(path: Path) -> int:
    """OpenCV decodes every frame; the frames nearest the per-second and uniform instants are kept (resize the short
    side to 80 with area interpolation, centre-crop 64, BGR → RGB). Returns how many frames were decoded."""
    import cv2
    import numpy as np

    from features.extract_video import ExtractConfig

    cfg = ExtractConfig()
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot open {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    duration = cap.get(cv2.CAP_PROP_FRAME_COUNT) / fps
    times = [s + (j + 0.5) / cfg.frames_per_segment for s in range(cfg.n_segments)
             for j in range(cfg.frames_per_segment)]
    times += [(i + 0.5) * duration / cfg.n_frames for i in range(cfg.n_frames)]
    wanted: dict[int, int] = {}
    for t in times:
        if t < duration:
            k = int(round(t * fps))
            wanted[k] = wanted.get(k, 0) + 1
    kept: list[np.ndarray] = []
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        for _ in range(wanted.get(n, 0)):
            h, w = frame.shape[:2]
            scale = 80 / min(h, w)
            small = cv2.resize(frame, (max(80, round(w * scale)), max(80, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
            y0, x0 = (small.shape[0] - 64) // 2, (small.shape[1] - 64) // 2
            kept.append(cv2.cvtColor(small[y0:y0 + 64, x0:x0 + 64], cv2.COLOR_BGR2RGB))
        n += 1
    cap.release()
    return n


_RSS_CHILD = r"""
import json, os, sys, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench.bench_extract import _pipeline_work, _rss_sampler
stop, peak = threading.Event(), {}
_pipeline_work(Path(sys.argv[3]), ["probe", "frames", "audio"])  # imports + librosa/numba warm-up on a tiny clip
baseline = _rss_sampler(None, {})
sampler = threading.Thread(target=_rss_sampler, args=(stop, peak), daemon=True)
sampler.start()
_pipeline_work(Path(sys.argv[2]), ["probe", "frames", "audio"])
stop.set()
sampler.join()
print(json.dumps({**peak, "baseline_mb": baseline["self_mb"]}))
"""


def _rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's list), from /proc."""
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return out


def _rss_sampler(stop: Any, peak: dict[str, float], every: float = 0.005) -> dict[str, float]:
    """Sample this process's RSS plus its descendants' every ``every`` s until ``stop`` is set (once if None);
    ``peak`` gets the largest sum seen (``worker_mb``) and its parts. Children still running this interpreter
    (between fork and exec) are skipped: they share the parent's pages and would be counted twice."""
    me = os.getpid()
    my_exe = os.readlink(f"/proc/{me}/exe")
    while True:
        own, kids, todo = _rss_mb(me), 0.0, _children(me)
        while todo:
            pid = todo.pop()
            try:
                if os.readlink(f"/proc/{pid}/exe") == my_exe:
                    continue
            except OSError:
                continue
            kids += _rss_mb(pid)
            todo += _children(pid)
        if own + kids > peak.get("worker_mb", 0.0):
            peak.update(worker_mb=own + kids, self_mb=own, child_mb=kids)
        peak["self_peak_mb"] = max(peak.get("self_peak_mb", 0.0), own)
        peak["child_peak_mb"] = max(peak.get("child_peak_mb", 0.0), kids)
        if stop is None or stop.wait(every):
            return {"self_mb": own, "child_mb": kids}


def _peak_rss(path: Path, warm: Path) -> dict[str, float]:
    """Extract ``path`` (default stages) in a fresh interpreter (warmed up on ``warm``) while sampling its RSS and
    its children's every 5 ms: the peak of the sum, its parts, and the interpreter's RSS before the run."""
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", _RSS_CHILD, root, str(path), str(warm)], capture_output=True,
                          text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"peak-RSS subprocess failed on {path}: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _warm_up(path: Path) -> None:
    """First calls pay one-off costs (imports, librosa's numba compilation): pay them before timing."""
    _pipeline_work(path, ["probe", "frames", "audio"])
    _naive_frames(path)


def run(mode: str = "quick", *, repeats: int | None = None, rss: bool = True, sets: list[str] | None = None,
        media_dir: Path = MEDIA_DIR) -> dict[str, Any]:
    """Measure every clip of ``mode``'s media sets (generated into ``media_dir`` when not cached); returns the
    JSON-able result (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    load_before = load_average()
    t_start = time.perf_counter()
    media = ensure_media(mode, media_dir)
    specs = media_sets(mode)
    names = sets or list(media)
    _warm_up(media[names[0]][0])
    clips: list[dict[str, Any]] = []
    for name in names:
        for i, (path, spec) in enumerate(zip(media[name], specs[name])):
            compare_naive = name == "long1080" or i == 0
            clips.append({"set": name, "path": path, "label": spec.label, "naive": compare_naive,
                          "reps": (_LONG_REPEATS if name == "long1080" else _REPEATS)[mode] if repeats is None
                          else repeats, "times": {}, "cpu": {}})
    methods = {
        "floor": lambda p: _floor(p),
        "default": lambda p: _pipeline_work(p, ["probe", "frames", "audio"]),
        "keyframe": lambda p: _pipeline_work(p, ["probe", "frames", "audio"], keyframes=True),
        "frames": lambda p: _pipeline_work(p, ["probe", "frames"]),
        "naive": lambda p: _naive_frames(p),
    }
    order = list(methods)
    for rep in range(max(c["reps"] for c in clips)):
        for clip in clips:
            if rep >= clip["reps"]:
                continue
            # rotate the order every repeat so no method always runs first (cold caches) or last
            for m in order[rep % len(order):] + order[:rep % len(order)]:
                if m in ("frames", "naive") and not clip["naive"]:
                    continue
                wall, cpu, _ = timed(lambda: methods[m](clip["path"]))
                clip["times"].setdefault(m, []).append(wall)
                clip["cpu"].setdefault(m, []).append(cpu)

    rows = []
    for clip in clips:
        med = {m: median(v) for m, v in clip["times"].items()}
        cpu = {m: median(v) for m, v in clip["cpu"].items()}
        row = {"set": clip["set"], "clip": clip["path"].name, "label": clip["label"], "repeats": clip["reps"],
               **{f"{m}_s": med[m] for m in med}, **{f"{m}_cpu_s": cpu[m] for m in cpu},
               "default_vs_floor": med["default"] / med["floor"],
               "keyframe_vs_floor": med["keyframe"] / med["floor"],
               "default_cpu_vs_floor": cpu["default"] / cpu["floor"] if cpu["floor"] > 0 else math.nan}
        if "naive" in med:
            row["naive_vs_frames"] = med["naive"] / med["frames"]
            row["frames_vs_floor"] = med["frames"] / med["floor"]
        rows.append(row)

    per_set: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = [r for r in rows if r["set"] == name]
        per_set[name] = {
            "clips": len(mine),
            "label": mine[0]["label"],
            "default_vs_floor": sum(r["default_vs_floor"] for r in mine) / len(mine),
            "keyframe_vs_floor": sum(r["keyframe_vs_floor"] for r in mine) / len(mine),
            "default_cpu_vs_floor": sum(r["default_cpu_vs_floor"] for r in mine) / len(mine),
            "naive_vs_frames": median(r["naive_vs_frames"] for r in mine if "naive_vs_frames" in r),
        }
    if rss:
        warm = min((p for paths in media.values() for p in paths), key=lambda p: p.stat().st_size)
        for name in names if mode != "tiny" else names[-1:]:  # tiny: one subprocess is enough to exercise it
            biggest = max(media[name], key=lambda p: p.stat().st_size)
            per_set[name]["rss"] = _peak_rss(biggest, warm)
    overall_default = sum(r["default_vs_floor"] for r in rows) / len(rows)
    overall_key = sum(r["keyframe_vs_floor"] for r in rows) / len(rows)
    long_naive = per_set.get("long1080", {}).get("naive_vs_frames")
    peak = max((s["rss"]["worker_mb"] for s in per_set.values() if "rss" in s), default=None)
    result = {
        "benchmark": "extract",
        "mode": mode,
        "command": f"python bench/bench_extract.py --{mode}" if mode != "tiny" else "run(mode='tiny')",
        "sets": per_set,
        "clips": rows,
        "summary": {
            "default_vs_floor": overall_default,
            "keyframe_vs_floor": overall_key,
            "naive_vs_frames_long": long_naive,
            "peak_worker_rss_mb": peak,
        },
        "targets": TARGETS,
        "met": {
            "default_vs_floor": overall_default <= TARGETS["default_vs_floor"],
            "keyframe_vs_floor": overall_key <= TARGETS["keyframe_vs_floor"],
            "naive_vs_frames_long": None if long_naive is None or math.isnan(long_naive)
            else long_naive >= TARGETS["naive_vs_frames_long"],
            "peak_rss_mb": None if peak is None else peak <= TARGETS["peak_rss_mb"],
        },
        "seconds": time.perf_counter() - t_start,
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": load_average(),
        "machine": machine_info(),
    }
    return result


def render(res: dict[str, Any]) -> str:
    """The benchmark's table(s) as text."""
    rows = []
    for name, s in res["sets"].items():
        rss = s.get("rss", {})
        rows.append({"set": name, "clips": f"{s['clips']} × {s['label']}",
                     "default/floor": fmt_ratio(s["default_vs_floor"]),
                     "default cpu/floor cpu": fmt_ratio(s["default_cpu_vs_floor"]),
                     "keyframe/floor": fmt_ratio(s["keyframe_vs_floor"]),
                     "naive/frames": fmt_ratio(s["naive_vs_frames"]),
                     "peak RSS MB (python+ffmpeg)": f"{rss['worker_mb']:.0f} ({rss['self_mb']:.0f}+"
                                                    f"{rss['child_mb']:.0f}; idle {rss['baseline_mb']:.0f})"
                     if rss else "-"})
    s, t, met = res["summary"], res["targets"], res["met"]
    targets = [
        {"target": "default ≤ 1.0× floor (mean over clips)", "measured": fmt_ratio(s["default_vs_floor"]),
         "verdict": verdict(met["default_vs_floor"])},
        {"target": f"keyframe ≤ {t['keyframe_vs_floor']}× floor", "measured": fmt_ratio(s["keyframe_vs_floor"]),
         "verdict": verdict(met["keyframe_vs_floor"])},
        {"target": f"≥ {t['naive_vs_frames_long']:.0f}× faster than naive (long video)",
         "measured": fmt_ratio(s["naive_vs_frames_long"]), "verdict": verdict(met["naive_vs_frames_long"])},
        {"target": f"peak RSS per worker ≤ {t['peak_rss_mb']:.0f} MB",
         "measured": "n/a" if s["peak_worker_rss_mb"] is None else f"{s['peak_worker_rss_mb']:.0f} MB",
         "verdict": verdict(met["peak_rss_mb"])},
    ]
    head = (f"extraction vs decode floor ({res['mode']}; load avg {res['load_avg_1m_before']:.1f} → "
            f"{res['load_avg_1m_after']:.1f} on {res['machine']['cpu_count']} CPUs; {res['seconds']:.0f} s)")
    return table(head, rows) + "\n" + table("targets", targets)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer, shorter clips (default)")
    mode.add_argument("--full", action="store_true",
                      help="the full sets: 100×15 s 720p, 10×60 s and 1×10 min 1080p")
    mode.add_argument("--tiny", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="override the repeats per clip")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--sets", nargs="*", default=None, help="only these media sets (short720 minute1080 long1080)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/extract.json)")
    args = parser.parse_args(argv)
    name = "full" if args.full else "tiny" if args.tiny else "quick"
    res = run(name, repeats=args.repeats, rss=not args.no_rss, sets=args.sets)
    path = write_result("extract", res, args.out)
    print(render(res))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
