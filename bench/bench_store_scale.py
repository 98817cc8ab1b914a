"""Benchmark: the feature store at 1,000 / 10,000 / 100,000 videos, per-video files (before) vs compacted (after).

The store is populated through the store API at full shapes, no media: one tiny source file hard-linked under every
video's name (planning hashes files, it never decodes them), ``plan_extraction`` for the planned fingerprints, then
``Store.write`` of every default per-video stage with arrays of the default extraction's shapes (frames: 15 per-second
and 100 uniform 64×64 RGB frames; audio: MFCC segments and the clip matrix; text: a 5,000-word bag of words built by
the text stage on generated transcripts). Array contents are smooth per-video ramps (they compress, so 100,000 videos
fit on disk; compression does not change file counts or request counts).

Up to ``--before-max`` videos (1,000 by default) every output is committed by ``Store.write`` (per-video files:
the *before* layout, measured, then compacted: *after*). Larger stores are populated with batch commits
(``Store.write_many``, 4,096 outputs a batch: straight into shards, as a bulk load would) and measured *after* only —
their per-video layout would take ~0.8 s a video to write on 2 loaded cores; *before* there is extrapolated from the
measured sizes, never run. Their compaction figure is an incremental one: 100 fresh frames outputs folded into the
full store (the compaction's memory grows with the stage's index, not with the fresh layer). ``--light-from N``:
sizes from N videos get 4×4 frames and 4 × 4 MFCC blocks — the same index, so their plan, inspect, summary and
memory figures are full-scale ones, their files and reads are not. Wall times come with CPU seconds where a child
process measures them (plan, flow, inspect, summary): on a loaded machine the CPU figure is the one that carries over.

Measured on that store before and after ``Store.compact`` (the same store, the same process where possible):

* **files** under the store, and per video;
* **plan**: ``plan_extraction`` with nothing to do (median of 3) and the whole ``extract_features`` flow with nothing to
  do (second call in a child process, and the first call's own seconds: a fresh process that finds the memos the
  plans left in ``cache/``; "before" runs it with compaction switched off so the layout stays per-video);
* **inspect**: ``vidpipe inspect DATASET --json`` as a command (interpreter start-up included; median of 3) and
  ``Store.summary()`` in process;
* **read**: ``Store.read("frames", id)`` latency over 200 random videos (median, p90; first read reported apart);
* **pack** (up to 2,000 videos): ``build_pack(["vision_seg", "audio_seg"], "emotion")`` from each layout;
* **compaction**: wall time and peak RSS of ``Store.compact`` in a child process; peak RSS of a no-op plan, likewise;
* **population**: wall time per video of ``Store.write`` (before) or ``Store.write_many`` (batch).

Targets: files/video ≤ 0.1 after compaction; no-op plan ≤ 5 s and inspect ≤ 3 s at 100,000 videos;
read ≤ 10 ms median; pack build after ≤ before.

    .venv/bin/python bench/bench_store_scale.py --quick            # 1,000 videos
    .venv/bin/python bench/bench_store_scale.py --videos 10000     # one size
    .venv/bin/python bench/bench_store_scale.py --full             # 1,000, 10,000 and 100,000 videos (hours)
    .venv/bin/python bench/bench_store_scale.py --videos 100000 --light-from 100000   # index-scale 100k
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    ROOT, WORK_DIR, load_average, machine_info, median, table, verdict, write_result,
)

__all__ = ["run", "main", "render", "populate", "TARGETS"]

TARGETS = {"files_per_video": 0.1, "plan_seconds": 5.0, "inspect_seconds": 3.0, "read_ms": 10.0}
_SIZES = {"tiny": [40], "quick": [1000], "full": [1000, 10_000, 100_000]}
_DATASET = "scale"
_PACK_MAX = 2000
_WORDS = [f"w{i:04d}" for i in range(6000)]


def _ramp(shape: tuple[int, ...], dtype, seed: int) -> Any:
    """A smooth array of ``shape`` (seven variants by ``seed``; shared and read-only: never modify it)."""
    import numpy as np

    return _ramp_of(tuple(shape), np.dtype(dtype).str, seed % 7)


@functools.lru_cache(maxsize=64)
def _ramp_of(shape: tuple[int, ...], dtype: str, variant: int) -> Any:
    import numpy as np

    n = int(np.prod(shape)) if shape else 1
    base = (np.arange(n, dtype=np.float64) % 251 + variant).reshape(shape)
    out = base.astype(dtype) if np.dtype(dtype).kind != "b" else (base.astype(np.int64) % 2 == 0)
    out.setflags(write=False)
    return out


@contextlib.contextmanager
def _batched_writes(store: Any, batch: int = 4096):
    """``store.write`` calls buffered per stage and committed by ``Store.write_many``, ``batch`` outputs at a time."""
    pending: dict[str, list[dict]] = collections.defaultdict(list)

    def write(stage: str, video_id: str, fingerprint: str, *, version: int, arrays=None, record=None, params=None,
              seconds: float = 0.0) -> None:
        pending[stage].append({"video_id": video_id, "fingerprint": fingerprint, "version": version,
                               "arrays": arrays, "record": record, "params": params, "seconds": seconds})
        if len(pending[stage]) >= batch:
            store.write_many(stage, pending.pop(stage))

    store.write = write  # this handle only (an instance attribute over the method)
    try:
        yield
        for stage in list(pending):
            store.write_many(stage, pending.pop(stage))
    finally:
        del store.write


def populate(root: Path, n: int, media: Path, *, bulk: bool = False, light: bool = False,
             log=print) -> dict[str, Any]:
    """A store of ``n`` videos with every default per-video stage committed at full shapes (see module docstring);
    ``bulk``: through batch commits (``Store.write_many``) instead of one ``Store.write`` per output; ``light``:
    frames of 4×4 pixels and 4 × 4 MFCC blocks instead of the full shapes (the same index: an index-scale store)."""
    import numpy as np
    import pandas as pd

    from bench._media import clone_names
    from features.audio import AudioParams, clip_mfcc, segment_features
    from features.store import open_store
    from pipelines.extract import STAGE_VERSIONS, ExtractConfig, _text_stage, plan_extraction

    media.mkdir(parents=True, exist_ok=True)
    seed_file = media / "seed.bin"
    if not seed_file.exists():
        seed_file.write_bytes(os.urandom(4096))
    paths = clone_names([seed_file], media / "links", n)
    rng = random.Random(0)
    ids = [f"v{i:06d}" for i in range(n)]
    manifest = pd.DataFrame({
        "video_id": ids, "source_path": [str(p) for p in paths],
        "split": [("train", "val", "test")[0 if i % 10 < 7 else 1 if i % 10 < 8 else 2] for i in range(n)],
        "valence": [float(i % 2) for i in range(n)], "arousal": [float((i // 2) % 2) for i in range(n)],
        "transcript": [" ".join(rng.choice(_WORDS) for _ in range(30)) for _ in range(n)],
    })
    store = open_store(root, _DATASET, create=True)
    store.write_manifest(manifest)
    cfg = ExtractConfig()
    t0 = time.perf_counter()
    items, _, _ = plan_extraction(store, store.manifest(), cfg,  # as the flow plans: from the stored manifest
                                  ["probe", "frames", "audio", "transcripts", "metadata"])
    params = AudioParams(sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_segments=cfg.n_segments)
    seg_shape, clip_shape = segment_features(None, params)[0].shape, clip_mfcc(None, params)[0].shape
    side = 4 if light else 64
    shapes = {"per_second": (15, side, side, 3), "uniform": (cfg.n_frames, side, side, 3)}
    if light:
        seg_shape, clip_shape = (*seg_shape[:2], 4, 4), (4, 4)
    batched = functools.partial(_batched_writes, store) if bulk else contextlib.nullcontext
    with batched():
        for k, item in enumerate(items):
            vid, fps = item["row"]["video_id"], item["fps"]

            def put(stage: str, arrays=None, record=None) -> None:
                store.write(stage, vid, fps[stage], version=STAGE_VERSIONS[stage], arrays=arrays, record=record,
                            params=cfg.stage_params(stage), seconds=0.1)

            put("probe", record={"duration": 15.0, "fps": 30.0, "width": 640, "height": 360, "display_width": 640,
                                 "display_height": 360, "rotation": 0, "has_audio": True, "codec": "h264",
                                 "audio_codec": "aac", "sample_rate": 44100, "channels": 2, "frames": 450,
                                 "bit_rate": 800_000, "container": "mov,mp4,m4a,3gp,3g2,mj2"})
            frames = {}
            for name, shape in shapes.items():
                frames[name] = _ramp(shape, np.uint8, k)
                frames[f"{name}_valid"] = np.ones(shape[0], bool)
                frames[f"{name}_times"] = (np.arange(shape[0], dtype=np.float32) + 0.5)
            put("frames", frames, {"profiles": list(shapes), "valid_frames": {s: v[0] for s, v in shapes.items()},
                                   "warnings": []})
            put("audio", {"segments": _ramp(seg_shape, np.float32, k), "segments_mask": np.ones(seg_shape[0], bool),
                          "clip": _ramp(clip_shape, np.float32, k), "clip_valid": np.array(True)},
                {"has_audio": True, "silent": False, "samples": 240_000})
            put("transcripts", record={"text": item["row"]["transcript"], "source": "dataset", "words": []})
            put("metadata", record={"duration": 15.0, "width": 640, "height": 360, "aspect": 1.78, "fps": 30.0,
                                    "has_audio": True, "upload_hour": -1, "upload_weekday": -1, "desc_words": 0,
                                    "hashtags": 0, "has_song": False})
            if (k + 1) % 5000 == 0:
                log(f"  populated {k + 1}/{n} videos ({time.perf_counter() - t0:.0f} s)")
    with batched():  # the text stage reads the committed transcripts
        _text_stage(store, store.manifest(), cfg, False)
    store.consolidate()
    return {"populate_s": round(time.perf_counter() - t0, 1), "populate_ms_per_video":
            round((time.perf_counter() - t0) / n * 1000, 2), "populated_by": "write_many" if bulk else "write"}


def _files(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def _child(code: str, *args: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last (with its own peak RSS in MiB)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIDPIPE_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


# peak RSS of this process image: VmHWM (ru_maxrss would carry the parent's peak over fork and exec)
_RSS = ("rss = lambda: int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) "
        "/ 1024\n")
_PLAN = _RSS + """import json, sys, time
from features.store import open_store
from pipelines.extract import STAGES, ExtractConfig, plan_extraction
base = rss()
store = open_store(sys.argv[1], sys.argv[2])
m = store.manifest()
t, c = time.perf_counter(), time.process_time()
items, counts, hashed = plan_extraction(store, m, ExtractConfig(), list(STAGES))
print(json.dumps({"seconds": time.perf_counter() - t, "cpu_s": time.process_time() - c, "items": len(items),
                  "rss_mb": rss(), "base_rss_mb": base}))
"""
_COMPACT = _RSS + """import json, sys, time
from features.store import open_store
base = rss()
store = open_store(sys.argv[1], sys.argv[2])
t = time.perf_counter(); stats = store.compact()
print(json.dumps({"seconds": time.perf_counter() - t, "stats": stats, "rss_mb": rss(), "base_rss_mb": base}))
"""
_FLOW = _RSS + """import json, os, sys, time
from bench._common import prefect_env
prefect_env()
from features.store import Store
if sys.argv[3] == "no-compaction":
    Store.compact = lambda self, **kw: {"folded": 0, "dropped": 0, "generation": 0}
from pipelines.extract import extract_features
c0 = time.process_time(); first = extract_features(dataset=sys.argv[2], root=sys.argv[1])
first_cpu = time.process_time() - c0
t, c = time.perf_counter(), time.process_time(); res = extract_features(dataset=sys.argv[2], root=sys.argv[1])
done = sum(c.get("done", 0) for c in res["stages"].values())
print(json.dumps({"seconds": time.perf_counter() - t, "cpu_s": time.process_time() - c, "flow_seconds": res["seconds"],
                  "first_flow_seconds": first["seconds"], "first_cpu_s": first_cpu, "done": done, "rss_mb": rss()}))
"""


def _measure(root: Path, n: int, label: str, *, flow: bool, repeats: int = 3, log=print) -> dict[str, Any]:
    import numpy as np

    from features.packs import build_pack
    from features.store import open_store

    store = open_store(root, _DATASET)
    out: dict[str, Any] = {"files": _files(Path(store.path))}
    out["files_per_video"] = out["files"] / n
    plans = [_child(_PLAN, str(root), _DATASET) for _ in range(repeats)]
    assert all(p["items"] == 0 for p in plans), plans
    out["plan_s"], out["plan_cpu_s"] = median(p["seconds"] for p in plans), median(p["cpu_s"] for p in plans)
    out["plan_rss_mb"] = max(p["rss_mb"] for p in plans)
    out["plan_base_rss_mb"] = plans[0]["base_rss_mb"]
    if flow:
        res = _child(_FLOW, str(root), _DATASET, "compaction" if label == "after" else "no-compaction")
        assert res["done"] == 0, res
        out["flow_s"], out["flow_work_s"], out["flow_cpu_s"] = res["seconds"], res["flow_seconds"], res["cpu_s"]
        # the first call in a fresh process (Prefect's start-up included in its CPU; the memos on disk are used)
        out["flow_first_work_s"], out["flow_first_cpu_s"] = res["first_flow_seconds"], res["first_cpu_s"]
    inspect, inspect_cpu = [], []  # CPU of each command: the growth of this process's children's CPU
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    children_cpu = used.ru_utime + used.ru_stime
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from pipelines.cli import main; main()", "inspect", _DATASET, "--root",
                        str(root), "--json"], check=True, capture_output=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        inspect.append(time.perf_counter() - t)
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        inspect_cpu.append(used.ru_utime + used.ru_stime - sum(inspect_cpu) - children_cpu)
    out["inspect_s"], out["inspect_cpu_s"] = median(inspect), median(inspect_cpu)
    t, c = time.perf_counter(), time.process_time()
    summary = open_store(root, _DATASET).summary()
    out["summary_s"], out["summary_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    assert summary["stages"]["frames"]["done"] == n, summary["stages"]
    reader = open_store(root, _DATASET)
    ids = sorted(reader.fingerprints("frames"))
    sample = random.Random(1).sample(ids, min(200, len(ids)))
    t = time.perf_counter()
    first = reader.read("frames", sample[0])
    out["read_first_ms"] = (time.perf_counter() - t) * 1000
    times = []
    for vid in sample:
        t = time.perf_counter()
        got = reader.read("frames", vid)
        times.append((time.perf_counter() - t) * 1000)
    assert got["uniform"].shape == first["uniform"].shape and first["uniform"].shape[0] == 100
    out["read_ms"], out["read_p90_ms"] = median(times), float(np.percentile(times, 90))
    if n <= _PACK_MAX:
        t = time.perf_counter()
        build_pack(reader, ["vision_seg", "audio_seg"], "emotion", refresh=True)
        out["pack_s"] = time.perf_counter() - t
        shutil.rmtree(Path(reader.path, "packs"), ignore_errors=True)
    log(f"  {label}: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))
    return out


def _refresh_some(root: Path, n_fresh: int) -> None:
    """Recommit ``n_fresh`` frames outputs unchanged (same fingerprints) through the fresh layer: work for an
    incremental compaction that leaves the plan a no-op."""
    from features.store import open_store

    store = open_store(root, _DATASET)
    for vid in sorted(store.fingerprints("frames"))[:n_fresh]:
        rec = store.entry("frames", vid)
        arrays = {k: v for k, v in store.read("frames", vid).items() if k not in rec.record}
        store.write("frames", vid, rec.fingerprint, version=rec.version, arrays=arrays, record=rec.record,
                    params=rec.params, seconds=rec.seconds)


def run(mode: str = "quick", *, sizes: list[int] | None = None, work: Path | None = None, flow: bool = True,
        repeats: int = 3, before_max: int = 1000, light_from: int | None = None, log=print) -> dict[str, Any]:
    """Populate, measure before, compact, measure after, for each size; returns the result document. Sizes above
    ``before_max`` are populated by batch commits and measured after only (see the module docstring); sizes from
    ``light_from`` get light arrays (:func:`populate`): their plan, inspect, summary and memory figures are full-scale
    ones (they read the index), their files, read and compaction figures are not."""
    work = Path(work or WORK_DIR / "store_scale")
    res: dict[str, Any] = {"mode": mode, "machine": machine_info(), "load_avg_1m_before": load_average(),
                           "sizes": []}
    for n in sizes or _SIZES[mode]:
        root = work / f"root-{n}"
        shutil.rmtree(root, ignore_errors=True)
        bulk = n > before_max
        log(f"store at {n} videos: populating {root}" + (" (batch commits)" if bulk else ""))
        light = light_from is not None and n >= light_from
        row: dict[str, Any] = {"videos": n, "light": light,
                               **populate(root, n, work / "media", bulk=bulk, light=light, log=log)}
        log(f"  populated: {json.dumps(row)}")
        if bulk:
            _refresh_some(root, 100)
            row["compaction_kind"] = "incremental: 100 fresh frames outputs into the full store"
        else:
            row["before"] = _measure(root, n, "before", flow=flow, repeats=repeats, log=log)
            row["compaction_kind"] = "every output"
        compaction = _child(_COMPACT, str(root), _DATASET)
        row["compact_s"], row["compact_rss_mb"] = compaction["seconds"], compaction["rss_mb"]
        row["compact_stats"] = compaction["stats"]
        row["after"] = _measure(root, n, "after", flow=flow, repeats=repeats, log=log)
        res["sizes"].append(row)
        shutil.rmtree(root, ignore_errors=True)
    res["load_avg_1m_after"] = load_average()
    big = max(res["sizes"], key=lambda r: r["videos"])
    after = big["after"]
    full = max([r for r in res["sizes"] if not r.get("light")] or [None], key=lambda r: r["videos"] if r else 0)
    res["met"] = {  # files and reads from full-shape stores only (light ones hold other arrays)
        "files_per_video": full["after"]["files_per_video"] <= TARGETS["files_per_video"] if full else None,
        "plan_seconds": after.get("flow_s", after["plan_s"]) <= TARGETS["plan_seconds"]
        if big["videos"] >= 100_000 else None,
        "inspect_seconds": after["inspect_s"] <= TARGETS["inspect_seconds"] if big["videos"] >= 100_000 else None,
        "read_ms": full["after"]["read_ms"] <= TARGETS["read_ms"] if full else None,
    }
    packs = [r for r in res["sizes"] if "pack_s" in r["after"] and "before" in r]
    res["met"]["pack"] = all(r["after"]["pack_s"] <= r["before"]["pack_s"] for r in packs) if packs else None
    return res


def render(res: dict[str, Any]) -> str:
    rows = []
    for r in res["sizes"]:
        for label in [k for k in ("before", "after") if k in r]:
            m = r[label]
            rows.append({"videos": f"{r['videos']}" + (" (light)" if r.get("light") else ""),
                         "layout": "per-video files" if label == "before" else "compacted",
                         "files": m["files"], "files/video": f"{m['files_per_video']:.3f}",
                         "plan s (CPU)": f"{m['plan_s']:.2f} ({m.get('plan_cpu_s', float('nan')):.2f})",
                         "flow no-op s (CPU)": f"{m['flow_s']:.2f} ({m.get('flow_cpu_s', float('nan')):.2f})"
                         if "flow_s" in m else "",
                         "inspect s (CPU)": f"{m['inspect_s']:.2f} ({m.get('inspect_cpu_s', float('nan')):.2f})",
                         "read ms (p50/p90)": f"{m['read_ms']:.1f} / {m['read_p90_ms']:.1f}",
                         "pack s": f"{m['pack_s']:.1f}" if "pack_s" in m else "",
                         "plan RSS MiB": f"{m['plan_rss_mb']:.0f}"})
    comp = [{"videos": r["videos"], "populate s": r["populate_s"], "populated by": r["populated_by"],
             "compaction": r["compaction_kind"], "compact s": f"{r['compact_s']:.1f}",
             "compact RSS MiB": f"{r['compact_rss_mb']:.0f}", "shards": r["compact_stats"]["shards_written"]}
            for r in res["sizes"]]
    met = res["met"]
    targets = [{"target": "files/video ≤ 0.1 after compaction", "verdict": verdict(met["files_per_video"])},
               {"target": "no-op plan ≤ 5 s at 100,000 videos", "verdict": verdict(met["plan_seconds"])},
               {"target": "inspect --json ≤ 3 s at 100,000 videos", "verdict": verdict(met["inspect_seconds"])},
               {"target": "read one video ≤ 10 ms median", "verdict": verdict(met["read_ms"])},
               {"target": "pack build from compacted ≤ from per-video files", "verdict": verdict(met["pack"])}]
    head = (f"store at scale ({res['mode']}; load avg {res['load_avg_1m_before']:.1f} → "
            f"{res['load_avg_1m_after']:.1f} on {res['machine']['cpu_count']} CPUs)")
    return table(head, rows) + "\n" + table("compaction", comp) + "\n" + table("targets", targets)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1,000 videos (default)")
    mode.add_argument("--full", action="store_true", help="1,000, 10,000 and 100,000 videos")
    mode.add_argument("--tiny", action="store_true", help="seconds-long smoke run (40 videos)")
    parser.add_argument("--videos", type=int, action="append", default=None, help="measure this size (repeatable)")
    parser.add_argument("--no-flow", action="store_true", help="skip the extract_features flow calls")
    parser.add_argument("--light-from", type=int, default=None,
                        help="sizes of at least this many videos get 4x4 frames and 4x4 MFCC blocks (index-scale)")
    parser.add_argument("--before-max", type=int, default=1000,
                        help="largest size populated per video and measured before compaction (default 1000)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default bench/results/work)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/store_scale.json)")
    args = parser.parse_args(argv)
    if args.videos and any(v < 10 for v in args.videos):
        parser.error(f"--videos {args.videos}: expected sizes of at least 10 videos")
    name = "full" if args.full else "tiny" if args.tiny else "quick"
    res = run(name, sizes=args.videos, work=args.work, flow=not args.no_flow, before_max=args.before_max,
              light_from=args.light_from)
    path = write_result("store_scale", res, args.out)
    print(render(res))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
