"""Benchmark 2: extraction throughput with 1 and 2 workers (threads, and the Dask runner) and Prefect's overhead.

A store is filled with ``N`` short clips (the ``short720`` set of ``bench/_media.py``, hard-linked under ``N``
names) and extracted from scratch — every stage, ``ExtractConfig(asr="none")`` so that speech recognition does not
dominate — once per arm, on a fresh store each time, the arms interleaved:

* ``direct``: the flow's body without Prefect — ``plan_extraction``, then ``extract_items`` (the batch task's body:
  ``features.extract_video`` per video, then the commits) for all videos in one thread, the text stage and
  ``consolidate`` (the same functions the flow calls);
* ``flow-1``: ``extract_features(workers=1)`` (ThreadPoolTaskRunner, batches of 8 videos per task);
* ``flow-2``: ``extract_features(workers=2)``;
* ``dask-2``: ``extract_features(dask_workers=2)`` (a local Dask cluster of two single-threaded worker processes;
  its start-up is inside the timing).

Prefect's orchestration overhead = ``(flow-1 − direct) / flow-1`` with both times measured around the call, i.e.
including flow-run creation and task submission (target ≤ 10 % at 1,000 short videos, ``--full``). Scaling =
``throughput(2 workers) / throughput(1 worker)`` (2.0 would be linear; on a 2-core machine shared with other work
it cannot be).

    .venv/bin/python bench/bench_scaling.py            # --quick: 12 videos
    .venv/bin/python bench/bench_scaling.py --full     # 1,000 videos (100 distinct 15 s 720p clips)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    WORK_DIR, fmt_ratio, load_average, machine_info, median, prefect_env, table, verdict, write_result,
)
from bench._media import MEDIA_DIR, MODES, clone_names, ensure_media  # noqa: E402

__all__ = ["run", "main", "TARGETS", "fill_store"]

TARGETS = {"prefect_overhead": 0.10}
_VIDEOS = {"tiny": 2, "quick": 12, "full": 1000}
_REPEATS = {"tiny": 1, "quick": 1, "full": 1}
DATASET = "bench"


def fill_store(root: Path, sources: list[Path], count: int, *, dataset: str = DATASET) -> Any:
    """A fresh store under ``root`` whose manifest lists ``count`` hard links of ``sources`` (a folder ingest)."""
    from features import open_store
    from features.sources import load_source

    media = root / "_media"
    clone_names(sources, media, count)
    shutil.rmtree(root / dataset, ignore_errors=True)
    store = open_store(root, dataset, create=True)
    manifest = load_source("folder", str(media))
    store.write_manifest(manifest.videos, manifest.edges, source={"kind": "folder", "path": str(media)})
    return store


def _direct(root: Path, cfg: Any, dataset: str = DATASET) -> float:
    """The flow's body without Prefect (one thread): plan, per-video stages, text stage, consolidate."""
    from features import open_store
    from pipelines.extract import STAGES, _text_stage, extract_items, plan_extraction

    t0 = time.perf_counter()
    store = open_store(root, dataset)
    manifest = store.manifest()
    with store.lock():
        items, _, _ = plan_extraction(store, manifest, cfg, list(STAGES))
        extract_items(store, items, cfg)
        _text_stage(store, manifest, cfg, False)
        store.consolidate(list(STAGES))
    return time.perf_counter() - t0


def _flow(root: Path, cfg: Any, *, workers: int | None = None, dask_workers: int | None = None,
          dataset: str = DATASET) -> tuple[float, dict]:
    from pipelines.extract import extract_features

    t0 = time.perf_counter()
    res = extract_features(dataset=dataset, root=str(root), config=cfg, workers=workers, dask_workers=dask_workers,
                           batch_size=8)
    return time.perf_counter() - t0, res


def _warm_prefect() -> None:
    """Start Prefect's ephemeral API (and import the flow machinery) before anything is timed."""
    from prefect import flow

    @flow(name="bench-warm-up")
    def warm_up() -> int:
        return 1

    warm_up()


def run(mode: str = "quick", *, videos: int | None = None, dask: bool = True, media_dir: Path = MEDIA_DIR,
        work_dir: Path = WORK_DIR) -> dict[str, Any]:
    """Extract ``videos`` clips once per arm (see the module docstring); returns the JSON-able result."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    prefect_env()
    from pipelines.extract import ExtractConfig

    load_before = load_average()
    t_start = time.perf_counter()
    n = videos or _VIDEOS[mode]
    sources = ensure_media(mode, media_dir)["short720"]
    cfg = ExtractConfig(asr="none")
    root = Path(work_dir) / f"scaling-{mode}"
    # warm up: imports, librosa's compilation, the Prefect API — none of it belongs to any arm (the tiny smoke run
    # times nothing that matters and skips it)
    if mode != "tiny":
        fill_store(root, sources, 1)
        _direct(root, cfg)
        _warm_prefect()

    arms: dict[str, Any] = {"direct": lambda: (_direct(root, cfg), None),
                            "flow-1": lambda: _flow(root, cfg, workers=1),
                            "flow-2": lambda: _flow(root, cfg, workers=2)}
    if dask:
        arms["dask-2"] = lambda: _flow(root, cfg, dask_workers=2)
    times: dict[str, list[float]] = {a: [] for a in arms}
    inner: dict[str, list[float]] = {a: [] for a in arms}
    for rep in range(_REPEATS[mode]):
        for name in list(arms)[rep % len(arms):] + list(arms)[:rep % len(arms)]:
            fill_store(root, sources, n)
            wall, res = arms[name]()
            if res is not None:
                done = res["stages"]["frames"]["done"]
                if done != n or res["failed_videos"]:
                    raise RuntimeError(f"arm {name}: {done} of {n} videos extracted, {res['failed_videos']} failed")
            times[name].append(wall)
            inner[name].append(res["seconds"] if res is not None else wall)
    shutil.rmtree(root, ignore_errors=True)

    med = {a: median(v) for a, v in times.items()}
    rows = []
    for a in arms:
        workers = 1 if a in ("direct", "flow-1") else 2
        rows.append({"arm": a, "workers": workers, "videos": n, "seconds": med[a],
                     "seconds_inside_flow": median(inner[a]), "videos_per_s": n / med[a],
                     "speedup_vs_flow1": med["flow-1"] / med[a]})
    overhead = (med["flow-1"] - med["direct"]) / med["flow-1"]
    return {
        "benchmark": "scaling",
        "mode": mode,
        "command": f"python bench/bench_scaling.py --{mode}",
        "videos": n,
        "clip": sources[0].name,
        "distinct_clips": len(sources),
        "arms": rows,
        "summary": {"prefect_overhead": overhead,
                    "scaling_threads_2": med["flow-1"] / med["flow-2"],
                    "scaling_dask_2": med["flow-1"] / med["dask-2"] if "dask-2" in med else None},
        "targets": TARGETS,
        "met": {"prefect_overhead": overhead <= TARGETS["prefect_overhead"]},
        "seconds": time.perf_counter() - t_start,
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": load_average(),
        "machine": machine_info(),
    }


def render(res: dict[str, Any]) -> str:
    """The benchmark's table(s) as text."""
    rows = [{"arm": r["arm"], "workers": r["workers"], "videos": r["videos"], "wall s": r["seconds"],
             "videos/s": r["videos_per_s"], "speedup vs flow-1": fmt_ratio(r["speedup_vs_flow1"])}
            for r in res["arms"]]
    s = res["summary"]
    head = (f"extraction scaling ({res['mode']}: {res['videos']} videos from {res['distinct_clips']} distinct clips; "
            f"load avg {res['load_avg_1m_before']:.1f} → {res['load_avg_1m_after']:.1f} on "
            f"{res['machine']['cpu_count']} CPUs)")
    targets = [{"target": "Prefect overhead ≤ 10 % (flow-1 vs direct)",
                "measured": f"{100 * s['prefect_overhead']:.1f} %",
                "verdict": verdict(res["met"]["prefect_overhead"])},
               {"target": "2 threads vs 1 (2.0 = linear)", "measured": fmt_ratio(s["scaling_threads_2"]),
                "verdict": "info"},
               {"target": "Dask 2 workers vs 1 thread", "measured": fmt_ratio(s["scaling_dask_2"]), "verdict": "info"}]
    return table(head, rows) + "\n" + table("targets", targets)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="12 videos (default)")
    mode.add_argument("--full", action="store_true", help="1,000 videos")
    mode.add_argument("--tiny", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--videos", type=int, default=None, help="override the number of videos")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask arm")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/scaling.json)")
    args = parser.parse_args(argv)
    name = "full" if args.full else "tiny" if args.tiny else "quick"
    res = run(name, videos=args.videos, dask=not args.no_dask)
    path = write_result("scaling", res, args.out)
    print(render(res))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
