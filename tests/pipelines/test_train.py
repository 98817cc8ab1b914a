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


def test_two_training_seeds_read_one_pack(synthetic_copy):
    """A pack's split is the dataset's own, so the training seed is no part of its key: a second seed reuses it."""
    from pipelines.train import run_training

    store = open_store(synthetic_copy, DATASET)
    a, b = (run_training(store, "van", "popularity", epochs=1, overrides=TINY, device="cpu", seed=seed, record=False)
            for seed in (0, 1))
    assert b["pack"] == a["pack"] and b["pack_reused"] is True
    assert (a["train"]["seed"], b["train"]["seed"]) == (0, 1)  # each run still records its own seed


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
    # the helpers every consumer of a run's checkpoint uses give the same rows and predictions
    from pipelines.train import load_run_model, split_loader

    same, same_arrays = load_run_model(store, run["checkpoint"], run["pack"])
    rows, loader = split_loader(same, same_arrays, "test", batch_size=3)
    np.testing.assert_array_equal(rows, split_indices(arrays["split"], "test"))
    np.testing.assert_allclose(evaluate(same, loader)[1], p, rtol=1e-5, atol=1e-6)
    every, _ = split_loader(same, same_arrays, None, batch_size=3)
    np.testing.assert_array_equal(every, np.arange(len(arrays["target"])))


def test_run_loaders_score_a_model_on_its_own_target_order():
    """load_run_model narrows a pack's targets to the model's columns, once; split_loader reads them as they are, so
    a model of the task's targets in another order (arousal, valence) is scored in that order."""
    import numpy as np
    from models import create_model
    from models.base import example_batch
    from pipelines.train import model_targets, split_loader

    model = create_model("sec2sec", task="emotion", targets=["arousal", "valence"], dim=16, heads=2, n_segments=3,
                         frames_per_segment=1, frame_size=16, n_mfcc=8, mfcc_frames=8, cnn_width=8, lstm_hidden=16)
    arrays = {k: v.numpy() for k, v in example_batch(model, 4, target=False).items()}
    arrays |= {"target": np.array([[0.0, 1.0]] * 4, dtype=np.float32),  # the pack's order: valence, arousal
               "split": np.array(["train", "test", "test", "val"], dtype=object)}
    narrowed = model_targets(model, arrays)
    np.testing.assert_array_equal(narrowed["target"], [[1.0, 0.0]] * 4)
    rows, loader = split_loader(model, narrowed, "test", batch_size=8)
    assert rows.tolist() == [1, 2] and next(iter(loader))["target"].tolist() == [[1.0, 0.0]] * 2


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


SEC2SEC_TINY = {**TINY, "lstm_hidden": 16, "cnn_width": 8}


def test_paper_training_settings_reach_the_engine_and_the_record(synthetic_copy, capsys):
    store = open_store(synthetic_copy, DATASET)
    with pytest.raises(SystemExit) as exit_:
        main(["train", DATASET, "--model", "sec2sec", "--task", "emotion", "--root", str(synthetic_copy),
              "--epochs", "1", "--device", "cpu", *sum((["--set", f"{k}={v}"] for k, v in SEC2SEC_TINY.items()), []),
              "--weight-decay", "0.001", "--hflip", "0.5", "--vision-norm", "imagenet", "--targets", "valence",
              "--json"])
    assert exit_.value.code in (0, None)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out["metrics"]) == {"accuracy_valence", "f1_valence", "accuracy_mean", "f1_mean"}
    run = store.runs().iloc[-1]
    assert run["train"]["weight_decay"] == 0.001 and run["train"]["hflip"] == 0.5
    assert run["config"]["vision_norm"] == "imagenet" and list(run["config"]["targets"]) == ["valence"]
    assert list(run["targets"]) == ["valence"]


def test_separate_targets_trains_and_selects_one_model_per_target(synthetic_copy):
    from flows import train

    run = train(dataset=DATASET, model="sec2sec", task="emotion", root=str(synthetic_copy), epochs=2,
                overrides=SEC2SEC_TINY, device="cpu", separate_targets=True, run_id="sep")
    assert run["separate_targets"] is True and set(run["runs"]) == {"valence", "arousal"}
    assert run["runs"]["valence"] == "sep-valence" and set(run["best_epoch"]) == {"valence", "arousal"}
    runs = open_store(synthetic_copy, DATASET).runs().set_index("run_id")
    for t in ("valence", "arousal"):
        assert list(runs.loc[f"sep-{t}", "targets"]) == [t]
        assert run["metrics"][f"accuracy_{t}"] == runs.loc[f"sep-{t}", "metrics"][f"accuracy_{t}"]
    assert run["metrics"]["accuracy_mean"] == pytest.approx(
        (run["metrics"]["accuracy_valence"] + run["metrics"]["accuracy_arousal"]) / 2)
    with pytest.raises(ValueError, match="separate_targets"):
        train(dataset=DATASET, model="sec2sec", task="emotion", root=str(synthetic_copy), epochs=1,
              overrides=SEC2SEC_TINY, device="cpu", separate_targets=True, targets=["valence"])


def test_sweep_grid_takes_weight_decay_and_hflip(synthetic_copy):
    from flows import sweep

    result = sweep(dataset=DATASET, model="mtaf", task="popularity", root=str(synthetic_copy), epochs=1,
                   grid={"weight_decay": [0.0, 0.01], "dim": [16]}, device="cpu", hflip=0.5)
    runs = open_store(synthetic_copy, DATASET).runs().set_index("run_id")
    got = sorted((runs.loc[r["run_id"], "train"]["weight_decay"], runs.loc[r["run_id"], "train"]["hflip"])
                 for r in result["runs"])
    assert got == [(0.0, 0.5), (0.01, 0.5)]


def test_every_frame_profile_is_selectable_and_van_gets_the_papers_224_input(synthetic_copy, capsys):
    from flows import extract_features
    from pipelines.extract import ExtractConfig

    root = str(synthetic_copy)
    base = ["train", DATASET, "--model", "van", "--task", "popularity", "--root", root, "--epochs", "1",
            "--device", "cpu", "--set", "dim=16", "--set", "heads=2", "--vision-profile", "uniform_224", "--json"]
    with pytest.raises(SystemExit) as exit_:
        main(base)
    assert exit_.value.code == 2 and "uniform_224" in capsys.readouterr().err  # not extracted yet: a clear error
    store = open_store(synthetic_copy, DATASET)
    some = sorted(store.manifest()["video_id"])[:4]
    extract_features(dataset=DATASET, root=root, stages=["frames"], video_ids=some,
                     config=ExtractConfig(n_frames=16, asr="none", profiles=("per_second", "uniform", "uniform_224")))
    with pytest.raises(SystemExit) as exit_:
        main(base)
    assert exit_.value.code in (0, None), capsys.readouterr().err
    run = store.runs().iloc[-1]
    assert run["vision_profile"] == "uniform_224"
    cfg = run["config"]
    assert (cfg["frame_size"], cfg["n_frames"], cfg["patch_size"], cfg["first_segments"]) == (224, 30, 32, 2)
    with pytest.raises(SystemExit) as exit_:
        main([*base[:-3], "--vision-profile", "per_second"])
    assert exit_.value.code == 2 and "vision_profile" in capsys.readouterr().err


def test_mtaf_eq1_target_from_the_manifest_counts():
    import numpy as np
    import pandas as pd

    from features.packs import mtaf_popularity

    m = pd.DataFrame({"collect_count": [0, 10, None, 1000], "digg_count": [5, 5, 5, 5],
                      "comment_count": [0, 20, 3, 1000], "share_count": [0, 30, 4, 1000]})
    y = mtaf_popularity(m)
    raw = np.log1p([0.0, 0.2 * 10 + 0.3 * 20 + 0.5 * 30, np.nan, 1000.0])  # eq. 1, favourites = collects
    want = (raw - np.nanmin(raw)) / (np.nanmax(raw) - np.nanmin(raw))
    np.testing.assert_allclose(y.to_numpy(), want)
    likes = mtaf_popularity(m.drop(columns="collect_count"))  # no favourites column: likes stand in
    assert likes.iloc[2] == pytest.approx((np.log1p(0.2 * 5 + 0.3 * 3 + 0.5 * 4) - np.log1p(1.0))
                                          / (np.log1p(0.2 * 5 + 0.3 * 1000 + 0.5 * 1000) - np.log1p(1.0)))
    with pytest.raises(ValueError, match="share_count"):
        mtaf_popularity(m.drop(columns="share_count"))


def test_popularity_mtaf_task_trains_on_the_synthetic_tiktok_counts(synthetic_copy):
    from pipelines.train import run_training

    store = open_store(synthetic_copy, DATASET)
    run = run_training(store, "mtaf", "popularity_mtaf", epochs=1, device="cpu", overrides={"dim": 16, "heads": 2},
                       record=False)
    assert run["targets"] == ["popularity_mtaf"] and "spearman" in run["metrics"] and "ndcg@10" in run["metrics"]
