"""The local index snapshot behind ``Store.entries`` and the skip of unchanged consolidated tables:
both must give exactly what reading every index record gives, whatever happened to the files in between."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from features import store as store_mod
from features.store import IndexRecord, open_store, video_key


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
