"""The feature store: names, commits and reads, failures, locks, artifacts, digests and memos, the local index
snapshot behind ``Store.entries`` and the skip of unchanged consolidated tables."""

import collections
import json
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import store as store_mod
from features.store import FORMAT_VERSION, IndexRecord, Store, StoreError, open_store, video_key


def test_video_key_is_path_safe_and_unique():
    keys = {video_key(v) for v in ["../x", "..%2Fx", "a b", "a_b", "-rf", "ünï", "x/../../etc"]}
    assert len(keys) == 7
    for k in keys:
        assert "/" not in k and not k.startswith((".", "-")) and ".." not in k.split("-")[0][:2]
    with pytest.raises(ValueError, match="video_id"):
        video_key("")


@pytest.mark.parametrize("name", ["../x", "", "a/b", ".hidden", "x" * 65, "ds\n"])
def test_bad_dataset_names_are_refused(root, name):
    with pytest.raises(ValueError, match="dataset"):
        open_store(root, name, create=True)


def test_missing_store_says_what_to_do(root):
    with pytest.raises(StoreError, match="vidpipe ingest"):
        open_store(root, "nope")


def test_write_read_roundtrip_and_table(root):
    s = open_store(root, "ds", create=True)
    frames = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    s.write("frames", "v1", "a" * 32, version=1, arrays={"f": frames, "valid": np.array([True, False])},
            record={"n": 2}, params={"size": 4})
    out = s.read("frames", "v1")
    assert out["f"].dtype == np.uint8 and np.array_equal(out["f"], frames)
    assert out["valid"].tolist() == [True, False] and out["n"] == 2
    t = s.table("frames")
    assert t[["video_id", "fingerprint", "n"]].to_dict("records") == [{"video_id": "v1", "fingerprint": "a" * 32, "n": 2}]
    with pytest.raises(KeyError, match="not extracted yet"):
        s.read("frames", "v2")


def test_rewrite_replaces_and_removes_old_version(root):
    s = open_store(root, "ds", create=True)
    s.write("audio", "v", "a" * 32, version=1, arrays={"x": np.zeros(3)})
    s.write("audio", "v", "b" * 32, version=1, arrays={"x": np.ones(3)})
    assert s.read("audio", "v")["x"].tolist() == [1, 1, 1]
    key_dir = os.path.join(s.path, "features.zarr", "audio", video_key("v"))
    assert [d for d in os.listdir(key_dir) if d != "zarr.json"] == [s.entry("audio", "v").data]


def test_crash_before_commit_keeps_previous_output(root, monkeypatch):
    s = open_store(root, "ds", create=True)
    s.write("audio", "v", "a" * 32, version=1, arrays={"x": np.zeros(3)})

    def boom(*a, **k):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(s, "_write_bytes", boom)  # the index write never happens
    with pytest.raises(KeyboardInterrupt):
        s.write("audio", "v", "b" * 32, version=1, arrays={"x": np.ones(3)})
    monkeypatch.undo()
    assert s.entry("audio", "v").fingerprint == "a" * 32
    assert s.read("audio", "v")["x"].tolist() == [0, 0, 0]
    assert s.gc() >= 1  # the orphaned new version is collected
    assert s.read("audio", "v")["x"].tolist() == [0, 0, 0]


def test_failures_recorded_and_cleared_on_success(root):
    s = open_store(root, "ds", create=True)
    s.write_manifest(pd.DataFrame({"video_id": ["v", "w"], "split": ["train", "test"]}))
    s.record_failure("frames", "v", "MediaError: truncated", fingerprint="f" * 32)
    f = s.failures()
    assert f[["video_id", "stage", "error"]].to_dict("records") == [
        {"video_id": "v", "stage": "frames", "error": "MediaError: truncated"}]
    summary = s.summary(["frames"])
    assert summary["stages"]["frames"] == {"done": 0, "failed": 1, "pending": 1}
    s.write("frames", "v", "e" * 32, version=1, record={"ok": True})
    assert s.failures().empty
    assert s.summary(["frames"])["stages"]["frames"] == {"done": 1, "failed": 0, "pending": 1}


def test_newer_format_version_is_refused(root):
    s = open_store(root, "ds", create=True)
    meta = os.path.join(s.path, "store.json")
    with open(meta, "w") as fh:
        json.dump({"format_version": FORMAT_VERSION + 1}, fh)
    with pytest.raises(StoreError, match="upgrade vidpipe"):
        open_store(root, "ds")


def test_lock_refuses_second_writer_without_wait(root):
    s = open_store(root, "ds", create=True)
    other = open_store(root, "ds")
    with s.lock():
        with pytest.raises(StoreError, match="being written"):
            with other.lock(wait=False):
                pass
    with other.lock(wait=False):
        pass


def test_artifacts_and_packs_roundtrip(root):
    s = open_store(root, "ds", create=True)
    s.write_artifact("graph", "g" * 32, arrays={"video": np.eye(2, dtype=np.float32)}, meta={"video_ids": ["a", "b"]})
    assert s.read("graph", "b")["video"].tolist() == [0.0, 1.0]
    p = s.write_pack("p" * 32, {"x": np.ones((3, 2), np.float32), "ids": np.array(["a", "b", "c"])}, {"n": 3})
    arrays, meta = s.read_pack("p" * 32)
    assert p.exists() and meta == {"n": 3} and arrays["x"].shape == (3, 2) and list(arrays["ids"]) == ["a", "b", "c"]
    assert not list(p.parent.glob(".tmp-*"))


def test_copy_entry_and_artifact_carry_everything_to_another_dataset(root):
    a, b = open_store(root, "a", create=True), open_store(root, "b", create=True)
    frames = np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3)
    a.write("frames", "v/1", "c" * 32, version=3, arrays={"f": frames}, record={"n": 2}, params={"k": [1, 2]},
            seconds=1.5)
    a.write("probe", "v/1", "d" * 32, version=1, record={"fps": 10.0})  # record only, no arrays
    a.write_artifact("graph", "g" * 32, arrays={"embedding": np.eye(2, dtype=np.float32)},
                     meta={"video_ids": ["v/1", "v/2"]}, files={"encoder.pt": b"weights"})
    for stage in ("frames", "probe"):
        rec = b.copy_entry(a, stage, "v/1")
        src = a.entry(stage, "v/1")
        assert (rec.fingerprint, rec.version, rec.params, rec.record) == (src.fingerprint, src.version, src.params,
                                                                          src.record)
    assert np.array_equal(b.read("frames", "v/1")["f"], frames) and b.read("probe", "v/1") == {"fps": 10.0}
    b.copy_artifact(a, "graph")
    arrays, meta = b.read_artifact("graph")
    assert b.artifact_fingerprint("graph") == "g" * 32 and meta == {"video_ids": ["v/1", "v/2"]}
    assert np.array_equal(arrays["embedding"], np.eye(2)) and b.artifact_file("graph", "encoder.pt") == b"weights"
    a.write("frames", "v/1", "e" * 32, version=3, arrays={"f": frames + 1})  # the source moves on; the copy stays
    assert np.array_equal(b.read("frames", "v/1")["f"], frames)
    with pytest.raises(KeyError, match="no 'audio' output"):
        b.copy_entry(a, "audio", "v/1")
    with pytest.raises(KeyError, match="no artifact 'vocabulary'"):
        b.copy_artifact(a, "vocabulary")


def test_scrape_history_appends_and_replaces_a_recorded_scrape_time(root):
    s = open_store(root, "ds", create=True)
    assert s.scrape_history().empty and s.append_scrape_history(pd.DataFrame()) == 0

    def snaps(t, plays):
        return pd.DataFrame({"video_id": ["a", "b"], "scrape_time": [t, t], "create_time": [0.0, 0.0],
                             "play_count": pd.array(plays, dtype="Int64")})

    assert s.append_scrape_history(snaps(10.0, [1, 2])) == 2
    assert s.append_scrape_history(snaps(20.0, [3, 4])) == 2
    assert s.append_scrape_history(snaps(10.0, [1, 5])) == 0  # the first scrape again, b corrected: replaced
    got = s.scrape_history()
    assert list(zip(got["video_id"], got["scrape_time"], got["play_count"])) == [
        ("a", 20.0, 3), ("b", 20.0, 4), ("a", 10.0, 1), ("b", 10.0, 5)]  # recorded order, the replacement last


def test_commit_digest_follows_recommits_not_compaction(root):
    store = open_store(root, "digest", create=True)
    for vid in ("a", "b", "c"):
        store.write("probe", vid, vid * 32, version=1, record={"duration": 1.0})
    whole, ab = store.commit_digest("probe"), store.commit_digest("probe", ["a", "b", "zz"])
    assert ab == store.commit_digest("probe", ["a", "b"]) != whole
    store.compact()
    assert store.commit_digest("probe") == whole and store.commit_digest("probe", ["b", "a"]) == ab
    store.write("probe", "b", "b" * 32, version=1, record={"duration": 1.0})  # the same output, committed again
    assert store.commit_digest("probe", ["a", "b"]) != ab and store.commit_digest("probe", ["a", "c"]) == \
        open_store(root, "digest").commit_digest("probe", ["c", "a"])


def test_view_and_failure_keys_change_with_every_commit_drop_failure_and_compaction(root):
    store = open_store(root, "keys", create=True)
    for vid in ("a", "b"):
        store.write("probe", vid, vid * 32, version=1, record={"duration": 1.0})
    seen = [(store.view_key("probe"), store.failures_key())]

    def changed(kind: str) -> None:
        now = (store.view_key("probe"), store.failures_key())
        assert now[0] != seen[-1][0] if kind in ("view", "both") else now[0] == seen[-1][0], kind
        assert now[1] != seen[-1][1] if kind in ("failures", "both") else now[1] == seen[-1][1], kind
        assert now == (open_store(root, "keys").view_key("probe"), open_store(root, "keys").failures_key())
        seen.append(now)

    store.write("probe", "b", "b" * 32, version=1, record={"duration": 1.0})  # same output, committed again
    changed("view")
    store.record_failure("frames", "a", "boom", fingerprint="f" * 32)
    changed("failures")
    store.compact()  # outputs and the failure move into the compacted layer
    changed("both")
    store.drop("probe", "a")
    changed("view")
    assert store.view_key("frames") != store.view_key("probe")


def test_entries_digests_are_memoised_by_view_and_a_damaged_memo_is_recomputed(root, monkeypatch):
    from features.store import Store

    store = open_store(root, "memo", create=True)
    for vid in ("a", "b", "c"):
        store.write("probe", vid, vid * 32, version=1, record={"duration": 1.0})
    store.compact()
    whole, ab = store.commit_digest("probe"), store.commit_digest("probe", ["a", "b"])
    store.consolidate(["probe"])
    real = Store._commit_keys
    monkeypatch.setattr(Store, "_commit_keys", lambda self, stage: pytest.fail("the memo should answer"))
    reader = open_store(root, "memo")  # another handle: the memo is in the store, not in the object
    assert reader.commit_digest("probe") == whole and reader.commit_digest("probe", ["a", "b"]) == ab
    reader.consolidate(["probe"])  # the table is current: nothing computed, nothing written
    monkeypatch.setattr(Store, "_commit_keys", real)
    memo = root / "memo" / "cache" / "digests.json"
    for damage in (b"{not json", b'{"format": 1, "digests": {"x": 1}}', None):
        if damage is None:
            memo.unlink()
        else:
            memo.write_bytes(damage)
        assert store.commit_digest("probe") == whole and store.commit_digest("probe", ["b", "a"]) == ab
    store.write("probe", "c", "d" * 32, version=1, record={"duration": 2.0})
    assert store.commit_digest("probe") != whole and store.commit_digest("probe", ["a", "b"]) == ab
    store.consolidate(["probe"])
    assert store.read_table("probe").set_index("video_id").loc["c", "fingerprint"] == "d" * 32
    view = store.as_read_only()
    memo.unlink()
    digest = view.commit_digest("probe")
    assert not memo.exists() and digest == store.commit_digest("probe") and memo.exists()  # read-only: no memo written


# ------------------------------------------------------------------------------------------ artifact meta updates
def test_update_artifact_meta_rewrites_only_the_meta(root):
    s = open_store(root, "ds", create=True)
    s.write_artifact("graph", "g" * 32, arrays={"embedding": np.eye(2, dtype=np.float32)},
                     meta={"video_ids": ["a", "b"], "inputs": "old"}, files={"encoder.pt": b"weights"})
    s.write_artifact("graph", "h" * 32, meta={"video_ids": ["c"]})  # the current one; g stays stored
    folder, data = root / "ds" / "artifacts" / "graph", root / "ds" / "features.zarr" / "_artifacts" / "graph"
    current, data_dirs = (folder / "current.json").read_bytes(), sorted(p.name for p in data.iterdir())
    data_dir = json.loads((folder / ("g" * 32) / "meta.json").read_bytes())["_data"]
    assert data_dir in data_dirs
    meta = s.update_artifact_meta("graph", "g" * 32, {"inputs": "new", "n": np.int64(3)})
    assert meta == {"video_ids": ["a", "b"], "inputs": "new", "n": 3}
    arrays, read = s.read_artifact("graph", "g" * 32)
    assert read == meta and np.array_equal(arrays["embedding"], np.eye(2))
    assert (folder / "current.json").read_bytes() == current and s.artifact_fingerprint("graph") == "h" * 32
    assert sorted(p.name for p in data.iterdir()) == data_dirs
    assert json.loads((folder / ("g" * 32) / "meta.json").read_bytes())["_data"] == data_dir
    assert s.artifact_file("graph", "encoder.pt", "g" * 32) == b"weights" and not list(folder.rglob(".tmp-*"))


def test_update_artifact_meta_refuses_reserved_keys_and_missing_artifacts(root):
    s = open_store(root, "ds", create=True)
    s.write_artifact("vocabulary", "v" * 32, meta={"tokens": ["a"]})
    before = (root / "ds" / "artifacts" / "vocabulary" / ("v" * 32) / "meta.json").read_bytes()
    with pytest.raises(ValueError, match=r"updates: keys \['_data'\] are reserved"):
        s.update_artifact_meta("vocabulary", "v" * 32, {"_data": "elsewhere", "n": 1})
    with pytest.raises(TypeError, match="updates: expected a mapping"):
        s.update_artifact_meta("vocabulary", "v" * 32, [("n", 1)])
    with pytest.raises(KeyError, match=f"no artifact 'vocabulary' @{'w' * 32}"):
        s.update_artifact_meta("vocabulary", "w" * 32, {"n": 1})
    with pytest.raises(KeyError, match="no artifact 'graph'"):
        s.update_artifact_meta("graph", "v" * 32, {"n": 1})
    assert (root / "ds" / "artifacts" / "vocabulary" / ("v" * 32) / "meta.json").read_bytes() == before


# ------------------------------------------------------------------------------------------ local index snapshot
# The snapshot and the consolidated tables must give exactly what reading every index record gives, whatever
# happened to the files in between.
def _raw_entries(store, stage: str) -> dict[str, IndexRecord]:
    """The reference: every index file read and parsed, no cache."""
    folder = Path(store.path) / "index" / stage
    out = {}
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        rec = IndexRecord.from_json(p.read_bytes())
        out[rec.video_id] = rec
    return out


def _write(store, vid: str, fp: str, **record) -> None:
    store.write("probe", vid, fp, version=1, record=record or {"n": 1})


def test_entries_match_a_full_read_through_writes_rewrites_drops_and_hand_edits(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    assert store.entries("probe") == {}
    for i in range(5):
        _write(store, f"v{i}", f"fp{i}", n=i)
    assert store.entries("probe") == _raw_entries(store, "probe")
    snapshot = Path(store.path) / "cache" / "index" / "probe.json"
    assert snapshot.is_file() and len(json.loads(snapshot.read_text())["files"]) == 5

    _write(store, "v1", "fp1-new", n=10)  # rewrite (a rename: new inode)
    store.drop("probe", "v3")
    _write(store, "v9", "fp9", n=9)  # new
    # an edit in place by hand: same inode, new size / mtime
    path = Path(store.path) / "index" / "probe" / f"{video_key('v0')}.json"
    raw = json.loads(path.read_text())
    raw["record"]["n"] = 1234
    path.write_text(json.dumps(raw))
    got = store.entries("probe")
    assert got == _raw_entries(store, "probe")
    assert sorted(got) == ["v0", "v1", "v2", "v4", "v9"]
    assert got["v1"].fingerprint == "fp1-new" and got["v0"].record["n"] == 1234


def test_a_second_process_view_and_a_damaged_snapshot_read_the_same(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    for i in range(3):
        _write(store, f"v{i}", f"fp{i}")
    want = store.entries("probe")
    store_mod._SNAPSHOTS.clear()  # what a fresh process sees: the snapshot file only
    assert open_store(tmp_path, "ds").entries("probe") == want
    snapshot = Path(store.path) / "cache" / "index" / "probe.json"
    snapshot.write_text('{"format": 1, "files": {"x.json": [1, 2')  # torn / damaged: ignored, then rewritten
    store_mod._SNAPSHOTS.clear()
    assert open_store(tmp_path, "ds").entries("probe") == want
    assert len(json.loads(snapshot.read_text())["files"]) == 3


def test_unchanged_files_are_not_reread(tmp_path, monkeypatch):
    store = open_store(tmp_path, "ds", create=True)
    for i in range(4):
        _write(store, f"v{i}", f"fp{i}")
    store.entries("probe")
    opened = []
    real_open = open

    def spy(file, *a, **kw):
        opened.append(os.fspath(file))
        return real_open(file, *a, **kw)

    monkeypatch.setattr("builtins.open", spy)
    store.entries("probe")
    assert not [p for p in opened if "/index/probe/" in p]  # stats only
    _write(store, "v2", "fp2-new")
    opened.clear()
    assert store.entries("probe")["v2"].fingerprint == "fp2-new"
    assert [Path(p).name for p in opened if "/index/probe/" in p] == [f"{video_key('v2')}.json"]


def test_records_handed_out_cannot_corrupt_the_cache(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    _write(store, "v0", "fp0", n=1)
    store.entries("probe")["v0"].record["n"] = 999  # a careless caller
    assert store.entries("probe")["v0"].record["n"] == 1


def test_consolidate_rewrites_a_table_only_when_its_records_changed(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    for i in range(3):
        _write(store, f"v{i}", f"fp{i}", n=i)
    store.consolidate(["probe"])
    table = Path(store.path) / "tables" / "probe.parquet"
    first = table.stat().st_ino
    store.consolidate(["probe"])
    assert table.stat().st_ino == first  # nothing changed: not rewritten
    _write(store, "v1", "fp1-new", n=7)
    store.consolidate(["probe"])
    assert table.stat().st_ino != first
    df = store.read_table("probe").set_index("video_id")
    assert df.loc["v1", "fingerprint"] == "fp1-new" and int(df.loc["v1", "n"]) == 7
    assert np.array_equal(store.read_table("probe").columns, store.table("probe").columns)
    table.unlink()
    store.consolidate(["probe"])  # a missing table is written again
    assert len(store.read_table("probe")) == 3


def test_a_table_consolidated_while_a_writer_commits_is_labelled_with_what_it_holds(tmp_path, monkeypatch):
    store = open_store(tmp_path, "ds", create=True)
    _write(store, "v0", "fp0")
    real = Store.entries

    def entries_after_a_commit(self, stage):
        _write(store, "late", "fp-late")  # another writer commits between the digest check and the read
        return real(self, stage)

    monkeypatch.setattr(Store, "entries", entries_after_a_commit)
    store.consolidate(["probe"])
    monkeypatch.setattr(Store, "entries", real)
    assert sorted(store.read_table("probe")["video_id"]) == ["late", "v0"]
    store.drop("probe", "late")  # the records are what the digest check saw again: the table must not pass for them
    store.consolidate(["probe"])
    assert list(store.read_table("probe")["video_id"]) == ["v0"]


# ------------------------------------------------------------------------------------------ names
@pytest.mark.parametrize("bad", ["../x", "a/b", "..", ".", "", "name\n", 3])
def test_every_name_the_store_builds_a_path_from_is_checked_alike(root, bad):
    s = open_store(root, "ds", create=True)
    s.write_artifact("graph", "g" * 32, meta={"video_ids": []})
    before = sorted(root.rglob("*"))
    calls = {
        "dataset": [lambda: open_store(root, bad, create=True)],
        "parts[1]": [lambda: s.local_dir("runs", bad)],
        "run_id": [lambda: s.save_run(bad, {}), lambda: s.checkpoint_dir(bad)],
        "name": [lambda: s.write_report(bad, "x"), lambda: s.write_table(bad, pd.DataFrame({"a": [1]})),
                 lambda: s.write_memo(bad, {}), lambda: s.read_memo(bad),
                 lambda: s.write_artifact(bad, "g" * 32, meta={}),
                 lambda: s.update_artifact_meta(bad, "g" * 32, {"n": 1}), lambda: s.artifact_fingerprint(bad),
                 lambda: s.read_artifact(bad), lambda: s.artifact_file(bad, "encoder.pt")],
        "fingerprint": [lambda: s.write_pack(bad, {"x": np.zeros(2)}, {}), lambda: s.has_pack(bad),
                        lambda: s.write_artifact("graph", bad, meta={}),
                        lambda: s.update_artifact_meta("graph", bad, {"n": 1}),
                        lambda: s.read_artifact("graph", bad), lambda: s.artifact_file("graph", "encoder.pt", bad)],
        "fname": [lambda: s.artifact_file("graph", bad)],
        "files key": [lambda: s.write_artifact("graph", "h" * 32, meta={}, files={bad: b"x"})],
        "stage": [lambda: s.write(bad, "v", "f" * 32, version=1), lambda: s.record_failure(bad, "v", "boom"),
                  lambda: s.drop(bad, "v"), lambda: s.write_many(bad, []), lambda: s.read(bad, "v"),
                  lambda: s.entry(bad, "v"), lambda: s.entries(bad), lambda: s.read_many(bad, ["v"]),
                  lambda: s.failure(bad, "v")],
    }
    for arg, fns in calls.items():
        for fn in fns:
            with pytest.raises(ValueError) as err:
                fn()
            assert str(err.value).startswith(f"{arg}={bad!r}: expected "), str(err.value)
    assert sorted(root.rglob("*")) == before  # refused before anything was written
    assert s.local_dir("runs", ".hidden").name == ".hidden" and not s.has_pack("a.b_c-1")  # the accepted alphabet


# ------------------------------------------------------------------------------------------ requests
@pytest.fixture
def memory_store():
    """A store on an fsspec ``memory://`` root: an object-store root (no OS paths; outputs as one object each)."""
    store = open_store(f"memory://vidpipe-test-{uuid.uuid4().hex}", "ds", create=True)
    yield store
    store.fs.rm(store.path.rsplit("/", 1)[0], recursive=True)


def _count_calls(monkeypatch, fs) -> "collections.Counter[str]":
    """Calls of ``fs``'s request-making methods by their callers (not the calls those methods make of each other)."""
    calls: collections.Counter[str] = collections.Counter()
    depth = [0]
    for name in ("exists", "info", "isdir", "isfile", "ls", "find", "glob", "cat_file", "cat", "cat_ranges",
                 "pipe_file", "rm", "open"):
        def counted(*args, _real=getattr(fs, name), _name=name, **kwargs):
            calls[_name] += depth[0] == 0
            depth[0] += 1
            try:
                return _real(*args, **kwargs)
            finally:
                depth[0] -= 1
        monkeypatch.setattr(fs, name, counted)
    return calls


def test_listings_and_reads_on_an_object_store_root_make_no_existence_checks(memory_store, monkeypatch):
    s = memory_store
    calls = _count_calls(monkeypatch, s.fs)

    def requests(fn):
        calls.clear()
        out = fn()
        return out, {k: v for k, v in calls.items() if v}

    assert requests(s.run_records) == ([], {"ls": 1})  # a missing folder lists as empty
    assert requests(s.report_names) == ([], {"ls": 1})
    assert requests(s.source_info) == ({}, {"cat_file": 1})
    assert requests(s._fresh_stages) == ([], {"ls": 1})
    s.save_run("r1", {"model": "m"})
    s.write_report("a.md", "x")
    s.write_manifest(pd.DataFrame({"video_id": ["v"]}), source={"kind": "folder"})
    s.write_artifact("vocabulary", "a" * 32, meta={"tokens": ["a"]})
    s.write("probe", "v", "f" * 32, version=1, record={"n": 1})
    runs, n = requests(s.run_records)
    assert [r.run_id for r in runs] == ["r1"] and n == {"ls": 1, "cat": 1}
    assert requests(s.report_names) == (["a.md"], {"ls": 1})
    assert requests(s.source_info) == ({"kind": "folder"}, {"cat_file": 1})
    assert requests(s._fresh_stages) == (["probe"], {"ls": 1})
    assert requests(lambda: s.read_artifact("vocabulary")) == (({}, {"tokens": ["a"]}), {"cat_file": 2})
    calls.clear()
    with pytest.raises(KeyError, match=f"no artifact 'vocabulary' @{'b' * 32}"):
        s.read_artifact("vocabulary", "b" * 32)
    assert dict(calls) == {"cat_file": 1}


# ------------------------------------------------------------------------------------------ dataset-level stages
def test_a_dataset_level_stage_reads_its_meta_once_per_call_and_the_rows_it_is_asked_for(root, monkeypatch):
    s = open_store(root, "ds", create=True)
    ids = ["a", "b", "c", "a"]  # a repeated id reads its first row
    s.write_artifact("graph", "g" * 32, meta={"video_ids": ids},
                     arrays={"embedding": np.arange(12, dtype=np.float32).reshape(4, 3),
                             "score": np.array([0.1, 0.2, 0.3, 0.4]), "songs": np.zeros((2, 3), np.float32)})
    arrays, _ = s.read_artifact("graph")

    def row(vid):  # the reference: the video's row of every per-video array of the whole artifact
        return {k: v[ids.index(vid)] for k, v in arrays.items() if v.shape[:1] == (len(ids),)}

    metas = []
    real = Store._artifact_meta
    monkeypatch.setattr(Store, "_artifact_meta", lambda self, *a: metas.append(a) or real(self, *a))
    many = s.read_many("graph", ["c", "a", "b"])
    assert len(metas) == 1 and list(many) == ["c", "a", "b"]
    for vid in "abc":
        one, want = s.read("graph", vid), row(vid)
        assert list(one) == list(many[vid]) == list(want) == ["embedding", "score"]
        for k, v in want.items():
            assert type(one[k]) is type(many[vid][k]) is type(v), k
            assert one[k].dtype == many[vid][k].dtype == v.dtype and np.array_equal(one[k], v)
            assert np.array_equal(many[vid][k], v)
    assert len(metas) == 4  # one per read() call
    with pytest.raises(KeyError, match="no 'graph' output for video 'z'"):
        s.read_many("graph", ["a", "z"])
    s.write_manifest(pd.DataFrame({"video_id": ["a", "b", "c", "d"]}))
    metas.clear()
    assert s.summary(["graph"])["stages"]["graph"] == {"done": 3, "failed": 0, "pending": 1}
    assert len(metas) == 1  # the meta names the videos: no array is read


def test_entries_of_other_programs_in_the_index_and_data_folders_are_ignored(root):
    store = open_store(root, "ds", create=True)
    store.write("probe", "v1", "a" * 32, version=1, record={"duration": 1.0})
    ds = Path(root) / "ds"
    (ds / "index" / ".DS_Store").write_bytes(b"\0")  # a file a file browser leaves
    (ds / "index" / "odd name").mkdir()  # a folder no stage could be named
    (ds / "features.zarr" / "odd name").mkdir(parents=True)
    assert store._fresh_stages() == ["probe"]
    store.gc()
    assert store.read("probe", "v1")["duration"] == 1.0 and (ds / "index" / "odd name").is_dir()
