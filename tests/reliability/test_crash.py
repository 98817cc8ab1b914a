"""Crash safety: SIGKILL the extraction, graph and training flows at random moments; nothing half-written is visible.

Every kill is a real ``SIGKILL`` of a real process running a real Prefect flow (see ``conftest.FlowRunner``). After
each one the store must open, every index record must point at complete data identical to an uninterrupted run's,
``summary()`` must agree with the files on disk, and a final rerun must finish with arrays byte-for-byte equal to the
uninterrupted run. The slow variants (``make stress``) make at least 20 kills each and print where they landed; the
figures in RELIABILITY.md come from them.
"""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from features.store import open_store, video_key
from tests.reliability.conftest import (DATASET, EXTRACT_CONFIG, TRAIN_MODEL, TRAIN_OVERRIDES, check_store, committed,
                                        extraction_stages, ingest_folder, make_graph_store, make_training_store)


# ---------------------------------------------------------------------------------------------------- store level
def test_refresh_killed_mid_artifact_write_keeps_the_committed_arrays(tmp_path, monkeypatch):
    """Rewriting an artifact under the same fingerprint (a refresh) must not expose half-written arrays."""
    import zarr

    store = open_store(tmp_path, DATASET, create=True)
    emb = np.arange(12, dtype=np.float32).reshape(4, 3)
    store.write_artifact("graph", "f" * 32, arrays={"embedding": emb, "bias": np.ones(4, np.float32)},
                         meta={"video_ids": ["a", "b", "c", "d"]})
    create = zarr.Group.create_array

    def dies_after_first(self, name, *a, **k):
        if name == "bias":
            raise KeyboardInterrupt("SIGKILL stand-in: the process dies between two array writes")
        return create(self, name, *a, **k)

    monkeypatch.setattr(zarr.Group, "create_array", dies_after_first)
    with pytest.raises(KeyboardInterrupt):
        store.write_artifact("graph", "f" * 32, arrays={"embedding": emb + 1, "bias": np.zeros(4, np.float32)},
                             meta={"video_ids": ["a", "b", "c", "d"]})
    monkeypatch.undo()
    arrays, meta = open_store(tmp_path, DATASET).read_artifact("graph")
    assert arrays["embedding"].tobytes() == emb.tobytes() and arrays["bias"].tolist() == [1, 1, 1, 1]
    assert meta == {"video_ids": ["a", "b", "c", "d"]}
    assert store.read("graph", "c")["embedding"].tolist() == [6.0, 7.0, 8.0]
    assert store.gc() >= 1  # the orphaned half-written directory
    assert open_store(tmp_path, DATASET).read_artifact("graph")[0]["embedding"].tobytes() == emb.tobytes()


def test_gc_collects_orphans_of_a_first_write_and_zarr_partials(tmp_path):
    store = open_store(tmp_path, DATASET, create=True)
    orphan = Path(store.path, "features.zarr", "audio", video_key("v"), "0123-deadbeef")
    orphan.mkdir(parents=True)  # a crash during the very first write of a stage: data, no index at all
    (orphan / "zarr.json").write_text("{}")
    partial = Path(store.path, "features.zarr", "zarr.1234abcd.partial")
    partial.write_bytes(b"{")
    assert store.gc() == 1 and partial.exists()  # a fresh temporary may be a live writer's: kept for a while
    assert store.gc(tmp_grace_seconds=0) == 1
    assert not orphan.exists() and not partial.exists()
    old_tmp = Path(store.path, "packs", ".tmp-pack.h5")
    old_tmp.parent.mkdir(exist_ok=True)
    old_tmp.write_bytes(b"x")
    os.utime(old_tmp, (time.time() - 3600, time.time() - 3600))  # not touched for an hour: a dead writer's
    assert store.gc() == 1 and not old_tmp.exists()
    with pytest.raises(ValueError, match="tmp_grace_seconds=-1"):
        store.gc(tmp_grace_seconds=-1)


def test_gc_waits_for_the_writer(tmp_path):
    """gc removes uncommitted version directories, so it must never run beside a writer."""
    from features.store import StoreError

    store = open_store(tmp_path, DATASET, create=True)
    with store.lock():
        with pytest.raises(StoreError, match="being written"):
            with open_store(tmp_path, DATASET).lock(wait=False):
                pass
        other = open_store(tmp_path, DATASET)
        import threading

        done = threading.Event()
        t = threading.Thread(target=lambda: (other.gc(), done.set()), daemon=True)
        t.start()
        assert not done.wait(0.6), "gc ran while the write lock was held"
    assert done.wait(10)


# ---------------------------------------------------------------------------------------------------- extraction
def _extract_kwargs(root: Path, **extra) -> dict:
    return {"dataset": DATASET, "root": str(root), "stages": extraction_stages(), "config": dict(EXTRACT_CONFIG),
            "batch_size": 1, "workers": 2, **extra}


@pytest.fixture(scope="module")
def extraction_reference(runner, clean_media, tmp_path_factory):
    """(template root: ingested, nothing extracted; reference root: one uninterrupted extraction;
    (seconds to its first step, seconds in all))."""
    base = tmp_path_factory.mktemp("crash")
    template = base / "template"
    ingest_folder(template, clean_media)
    reference = base / "reference"
    shutil.copytree(template, reference)
    out = runner.run("extract", kwargs=_extract_kwargs(reference))
    assert out.exit == 0, out.log[-3000:]
    assert out.result["failed_videos"] == 0, out.result
    check_store(reference)
    return template, reference, (out.first_step(), out.last_step())


def _reset(template: Path, root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(template, root)


def _assert_complete_and_identical(root: Path, reference: Path) -> None:
    check_store(root, reference=reference)
    assert committed(root) == committed(reference)
    store = open_store(root, DATASET)
    store.gc()
    check_store(root, reference=reference)
    # nothing but committed version directories is left
    for stage in store.stages():
        live = {video_key(v): r.data for v, r in store.entries(stage).items()}
        folder = Path(store.path, "features.zarr", stage)
        for key_dir in (folder.iterdir() if folder.is_dir() else []):
            if key_dir.is_dir():
                assert {p.name for p in key_dir.iterdir() if p.name != "zarr.json"} <= {live.get(key_dir.name)}


def _campaign(runner, reference_info, root: Path, *, kills: int, seed: int, slow_ms: float,
              refresh_kills_per_cycle: int = 0, cli: bool = False, points: list | None = None,
              one_object: bool = False) -> dict:
    """Kill extraction runs until ``kills`` kills happened; check the store after every run.

    A cycle starts from the ingested template: runs are killed at random delays, each rerun continuing from what the
    killed one left, until one completes (then its store must equal the reference). With ``refresh_kills_per_cycle``
    the complete store then gets that many ``refresh=True`` runs, also killed: rewrites of outputs that exist must
    never expose a half-written one either. ``points``: kill at exact trace events instead (``die_at``, see conftest),
    one per run. ``cli``: every run is ``vidpipe extract`` (the command line's code path). ``one_object``: the runs
    commit each output as one object (the object-store commit, see features.objects) on the local root.
    """
    template, reference, (first, total) = reference_info
    rng = random.Random(seed)
    _reset(template, root)
    where: collections.Counter[str] = collections.Counter()
    stats = {"kills": 0, "runs": 0, "completed": 0, "cycles": 0, "refresh_kills": 0}
    phase, refresh_left = "fresh", 0

    def launch(refresh: bool, kill: dict):
        if cli:
            return runner.run("cli", argv=_cli_argv(root) + (["--refresh"] if refresh else []), slow_ms=slow_ms,
                              one_object=one_object, **kill)
        return runner.run("extract", kwargs=_extract_kwargs(root, refresh=refresh), slow_ms=slow_ms,
                          one_object=one_object, **kill)

    def finished(out) -> None:
        assert out.exit == 0 and (not cli or out.result["exit"] in (0, None)), out.log[-3000:]
        stats["completed"] += 1
        _assert_complete_and_identical(root, reference)

    while stats["kills"] < kills:
        stats["runs"] += 1
        assert stats["runs"] <= 4 * kills + 10, f"kills do not land: {stats}, {dict(where)}"
        refresh = phase == "refresh"
        # killing the interpreter start-up proves nothing: kills fall between the first step and the end
        kill = {"die_at": points[stats["kills"]]} if points else {"kill_after": rng.uniform(first, 1.1 * total)}
        out = launch(refresh, kill)
        check_store(root, reference=reference)
        assert out.killed or not points, f"kill point {points[stats['kills']]} was never reached: {out.where()}"
        if out.killed:
            stats["kills"] += 1
            stats["refresh_kills"] += refresh
            where[("refresh, " if refresh else "") + out.where()] += 1
        if refresh:
            refresh_left -= 1
            if refresh_left > 0:
                if not out.killed:
                    finished(out)
                continue
            finished(launch(False, {}) if out.killed else out)  # the cycle's end: a clean run, reference equality
        elif out.killed:
            continue
        else:
            finished(out)
            if refresh_kills_per_cycle:
                phase, refresh_left = "refresh", refresh_kills_per_cycle
                continue
        phase = "fresh"
        stats["cycles"] += 1
        _reset(template, root)
    finished(launch(False, {}))
    stats["where"] = dict(where.most_common())
    return stats


def _cli_argv(root: Path) -> list[str]:
    stages = [a for s in extraction_stages() for a in ("--stage", s)]
    return ["extract", DATASET, "--root", str(root), *stages, "--workers", "2", "--batch-size", "1",
            "--n-frames", str(EXTRACT_CONFIG["n_frames"]), "--n-mfcc", str(EXTRACT_CONFIG["n_mfcc"]),
            "--asr", EXTRACT_CONFIG["asr"], "--json"]


#: exact kill points of the fast variant, all store events (stable whatever the decoders do): between two arrays of
#: the first output written (mid-write), as the second audio output starts, in the middle of the text stage, while
#: the per-stage tables are being consolidated
FAST_KILLS = [["E", "array", 4], ["B", "write:audio", 2], ["B", "write:text", 2], ["B", "table:probe", 1]]


# Not timing-sensitive: each kill is the child SIGKILLing itself at an exact trace event (die_at), whatever the load.
def test_extraction_survives_a_few_kills(runner, extraction_reference, tmp_path):
    points = [p for p in FAST_KILLS if "audio" not in p[1] and "text" not in p[1]] if len(extraction_stages()) < 6 \
        else FAST_KILLS
    stats = _campaign(runner, extraction_reference, tmp_path / "root", kills=len(points), seed=1, slow_ms=0,
                      points=points)
    print("extraction kills:", json.dumps(stats))
    assert stats["kills"] == len(points) and stats["completed"] == 1, stats  # only the final, unkilled run completes
    assert any(w.startswith("mid-write write:") for w in stats["where"]), stats


@pytest.mark.slow
def test_extraction_survives_many_kills(runner, extraction_reference, tmp_path):
    stats = _campaign(runner, extraction_reference, tmp_path / "root", kills=24, seed=8, slow_ms=40,
                      refresh_kills_per_cycle=2)
    print("extraction kills:", json.dumps(stats))
    assert stats["kills"] >= 24
    assert sum(n for w, n in stats["where"].items() if "mid-write" in w) >= 3, stats
    assert len({w.split(" ")[-1].split(":")[0] for w in stats["where"]}) >= 3, stats  # several kinds of steps
    assert stats["refresh_kills"] >= 1, stats


@pytest.mark.slow
def test_extraction_cli_survives_kills(runner, extraction_reference, tmp_path):
    """Kills of the ``vidpipe extract`` command (CLI code path, its own parameters) against a CLI-made reference."""
    template, _, _ = extraction_reference
    reference = tmp_path / "cli-reference"
    _reset(template, reference)
    ref = runner.run("cli", argv=_cli_argv(reference))
    assert ref.exit == 0 and ref.result == {"exit": 0}, ref.log[-3000:]
    stats = _campaign(runner, (template, reference, (ref.first_step(), ref.last_step())), tmp_path / "root", kills=4,
                      seed=3, slow_ms=40, cli=True)
    print("cli kills:", json.dumps(stats))
    assert stats["kills"] >= 4


#: exact kill points inside the compaction that ends every extraction: after its first shard is written (nothing
#: committed yet), after its second index partition, and among the removals of folded fresh files (after the commit)
COMPACTION_KILLS = [["E", "compact:shard", 1], ["E", "compact:index", 2], ["B", "compact:cleanup", 3]]


def test_extraction_survives_kills_during_compaction(runner, extraction_reference, tmp_path):
    """Each run is killed inside the compaction; every rerun compacts again; the end equals an uninterrupted run."""
    stats = _campaign(runner, extraction_reference, tmp_path / "root", kills=len(COMPACTION_KILLS), seed=2, slow_ms=0,
                      points=COMPACTION_KILLS)
    print("compaction kills:", json.dumps(stats))
    assert stats["kills"] == len(COMPACTION_KILLS) and stats["completed"] == 1, stats
    assert all(w.startswith("mid-write compact") for w in stats["where"]), stats
    current = json.loads(Path(tmp_path, "root", DATASET, "compact", "CURRENT.json").read_text())
    assert current["generation"] >= 2 and not list(Path(tmp_path, "root", DATASET, "index").glob("*/*.json"))


#: kill points with one-object commits: as the second frames output is written (one file: either all of it or none),
#: after the compaction's first shard, among the removals of folded fresh objects (after the commit)
ONE_OBJECT_KILLS = [["B", "write:frames", 2], ["E", "compact:shard", 1], ["B", "compact:cleanup", 2]]


def test_one_object_commits_survive_kills(runner, extraction_reference, tmp_path):
    """The object-store commit path (each output one object: record line + arrays) killed mid-extraction and
    mid-compaction on a local root; the end equals the uninterrupted (Zarr-group) run, output by output."""
    stats = _campaign(runner, extraction_reference, tmp_path / "root", kills=len(ONE_OBJECT_KILLS), seed=4,
                      slow_ms=0, points=ONE_OBJECT_KILLS, one_object=True)
    print("one-object kills:", json.dumps(stats))
    assert stats["kills"] == len(ONE_OBJECT_KILLS) and stats["completed"] == 1, stats
    store_dir = Path(tmp_path, "root", DATASET)
    assert not list(store_dir.glob("index/*/*.json"))  # every one-object output was folded
    # no per-video Zarr group was written (dataset-level artifacts keep theirs)
    assert {p.name for p in store_dir.glob("features.zarr/*") if p.is_dir()} <= {"_artifacts"}


@pytest.mark.slow
def test_every_step_of_a_compaction_survives_a_kill(runner, extraction_reference, tmp_path):
    """A kill at each compaction step of a full extraction (up to 16, spread evenly), each from the ingested store."""
    template, reference, _ = extraction_reference
    root = tmp_path / "root"
    _reset(template, root)
    probe = runner.run("extract", kwargs=_extract_kwargs(root))
    assert probe.exit == 0, probe.log[-3000:]
    seen: collections.Counter = collections.Counter()
    points = []
    for _, kind, what in probe.trace:
        if what.startswith("compact"):
            seen[(kind, what)] += 1
            points.append([kind, what, seen[(kind, what)]])
    points = [points[round(i * (len(points) - 1) / 15)] for i in range(16)] if len(points) > 16 else points
    where: collections.Counter = collections.Counter()
    for point in points:
        _reset(template, root)
        out = runner.run("extract", kwargs=_extract_kwargs(root), die_at=point)
        assert out.killed, (point, out.where())
        where[out.where()] += 1
        check_store(root, reference=reference)
        final = runner.run("extract", kwargs=_extract_kwargs(root))
        assert final.exit == 0, final.log[-3000:]
        _assert_complete_and_identical(root, reference)
    print("compaction kill points:", json.dumps(dict(where.most_common())))
    # the last point is the end of the compaction itself ("after compact")
    assert len(points) >= 8 and all(w.startswith(("mid-write compact", "after compact")) for w in where), where


# ---------------------------------------------------------------------------------------------------- graph
def _graph_kwargs(root: Path, **extra) -> dict:
    return {"dataset": DATASET, "root": str(root), "epochs": 40, "hidden": 8, "out": 4, "heads": 2, **extra}


def _check_graph(root: Path, reference: Path | None) -> str | None:
    import torch

    store = open_store(root, DATASET)
    fp = store.artifact_fingerprint("graph")
    if fp is None:
        return None
    arrays, meta = store.read_artifact("graph")
    assert arrays["embedding"].shape[0] == len(meta["video_ids"]) and np.isfinite(arrays["embedding"]).all()
    import io

    torch.load(io.BytesIO(store.artifact_file("graph", "encoder.pt")), weights_only=True)
    if reference is not None:
        want, _ = open_store(reference, DATASET).read_artifact("graph")
        assert arrays["embedding"].tobytes() == want["embedding"].tobytes()
    return fp


def _graph_campaign(runner, tmp_path: Path, kills: int, seed: int) -> dict:
    reference = tmp_path / "reference"
    make_graph_store(reference)
    ref = runner.run("graph", kwargs=_graph_kwargs(reference))
    assert ref.exit == 0, ref.log[-3000:]
    ref_fp = _check_graph(reference, None)
    root = tmp_path / "root"
    make_graph_store(root)
    rng = random.Random(seed)
    where: collections.Counter[str] = collections.Counter()
    n = runs = 0
    while n < kills:
        runs += 1
        assert runs <= 4 * kills + 10, f"kills do not land: {n} in {runs} runs"
        refresh = n % 2 == 1 and _check_graph(root, reference) is not None  # kill refreshes of a complete graph too
        out = runner.run("graph", kwargs=_graph_kwargs(root, refresh=refresh),
                         kill_after=rng.uniform(ref.first_step(), ref.last_step()), slow_ms=150)
        assert _check_graph(root, reference) in (None, ref_fp)
        check_store(root)
        if out.killed:
            n += 1
            where[("refresh " if refresh else "") + out.where()] += 1
    # and at exact points inside the artifact writes (random delays may miss them on a loaded machine): after the
    # songs' embedding array, and after the videos' (each before its artifact's meta.json commits it)
    for nth in (1, 2):
        out = runner.run("graph", kwargs=_graph_kwargs(root, refresh=True), die_at=["E", "array", nth])
        assert out.killed, out.log[-2000:]
        assert _check_graph(root, reference) in (None, ref_fp)
        check_store(root)
        n += 1
        where["refresh " + out.where()] += 1
    final = runner.run("graph", kwargs=_graph_kwargs(root))
    assert final.exit == 0 and _check_graph(root, reference) == ref_fp
    return {"kills": n, "where": dict(where.most_common())}


@pytest.mark.slow
def test_graph_flow_survives_many_kills(runner, tmp_path):
    stats = _graph_campaign(runner, tmp_path, kills=20, seed=11)
    print("graph kills:", json.dumps(stats))
    assert any("artifact" in w for w in stats["where"]), stats


# ---------------------------------------------------------------------------------------------------- training
def _train_kwargs(root: Path, run_id: str) -> dict:
    return {"dataset": DATASET, "root": str(root), "model": TRAIN_MODEL, "task": "emotion", "epochs": 5,
            "overrides": TRAIN_OVERRIDES, "device": "cpu", "run_id": run_id, "batch_size": 8}


def _check_training_files(root: Path, run_id: str) -> None:
    """Every pack and checkpoint under its final name is complete (opens, carries what it should)."""
    import h5py
    import torch

    store_dir = Path(root, DATASET)
    for pack in (store_dir / "packs").glob("*.h5"):
        if pack.name.startswith(".tmp-"):
            continue
        with h5py.File(pack, "r") as h5:
            assert h5.attrs["fingerprint"] == pack.stem and h5["target"].shape[0] == 24
    for ckpt in (store_dir / "runs" / run_id).glob("*.pt"):
        if ckpt.name.startswith("."):
            continue  # a temporary: never a final name
        payload = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert payload["model_name"] == TRAIN_MODEL and payload["state_dict"]
    record = store_dir / "runs" / f"{run_id}.json"
    if record.exists():
        assert json.loads(record.read_text())["run_id"] == run_id


def _training_campaign(runner, tmp_path: Path, kills: int, seed: int | None) -> dict:
    """Kill training runs (random delays; ``seed=None``: right after the 2nd epoch's last.pt)."""
    reference = tmp_path / "reference"
    make_training_store(reference)
    ref = runner.run("train", kwargs=_train_kwargs(reference, "run"))
    assert ref.exit == 0, ref.log[-3000:]
    root = tmp_path / "root"
    make_training_store(root)
    rng = random.Random(seed)
    where: collections.Counter[str] = collections.Counter()
    resumed = 0
    n = runs = 0
    while n < kills:
        runs += 1
        assert runs <= 4 * kills + 10, f"kills do not land: {n} in {runs} runs"
        if seed is None:  # right after the second epoch's last.pt
            kill = {"die_at": ["E", "checkpoint:last.pt", 2]}
        elif rng.random() < 0.5:
            kill = {"kill_after": rng.uniform(ref.first_step(), ref.last_step())}
        else:  # at a random step of the reference run: resumed runs are short, random delays mostly miss them
            i = rng.randrange(len(ref.trace))
            kind, step = ref.trace[i][1:]
            kill = {"die_at": [kind, step, sum(1 for _, k, w in ref.trace[:i + 1] if (k, w) == (kind, step))]}
        out = runner.run("train", kwargs=_train_kwargs(root, "run"), **kill)
        _check_training_files(root, "run")
        if out.killed:
            n += 1
            where[out.where()] += 1
            resumed += (Path(root, DATASET, "runs", "run", "last.pt")).exists()
        else:  # it finished: start again from scratch so that later kills hit early stages too
            shutil.rmtree(Path(root, DATASET, "runs"))
            shutil.rmtree(Path(root, DATASET, "packs"), ignore_errors=True)
    final = runner.run("train", kwargs=_train_kwargs(root, "run"))
    assert final.exit == 0, final.log[-3000:]
    _check_training_files(root, "run")
    got, want = final.result, ref.result
    # resumed from its last checkpoint, it ends exactly where the uninterrupted run ended (CPU, same seed)
    for key in ("metrics", "val_metrics", "best_epoch", "epochs_run", "stop_reason", "pack"):
        assert got[key] == want[key], key
    return {"kills": n, "kills_after_a_checkpoint": resumed, "where": dict(where.most_common())}


def test_training_resumes_after_a_kill(runner, tmp_path):
    stats = _training_campaign(runner, tmp_path, kills=1, seed=None)
    print("training kills:", json.dumps(stats))
    assert stats["kills_after_a_checkpoint"] == 1, stats


@pytest.mark.slow
def test_training_resumes_after_many_kills(runner, tmp_path):
    stats = _training_campaign(runner, tmp_path, kills=20, seed=13)
    print("training kills:", json.dumps(stats))
    assert stats["kills_after_a_checkpoint"] >= 3, stats
    assert any("checkpoint" in w or "pack" in w for w in stats["where"]), stats
