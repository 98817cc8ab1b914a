"""A partial download: ingest says which listed videos have no file; extraction records one ``source`` failure per
such video (no per-stage record, no per-stage work), keeps it across reruns without rewriting it, clears it when the
file is back; ``inspect`` shows missing apart from pending. Also ``ingest --split hashed`` for LIRIS-ACCEDE."""

from __future__ import annotations

import json
import shutil

import pytest

from features import open_store
from features.sources._common import hashed_split
from pipelines.cli import main
from pipelines.extract import SOURCE_STAGE, STAGES, ExtractConfig
from tests.features.sources.test_liris import write_liris
from tests.media_factory import make_video

CFG = ExtractConfig(n_segments=2, n_frames=4, asr="none", n_mfcc=13, clip_frames=32)
N, PRESENT = 20, (3, 11, 17)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", duration=1.0, size=(32, 32), fps=5)


@pytest.fixture
def liris(tmp_path, clip):
    folder = write_liris(tmp_path / "LIRIS-ACCEDE-data", N)
    for i in PRESENT:
        shutil.copyfile(clip, folder / "data" / f"ACCEDE{i:05d}.mp4")
    return folder


def _extract(root, **kw):
    from flows import extract_features

    return extract_features(dataset="liris", root=str(root), config=CFG, batch_size=4, workers=2, **kw)


def test_ingest_counts_and_names_the_missing_files(liris, root, prefect_harness):
    from flows import ingest

    result = ingest(dataset="liris", source="liris-accede", path=str(liris), root=str(root))
    assert result["videos"] == N and result["missing_files"] == N - len(PRESENT)
    assert result["missing_examples"] == ["ACCEDE00000", "ACCEDE00001", "ACCEDE00002", "ACCEDE00004", "ACCEDE00005"]


def test_missing_sources_cost_one_record_each_and_no_stage_work(liris, root, clip, prefect_harness):
    from flows import ingest

    ingest(dataset="liris", source="liris-accede", path=str(liris), root=str(root))
    store = open_store(root, "liris")
    missing = sorted(f"ACCEDE{i:05d}" for i in range(N) if i not in PRESENT)
    # records an extraction that worked on a missing file once left behind: one per stage, no output
    for stage in ("probe", "frames", "metadata"):
        store.record_failure(stage, missing[0], "source file missing: ...", fingerprint="0" * 32)

    first = _extract(root)
    assert first["missing_sources"] == len(missing) and first["missing_examples"] == missing[:5]
    assert first["failed_videos"] == 0
    for stage in STAGES[:-1]:
        assert first["stages"][stage]["done"] == len(PRESENT), (stage, first["stages"][stage])
        assert first["stages"][stage]["failed"] == 0
    fails = store.failures()
    assert set(fails["stage"]) == {SOURCE_STAGE} and sorted(fails["video_id"]) == missing  # one record per video
    assert fails["error"].str.match(r"source file missing: ACCEDE\d{5} \(").all(), fails["error"].tolist()
    assert all(store.entry(stage, v) is None for stage in STAGES for v in missing)

    summary = store.summary(list(STAGES))
    assert summary["missing"] == len(missing) and summary["missing_videos"] == missing
    assert summary["failures"] == []
    for stage in STAGES:
        assert summary["stages"][stage] == {"done": len(PRESENT), "failed": 0, "pending": 0}, stage

    again = _extract(root)  # nothing to do, nothing rewritten
    assert again["missing_sources"] == len(missing)
    assert all(c["done"] == 0 for c in again["stages"].values())
    assert store.failures()["time"].tolist() == fails["time"].tolist()

    # the user downloads one more clip and re-ingests: its record goes, it is extracted
    back = "ACCEDE00005"
    shutil.copyfile(clip, liris / "data" / f"{back}.mp4")
    ingest(dataset="liris", source="liris-accede", path=str(liris), root=str(root))
    third = _extract(root)
    assert third["missing_sources"] == len(missing) - 1 and third["stages"]["frames"]["done"] == 1
    assert back not in set(store.failures()["video_id"]) and store.entry("frames", back) is not None


def test_a_file_deleted_after_extraction_is_missing_and_keeps_its_features(liris, root, prefect_harness):
    from flows import ingest

    ingest(dataset="liris", source="liris-accede", path=str(liris), root=str(root))
    _extract(root)
    gone = liris / "data" / "ACCEDE00011.mp4"
    kept = gone.with_suffix(".bak")
    gone.rename(kept)
    result = _extract(root)
    store = open_store(root, "liris")
    assert result["missing_sources"] == N - len(PRESENT) + 1
    error = store.failure(SOURCE_STAGE, "ACCEDE00011")["error"]
    assert error.startswith("source file missing: ACCEDE00011.mp4 (") and str(gone) in error
    assert store.entry("frames", "ACCEDE00011") is not None  # outputs of the file as it was stay usable
    kept.rename(gone)  # restored: no re-ingest needed, the manifest still points there
    result = _extract(root)
    assert result["missing_sources"] == N - len(PRESENT) and store.failure(SOURCE_STAGE, "ACCEDE00011") is None
    assert all(c["done"] == 0 for c in result["stages"].values())  # same content: nothing recomputed


def test_cli_ingest_and_inspect_say_what_is_missing(liris, root, prefect_harness, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["ingest", "liris", "--source", "liris-accede", str(liris), "--split", "hashed", "--root", str(root),
              "--json"])
    assert exit_.value.code in (0, None)
    out, err = capsys.readouterr()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["missing_files"] == N - len(PRESENT)
    assert f"{N - len(PRESENT)} of {N} listed video(s) have no file (e.g. ACCEDE00000" in " ".join(err.split())
    manifest = open_store(root, "liris").manifest()
    assert manifest["split"].tolist() == [hashed_split(v) for v in manifest["video_id"]]

    _extract(root)
    with pytest.raises(SystemExit):
        main(["inspect", "liris", "--root", str(root)])
    out = " ".join(capsys.readouterr().out.split())
    assert f"{N - len(PRESENT)} video(s) have no source file" in out and "ACCEDE00000" in out
    with pytest.raises(SystemExit):
        main(["inspect", "liris", "--root", str(root), "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["missing"] == N - len(PRESENT) and summary["stages"]["probe"]["pending"] == 0


def test_hashed_split_is_refused_for_other_sources(root, tmp_path, prefect_harness):
    from flows import ingest

    with pytest.raises(ValueError, match="split='hashed'.*liris-accede"):
        ingest(dataset="x", source="folder", path=str(tmp_path), root=str(root), split="hashed")


def test_missing_sources_from_stats_taken_once_decide_as_from_the_files(tmp_path, clip):
    """Each kind of missing source (no path, empty, a folder, gone, unreadable) gives the same answer from
    ``source_stats`` as from the files; stats of another length are refused."""
    import os

    import pandas as pd

    from pipelines.ingest import missing_sources, source_stats

    unreadable = tmp_path / "locked.mp4"
    shutil.copyfile(clip, unreadable)
    unreadable.chmod(0)
    paths = [str(clip), None, "", str(tmp_path), str(tmp_path / "gone.mp4"), str(unreadable)]
    videos = pd.DataFrame({"video_id": [f"v{i}" for i in range(len(paths))], "source_path": paths})
    expected = ["v1", "v2", "v3", "v4"] + ([] if os.access(unreadable, os.R_OK) else ["v5"])  # root reads anything
    stats = source_stats(videos)
    assert missing_sources(videos, stats) == missing_sources(videos) == expected
    assert missing_sources(videos.drop(columns="source_path"), [None] * len(paths)) == videos["video_id"].tolist()
    with pytest.raises(ValueError, match=r"stats: 5 entries for 6 paths; expected source_stats\(videos\)"):
        missing_sources(videos, stats[:5])
