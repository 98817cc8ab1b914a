"""Benchmark 3: incremental reruns of ``extract_features`` over 1,000 ingested videos.

Setting up 1,000 extracted videos cheaply: three distinct 2-second clips are hard-linked under 1,000 names (identical
content is fine for planning: the digest memo keys on path, size, mtime and inode, so every name is hashed once).
One video per distinct clip is extracted for real by the flow; the other names get **copies of those index
records** under their own planned fingerprints (``Store.write`` without arrays: the no-change path reads index
records only, never arrays), and one more flow run builds the vocabulary and the text stage for all of them and
consolidates the tables. The store is then in the state a real extraction leaves behind, as far as planning sees.

Measured, interleaved:

* **nothing changed**: ``extract_features`` on the unchanged store (median over repeats) — the wall time around the
  call and the flow's own ``seconds`` (its work, without Prefect's flow-run set-up); and ``plan_extraction`` alone;
* **1 % changed**: 10 of the files replaced by other content (every repeat swaps in different content), then
  ``extract_features`` — against the time to extract just those 10 videos (the same flow on a fresh store that holds
  only them).

Targets: nothing changed ≤ 2 s; 1 % changed ≤ 1.2 × (just those videos) + 2 s.

    .venv/bin/python bench/bench_incremental.py          # --quick: 1,000 videos, 2 repeats
    .venv/bin/python bench/bench_incremental.py --full   # 1,000 videos, 5 repeats
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.atomic import atomic_file  # noqa: E402
from bench._common import (  # noqa: E402
    WORK_DIR, load_average, machine_info, median, prefect_env, table, verdict, write_result,
)
from bench._media import MEDIA_DIR, MODES, ClipSpec, make_clip  # noqa: E402
from bench.bench_scaling import DATASET, fill_store  # noqa: E402

__all__ = ["run", "main", "TARGETS", "seed_store"]

TARGETS = {"no_change_seconds": 2.0, "changed_factor": 1.2, "changed_slack_seconds": 2.0}
_VIDEOS = {"tiny": 20, "quick": 1000, "full": 1000}
_REPEATS = {"tiny": 1, "quick": 2, "full": 5}


def _clip(variant: int, media_dir: Path) -> Path:
    return make_clip(ClipSpec(seconds=2, width=160, height=90, fps=25, variant=variant), media_dir)


def seed_store(root: Path, sources: list[Path], count: int, cfg: Any) -> Any:
    """A store of ``count`` videos (``sources`` hard-linked) whose every stage is committed (see the docstring)."""
    from features import open_store
    from pipelines.extract import STAGE_VERSIONS, STAGES, extract_features, plan_extraction

    store = fill_store(root, sources, count)
    manifest = store.manifest().sort_values("video_id").reset_index(drop=True)
    # video i is a link of sources[i % len(sources)] (clone_names): extract one per distinct clip for real
    reps = {i: manifest["video_id"].iloc[i] for i in range(min(len(sources), count))}
    extract_features(dataset=DATASET, root=str(root), config=cfg, video_ids=list(reps.values()), workers=1)
    store = open_store(root, DATASET)
    per_video = [s for s in STAGES if s != "text"]
    rep_records = {i: {s: store.entry(s, vid) for s in per_video} for i, vid in reps.items()}
    items, _, _ = plan_extraction(store, manifest, cfg, per_video)
    index = {vid: i for i, vid in enumerate(manifest["video_id"])}
    with store.lock():
        for item in items:
            vid = item["row"]["video_id"]
            src = rep_records[index[vid] % len(sources)]
            for stage in item["todo"]:
                rec = src[stage]
                store.write(stage, vid, item["fps"][stage], version=STAGE_VERSIONS[stage], record=rec.record,
                            params=rec.params, seconds=rec.seconds)
    extract_features(dataset=DATASET, root=str(root), config=cfg, workers=1)  # text stage + consolidated tables
    return open_store(root, DATASET)


def _replace(dst: Path, src: Path) -> None:
    """Give ``dst`` the content of ``src`` as a new file (never writing through a hard link to other names)."""
    with atomic_file(dst, fsync=False) as tmp:
        shutil.copyfile(src, tmp)


def run(mode: str = "quick", *, videos: int | None = None, repeats: int | None = None,
        media_dir: Path = MEDIA_DIR, work_dir: Path = WORK_DIR) -> dict[str, Any]:
    """Seed the store, then time no-change and 1 %-changed reruns (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    prefect_env()
    from features import open_store
    from pipelines.extract import STAGES, ExtractConfig, extract_features, plan_extraction

    load_before = load_average()
    t_start = time.perf_counter()
    n = videos or _VIDEOS[mode]
    reps = repeats or _REPEATS[mode]
    n_changed = max(1, n // 100)
    sources = [_clip(v, media_dir) for v in range(3)]
    alternates = [_clip(10, media_dir), _clip(11, media_dir)]
    cfg = ExtractConfig(asr="none")
    root = Path(work_dir) / f"incremental-{mode}"
    just_root = Path(work_dir) / f"incremental-{mode}-just"
    t_seed = time.perf_counter()
    store = seed_store(root, sources, n, cfg)
    seed_seconds = time.perf_counter() - t_seed
    names = sorted((root / "_media").glob("v*.mp4"))
    changed = names[:: max(1, len(names) // n_changed)][:n_changed]

    def flow(at: Path, **kw: Any) -> tuple[float, dict]:
        t0 = time.perf_counter()
        res = extract_features(dataset=DATASET, root=str(at), config=cfg, workers=1, **kw)
        return time.perf_counter() - t0, res

    def plan_only() -> float:
        t0 = time.perf_counter()
        s = open_store(root, DATASET)
        plan_extraction(s, s.manifest(), cfg, list(STAGES))
        return time.perf_counter() - t0

    nochange_wall, nochange_inner, plan_s, changed_wall, changed_inner, just_wall = [], [], [], [], [], []
    changed_stages: dict = {}
    for rep in range(reps):
        wall, res = flow(root)
        if any(res["stages"][s]["done"] for s in STAGES):
            raise RuntimeError(f"the no-change rerun recomputed something: {res['stages']}")
        nochange_wall.append(wall)
        nochange_inner.append(res["seconds"])
        plan_s.append(plan_only())
        # 1 % changed: new content for the chosen names (alternating, so every repeat is a real change)
        for path in changed:
            _replace(path, alternates[rep % 2])
        wall, res = flow(root)
        if res["stages"]["frames"]["done"] != n_changed:
            raise RuntimeError(f"expected {n_changed} re-extracted videos, got {res['stages']['frames']}")
        changed_wall.append(wall)
        changed_inner.append(res["seconds"])
        changed_stages = res["stages"]
        # the same videos alone, from scratch
        shutil.rmtree(just_root, ignore_errors=True)
        fill_store(just_root, [alternates[rep % 2]], n_changed)
        wall, res = flow(just_root)
        just_wall.append(wall)
    shutil.rmtree(just_root, ignore_errors=True)
    done = open_store(str(root), DATASET)
    n_stage_files = sum(len(done.entries(stage)) for stage in done.stages())
    shutil.rmtree(root, ignore_errors=True)

    no_change = median(nochange_wall)
    t_changed, t_just = median(changed_wall), median(just_wall)
    budget = TARGETS["changed_factor"] * t_just + TARGETS["changed_slack_seconds"]
    return {
        "benchmark": "incremental",
        "mode": mode,
        "command": f"python bench/bench_incremental.py --{mode}",
        "videos": n,
        "changed_videos": n_changed,
        "index_records": n_stage_files,
        "repeats": reps,
        "seed_seconds": seed_seconds,
        "no_change": {"wall_s": no_change, "flow_seconds": median(nochange_inner), "plan_s": median(plan_s),
                      "all_wall_s": nochange_wall},
        "changed": {"wall_s": t_changed, "flow_seconds": median(changed_inner), "just_those_wall_s": t_just,
                    "budget_s": budget, "ratio_to_just": t_changed / t_just, "stages": changed_stages},
        "targets": TARGETS,
        "met": {"no_change_seconds": no_change <= TARGETS["no_change_seconds"], "changed": t_changed <= budget},
        "seconds": time.perf_counter() - t_start,
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": load_average(),
        "machine": machine_info(),
    }


def render(res: dict[str, Any]) -> str:
    """The benchmark's table(s) as text."""
    nc, ch = res["no_change"], res["changed"]
    rows = [
        {"run": f"nothing changed ({res['videos']} videos)", "wall s": nc["wall_s"], "flow work s": nc["flow_seconds"],
         "plan_extraction s": nc["plan_s"]},
        {"run": f"{res['changed_videos']} changed", "wall s": ch["wall_s"], "flow work s": ch["flow_seconds"],
         "plan_extraction s": ""},
        {"run": f"just those {res['changed_videos']}, fresh store", "wall s": ch["just_those_wall_s"],
         "flow work s": "", "plan_extraction s": ""},
    ]
    targets = [
        {"target": "nothing changed ≤ 2 s (wall, incl. flow-run set-up)", "measured": f"{nc['wall_s']:.2f} s",
         "verdict": verdict(res["met"]["no_change_seconds"])},
        {"target": "1 % changed ≤ 1.2 × just-those + 2 s",
         "measured": f"{ch['wall_s']:.2f} s ≤ {ch['budget_s']:.2f} s?",
         "verdict": verdict(res["met"]["changed"])},
    ]
    head = (f"incremental reruns ({res['mode']}; {res['index_records']} index records; load avg "
            f"{res['load_avg_1m_before']:.1f} → {res['load_avg_1m_after']:.1f} on "
            f"{res['machine']['cpu_count']} CPUs)")
    return table(head, rows) + "\n" + table("targets", targets)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1,000 videos, 2 repeats (default)")
    mode.add_argument("--full", action="store_true", help="1,000 videos, 5 repeats")
    mode.add_argument("--tiny", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--videos", type=int, default=None, help="override the number of videos")
    parser.add_argument("--repeats", type=int, default=None, help="override the repeats")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/incremental.json)")
    args = parser.parse_args(argv)
    name = "full" if args.full else "tiny" if args.tiny else "quick"
    res = run(name, videos=args.videos, repeats=args.repeats)
    path = write_result("incremental", res, args.out)
    print(render(res))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
