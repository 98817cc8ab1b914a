import json
from pathlib import Path

import pytest

from features import open_store
from pipelines.cli import main
from tests.pipelines.conftest import DATASET

TINY = {"dim": 16, "heads": 2}


def test_train_records_run_checkpoint_and_reuses_pack(synthetic_copy, capsys):
    from flows import train

    run = train(dataset=DATASET, model="sec2sec", task="emotion", root=str(synthetic_copy), epochs=2,
                overrides={**TINY, "lstm_hidden": 16, "cnn_width": 8}, device="cpu")
    assert set(run["metrics"]) == set(run["baseline"]) and "accuracy_mean" in run["metrics"]
    assert Path(run["checkpoint"]).is_file() and run["pack_reused"] is False and run["n_params"] > 0
    assert run["vision_profile"] == "uniform"
    store = open_store(synthetic_copy, DATASET)
    assert store.runs()["run_id"].tolist() == [run["run_id"]]
    with pytest.raises(SystemExit) as exit_:
        main(["train", DATASET, "--model", "sec2sec", "--task", "emotion", "--root", str(synthetic_copy),
              "--epochs", "1", "--device", "cpu", "--set", "dim=16", "--set", "heads=2", "--set", "lstm_hidden=16",
              "--set", "cnn_width=8", "--json"])
    assert exit_.value.code in (0, None)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out) == {"model", "task", "metrics", "baseline", "checkpoint"}
    assert len(store.runs()) == 2 and store.runs()["pack_reused"].tolist() == [False, True]


def test_checkpoint_reloads_without_training_arguments(synthetic_copy):
    import numpy as np
    from models.data import PackLoader, split_indices
    from models.engine import evaluate, load_checkpoint
    from pipelines.train import run_training

    store = open_store(synthetic_copy, DATASET)
    run = run_training(store, "mcat", "personality", epochs=1, overrides=TINY, device="cpu")
    model, extra = load_checkpoint(run["checkpoint"])
    arrays, _ = store.read_pack(extra["pack"])
    keys = [*model.inputs, *[f"{k}_mask" for k in model.inputs], "target"]
    y, p = evaluate(model, PackLoader(arrays, keys, split_indices(arrays["split"], "test"), batch_size=8))
    assert p.shape == (len(y), 5) and np.isfinite(p).all()


def test_same_seed_same_metrics_on_cpu(synthetic_copy):
    from pipelines.train import run_training

    store = open_store(synthetic_copy, DATASET)
    a = run_training(store, "van", "popularity", epochs=2, overrides=TINY, device="cpu", seed=3, record=False)
    b = run_training(store, "van", "popularity", epochs=2, overrides=TINY, device="cpu", seed=3, record=False)
    assert a["metrics"] == b["metrics"]


def test_unknown_model_and_missing_stage_are_clear(synthetic_copy, prefect_harness):
    from flows import train

    with pytest.raises(ValueError, match="model='nope'"):
        train(dataset=DATASET, model="nope", task="emotion", root=str(synthetic_copy))
    import shutil

    shutil.rmtree(synthetic_copy / DATASET / "artifacts" / "graph")  # as if the graph flow never ran
    with pytest.raises(ValueError, match="pretrain-graph"):  # VAN reads the graph modality
        train(dataset=DATASET, model="van", task="popularity", root=str(synthetic_copy), epochs=1, overrides=TINY)
