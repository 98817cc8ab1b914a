import json

import numpy as np
import pytest

from features import open_store
from pipelines.cli import main
from tests.pipelines.conftest import DATASET


def test_pretrain_graph_stores_embeddings_and_is_cached(synthetic_copy, capsys):
    from flows import pretrain_graph

    first = pretrain_graph(dataset=DATASET, root=str(synthetic_copy), epochs=20, out=16, hidden=32)
    assert set(first) >= {"val_auc", "test_auc", "val_mse", "test_mse", "epochs", "seconds"}
    assert first["cached"] is False and first["changes"] != "none" and 0.0 <= first["test_auc"] <= 1.0
    store = open_store(synthetic_copy, DATASET)
    vids = store.manifest()["video_id"]
    emb = np.stack([store.read("graph", v)["embedding"] for v in vids])
    assert emb.shape == (len(vids), 32) and np.isfinite(emb).all()  # own vector ‖ song vector (2·out)
    no_song = store.manifest().loc[store.manifest()["song_id"].isna(), "video_id"]
    assert len(no_song) >= 1 and np.isfinite(store.read("graph", no_song.iloc[0])["embedding"]).all()
    second = pretrain_graph(dataset=DATASET, root=str(synthetic_copy), epochs=20, out=16, hidden=32)
    assert second["cached"] is True and second["test_auc"] == first["test_auc"]
    summary = store.summary(["graph"])
    assert summary["stages"]["graph"]["done"] == len(vids)

    with pytest.raises(SystemExit) as exit_:
        main(["pretrain-graph", DATASET, "--root", str(synthetic_copy), "--epochs", "20", "--out", "16",
              "--hidden", "32", "--json"])
    assert exit_.value.code in (0, None)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out) == {"val_auc", "test_auc", "val_mse", "test_mse", "epochs", "seconds"}


def test_changed_graph_retrains_and_says_why(synthetic_copy):
    from flows import pretrain_graph

    pretrain_graph(dataset=DATASET, root=str(synthetic_copy), epochs=5, out=8, hidden=16)
    store = open_store(synthetic_copy, DATASET)
    m = store.manifest()
    store.write_manifest(m.iloc[:-3], store.edges()[store.edges()["video_id"].isin(m["video_id"].iloc[:-3])])
    again = pretrain_graph(dataset=DATASET, root=str(synthetic_copy), epochs=5, out=8, hidden=16)
    assert again["cached"] is False and "-3 videos" in again["changes"]


def test_graph_needs_edges(root, prefect_harness):
    import pandas as pd
    from flows import pretrain_graph

    store = open_store(root, "noedges", create=True)
    store.write_manifest(pd.DataFrame({"video_id": ["a"], "split": ["train"]}))
    with pytest.raises(ValueError, match="no song"):
        pretrain_graph(dataset="noedges", root=str(root))
