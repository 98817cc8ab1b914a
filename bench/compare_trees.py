"""Before/after: the same measurement on two source trees, side by side (alternating calls), to time a change.

Two persistent worker processes, one importing vidpipe from ``--before`` and one from ``--after`` (each tree's own
``features``/``pipelines``/``bench``), are called alternately on the same inputs, the order swapped every repeat, so
load on a shared machine hits both alike; medians are reported with ``after / before``. Cases:

* ``extract``: the default stages of one video (``bench_extract``'s pipeline work), per clip, next to
  ``ffmpeg -i FILE -f null -`` run by this driver in the same rotation;
* ``write``: ``Store.write`` of one frames output (per-second + uniform profiles, 6 arrays), 10 per call;
* ``nochange``: ``extract_features`` with nothing to do, and ``plan_extraction`` alone, on a store seeded per tree
  (``bench_incremental.seed_store``: 1,000 hard-linked clips by default), each tree re-keying its own copy first.

Get a "before" tree without touching your checkout, e.g. ``git archive <commit> | tar -x -C /tmp/before``::

    .venv/bin/python bench/compare_trees.py extract --before /tmp/before --after . --repeats 5 CLIP...
    .venv/bin/python bench/compare_trees.py write --before /tmp/before --after . --repeats 10
    .venv/bin/python bench/compare_trees.py nochange --before /tmp/before --after . --repeats 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import load_average, median, table, write_result  # noqa: E402

__all__ = ["main"]

_WORKER = r"""
import json, os, sys, time
tree, case, arg = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, tree)
from pathlib import Path
from bench._common import cpu_seconds
if case == "write":
    import numpy as np
    from features import open_store
    store = open_store(arg, "bench", create=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for name, n in (("per_second", 15), ("uniform", 100)):
        arrays[name] = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
        arrays[name + "_valid"], arrays[name + "_times"] = np.ones(n, bool), np.zeros(n, np.float32)
    store.write("frames", "warm", "fp", version=1, arrays=arrays, record={})
    print(json.dumps({"ready": True}), flush=True)
    for i, line in enumerate(sys.stdin):
        t0 = time.perf_counter()
        for j in range(10):
            store.write("frames", f"v{i}-{j}", "fp", version=1, arrays=arrays, record={})
        print(json.dumps({"wall": (time.perf_counter() - t0) / 10}), flush=True)
elif case == "extract":
    from bench.bench_extract import _pipeline_work
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        c0, t0 = cpu_seconds(), time.perf_counter()
        _pipeline_work(Path(line.strip()), ["probe", "frames", "audio"])
        print(json.dumps({"wall": time.perf_counter() - t0, "cpu": cpu_seconds() - c0}), flush=True)
else:
    from features import open_store
    from pipelines.extract import STAGES, ExtractConfig, extract_features, plan_extraction
    cfg = ExtractConfig(asr="none")
    extract_features(dataset="bench", root=arg, config=cfg, workers=1)  # this tree's keys
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        t0 = time.perf_counter()
        res = extract_features(dataset="bench", root=arg, config=cfg, workers=1)
        wall = time.perf_counter() - t0
        assert not any(res["stages"][s]["done"] for s in STAGES), res["stages"]
        t0 = time.perf_counter()
        store = open_store(arg, "bench")
        plan_extraction(store, store.manifest(), cfg, list(STAGES))
        print(json.dumps({"wall": wall, "flow": res["seconds"], "plan": time.perf_counter() - t0}), flush=True)
"""


def _start(tree: Path, case: str, arg: str, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(tree), case, arg], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line.startswith('{"ready"'):
        raise RuntimeError(f"worker for {tree} did not start (see its stderr above)")
    return proc


def _ask(proc: subprocess.Popen, what: str) -> dict[str, float]:
    proc.stdin.write(what + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def _floor(clip: str) -> dict[str, float]:
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", clip, "-f", "null", "-"],
                   check=True, capture_output=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": time.perf_counter() - t0, "cpu": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=["extract", "write", "nochange"])
    parser.add_argument("clips", nargs="*", help="extract: the media files to time")
    parser.add_argument("--before", type=Path, required=True, help="source tree before the change")
    parser.add_argument("--after", type=Path, default=Path("."), help="source tree after the change (default .)")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--videos", type=int, default=1000, help="nochange: videos in the seeded store")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/compare-<case>.json)")
    args = parser.parse_intermixed_args(argv)
    if args.case == "extract" and not args.clips:
        parser.error("extract needs at least one clip")
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "ERROR",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300", "VIDPIPE_PROGRESS": "0"}
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    load_before = load_average()
    workers: dict[str, subprocess.Popen] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidpipe-compare-") as tmp:
        if args.case == "nochange":
            from bench._media import MEDIA_DIR
            from bench.bench_incremental import _clip, seed_store
            from pipelines.extract import ExtractConfig

            seed_root = Path(tmp) / "seed"
            seed_store(seed_root, [_clip(v, MEDIA_DIR) for v in range(3)], args.videos, ExtractConfig(asr="none"))
            for name in trees:  # each tree re-keys its own copy (fingerprint formulas may differ)
                subprocess.run(["cp", "-a", str(seed_root), str(Path(tmp) / name)], check=True)
        for name, tree in trees.items():  # one at a time: two ephemeral Prefect APIs starting at once time out
            workers[name] = _start(tree, args.case, str(Path(tmp) / name), {**env, "PREFECT_HOME": f"{tmp}/ph-{name}"})
        try:
            if args.case == "extract":
                for clip in args.clips:  # warm-up: imports, librosa's compilation
                    _ask(workers["before"], clip), _ask(workers["after"], clip)
                got: dict[str, dict[str, list[dict]]] = {
                    c: {"before": [], "after": [], "floor": []} for c in args.clips}
                for i in range(args.repeats):
                    for clip in args.clips:
                        order = ["before", "after", "floor"][i % 3:] + ["before", "after", "floor"][:i % 3]
                        for m in order:
                            got[clip][m].append(_floor(clip) if m == "floor" else _ask(workers[m], clip))
                for clip, by in got.items():
                    med = {m: {k: median(r[k] for r in v) for k in ("wall", "cpu")} for m, v in by.items()}
                    rows.append({"clip": Path(clip).name, "before s": med["before"]["wall"],
                                 "after s": med["after"]["wall"], "floor s": med["floor"]["wall"],
                                 "before/floor": med["before"]["wall"] / med["floor"]["wall"],
                                 "after/floor": med["after"]["wall"] / med["floor"]["wall"],
                                 "after/before": med["after"]["wall"] / med["before"]["wall"],
                                 "cpu after/before": med["after"]["cpu"] / med["before"]["cpu"]})
            elif args.case == "write":
                got3: dict[str, list[float]] = {"before": [], "after": []}
                for i in range(args.repeats):
                    for name in (["before", "after"] if i % 2 == 0 else ["after", "before"]):
                        got3[name].append(_ask(workers[name], "run")["wall"])
                rows.append({"measure": "Store.write, frames output (6 arrays)", "before s": median(got3["before"]),
                             "after s": median(got3["after"]),
                             "after/before": median(got3["after"]) / median(got3["before"])})
            else:
                got2: dict[str, list[dict]] = {"before": [], "after": []}
                for i in range(args.repeats):
                    for name in (["before", "after"] if i % 2 == 0 else ["after", "before"]):
                        got2[name].append(_ask(workers[name], "run"))
                med2 = {n: {k: median(r[k] for r in v) for k in ("wall", "flow", "plan")} for n, v in got2.items()}
                for k in ("wall", "flow", "plan"):
                    rows.append({"measure": {"wall": "flow call (wall)", "flow": "flow work", "plan":
                                             "plan_extraction"}[k], "before s": med2["before"][k],
                                 "after s": med2["after"][k], "after/before": med2["after"][k] / med2["before"][k]})
        finally:
            for proc in workers.values():
                proc.stdin.close()
                proc.wait()
    res = {"benchmark": f"compare-{args.case}", "before": str(trees["before"]), "after": str(trees["after"]),
           "repeats": args.repeats, "rows": rows, "load_avg_1m_before": load_before,
           "load_avg_1m_after": load_average(),
           "command": "python bench/compare_trees.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    path = write_result(f"compare-{args.case}", res, args.out)
    print(table(f"before/after ({args.case}; {args.repeats} alternating repeats; load avg {load_before:.1f} → "
                f"{res['load_avg_1m_after']:.1f})", rows))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
