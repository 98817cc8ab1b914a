"""Schema and versions: stores record their format version, foreign versions are refused with instructions, and a
stage's code version invalidates exactly that stage's cache and what depends on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from features.store import FORMAT_VERSION, StoreError, open_store
from tests.reliability.conftest import DATASET, EXTRACT_CONFIG, extraction_stages, ingest_folder

#: stage whose version is bumped → stages that must recompute (everything downstream of it, nothing else)
DEPENDANTS = {
    "frames": {"frames"},
    "audio": {"audio"},
    "metadata": {"metadata"},
    "transcripts": {"transcripts", "text"},  # text = bag of words of the transcript
    "vocabulary": {"text"},
    "text": {"text"},
    "probe": {"probe", "frames", "audio", "transcripts", "metadata", "text"},  # ASR transcripts chain from probe
}


# ---------------------------------------------------------------------------------------------------- format version
def test_a_new_store_records_its_format_version(tmp_path):
    store = open_store(tmp_path, DATASET, create=True)
    meta = json.loads((Path(store.path) / "store.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION == store.format_version and meta["dataset"] == DATASET


@pytest.mark.parametrize("content,advice", [
    (json.dumps({"format_version": FORMAT_VERSION + 1}), r"newer than this vidpipe .*upgrade vidpipe"),
    (json.dumps({"format_version": 0}), r"unknown format version 0.*Re-ingest into a fresh root"),
    (json.dumps({"dataset": DATASET}), r"unknown format version None.*Re-ingest into a fresh root"),
    ('{"format_version": 1', r"not a vidpipe store record.*re-ingest into a fresh root"),
    ("[1, 2]", r"not a vidpipe store record"),
    ("", r"not a vidpipe store record"),
])
def test_foreign_format_versions_say_what_to_do(tmp_path, content, advice):
    store = open_store(tmp_path, DATASET, create=True)
    (Path(store.path) / "store.json").write_text(content)
    with pytest.raises(StoreError, match=advice):
        open_store(tmp_path, DATASET)


def test_cli_reports_a_foreign_store_without_a_traceback(tmp_path, capsys):
    from pipelines.cli import main

    store = open_store(tmp_path, DATASET, create=True)
    (Path(store.path) / "store.json").write_text(json.dumps({"format_version": FORMAT_VERSION + 1}))
    with pytest.raises(SystemExit) as exit_:
        main(["inspect", DATASET, "--root", str(tmp_path)])
    assert exit_.value.code == 2
    assert "upgrade vidpipe" in " ".join(capsys.readouterr().err.split())


def test_artifacts_written_before_data_directories_still_read(tmp_path):
    """Stores written before artifacts got per-write data directories keep their arrays under ``<fingerprint>``."""
    import zarr

    store = open_store(tmp_path, DATASET, create=True)
    fp = "a" * 32
    group = zarr.open_group(store._zarr(), path=f"_artifacts/graph/{fp}", mode="w")
    group.create_array("embedding", data=np.eye(2, dtype=np.float32))
    (Path(store.path) / "artifacts" / "graph" / fp).mkdir(parents=True)
    (Path(store.path) / "artifacts" / "graph" / fp / "meta.json").write_text(json.dumps({"video_ids": ["x", "y"]}))
    (Path(store.path) / "artifacts" / "graph" / "current.json").write_text(json.dumps({"fingerprint": fp}))
    arrays, meta = store.read_artifact("graph")
    assert arrays["embedding"].tolist() == [[1, 0], [0, 1]] and meta == {"video_ids": ["x", "y"]}
    assert store.gc() == 0 and store.read("graph", "y")["embedding"].tolist() == [0, 1]


# ---------------------------------------------------------------------------------------------------- stage versions
def test_a_stage_version_invalidates_exactly_that_stage_and_its_dependants(prefect_harness, clean_media, tmp_path,
                                                                           monkeypatch):
    from tests.reliability.conftest import install_audio_stand_in

    install_audio_stand_in()
    import pipelines.extract as ex

    stages = extraction_stages()
    ingest_folder(tmp_path, clean_media)
    n = len(list(clean_media.iterdir()))

    def run() -> dict[str, int]:
        result = ex.extract_features(dataset=DATASET, root=str(tmp_path), stages=stages, batch_size=4, workers=2,
                                     config=ex.ExtractConfig(**EXTRACT_CONFIG))
        assert result["failed_videos"] == 0, result
        return {s: c["done"] for s, c in result["stages"].items()}

    assert run() == {s: n for s in stages}
    before = {s: open_store(tmp_path, DATASET).fingerprints(s) for s in stages}
    for bumped in ("frames", "audio", "metadata", "transcripts", "vocabulary", "text", "probe"):
        if bumped != "vocabulary" and bumped not in stages:
            continue
        monkeypatch.setitem(ex.STAGE_VERSIONS, bumped, ex.STAGE_VERSIONS[bumped] + 1)
        expect = DEPENDANTS[bumped] & set(stages)
        assert run() == {s: (n if s in expect else 0) for s in stages}, bumped
        after = {s: open_store(tmp_path, DATASET).fingerprints(s) for s in stages}
        for s in stages:  # the recomputed ones have new fingerprints, the others kept theirs
            changed = {v for v in after[s] if after[s][v] != before[s].get(v)}
            assert changed == (set(after[s]) if s in expect else set()), (bumped, s)
        before = after
    assert run() == {s: 0 for s in stages}  # and then nothing is left to do
