"""The compacted layer (features.compaction through Store.compact): every public call answers the same before and after
a compaction, invalidations touch only what they must, failures become table rows, crashes leave the previous view."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import compaction
from features.store import FORMAT_VERSION, StoreError, open_store, video_key


def _frames(i: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(i)
    return {"per_second": rng.integers(0, 255, (3, 4, 4, 3), dtype=np.uint8),
            "per_second_valid": np.array([True, i % 2 == 0, False]),
            "clip_valid": np.array(i % 3 == 0),  # 0-d, as the audio stage writes it
            "empty": np.zeros((0, 5), np.float32)}


def _populate(store, n: int = 12) -> list[str]:
    ids = [f"v/{i:02d}" for i in range(n)]
    store.write_manifest(pd.DataFrame({"video_id": ids, "split": "train"}))
    for i, vid in enumerate(ids):
        store.write("frames", vid, f"f{i:031x}", version=2, arrays=_frames(i), record={"n": i, "w": [1, 2]},
                    params={"n_segments": 3, "profiles": ["per_second"]}, seconds=0.5)
        store.write("probe", vid, f"p{i:031x}", version=1, record={"fps": 10.0 + i, "codec": "h264"})
    store.record_failure("audio", ids[min(3, n - 1)], "MediaError: truncated", fingerprint="a" * 32)
    # after a commit: both the output and the failure are live
    store.record_failure("frames", ids[min(4, n - 1)], "TimeoutError: slow", fingerprint="b" * 32)
    return ids


def _public_view(store, ids: list[str]) -> dict:
    """Everything the public calls say about the store (arrays as bytes)."""
    def norm(out: dict) -> dict:
        return {k: (v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else v for k, v in out.items()}

    view = {"stages": store.stages(), "summary": store.summary(["frames", "probe", "audio"]),
            "failures": store.failures().drop(columns="time").to_dict("records")}
    for stage in ("frames", "probe", "audio"):
        entries = store.entries(stage)
        view[stage] = {v: {k: getattr(r, k) for k in ("fingerprint", "version", "params", "record", "created",
                                                      "seconds")} for v, r in entries.items()}
        view[f"{stage}-fingerprints"] = store.fingerprints(stage)
        view[f"{stage}-read"] = {v: norm(store.read(stage, v)) for v in ids if v in entries}
        view[f"{stage}-read_many"] = {v: norm(o) for v, o in store.read_many(stage, list(entries)[::-1]).items()}
        view[f"{stage}-entry"] = {v: store.entry(stage, v) is not None for v in ids}
        view[f"{stage}-failure"] = {v: store.failure(stage, v) for v in ids}
        table = store.table(stage)
        view[f"{stage}-table"] = table.drop(columns=[c for c in ("created",) if c in table]).to_dict("records")
    return view


def _files(store) -> list[str]:
    return sorted(str(p.relative_to(store.path)) for p in Path(store.path).rglob("*") if p.is_file())


@pytest.mark.parametrize("inline", [False, True], ids=["zarr-groups", "one-object"])
def test_public_calls_answer_the_same_before_and_after_compaction(tmp_path, inline):
    store = open_store(tmp_path, "ds", create=True)
    store._inline_arrays = inline  # one object per output: the object-store commit (see features.objects)
    ids = _populate(store)
    if inline:
        assert store.entry("frames", ids[0]).data == "inline" and not Path(store.path, "features.zarr").exists()
    before = _public_view(store, ids)
    assert before["frames-read_many"] == before["frames-read"] and len(before["frames-read"]) == 12
    stats = store.compact(shard_videos=5, shard_bytes=200)
    assert stats["folded"] == 24 and stats["failures"] == 2 and stats["shards_written"] == 3, stats  # 12 = 5 + 5 + 2
    assert _public_view(store, ids) == before
    assert _public_view(open_store(tmp_path, "ds"), ids) == before  # a fresh Store object: same view
    compaction._PARTS.clear()
    compaction._ARRAYS.clear()
    assert _public_view(open_store(tmp_path, "ds"), ids) == before  # a fresh process's view (no memo)
    assert not [f for f in _files(store) if f.startswith(("index/", "failures/"))]  # the fresh layer is folded
    assert not [f for f in _files(store) if f.startswith("features.zarr/") and f.count("/") > 2]
    rec = store.entry("frames", ids[0])
    assert rec.data.startswith("shard:") and rec.params == {"n_segments": 3, "profiles": ["per_second"]}
    some = store.read_many("frames", [ids[7], ids[0], ids[7]], arrays=["per_second"])  # in order, once each
    assert list(some) == [ids[7], ids[0]] and set(some[ids[0]]) == {"per_second", "n", "w"}
    assert np.array_equal(some[ids[7]]["per_second"], _frames(7)["per_second"])
    with pytest.raises(KeyError, match="no 'frames' output for video 'nope'"):
        store.read_many("frames", ["nope"])
    assert store.entry("probe", ids[0]).data is None


def test_file_count_grows_with_shards_not_videos(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    ids = _populate(store, n=40)
    fresh = len(_files(store))
    store.compact(shard_videos=32)
    files = _files(store)
    assert fresh >= 5 * 40 and len(files) < 50, (fresh, len(files), files)
    shards = json.loads(Path(store.path, "compact", "CURRENT.json").read_text())["shards"]
    assert sorted(s["rows"] for s in shards.values()) == [8, 32]
    assert np.array_equal(store.read("frames", ids[39])["per_second"], _frames(39)["per_second"])


def test_invalidating_one_video_rewrites_only_its_partition_and_a_small_shard(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    ids = _populate(store, n=40)
    store.compact(part_rows=8, shard_videos=16)  # 40 rows → 8 partitions per stage; shards of 16, 16 and 8 videos
    cur = json.loads(Path(store.path, "compact", "CURRENT.json").read_text())
    assert cur["stages"]["frames"]["buckets"] == 8
    before = _files(store)
    new = _frames(100)
    store.write("frames", ids[7], "n" * 32, version=2, arrays=new, record={"n": -1})
    added = sorted(set(_files(store)) - set(before))
    assert added and all(f.startswith(("index/frames/", "features.zarr/frames/")) for f in added), added
    assert np.array_equal(store.read("frames", ids[7])["per_second"], new["per_second"])  # fresh overrides
    stats = store.compact(part_rows=8, shard_videos=16)
    after = json.loads(Path(store.path, "compact", "CURRENT.json").read_text())
    changed = [b for b, (p, q) in enumerate(zip(cur["stages"]["frames"]["parts"], after["stages"]["frames"]["parts"]))
               if p != q]
    assert changed == [compaction._bucket(ids[7], 8)], changed
    assert after["stages"]["probe"] == cur["stages"]["probe"] and stats["folded"] == 1
    assert set(after["shards"]) - set(cur["shards"]) and set(cur["shards"]) <= set(after["shards"])  # old shard kept
    assert store.read("frames", ids[7])["n"] == -1 and store.fingerprints("frames")[ids[7]] == "n" * 32
    assert np.array_equal(store.read("frames", ids[8])["per_second"], _frames(8)["per_second"])


def test_drop_and_failures_after_compaction(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    ids = _populate(store)
    store.compact()
    assert store.failure("frames", ids[4])["error"] == "TimeoutError: slow" and store.entry("frames", ids[4])
    store.drop("frames", ids[4])  # a tombstone hides both the compacted output and the compacted failure
    assert store.entry("frames", ids[4]) is None and store.failure("frames", ids[4]) is None
    assert ids[4] not in store.entries("frames") and ids[4] not in store.fingerprints("frames")
    with pytest.raises(KeyError, match="not extracted yet"):
        store.read("frames", ids[4])
    store.write("audio", ids[3], "c" * 32, version=1, arrays={"x": np.ones(2, np.float32)})  # clears the failure
    assert store.failure("audio", ids[3]) is None and store.failures()["video_id"].tolist() == []
    store.record_failure("probe", ids[5], "boom", fingerprint="d" * 32)
    view = _public_view(store, ids)
    stats = store.compact()
    assert stats["dropped"] == 1 and stats["failures"] == 1
    assert _public_view(store, ids) == view
    table = pd.read_parquet(Path(store.path, "compact", json.loads(
        Path(store.path, "compact", "CURRENT.json").read_text())["failures"]))
    assert table[["video_id", "stage", "error"]].to_dict("records") == [
        {"video_id": ids[5], "stage": "probe", "error": "boom"}]
    store.drop("probe", ids[5])  # drop clears the failure too (and here hides the compacted output)
    assert store.failure("probe", ids[5]) is None and store.entry("probe", ids[5]) is None
    store.drop("frames", "never-written")  # nothing compacted: no tombstone
    assert not Path(store.path, "index", "frames", f"{video_key('never-written')}.json").exists()


def test_mostly_dead_shards_are_repacked_and_retired_files_deleted_after_the_grace(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    ids = _populate(store, n=10)
    store.compact()
    old = set(json.loads(Path(store.path, "compact", "CURRENT.json").read_text())["shards"])
    for i in range(6):
        store.write("frames", ids[i], f"{i:032x}", version=2, arrays=_frames(50 + i), record={"n": 50 + i})
    stats = store.compact()
    cur = json.loads(Path(store.path, "compact", "CURRENT.json").read_text())
    frames_old = {k for k in old if k.startswith("frames/")}
    assert stats["shards_retired"] == 1 and not frames_old & set(cur["shards"])
    retired = [rel for rel, _ in cur["retired"]]
    assert all(Path(store.path, "compact", rel).exists() for rel in retired)  # a reader may still use them
    assert store.compact(grace_seconds=0)["removed"] == len(retired)
    assert not any(Path(store.path, "compact", rel).exists() for rel in retired)
    for i, vid in enumerate(ids):
        want = _frames(50 + i if i < 6 else i)["per_second"]
        assert np.array_equal(store.read("frames", vid)["per_second"], want)


@pytest.mark.parametrize("how", ["compact", "write_many"])
def test_a_crash_before_the_commit_leaves_the_previous_view(tmp_path, monkeypatch, how):
    store = open_store(tmp_path, "ds", create=True)
    ids = _populate(store)
    store.compact()
    store.write("frames", ids[1], "e" * 32, version=2, arrays=_frames(77), record={"n": 77})
    store.drop("probe", ids[2])
    view = _public_view(store, ids)
    gen = json.loads(Path(store.path, "compact", "CURRENT.json").read_text())["generation"]
    real = store._write_bytes

    def dies_at_commit(path, data):
        if path.endswith("compact/CURRENT.json"):
            raise KeyboardInterrupt("SIGKILL stand-in: dies as it commits")
        return real(path, data)

    monkeypatch.setattr(store, "_write_bytes", dies_at_commit)
    with pytest.raises(KeyboardInterrupt):
        if how == "compact":
            store.compact()
        else:  # a batch commit dies the same way: its shard and partitions were written, CURRENT.json was not
            store.write_many("frames", [{"video_id": ids[3], "fingerprint": "h" * 32, "version": 2,
                                         "arrays": _frames(78)}])
    monkeypatch.undo()
    assert _public_view(open_store(tmp_path, "ds"), ids) == view
    assert json.loads(Path(store.path, "compact", "CURRENT.json").read_text())["generation"] == gen
    assert store.gc() >= 2  # the uncommitted partitions and shard
    assert _public_view(open_store(tmp_path, "ds"), ids) == view
    store.compact()
    assert _public_view(open_store(tmp_path, "ds"), ids) == view


def test_a_crash_after_the_commit_leaves_fresh_files_that_the_next_compaction_removes(tmp_path, monkeypatch):
    store = open_store(tmp_path, "ds", create=True)
    ids = _populate(store)
    view = _public_view(store, ids)
    monkeypatch.setattr(type(store), "_remove_fresh", lambda *a, **k: None)  # dies before removing anything
    monkeypatch.setattr(type(store), "_remove_fresh_failure", lambda *a, **k: None)
    store.compact()
    monkeypatch.undo()
    assert _public_view(open_store(tmp_path, "ds"), ids) == view
    assert len(list(Path(store.path, "index").glob("*/*.json"))) == 24
    stats = store.compact()
    assert stats["folded"] == 0 and stats["shards_written"] == 0, stats  # recognised as already folded
    assert not list(Path(store.path, "index").glob("*/*.json")) and not list(Path(store.path).glob("failures/*/*"))
    assert _public_view(open_store(tmp_path, "ds"), ids) == view


@pytest.mark.filterwarnings("ignore:The data type")  # zarr: strings have no Zarr v3 spec yet
def test_outputs_that_cannot_be_stacked_stay_fresh(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    store.write("words", "v", "w" * 32, version=1, arrays={"tokens": np.array(["a", "bc"])})
    store.write("sizes", "a", "1" * 32, version=1, arrays={"x": np.zeros(3)})
    store.write("sizes", "b", "2" * 32, version=1, arrays={"x": np.zeros(5)})  # another shape: another shard
    stats = store.compact()
    assert stats["folded"] == 2 and store.entry("words", "v").data and not store.entry("words", "v").data.startswith(
        "shard:")
    assert store.read("words", "v")["tokens"].tolist() == ["a", "bc"]
    assert store.read("sizes", "b")["x"].shape == (5,) and store.entry("sizes", "b").data.startswith("shard:")


def test_bad_compaction_arguments_are_refused(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    with pytest.raises(ValueError, match=r"shard_videos=0: expected an int >= 1"):
        store.compact(shard_videos=0)
    with pytest.raises(ValueError, match=r"grace_seconds=-1"):
        store.compact(grace_seconds=-1)
    with pytest.raises(TypeError, match="shard_rows"):
        store.compact(shard_rows=4)


def test_a_version_1_store_reads_as_it_is_and_its_first_compaction_upgrades_it(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    ids = _populate(store, n=4)
    meta = Path(store.path, "store.json")
    meta.write_text(json.dumps({"format_version": 1, "dataset": "ds"}))  # the layout of version 1 is the fresh layer
    old = open_store(tmp_path, "ds")
    assert old.format_version == 1
    view = _public_view(old, ids)
    old.compact()
    assert open_store(tmp_path, "ds").format_version == FORMAT_VERSION == 2
    assert _public_view(open_store(tmp_path, "ds"), ids) == view
    meta.write_text(json.dumps({"format_version": 0}))
    with pytest.raises(StoreError, match="unknown format version 0"):
        open_store(tmp_path, "ds")


def test_a_damaged_compaction_record_says_what_to_do(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    _populate(store, n=2)
    store.compact()
    Path(store.path, "compact", "CURRENT.json").write_text('{"format": 1, "gen')
    with pytest.raises(StoreError, match="CURRENT.json is not a compaction record.*restore it"):
        open_store(tmp_path, "ds").entries("frames")


def test_copy_entry_from_a_compacted_store(tmp_path):
    a, b = open_store(tmp_path, "a", create=True), open_store(tmp_path, "b", create=True)
    ids = _populate(a, n=3)
    a.compact()
    rec = b.copy_entry(a, "frames", ids[2])
    assert rec.fingerprint == a.entry("frames", ids[2]).fingerprint and not rec.data.startswith("shard:")
    assert np.array_equal(b.read("frames", ids[2])["per_second"], _frames(2)["per_second"])
    assert os.path.isdir(Path(b.path, "features.zarr", "frames", video_key(ids[2]), rec.data))


def test_write_many_commits_a_batch_as_write_then_compact_would(tmp_path):
    """A batch commit (Store.write_many) answers every public call as per-video writes + a compaction do, replaces
    fresh outputs and clears failures of its videos, and leaves no per-video file."""
    ids = [f"v/{i:02d}" for i in range(9)]
    outputs = [{"video_id": vid, "fingerprint": f"g{i:031x}", "version": 3, "arrays": _frames(i),
                "record": {"n": i}, "params": {"k": [1, 2]}, "seconds": 0.25} for i, vid in enumerate(ids)]
    stores = {}
    for how in ("write", "write_many"):
        store = stores[how] = open_store(tmp_path / how, "ds", create=True)
        _populate(store, n=12)  # fresh frames of v/00..v/11, a frames failure on v/04
        if how == "write":
            for out in outputs:
                store.write("frames", out["video_id"], out["fingerprint"], version=out["version"],
                            arrays=out["arrays"], record=out["record"], params=out["params"], seconds=0.25)
            store.compact(shard_videos=4)
        else:
            stats = store.write_many("frames", outputs, shard_videos=4)
            assert stats["folded"] == 24 and stats["failures"] == 1, stats  # 12 probe + 3 frames + 9 batch
        assert not [f for f in _files(store) if f.startswith(("index/", "failures/", "features.zarr/frames/v"))]
    views = {how: _public_view(s, [*ids, "v/10", "v/11"]) for how, s in stores.items()}
    for view in views.values():
        for stage in ("frames", "probe", "audio"):
            for rec in view[stage].values():
                rec.pop("created")
            for failure in filter(None, view[f"{stage}-failure"].values()):
                failure.pop("time")
    assert views["write_many"] == views["write"]
    assert views["write"]["frames-fingerprints"]["v/04"] == f"g{4:031x}"
    assert views["write"]["frames-failure"]["v/04"] is None  # the batch cleared its failure
    with pytest.raises(ValueError, match=r"outputs\[1\]: video_id='a' appears twice"):
        stores["write"].write_many("x", [{"video_id": "a", "fingerprint": "f", "version": 1}] * 2)
    with pytest.raises(ValueError, match=r"arrays \{'w': '<U1'\} cannot be batch-committed"):
        stores["write"].write_many("x", [{"video_id": "a", "fingerprint": "f", "version": 1,
                                          "arrays": {"w": np.array(["a"])}}])


def test_consolidate_rewrites_a_compacted_stage_table_only_when_its_index_changed(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    ids = _populate(store)
    table = Path(store.path, "tables", "frames.parquet")

    def stamp() -> tuple[int, int]:
        st = table.stat()
        return st.st_ino, st.st_mtime_ns

    store.consolidate(["frames"])
    fresh = stamp()
    store.compact()
    store.consolidate(["frames"])
    compacted = stamp()
    assert compacted != fresh  # the outputs moved into shards: their data changed
    store.consolidate(["frames"])
    assert stamp() == compacted  # nothing changed: the digest from the index columns matches, nothing rewritten
    store.write("frames", ids[0], "z" * 32, version=2, arrays=_frames(50), record={"n": 50})
    store.consolidate(["frames"])
    assert stamp() != compacted
    assert store.read_table("frames").set_index("video_id").loc[ids[0], "n"] == 50
