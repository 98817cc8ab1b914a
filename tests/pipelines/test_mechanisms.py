"""Planted mechanisms: does each headline model capture the mechanism its paper claims (slow tier)?

One synthetic store (160 videos of 4-9 s, no speech, generated, ingested and extracted by the flows; the GAT
pre-trained on its song-video graph), three training seeds per model (each seed also draws the train/val/test
split), and per claim the model with the mechanism against the same family without it:

* **Sec2Sec synchrony** (``arousal_sync_part``, 67 % of arousal's variance, invisible to time-averaged features):
  ``sec2sec`` (per-second co-attention) vs ``sec2sec-sa-sa`` (per-second self-attention, no cross-modal attention) vs
  ``avm`` (late fusion of whole-clip vision and audio); the figure is the Spearman correlation of the predicted
  arousal with the planted synchrony on the test videos that have audio. Two controls on the same per-second pack show what the
  features allow: per-second beat and flash detectors (logistic regressions on the training seconds) multiplied per
  second recover the synchrony; the same detectors averaged over the seconds first cannot.
* **VAN network effect** (``popularity_network_part``, 77 % of popularity's variance, carried by the song): ``van``
  over vision + audio + graph vs ``van`` over vision + audio; the figure is the Spearman correlation of the predicted
  popularity with the planted network part on the test videos.
* **GAT link prediction**: test AUC over five split seeds.

Intervals are 95 % Student-t intervals over the seeds (:func:`models.metrics.seed_interval`). Where a model does not
capture its mechanism the test is an ``xfail`` whose reason carries the measured figures: a failed claim is a
finding, and the plant is not tuned to hide it. Every figure is printed (``pytest -s``).

Measured (generator seed 11, training seeds 0-2, dims 16, 30 epochs; about 28 min on a heavily loaded 2-core machine):

* synchrony, ρ with ``sync_cue``: sec2sec 0.06 [-0.27, 0.38], sec2sec-sa-sa 0.02 [-0.24, 0.28], avm -0.01
  [-0.60, 0.59]; arousal accuracy 0.49 / 0.51 / 0.52 (chance), valence 0.92 / 0.88 / 0.70. Controls: paired
  per-second detectors 0.94, the same averaged over time 0.07. The synchrony is in the features; no model learns it
  at this size → xfail.
* network effect, ρ with ``popularity_network_part``: van + graph 0.23 [0.10, 0.37] (popularity Spearman 0.11),
  van without graph 0.51 [0.40, 0.61] (Spearman 0.39): without the graph VAN does better -- it can learn a song's
  popularity from its melody in the training videos, while the GAT embedding (next line) carries little → xfail.
* GAT test AUC 0.49 [0.36, 0.63] over 5 splits (152 links, ~15 test links each) → xfail. With featureless video
  nodes GAT's softmax attention averages a song's videos, so a song's degree (what carries its popularity here)
  reaches the song only through its learned per-song vector, trained on the 40 % of training links that supervise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.stats

DATASET = "mech"
SEEDS = (0, 1, 2)
SIZE = {"dim": 16, "heads": 2, "lstm_hidden": 16, "cnn_width": 8}
TRAIN = {"epochs": 30, "lr": 3e-3, "batch_size": 16, "device": "cpu"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mech(tmp_path_factory, prefect_harness):
    """(store, ground truth indexed by video id) of the module's synthetic store."""
    from features import open_store
    from flows import extract_features, ingest, pretrain_graph
    from pipelines.extract import ExtractConfig

    root = str(tmp_path_factory.mktemp("mech") / "root")
    ingest(dataset=DATASET, source="synthetic", root=root, videos=160, seed=11, min_duration=4.0, max_duration=9.0,
           speech=False)
    done = extract_features(dataset=DATASET, root=root, stages=["probe", "frames", "audio"], workers=1,
                            batch_size=16, config=ExtractConfig(profiles=("per_second", "uniform"), n_segments=9,
                                                                n_frames=16, asr="none"))
    assert not done["failed_videos"], done
    pretrain_graph(dataset=DATASET, root=root, epochs=100, seed=0)
    gt = pd.read_parquet(f"{root}/_sources/{DATASET}/ground_truth.parquet").set_index("video_id")
    return open_store(root, DATASET), gt


def _fit(store, name: str, task: str, seed: int, **overrides):
    """Train one model; returns (test video ids, test predictions (N, K), run record)."""
    from models.data import PackLoader, split_sets
    from models.engine import evaluate, load_checkpoint
    from models.registry import create_model
    from pipelines.train import run_training

    fields = {f.name for f in dataclasses.fields(create_model(name).cfg)}
    sized = {**{k: v for k, v in SIZE.items() if k in fields}, **overrides}
    run = run_training(store, name, task, seed=seed, overrides=sized, record=False, resume=False,
                       run_id=f"mech-{name}-{task}-{seed}-{'_'.join(overrides.get('modalities', ()))}",
                       **TRAIN)
    model, _ = load_checkpoint(run["checkpoint"])
    arrays, _ = store.read_pack(run["pack"])
    idx = split_sets(arrays["split"])["test"]
    keys = [*model.inputs, *[f"{k}_mask" for k in model.inputs], "target"]
    _, pred = evaluate(model, PackLoader(arrays, keys, idx, batch_size=32))
    return np.asarray(arrays["video_id"][...])[idx].astype(str), np.asarray(pred), run


def _spearman(a, b) -> float:
    return float(scipy.stats.spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else 0.0


def _summary(values) -> str:
    from models.metrics import seed_interval

    mean, lo, hi = seed_interval(values)
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def _interval(values) -> tuple[float, float, float]:
    from models.metrics import seed_interval

    return seed_interval(values)


def _per_second_controls(store, gt: pd.DataFrame, seed: int) -> dict[str, float]:
    """What the per-second pack allows: Spearman(estimate, synchrony) on the test videos for two estimates built from
    per-second detectors of the beat (audio: MFCC mean and SD per coefficient) and of the flash (vision: 8x8 grid of
    mean colours), logistic regressions fitted on the training videos' seconds with the planted per-second cues:
    "paired" = Σ_t P(beat_t) P(flash_t) / Σ_t P(beat_t) (the share of beat seconds that flash, i.e. m / k);
    "pooled" = mean P(beat) x mean P(flash), what is left once each modality is averaged over time first."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from features.packs import build_pack
    from models.data import split_sets

    fp, _ = build_pack(store, ("vision_seg", "audio_seg"), "emotion", split_seed=seed)
    arrays, _ = store.read_pack(fp)
    vis = np.asarray(arrays["vision_seg"][...], dtype=np.float64)[:, :, 0] / 255.0  # (N, S, 3, 64, 64)
    n, s = vis.shape[:2]
    v = vis.reshape(n, s, 3, 8, 8, 8, 8).mean(axis=(4, 6)).reshape(n, s, -1)  # 8x8 grid per channel: (N, S, 192)
    aud = np.asarray(arrays["audio_seg"][...], dtype=np.float64)[:, :, 0]  # MFCC channel: (N, S, n_mfcc, F)
    a = np.concatenate([aud.mean(-1), aud.std(-1)], axis=-1)  # (N, S, 2 n_mfcc)
    mask = np.asarray(arrays["vision_seg_mask"][...]) & np.asarray(arrays["audio_seg_mask"][...])  # (N, S)
    truth = gt.loc[np.asarray(arrays["video_id"][...]).astype(str)]
    # segment t is second t (every clip is at most n_segments seconds long)
    beat = np.array([(list(b) + [False] * s)[:s] for b in truth["sync_beat"]])
    flash = np.array([(list(f) + [False] * s)[:s] for f in truth["sync_flash"]])
    idx = split_sets(arrays["split"])
    train = np.zeros(n, dtype=bool)
    train[idx["train"]] = True
    sel = mask & train[:, None]
    probs = {}
    for name, x, y in (("beat", a, beat), ("flash", v, flash)):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(x[sel], y[sel])
        probs[name] = clf.predict_proba(x.reshape(n * s, -1))[:, 1].reshape(n, s) * mask
    count = np.maximum(mask.sum(axis=1), 1)
    paired = (probs["beat"] * probs["flash"]).sum(axis=1) / np.maximum(probs["beat"].sum(axis=1), 1e-9)
    pooled = probs["beat"].sum(axis=1) / count * probs["flash"].sum(axis=1) / count
    test = idx["test"][truth["has_audio"].to_numpy()[idx["test"]]]  # without audio the synchrony is unobservable
    sync = truth["sync_cue"].to_numpy()
    return {"paired": _spearman(paired[test], sync[test]), "pooled": _spearman(pooled[test], sync[test])}


def test_sec2sec_synchrony_needs_audio_and_vision_paired_per_second(mech):
    store, gt = mech
    figures: dict[str, dict[str, list[float]]] = {}
    for seed in SEEDS:
        for name in ("sec2sec", "sec2sec-sa-sa", "avm"):
            ids, pred, run = _fit(store, name, "emotion", seed)
            f = figures.setdefault(name, {"r_sync": [], "acc_arousal": [], "acc_valence": []})
            heard = gt.loc[ids, "has_audio"].to_numpy()  # without audio the synchrony is unobservable
            f["r_sync"].append(_spearman(pred[heard, 1], gt.loc[ids[heard], "sync_cue"]))
            f["acc_arousal"].append(run["metrics"]["accuracy_arousal"])
            f["acc_valence"].append(run["metrics"]["accuracy_valence"])
    control = _per_second_controls(store, gt, SEEDS[0])  # deterministic: the split is the dataset's own
    report = "; ".join(f"{m}: " + ", ".join(f"{k} {_summary(v)}" for k, v in f.items()) for m, f in figures.items())
    report += f"; controls (r_sync): paired {control['paired']:.3f}, pooled {control['pooled']:.3f}"
    print("\nsynchrony (mean [95% CI] over seeds):", report)

    # the plant is recoverable from the pipeline's per-second features, and only by pairing the seconds
    assert control["paired"] >= 0.6 and control["pooled"] < 0.3, report
    # late fusion pools each modality over time before fusing: it does not see the synchrony
    assert _interval(figures["avm"]["r_sync"])[0] < 0.3, report
    # the per-second models learn the visual valence cue, so a failure below is about the synchrony, not training
    # (measured 0.92 and 0.88; late fusion's whole-clip frames 0.70, one seed of three at 0.5)
    for name, floor in (("sec2sec", 0.8), ("sec2sec-sa-sa", 0.8), ("avm", 0.55)):
        assert np.mean(figures[name]["acc_valence"]) >= floor, report
    mean, lo, _ = _interval(figures["sec2sec"]["r_sync"])
    late_hi = _interval(figures["avm"]["r_sync"])[2]
    if not (lo > late_hi and mean >= 0.3):
        pytest.xfail(f"sec2sec does not recover the planted synchrony at this size (160 videos, 30 epochs): {report}")


def test_van_network_effect_needs_the_graph(mech):
    store, gt = mech
    figures: dict[str, dict[str, list[float]]] = {}
    for seed in SEEDS:
        for label, mods in (("van+graph", ("vision", "audio", "graph")), ("van-no-graph", ("vision", "audio"))):
            ids, pred, run = _fit(store, "van", "popularity", seed, modalities=mods)
            f = figures.setdefault(label, {"r_network": [], "r_content": [], "spearman": []})
            f["r_network"].append(_spearman(pred[:, 0], gt.loc[ids, "popularity_network_part"]))
            f["r_content"].append(_spearman(pred[:, 0], gt.loc[ids, "popularity_content_part"]))
            f["spearman"].append(run["metrics"]["spearman"])
    report = "; ".join(f"{m}: " + ", ".join(f"{k} {_summary(v)}" for k, v in f.items()) for m, f in figures.items())
    print("\nnetwork effect (mean [95% CI] over seeds):", report)
    # both variants see the video's own pixels: the content part is learnable without the graph
    assert _interval(figures["van-no-graph"]["r_content"])[0] > 0.0, report
    with_graph, without = _interval(figures["van+graph"]["r_network"]), _interval(figures["van-no-graph"]["r_network"])
    if not with_graph[1] > without[2]:
        pytest.xfail(f"van does not take the network effect from the graph embedding at this size: {report}")


def test_gat_link_prediction_beats_chance(mech):
    from features.graph import build_graph
    from models.gat import GATConfig, pretrain_link_prediction

    store, _ = mech
    video_ids = sorted(store.manifest()["video_id"])
    graph = build_graph(store.edges(), video_ids)
    aucs = [pretrain_link_prediction(graph, GATConfig(epochs=100, seed=s)).metrics["test_auc"] for s in range(5)]
    mean, lo, hi = _interval(aucs)
    report = (f"GAT test AUC over 5 split seeds {mean:.3f} [{lo:.3f}, {hi:.3f}] ({len(store.edges())} edges, "
              f"about {len(store.edges()) // 10} test links per split): {[round(a, 3) for a in aucs]}")
    print("\n" + report)
    if not lo > 0.5:
        pytest.xfail(f"the GAT's link-prediction AUC is not above chance at this size: {report}")
