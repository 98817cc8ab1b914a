import json
import math
import shutil

import pytest
import torch

from features.store import RunRecord, open_store


def _train(store, run_id: str) -> str:
    """What the training engine leaves: a checkpoint in the run's folder; returns its absolute path."""
    path = store.checkpoint_dir(run_id) / "best.pt"
    torch.save({"w": torch.arange(3.0)}, path)
    return str(path)


def test_checkpoint_is_recorded_relative_and_loads_after_the_store_moves(tmp_path):
    store = open_store(tmp_path / "a", "ds", create=True)
    rec = store.save_run("r1", {"model": "m", "task": "emotion", "checkpoint": _train(store, "r1"),
                                "created": "2026-01-01T00:00:00"})
    assert rec.checkpoint == "runs/r1/best.pt"
    assert json.loads((tmp_path / "a" / "ds" / "runs" / "r1.json").read_text())["checkpoint"] == "runs/r1/best.pt"

    shutil.move(tmp_path / "a", tmp_path / "b")  # another machine, another folder
    moved = open_store(tmp_path / "b", "ds")
    path = moved.checkpoint_file(moved.run("r1").checkpoint)
    assert path == tmp_path / "b" / "ds" / "runs" / "r1" / "best.pt"
    assert torch.load(path)["w"].tolist() == [0.0, 1.0, 2.0]


def test_old_absolute_records_still_resolve(tmp_path):
    store = open_store(tmp_path / "a", "ds", create=True)
    old = _train(store, "r1")
    (tmp_path / "a" / "ds" / "runs" / "r1.json").write_text(json.dumps({"run_id": "r1", "checkpoint": old}))
    assert store.checkpoint_file(store.run("r1").checkpoint) == store.checkpoint_dir("r1") / "best.pt"
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = open_store(tmp_path / "b", "ds")
    assert moved.run("r1").checkpoint == old  # as recorded; resolved on read through its runs/... suffix
    assert moved.checkpoint_file(old) == tmp_path / "b" / "ds" / "runs" / "r1" / "best.pt"


@pytest.mark.parametrize("ref", ["runs/../../../etc/passwd", "../x/best.pt", "runs/r1/missing.pt", "/nowhere/x.pt",
                                 "", None, math.nan])
def test_unresolvable_checkpoints_are_none(tmp_path, ref):
    store = open_store(tmp_path, "ds", create=True)
    _train(store, "r1")
    assert store.checkpoint_file(ref) is None


def test_checkpoint_outside_the_store_is_kept_as_given(tmp_path):
    store = open_store(tmp_path / "root", "ds", create=True)
    elsewhere = tmp_path / "elsewhere.pt"
    elsewhere.write_bytes(b"w")
    assert store.save_run("r1", {"checkpoint": str(elsewhere)}).checkpoint == str(elsewhere)
    assert store.checkpoint_file(str(elsewhere)) == elsewhere


def test_run_record_fills_defaults_keeps_unknown_fields_and_checks_types():
    rec = RunRecord.from_dict({"run_id": "r", "train": {"seed": 3}, "vision_profile": math.nan, "pack": None,
                               "modalities": ("audio",), "future_field": [1, 2]})
    assert rec.vision_profile is None and rec.pack is None and rec.metrics == {} and rec.modalities == ["audio"]
    assert rec.train == {"seed": 3} and RunRecord.from_dict({"run_id": "r"}).train == {}
    assert rec.extra == {"future_field": [1, 2]} and rec.to_dict()["future_field"] == [1, 2]
    assert RunRecord.from_dict(rec.to_dict()) == rec
    with pytest.raises(TypeError, match="field 'train'"):
        RunRecord.from_dict({"run_id": "r", "train": "fast"})
    with pytest.raises(TypeError, match="run_id"):
        RunRecord.from_dict({"model": "m"})


def test_runs_are_listed_oldest_first_and_unknown_runs_are_named(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    store.save_run("late", {"created": "2026-01-02"})
    store.save_run("early", {"created": "2026-01-01"})
    (tmp_path / "ds" / "runs" / "junk.json").write_text("[1, 2]")  # not a run: skipped
    assert [r.run_id for r in store.run_records()] == ["early", "late"]
    assert store.runs()["run_id"].tolist() == ["early", "late"]
    with pytest.raises(KeyError, match=r"run='nope'.*\['early', 'late'\]"):
        store.run("nope")
    with pytest.raises(ValueError, match="run_id"):
        store.save_run("../x", {})


def test_reports_are_written_listed_and_named_safely(tmp_path):
    store = open_store(tmp_path, "ds", create=True)
    where = store.write_report("cmp.md", "# héllo\n![fig](cmp-a.png)\n")
    store.write_report("cmp-a.png", b"\x89PNG")
    store.write_report("other.md", "x")
    assert open(where, encoding="utf-8").read().startswith("# héllo")
    assert store.report_names("cmp*") == ["cmp-a.png", "cmp.md"] and len(store.report_names()) == 3
    for bad in ("../x.md", "a/b.md", ".."):
        with pytest.raises(ValueError, match="name="):
            store.write_report(bad, "x")
    with pytest.raises(TypeError, match="content"):
        store.write_report("x.md", 3)
