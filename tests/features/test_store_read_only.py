"""A read-only store: every public method either refuses (a writer) or leaves every byte on disk as it was (a reader).

The two tables below classify every public method of :class:`Store`; a new public method fails
:func:`test_every_public_method_is_classified` until it is added to one of them, so a new writer cannot be forgotten.
"""

import hashlib
import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import store as store_mod
from features.store import Store, StoreError, open_store

# method → a call with plausible arguments (``s``: the read-only store, ``w``: a writable store of another dataset)
WRITERS = {
    "write_manifest": lambda s, w: s.write_manifest(pd.DataFrame({"video_id": ["v2"]})),
    "write_table": lambda s, w: s.write_table("t", pd.DataFrame({"a": [1]})),
    "append_scrape_history": lambda s, w: s.append_scrape_history(pd.DataFrame({"video_id": ["v"],
                                                                                 "scrape_time": [1]})),
    "write": lambda s, w: s.write("probe", "v2", "f" * 32, version=1, record={"n": 1}),
    "copy_entry": lambda s, w: s.copy_entry(w, "frames", "v"),
    "drop": lambda s, w: s.drop("frames", "v"),
    "consolidate": lambda s, w: s.consolidate(),
    "compact": lambda s, w: s.compact(),
    "write_many": lambda s, w: s.write_many("probe", [{"video_id": "v2", "fingerprint": "f" * 32, "version": 1}]),
    "record_failure": lambda s, w: s.record_failure("frames", "v", "boom"),
    "write_artifact": lambda s, w: s.write_artifact("vocab", "fp2", meta={"n": 1}),
    "copy_artifact": lambda s, w: s.copy_artifact(w, "vocab"),
    "update_artifact_meta": lambda s, w: s.update_artifact_meta("vocab", "fp", {"n": 2}),
    "local_dir": lambda s, w: s.local_dir("scratch"),
    "write_pack": lambda s, w: s.write_pack("pk2", {"x": np.zeros((2, 3))}, {}),
    "checkpoint_dir": lambda s, w: s.checkpoint_dir("r2"),
    "save_run": lambda s, w: s.save_run("r2", {"model": "m"}),
    "write_report": lambda s, w: s.write_report("b.md", "# b"),
    "lock": lambda s, w: s.lock().__enter__(),
    "gc": lambda s, w: s.gc(),
}
READERS = {
    "as_read_only": lambda s: s.as_read_only(),
    "manifest": lambda s: s.manifest(),
    "edges": lambda s: s.edges(),
    "source_info": lambda s: s.source_info(),
    "videos": lambda s: s.videos(),
    "read_table": lambda s: s.read_table("t0"),
    "scrape_history": lambda s: s.scrape_history(),
    "entry": lambda s: s.entry("frames", "v"),
    "entries": lambda s: s.entries("frames"),
    "fingerprints": lambda s: s.fingerprints("frames"),
    "commit_digest": lambda s: s.commit_digest("frames"),
    "view_key": lambda s: s.view_key("frames"),
    "failures_key": lambda s: s.failures_key(),
    "read_memo": lambda s: s.read_memo("plan"),
    "write_memo": lambda s: s.write_memo("plan", {"key": "k"}),  # a memo is a cache: read-only stores skip it
    "read": lambda s: s.read("frames", "v"),
    "read_many": lambda s: s.read_many("frames", ["v"]),
    "read_many": lambda s: s.read_many("frames", ["v"]),
    "table": lambda s: s.table("frames"),
    "stages": lambda s: s.stages(),
    "failure": lambda s: s.failure("probe", "v"),
    "failures": lambda s: s.failures(),
    "artifact_fingerprint": lambda s: s.artifact_fingerprint("vocab"),
    "read_artifact": lambda s: s.read_artifact("vocab"),
    "artifact_file": lambda s: s.artifact_file("vocab", "words.txt"),
    "has_pack": lambda s: s.has_pack("pk"),
    "read_pack": lambda s: s.read_pack("pk"),
    "open_pack": lambda s: s.open_pack("pk").close(),
    "run_records": lambda s: s.run_records(),
    "run": lambda s: s.run("r1"),
    "runs": lambda s: s.runs(),
    "checkpoint_file": lambda s: s.checkpoint_file("runs/r1/best.pt"),
    "report_names": lambda s: s.report_names(),
    "summary": lambda s: s.summary(),
}


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def stores(root):
    """A store with one of everything (read-only handle) and a writable second dataset to copy from."""
    s = open_store(root, "ds", create=True)
    s.write_manifest(pd.DataFrame({"video_id": ["v"], "split": ["train"]}))
    s.write("frames", "v", "a" * 32, version=1, arrays={"f": np.zeros((2, 3), np.uint8)}, record={"n": 2})
    s.record_failure("probe", "v", "no stream")
    s.write_table("t0", pd.DataFrame({"a": [1]}))
    s.write_artifact("vocab", "fp", meta={"n": 1}, files={"words.txt": b"a\nb\n"})
    s.write_pack("pk", {"x": np.zeros((2, 3), np.float32)}, {"n": 2})
    (s.checkpoint_dir("r1") / "best.pt").write_bytes(b"weights")
    s.save_run("r1", {"model": "m", "checkpoint": str(Path(s.path, "runs", "r1", "best.pt"))})
    s.write_report("a.md", "# a")
    s.consolidate()
    s.entries("frames")  # the index snapshot cache, as any earlier read leaves it
    other = open_store(root, "other", create=True)
    other.write("frames", "v", "b" * 32, version=1, arrays={"f": np.ones((2, 3), np.uint8)})
    other.write_artifact("vocab", "fp3", meta={"n": 3})
    return s.as_read_only(), other


def _public_methods() -> set[str]:
    return {n for n, v in inspect.getmembers(Store) if not n.startswith("_") and callable(v)}


def test_every_public_method_is_classified():
    public = _public_methods()
    assert public == set(WRITERS) | set(READERS), (
        f"classify in WRITERS or READERS: {sorted(public - set(WRITERS) - set(READERS))}; "
        f"gone: {sorted((set(WRITERS) | set(READERS)) - public)}")
    assert set(store_mod._WRITERS) == set(WRITERS)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_writer_refuses_on_a_read_only_store(stores, name):
    ro, other = stores
    before = _snapshot(Path(ro.path))
    with pytest.raises(StoreError, match=rf"Store\.{name}: store .* is open read-only"):
        WRITERS[name](ro, other)
    assert _snapshot(Path(ro.path)) == before


def test_every_reader_reads_and_changes_nothing(stores):
    ro, _ = stores
    before = _snapshot(Path(ro.path))
    for name, call in READERS.items():
        call(ro)
    assert _snapshot(Path(ro.path)) == before
    assert ro.read("frames", "v")["n"] == 2 and ro.run("r1").model == "m"


def test_read_only_needs_an_existing_store(root):
    with pytest.raises(ValueError, match="create=True, read_only=True"):
        open_store(root, "ds", create=True, read_only=True)
    with pytest.raises(StoreError, match="vidpipe ingest"):
        open_store(root, "ds", read_only=True)
    assert not (root / "ds").exists()
