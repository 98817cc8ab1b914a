import json

import pandas as pd
import pytest

from features import open_store
from pipelines.cli import main
from tests.pipelines.conftest import DATASET, N_VIDEOS, RESCRAPES


def test_synthetic_ingest_reads_back_all_three_formats(synthetic_store):
    store = open_store(synthetic_store, DATASET)
    m = store.manifest()
    assert len(m) == N_VIDEOS and m["video_id"].is_unique
    labels = ["valence", "arousal", "extraversion", "openness", "popularity", "popularity_raw"]
    assert m[labels].notna().all().all()
    assert set(m["split"]) == {"train", "val", "test"}
    assert m["transcript"].map(lambda t: isinstance(t, str) and len(t) > 0).all()
    assert store.edges()["video_id"].isin(m["video_id"]).all() and len(store.edges()) >= N_VIDEOS * 0.8
    gt = pd.read_parquet(synthetic_store / "_sources" / DATASET / "ground_truth.parquet")
    merged = m.merge(gt, on="video_id", suffixes=("", "_gt"))
    assert len(merged) == N_VIDEOS


def test_reingest_reports_no_change(synthetic_copy, prefect_harness):
    from flows import ingest

    src = synthetic_copy / "_sources" / DATASET
    first = ingest(dataset="again", source="synthetic", root=str(synthetic_copy), path=str(src), videos=N_VIDEOS,
                   seed=7, min_duration=3.0, max_duration=6.0, rescrapes=RESCRAPES)
    assert first["added"] == N_VIDEOS
    second = ingest(dataset="again", source="synthetic", root=str(synthetic_copy), path=str(src), videos=N_VIDEOS,
                    seed=7, min_duration=3.0, max_duration=6.0, rescrapes=RESCRAPES)
    assert (second["added"], second["removed"], second["changed"]) == (0, 0, 0)


def test_bad_parameters_are_refused_before_work(root, prefect_harness):
    from flows import ingest

    with pytest.raises(Exception, match="source"):
        ingest(dataset="x", source="youtube", root=str(root))
    with pytest.raises(Exception, match="dataset"):
        ingest(dataset="../escape", source="folder", root=str(root), path=str(root))
    assert not (root.parent / "escape").exists()
    with pytest.raises(ValueError, match="rescrapes=3: only the synthetic source"):
        ingest(dataset="x", source="tiktok", root=str(root), path=str(root), rescrapes=3)


def test_cli_inspect_json(synthetic_store, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["inspect", DATASET, "--root", str(synthetic_store), "--json"])
    assert exit_.value.code in (0, None)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["dataset"] == DATASET and out["videos"] == N_VIDEOS
    assert set(out["stages"]) >= {"probe", "frames", "audio", "transcripts", "metadata", "text"}
    for c in out["stages"].values():
        assert c["done"] + c["failed"] + c["pending"] == N_VIDEOS
    assert out["stages"]["frames"]["done"] == N_VIDEOS


def test_cli_unknown_dataset_is_a_short_error(root, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["inspect", "nope", "--root", str(root)])
    assert exit_.value.code == 2
    assert "vidpipe ingest" in capsys.readouterr().err
