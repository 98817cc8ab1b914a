"""Concurrency: two extraction runs on one dataset, and parallel writers to one store, lose nothing; a reader beside
compactions sees consistent outputs.

Two runs at once: the second waits on the store's write lock (and says so), then finds everything done; the store is
byte-for-byte the one a single serial run makes. Parallel ``Store.write`` calls for different videos, from threads and
from processes, all land, and the lock is an OS lock: it refuses a second process clearly and is released when its
holder dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from features.store import StoreError, open_store, video_key
from tests.reliability.conftest import (DATASET, EXTRACT_CONFIG, REPO, check_store, committed, extraction_stages,
                                        ingest_folder)


def _kwargs(root: Path) -> dict:
    return {"dataset": DATASET, "root": str(root), "stages": extraction_stages(), "config": dict(EXTRACT_CONFIG),
            "batch_size": 1, "workers": 2}


def test_two_extractions_at_once_equal_one_serial_run(runner, second_runner, clean_media, tmp_path):
    serial, both = tmp_path / "serial", tmp_path / "both"
    ingest_folder(serial, clean_media)
    ingest_folder(both, clean_media)
    ref = runner.run("extract", kwargs=_kwargs(serial))
    assert ref.exit == 0, ref.log[-3000:]

    # the first run stops right after planning, inside the lock, until the second says it is waiting: no timing luck
    gate = tmp_path / "release-first"
    first = runner.submit("extract", kwargs=_kwargs(both), slow_ms=30, hold_at=["E", "plan", str(gate)])
    deadline = time.monotonic() + 120
    while " E plan" not in (first.trace_path.read_text() if first.trace_path.exists() else ""):  # first holds the lock
        assert time.monotonic() < deadline, "the first run never finished planning"
        time.sleep(0.02)
    second = second_runner.submit("extract", kwargs=_kwargs(both))
    deadline = time.monotonic() + 240
    while "waiting for it to finish" not in (second.log_path.read_text(errors="replace")
                                             if second.log_path.exists() else ""):
        assert time.monotonic() < deadline, "the second run never reported waiting for the lock"
        time.sleep(0.02)
    gate.touch()
    a, b = first(), second()
    assert a.exit == 0 and b.exit == 0, (a.log[-2000:], b.log[-2000:])
    # b did nothing with the store until a released it: its first step begins after a's last one ended
    assert b.trace[0][0] >= a.trace[-1][0], (a.trace[-1], b.trace[0])
    assert "is being written by pid" in b.log and "waiting for it to finish" in b.log
    assert all(c["done"] == 0 for c in b.result["stages"].values()), b.result
    check_store(both, reference=serial)
    assert committed(both) == committed(serial)


def test_parallel_writers_lose_nothing(tmp_path):
    """8 threads in this process and 3 other processes write 60 videos' outputs to one store at the same time."""
    store = open_store(tmp_path, DATASET, create=True)
    ids = [f"vid/{i:02d}" for i in range(60)]

    def arrays_of(i: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(i)
        return {"x": rng.integers(0, 255, (5, 8, 8, 3), dtype=np.uint8), "m": rng.random(7).astype(np.float32)}

    def write(i: int) -> None:
        open_store(tmp_path, DATASET).write("frames", ids[i], f"{i:032x}", version=1, arrays=arrays_of(i),
                                            record={"i": i})

    script = (
        "import sys, numpy as np\n"
        "from features.store import open_store\n"
        "root, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
        "s = open_store(root, 'rel')\n"
        "for i in range(lo, hi):\n"
        "    rng = np.random.default_rng(i)\n"
        "    a = {'x': rng.integers(0, 255, (5, 8, 8, 3), dtype=np.uint8), 'm': rng.random(7).astype(np.float32)}\n"
        "    s.write('frames', f'vid/{i:02d}', f'{i:032x}', version=1, arrays=a, record={'i': i})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(lo), str(lo + 10)], env=env)
             for lo in (30, 40, 50)]
    threads = [threading.Thread(target=lambda k=k: [write(i) for i in range(k, 30, 8)]) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]

    entries = store.entries("frames")
    assert sorted(entries) == sorted(ids)
    for i, vid in enumerate(ids):
        got = store.read("frames", vid)
        want = arrays_of(i)
        assert got["i"] == i and got["x"].tobytes() == want["x"].tobytes() and got["m"].tobytes() == want["m"].tobytes()
        # exactly one version directory per video: nothing stray, nothing shared
        key_dir = Path(store.path, "features.zarr", "frames", video_key(vid))
        assert [d.name for d in key_dir.iterdir() if d.name != "zarr.json"] == [entries[vid].data]
    assert store.gc() == 0


def test_a_second_process_is_refused_clearly_and_the_lock_dies_with_its_holder(tmp_path):
    open_store(tmp_path, DATASET, create=True)
    script = ("import sys, time\nfrom features.store import open_store\n"
              "with open_store(sys.argv[1], 'rel').lock():\n    print('locked', flush=True)\n    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        store = open_store(tmp_path, DATASET)
        with pytest.raises(StoreError, match=rf"being written by pid {holder.pid} since .*wait for it to finish"):
            with store.lock(wait=False):
                pass
        start = time.monotonic()
        with pytest.raises(StoreError, match="being written"):
            with store.lock(timeout=0.5):
                pass
        assert 0.4 < time.monotonic() - start < 5
        os.kill(holder.pid, signal.SIGKILL)  # the holder dies without unlocking: the OS releases the lock
        holder.wait(timeout=30)
        with store.lock(wait=False):
            assert json.loads((Path(store.path) / "store.json").read_text())["dataset"] == DATASET
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


_READER = """
import json, sys, numpy as np
from pathlib import Path
from features.store import open_store
root, stop, dropped = sys.argv[1], Path(sys.argv[2]), set(json.loads(sys.argv[3]))
ids = [f"vid/{i:02d}" for i in range(30)]
reads = missing = passes = 0
Path(f"{stop}.ready").touch()  # imported: the writer may start
while not stop.exists():
    store = open_store(root, "rel")
    seen = store.entries("frames")
    assert set(seen) <= set(ids) and set(ids) - set(seen) <= dropped, sorted(set(ids) - set(seen))
    for vid in ids:
        try:
            out = store.read("frames", vid)
        except KeyError:
            assert vid in dropped, vid
            missing += 1
            continue
        want = np.random.default_rng(out["tag"]).integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
        assert out["x"].tobytes() == want.tobytes(), (vid, out["tag"])
        reads += 1
    passes += 1
    Path(f"{stop}.passes").write_text(str(passes))
print(json.dumps({"reads": reads, "missing": missing}))
"""


@pytest.mark.parametrize("one_object", [False, True], ids=["zarr-groups", "one-object"])
def test_a_reader_sees_consistent_outputs_while_compactions_run(tmp_path, one_object):
    """A reader process reads every video in a loop while this process rewrites, drops and compacts: each output it
    reads has the arrays that belong to its record, and no read fails (a compaction may remove the fresh files a
    reader has just found; the files of an earlier generation stay for the grace period). ``one_object``: outputs are
    committed as one object each (the object-store commit, features.objects), rewritten in place."""
    store = open_store(tmp_path, DATASET, create=True)
    store._inline_arrays = one_object
    ids = [f"vid/{i:02d}" for i in range(30)]

    def write(vid: str, tag: int) -> None:
        x = np.random.default_rng(tag).integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
        store.write("frames", vid, f"{tag:032x}", version=1, arrays={"x": x}, record={"tag": tag})

    for i, vid in enumerate(ids):
        write(vid, i)
    dropped = ids[-4:]
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(tmp_path), str(stop), json.dumps(dropped)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})

    def wait_for(done, what: str) -> None:  # the reader's interpreter starts slowly on a loaded machine
        deadline = time.monotonic() + 180
        while not done() and reader.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done(), f"the reader {what} (exit {reader.poll()})"

    def passes() -> int:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(Path(f"{stop}.passes").read_text())
        return 0
    try:
        wait_for(Path(f"{stop}.ready").exists, "never started")
        for rnd in range(1, 5):
            with store.lock():
                for i in range(rnd, 30, 3):  # a third of the videos rewritten each round (dropped ones stay so)
                    if rnd < 2 or ids[i] not in dropped:
                        write(ids[i], 100 * rnd + i)
                if rnd == 2:
                    for vid in dropped:
                        store.drop("frames", vid)
                stats = store.compact(locked=True, shard_videos=8)
            assert stats["folded"] >= 7, stats
            time.sleep(0.2)
        wait_for(lambda: passes() >= 2, "did not finish two passes")  # at least 2 × 26 reads
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err[-3000:]
    counts = json.loads(out.strip().splitlines()[-1])
    assert counts["reads"] >= 30, counts
    assert sorted(store.entries("frames")) == sorted(set(ids) - set(dropped))
