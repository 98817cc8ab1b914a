import json
import os

import numpy as np
import pandas as pd
import pytest

from features.store import FORMAT_VERSION, StoreError, open_store, video_key


def test_video_key_is_path_safe_and_unique():
    keys = {video_key(v) for v in ["../x", "..%2Fx", "a b", "a_b", "-rf", "ünï", "x/../../etc"]}
    assert len(keys) == 7
    for k in keys:
        assert "/" not in k and not k.startswith((".", "-")) and ".." not in k.split("-")[0][:2]
    with pytest.raises(ValueError, match="video_id"):
        video_key("")


@pytest.mark.parametrize("name", ["../x", "", "a/b", ".hidden", "x" * 65])
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
