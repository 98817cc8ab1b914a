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


def _scrape(time: float, plays: dict[str, int]) -> pd.DataFrame:
    """A TikTok scrape as the adapter reads it: one row per post, its counts at ``time``."""
    return pd.DataFrame({"video_id": list(plays), "split": "train", "scrape_time": time, "create_time": 0.0,
                         "play_count": list(plays.values()), "digg_count": 1, "comment_count": 2, "share_count": 3})


def test_commit_reads_the_scrape_history_once_for_all_rescrapes(root, monkeypatch):
    """Three scrapes in one ingest: the history is read once for the restated check (and once by the append),
    with the same table, new-pair count and restated posts as checking and appending them one after another."""
    from features.sources import Manifest
    from features.store import Store
    from features.trend import restated_snapshots, scrape_snapshots
    from pipelines.ingest import _commit

    older = _scrape(10.0, {"a": 1, "b": 1})
    # b again at 10.0 with another count (a stale scrape time), a and b at 20.0, then the manifest restates b at 20.0
    rescrapes = (_scrape(10.0, {"b": 5}), _scrape(20.0, {"a": 2, "b": 2}))
    videos = _scrape(20.0, {"a": 2, "b": 9})
    reference = open_store(root, "one-by-one", create=True)
    reference.append_scrape_history(scrape_snapshots(older))
    new, restated = 0, set()
    for scrape in (*rescrapes, videos):
        snapshots = scrape_snapshots(scrape)
        restated |= set(restated_snapshots(reference.scrape_history(), snapshots))
        new += reference.append_scrape_history(snapshots)

    store = open_store(root, "at-once", create=True)
    store.append_scrape_history(scrape_snapshots(older))
    reads = []
    read_table = Store.read_table

    def counted(self, name, **kw):
        reads.append(name)
        return read_table(self, name, **kw)

    monkeypatch.setattr(Store, "read_table", counted)
    diff, got_new, got_restated = _commit.fn(str(root), "at-once", Manifest(videos=videos, rescrapes=rescrapes),
                                             {"kind": "tiktok"})
    assert reads.count("scrape_history") == 2 and diff["added"] == ["a", "b"]
    assert (got_new, got_restated) == (new, sorted(restated)) == (2, ["b"])
    pd.testing.assert_frame_equal(store.scrape_history(), reference.scrape_history())
