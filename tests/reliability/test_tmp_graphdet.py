import hashlib, json
from features.store import open_store
from tests.reliability.conftest import DATASET, make_graph_store

def test_g(runner, tmp_path):
    for i in range(3):
        root = tmp_path / f"r{i}"
        make_graph_store(root)
        out = runner.run("graph", kwargs={"dataset": DATASET, "root": str(root), "epochs": 40, "hidden": 8, "out": 4, "heads": 2})
        a, meta = open_store(root, DATASET).read_artifact("graph")
        print(i, json.dumps(meta["config"]), [round(h["loss"], 6) for h in meta["history"][:4]], meta["song_ids"][:4], meta["n_edges"])
