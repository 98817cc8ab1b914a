"""Run every vidpipe benchmark, print one table each, write JSON under ``bench/results/`` — within a time budget.

    .venv/bin/python bench/run_all.py             # --quick (default; what `make bench` runs): budget 600 s
    .venv/bin/python bench/run_all.py --full      # the full sizes (hours on 2 cores; no budget unless --budget)
    .venv/bin/python bench/run_all.py --only extract incremental

Each benchmark runs in its own interpreter (so one's imports, threads and memory never colour another's numbers)
with a timeout of whatever is left of the budget; when the budget is spent, the remaining benchmarks are reported as
skipped rather than run. ``bench/results/summary.json`` collects every target with its measured value and verdict.

==============  ==========================  ====================================================================
benchmark       script                      what (targets in each script's docstring and in BENCHMARKS.md)
==============  ==========================  ====================================================================
``extract``     ``bench_extract.py``        per-video extraction / decode floor; vs naive OpenCV; keyframe mode;
                                            peak RSS per worker
``incremental`` ``bench_incremental.py``    no-change and 1 %-changed reruns over 1,000 videos
``scaling``     ``bench_scaling.py``        1 vs 2 workers (threads, Dask); Prefect overhead
``training``    ``bench_training.py``       pack-fed vs in-RAM training samples/s; pack build vs store read
``models``      ``bench_models.py``         forward+backward samples/s at paper-sized inputs
``graph``       ``bench_graph.py``          GAT pre-training at paper scale (311 songs, 88,279 videos)
``store_scale`` ``bench_store_scale.py``    the store at 1,000 videos (quick) / 1k-10k-100k (full): files, plans,
                                            inspect, reads, packs, before vs after compaction
==============  ==========================  ====================================================================
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import RESULTS_DIR, load_average, machine_info, table, write_result  # noqa: E402

__all__ = ["BENCHMARKS", "run_all", "summarise", "main"]

#: name → script, in the order they run (the cheapest and most decisive first)
BENCHMARKS = {
    "extract": "bench_extract.py",
    "incremental": "bench_incremental.py",
    "scaling": "bench_scaling.py",
    "training": "bench_training.py",
    "models": "bench_models.py",
    "graph": "bench_graph.py",
    "store_scale": "bench_store_scale.py",
}
_BUDGET = {"tiny": 600.0, "quick": 600.0, "full": None}


def _targets(name: str, res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target of a benchmark's result: what, measured, verdict."""
    met = res.get("met", {})
    if name == "extract":
        s = res["summary"]
        return [
            {"target": "extract: default stages ≤ 1.0× decode floor", "measured": s["default_vs_floor"],
             "met": met.get("default_vs_floor")},
            {"target": "extract: keyframe mode ≤ 0.3× decode floor", "measured": s["keyframe_vs_floor"],
             "met": met.get("keyframe_vs_floor")},
            {"target": "extract: ≥ 3× faster than naive OpenCV (long video)", "measured": s["naive_vs_frames_long"],
             "met": met.get("naive_vs_frames_long")},
            {"target": "extract: peak RSS per worker ≤ 500 MB", "measured": s["peak_worker_rss_mb"],
             "met": met.get("peak_rss_mb")},
        ]
    if name == "incremental":
        return [
            {"target": "incremental: nothing changed (1,000 videos) ≤ 2 s", "measured": res["no_change"]["wall_s"],
             "met": met.get("no_change_seconds")},
            {"target": "incremental: 1 % changed ≤ 1.2 × just-those + 2 s", "measured": res["changed"]["wall_s"],
             "met": met.get("changed")},
        ]
    if name == "scaling":
        return [{"target": "scaling: Prefect overhead ≤ 10 %", "measured": res["summary"]["prefect_overhead"],
                 "met": met.get("prefect_overhead")},
                {"target": "scaling: 2 threads / 1 (linear = 2.0)", "measured": res["summary"]["scaling_threads_2"],
                 "met": None}]
    if name == "training":
        return [{"target": "training: pack-fed ≥ 0.9 × in-RAM samples/s",
                 "measured": res["summary"]["min_pack_vs_ram"],
                 "met": met.get("pack_vs_ram")}]
    if name == "graph":
        return [{"target": "graph: 100 epochs ≤ 60 s on 2 cores (projected)",
                 "measured": res["seconds_100_epochs_projected"], "met": res.get("meets_target")}]
    if name == "store_scale":
        big = max(res["sizes"], key=lambda r: r["videos"])
        full = max([r for r in res["sizes"] if not r.get("light")] or [big], key=lambda r: r["videos"])
        return [
            {"target": f"store_scale: files/video ≤ 0.1 after compaction ({full['videos']:,} videos)",
             "measured": full["after"]["files_per_video"], "met": met.get("files_per_video")},
            {"target": f"store_scale: no-op plan ≤ 5 s at 100,000 videos ({big['videos']:,} measured)",
             "measured": big["after"].get("flow_s", big["after"]["plan_s"]), "met": met.get("plan_seconds")},
            {"target": f"store_scale: inspect --json ≤ 3 s at 100,000 videos ({big['videos']:,} measured)",
             "measured": big["after"]["inspect_s"], "met": met.get("inspect_seconds")},
            {"target": "store_scale: read one video ≤ 10 ms median (compacted)", "measured": full["after"]["read_ms"],
             "met": met.get("read_ms")},
            {"target": "store_scale: pack build from compacted ≤ from per-video files",
             "measured": full["after"].get("pack_s"), "met": met.get("pack")},
        ]
    if name == "models":
        return [{"target": f"models: {r['model']} samples/s (CPU, batch {r['batch_size']})",
                 "measured": r["samples_per_s"], "met": None} for r in res["models"]]
    return []


def run_all(mode: str = "quick", *, only: list[str] | None = None, budget: float | None = None,
            results_dir: Path = RESULTS_DIR) -> dict[str, Any]:
    """Run the benchmarks (``only`` a subset) in subprocesses within ``budget`` seconds; returns the summary."""
    if mode not in _BUDGET:
        raise ValueError(f"mode={mode!r}: expected one of {sorted(_BUDGET)}")
    names = only or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"only={unknown}: unknown benchmark(s); expected some of {list(BENCHMARKS)}")
    budget = _BUDGET[mode] if budget is None else budget
    here = Path(__file__).resolve().parent
    started = time.perf_counter()
    load_before = load_average()
    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        left = None if budget is None else budget - (time.perf_counter() - started)
        if left is not None and left < 5:
            runs[name] = {"status": "skipped: time budget spent", "seconds": 0.0}
            print(f"\n== {name}: skipped (budget of {budget:.0f} s spent)", flush=True)
            continue
        out = Path(results_dir) / f"{name}.json"
        out.unlink(missing_ok=True)
        cmd = [sys.executable, str(here / BENCHMARKS[name]), f"--{mode}", "--out", str(out)]
        print(f"\n== {name}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}", flush=True)
        t0 = time.perf_counter()
        try:
            done = subprocess.run(cmd, timeout=left, capture_output=True, text=True)
            status = "ok" if done.returncode == 0 and out.exists() else f"failed (exit {done.returncode})"
            text = done.stdout
            if status != "ok":
                text += done.stderr[-3000:]
        except subprocess.TimeoutExpired as exc:
            status = f"timed out after {left:.0f} s (budget)"
            text = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        print("\n".join(ln for ln in text.splitlines() if not ln.startswith("wrote ")), flush=True)
        runs[name] = {"status": status, "seconds": time.perf_counter() - t0}
        if status == "ok":
            runs[name]["result"] = json.loads(out.read_text())
    summary = summarise(mode, runs)
    summary.update(seconds=time.perf_counter() - started, budget_s=budget, load_avg_1m_before=load_before,
                   load_avg_1m_after=load_average(), machine=machine_info())
    return summary


def summarise(mode: str, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every target of every benchmark that ran, with its measured value and verdict."""
    rows = []
    for name, r in runs.items():
        if "result" not in r:
            rows.append({"benchmark": name, "target": r["status"], "measured": None, "met": None})
            continue
        rows += [{"benchmark": name, **t} for t in _targets(name, r["result"])]
    return {"mode": mode, "benchmarks": {n: {k: v for k, v in r.items() if k != "result"} for n, r in runs.items()},
            "targets": rows}


def render(summary: dict[str, Any]) -> str:
    """The summary table as text."""
    rows = [{"target": r["target"],
             "measured": "-" if r["measured"] is None else (f"{r['measured']:.3g}" if isinstance(r["measured"], float)
                                                             else str(r["measured"])),
             "verdict": {True: "met", False: "MISSED", None: "-"}[r["met"]]} for r in summary["targets"]]
    status = ", ".join(f"{n} {b['status']} ({b['seconds']:.0f} s)" for n, b in summary["benchmarks"].items())
    head = (f"vidpipe benchmarks ({summary['mode']}): {summary['seconds']:.0f} s; load avg "
            f"{summary['load_avg_1m_before']:.1f} → {summary['load_avg_1m_after']:.1f} on "
            f"{summary['machine']['cpu_count']} CPUs\n  {status}")
    return table(head, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, 600 s budget (default)")
    mode.add_argument("--full", action="store_true", help="the full sizes, no budget")
    mode.add_argument("--tiny", action="store_true", help="smoke sizes")
    parser.add_argument("--only", nargs="*", default=None, help=f"run only these of {list(BENCHMARKS)}")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default: 600 "
                                                                      "quick, none full)")
    args = parser.parse_args(argv)
    name = "full" if args.full else "tiny" if args.tiny else "quick"
    summary = run_all(name, only=args.only, budget=args.budget)
    path = write_result("summary", summary)
    print()
    print(render(summary))
    print(f"wrote {path}")
    return summary


if __name__ == "__main__":
    main()
