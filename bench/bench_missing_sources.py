"""Benchmark: a partial LIRIS-ACCEDE download — N clips listed in ``ACCEDEranking.txt``, K of them on disk.

Writes the official files (tab-separated, CRLF, ``ACCEDE%05d.mp4``) and K copies of one 3-second 96x64 clip, ingests
them, then runs ``extract_features`` twice (default parameters but ``asr="none"``, 2 workers): the first extraction
and a rerun with nothing changed. Per run: wall time, the flow's own ``seconds``, files and bytes added under the
store, and at the end the number of failure records. The extraction of the K present clips is the same work in any
tree; what differs is what the N - K missing ones cost.

    .venv/bin/python bench/bench_missing_sources.py                 # 2,000 listed, 10 present
    .venv/bin/python bench/bench_missing_sources.py --listed 9800 --present 5

To measure another tree (e.g. the commit before a change), export it and run this file from inside it:
``git archive REV | tar -x -C /tmp/before && cp bench/bench_missing_sources.py /tmp/before/bench/`` then
``.venv/bin/python /tmp/before/bench/bench_missing_sources.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import WORK_DIR, load_average, machine_info, write_result  # noqa: E402


def _liris(folder: Path, listed: int, present: int) -> None:
    (folder / "data").mkdir(parents=True)
    rows = ["id\tname\tvalenceRank\tarousalRank\tvalenceValue\tarousalValue\tvalenceVariance\tarousalVariance"]
    rows += [f"{i}\tACCEDE{i:05d}.mp4\t{i}\t{i}\t{1 + i % 4}.5\t{1 + (i * 7) % 4}.5\t0.1\t0.1" for i in range(listed)]
    (folder / "ACCEDEranking.txt").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    sets = ["id\tname\tset"] + [f"{i}\tACCEDE{i:05d}.mp4\t{(1, 2, 0)[i % 3]}" for i in range(listed)]
    (folder / "ACCEDEsets.txt").write_bytes(("\r\n".join(sets) + "\r\n").encode())
    clip = folder.parent / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=96x64:r=10:d=3", "-f", "lavfi",
                    "-i", "sine=d=3", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-shortest", str(clip)], check=True)
    for i in range(0, listed, max(1, listed // max(present, 1)))[:present]:
        shutil.copyfile(clip, folder / "data" / f"ACCEDE{i:05d}.mp4")


def _tree(folder: Path) -> tuple[int, int]:
    files = [Path(d) / f for d, _, names in os.walk(folder) for f in names]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listed", type=int, default=2000, help="clips listed in ACCEDEranking.txt")
    parser.add_argument("--present", type=int, default=10, help="clips with a file on disk")
    args = parser.parse_args()
    if not 0 <= args.present <= args.listed:
        raise SystemExit(f"--present={args.present}: expected 0 <= present <= --listed={args.listed}")
    work = WORK_DIR / "missing_sources"
    shutil.rmtree(work, ignore_errors=True)
    _liris(work / "LIRIS-ACCEDE-data", args.listed, args.present)

    from prefect.testing.utilities import prefect_test_harness

    from features import open_store
    from flows import extract_features, ingest
    from pipelines.extract import ExtractConfig

    root = work / "root"
    out: dict = {"listed": args.listed, "present": args.present, "machine": machine_info()}
    with prefect_test_harness(server_startup_timeout=180):
        summary = ingest(dataset="liris", source="liris-accede", path=str(work / "LIRIS-ACCEDE-data"), root=str(root))
        out["ingest"] = {k: summary.get(k) for k in ("videos", "missing_files", "missing_examples")}
        files, size = _tree(root / "liris")
        for run in ("first", "rerun"):
            load = load_average()
            t0 = time.perf_counter()
            result = extract_features(dataset="liris", root=str(root), config=ExtractConfig(asr="none"), workers=2)
            wall = time.perf_counter() - t0
            now_files, now_size = _tree(root / "liris")
            out[run] = {"wall_s": round(wall, 2), "flow_s": result["seconds"], "files_added": now_files - files,
                        "bytes_added": now_size - size, "failed_videos": result["failed_videos"],
                        "missing_sources": result.get("missing_sources"), "load_average": load}
            files, size = now_files, now_size
        out["failure_records"] = len(open_store(root, "liris").failures())
    path = write_result("missing_sources", out)
    for run in ("first", "rerun"):
        r = out[run]
        print(f"{run:6} wall {r['wall_s']:7.2f} s  flow {r['flow_s']:7.2f} s  files +{r['files_added']:6d}  "
              f"bytes +{r['bytes_added']:10,d}  load {r['load_average']:.1f}")
    print(f"failure records: {out['failure_records']}; ingest: {out['ingest']}; written to {path}")


if __name__ == "__main__":
    main()
