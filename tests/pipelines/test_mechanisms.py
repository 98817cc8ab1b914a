"""Planted mechanisms: does each headline model capture the mechanism its paper claims (slow tier)?

One synthetic store (160 videos of 4-9 s, no speech, generated, ingested and extracted by the flows; the GAT
pre-trained on its song-video graph), three training seeds per model (five for VAN; each seed also draws the
train/val/test split), and per claim the model with the mechanism against the same family without it:

* **Sec2Sec synchrony** (``arousal_sync_part``, 67 % of arousal's variance, invisible to time-averaged features):
  ``sec2sec`` (per-second co-attention) vs ``sec2sec-sa-sa`` (per-second self-attention, no cross-modal attention) vs
  ``avm`` (late fusion of whole-clip vision and audio), each trained on arousal alone (the dissertation trains valence
  and arousal apart); the figure is the Spearman correlation of the predicted arousal with the planted synchrony on
  the test videos that have audio. Two controls on the same per-second pack show what the features allow: per-second
  beat and flash detectors (logistic regressions on the training seconds) multiplied per second recover the
  synchrony; the same detectors averaged over the seconds first cannot.
* **VAN network effect** (``popularity_network_part``, 77 % of popularity's variance, carried by the song): ``van``
  over vision + audio + graph vs ``van`` over vision + audio; the figure is the Spearman correlation of the predicted
  popularity with the planted network part on the test videos, and the same with the content part
  (``popularity_content_part``, drawn in the frames) is a test of its own.
* **GAT link prediction**: test AUC over five link splits against two training-free scores on the same test links,
  preferential attachment ``deg(s)`` and the cosine of the video's whole-clip audio with its candidate song's; the
  GAT without its song-degree input is the ablation.

Intervals are 95 % Student-t intervals over the seeds (:func:`models.metrics.seed_interval`). Where a model does not
capture its mechanism the test is an ``xfail`` whose reason carries the measured figures: a failed claim is a
finding, and the plant is not tuned to hide it. Every figure is printed (``pytest -s``).

Measured (generator seed 11, training seeds 0-2 (VAN 0-4), dims 16, 30 epochs; about 28 min on a heavily loaded
2-core machine):

* synchrony, ρ with ``sync_cue``, arousal-only models (19 min, load ~20): sec2sec 0.06 [-0.83, 0.95],
  sec2sec-sa-sa 0.31 [-0.03, 0.66], avm 0.23 [0.16, 0.31] (whole-clip audio with its padding masked); arousal
  accuracy 0.50 / 0.51 / 0.55, best epochs 1-7 of 30 (early stopping). Trained on valence and arousal together:
  0.06 [-0.27, 0.38] / 0.02 [-0.24, 0.28] / -0.01 [-0.60, 0.59], arousal accuracy 0.49 / 0.51 / 0.52 while valence
  reached 0.92 / 0.88 / 0.70. Controls: paired per-second detectors 0.94, the same averaged over time 0.07. The
  synchrony is in the features and the model is wired for it (second s of audio co-attends to second s of vision,
  same index and masks as the controls pair), but no model learns arousal at all here → xfail. What is known:
  arousal's audio path learns slowly -- a sec2sec-audio trained by hand on the recency store (no early stopping)
  sits at chance for about 8 epochs before reaching 0.8-0.9 test accuracy. Not the cause: the per-segment GroupNorm
  of the MFCC CNN (BatchNorm in the same hand loop also waited about 7 epochs), MFCC scale (standardised input:
  slower), and early stopping: trained 60 epochs without it (seed 0, arousal alone; sec2sec 18 min wall at load
  ~22), sec2sec reaches ρ 0.006 (test arousal accuracy 0.66; validation accuracy 0.34-0.50 at every epoch but the
  last, 0.62), sec2sec-sa-sa -0.05 (0.59), avm 0.44 (0.75); sec2sec's training loss falls from 0.69 to
  0.50-0.55 while its validation loss rises from 0.71 (epoch 1) to 0.82-1.04 (epochs 50-60): it memorises 96
  training videos, it does not learn the synchrony later. (avm's 0.44 is one split of 26 test videos with audio on
  which ``sync_cue`` happens to correlate -0.47 with the clip's length and 0.19 with the recency part; with both
  partialled out 0.31.) Longer training is not a better default here.
  The demo (``vidpipe demo``, 120 videos, valence and arousal trained together, one seed) therefore reports a
  partial ρ with the valence label held fixed: on its 22 test videos with audio the predicted arousal ranks the
  videos by valence (ρ 0.91 with the valence label), which correlates 0.49 with ``sync_cue`` there by chance, so the
  plain ρ 0.55 [0.17, 0.79] is not synchrony; the partial ρ is 0.29 [-0.16, 0.64] (avm 0.36 → 0.03), and the
  arousal output's test AUC is 0.58 (accuracy 0.375).
* network effect, ρ with ``popularity_network_part`` (GAT with its song-degree input; training seeds 0-4; fixture
  + both VAN tests 15 min at load 4-20): van + graph 0.912 [0.855, 0.969] (popularity Spearman 0.679
  [0.651, 0.708]), van without graph 0.198 [-0.031, 0.427] (Spearman 0.086 [-0.111, 0.282]); paired gain 0.714
  [0.438, 0.990], per seed 0.675 / 0.373 / 0.960 / 0.707 / 0.854 → passes (seeds 0-2 alone: 0.670 [-0.060, 1.399]).
  A song's degree ranks the network part at ρ 0.97 over this catalogue's videos, so the embedding carries nearly
  all of it. Neither variant learns the content part: ρ with ``popularity_content_part`` 0.034 [-0.225, 0.294]
  without the graph (per seed 0.387 / 0.046 / -0.097 / -0.027 / -0.137), 0.034 [-0.045, 0.113] with it → xfail;
  without the graph, VAN on 96 training videos barely ranks popularity at all.
* GAT test AUC over 5 link splits (152 links, ~15 test links and ~7 negatives each):
  gat 0.792 [0.651, 0.934], gat-no-degree 0.728 [0.552, 0.903], gat-audio 0.800 [0.649, 0.951]; baselines deg(s)
  0.794 [0.641, 0.947], audio cosine 0.670 [0.524, 0.817] → passes: the GAT learns song popularity (it matches
  the degree score); the melody in the audio features adds nothing measurable at this size.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.stats

DATASET = "mech"
SEEDS = (0, 1, 2)
#: the network-effect comparison is paired seed by seed; its gain varies 0.37-0.96 over seeds, which 3 seeds leave
#: unresolved ([-0.06, 1.40]) and 5 resolve
VAN_SEEDS = (0, 1, 2, 3, 4)
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
    from models.engine import evaluate
    from models.registry import create_model
    from pipelines.train import load_run_model, run_training

    fields = {f.name for f in dataclasses.fields(create_model(name).cfg)}
    sized = {**{k: v for k, v in SIZE.items() if k in fields}, **overrides}
    run = run_training(store, name, task, seed=seed, overrides=sized, record=False, resume=False,
                       run_id=f"mech-{name}-{task}-{seed}-{'_'.join(overrides.get('modalities', ()))}",
                       **TRAIN)
    model, arrays = load_run_model(store, run["checkpoint"], run["pack"])  # target columns narrowed to the model's
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


def _per_second_controls(store, gt: pd.DataFrame) -> dict[str, float]:
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

    fp, _ = build_pack(store, ("vision_seg", "audio_seg"), "emotion")
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
            # arousal alone (the dissertation trains valence and arousal apart): trained together, valence's visual cue
            # is learned first and the arousal output stays at chance (0.49-0.52 over 3 seeds)
            ids, pred, run = _fit(store, name, "emotion", seed, targets=("arousal",))
            f = figures.setdefault(name, {"r_sync": [], "acc_arousal": [], "best_epoch": []})
            heard = gt.loc[ids, "has_audio"].to_numpy()  # without audio the synchrony is unobservable
            f["r_sync"].append(_spearman(pred[heard, 0], gt.loc[ids[heard], "sync_cue"]))
            f["acc_arousal"].append(run["metrics"]["accuracy_arousal"])
            f["best_epoch"].append(run["best_epoch"])
    control = _per_second_controls(store, gt)  # deterministic: the split is the dataset's own
    report = "; ".join(f"{m}: " + ", ".join(f"{k} {_summary(v)}" for k, v in f.items()) for m, f in figures.items())
    report += f"; controls (r_sync): paired {control['paired']:.3f}, pooled {control['pooled']:.3f}"
    print("\nsynchrony (mean [95% CI] over seeds):", report)

    # the plant is recoverable from the pipeline's per-second features, and only by pairing the seconds
    assert control["paired"] >= 0.6 and control["pooled"] < 0.3, report
    # late fusion pools each modality over time before fusing: it does not see the synchrony
    assert _interval(figures["avm"]["r_sync"])[0] < 0.3, report
    mean, lo, _ = _interval(figures["sec2sec"]["r_sync"])
    late_hi = _interval(figures["avm"]["r_sync"])[2]
    if not (lo > late_hi and mean >= 0.3):
        pytest.xfail(f"sec2sec does not recover the planted synchrony at this size (160 videos, 30 epochs): {report}")


@pytest.fixture(scope="module")
def van_figures(mech) -> tuple[dict[str, dict[str, list[float]]], str]:
    """Per variant (``van+graph``, ``van-no-graph``) and figure, one value per seed of :data:`VAN_SEEDS`; and the
    report line."""
    store, gt = mech
    figures: dict[str, dict[str, list[float]]] = {}
    for seed in VAN_SEEDS:
        for label, mods in (("van+graph", ("vision", "audio", "graph")), ("van-no-graph", ("vision", "audio"))):
            ids, pred, run = _fit(store, "van", "popularity", seed, modalities=mods)
            f = figures.setdefault(label, {"r_network": [], "r_content": [], "spearman": []})
            f["r_network"].append(_spearman(pred[:, 0], gt.loc[ids, "popularity_network_part"]))
            f["r_content"].append(_spearman(pred[:, 0], gt.loc[ids, "popularity_content_part"]))
            f["spearman"].append(run["metrics"]["spearman"])
    report = "; ".join(f"{m}: " + ", ".join(f"{k} {_summary(v)}" for k, v in f.items()) for m, f in figures.items())
    print("\nnetwork effect (mean [95% CI] over seeds):", report)
    return figures, report


def test_van_network_effect_needs_the_graph(van_figures):
    figures, report = van_figures
    # each seed draws one split for both variants: the comparison is paired, seed by seed
    gain = np.subtract(figures["van+graph"]["r_network"], figures["van-no-graph"]["r_network"])
    report += f"; paired gain in r_network {_summary(gain)} (per seed {np.round(gain, 3).tolist()})"
    print(report)
    # the graph embedding carries the network effect: the paired gain's interval over the seeds lies above 0
    assert _interval(gain)[1] > 0.0, report


def test_van_learns_the_content_part_from_the_pixels(van_figures):
    """Both variants see the video's own frames, where the content part (the mean level of the central square) is
    drawn: without the graph, VAN should rank the test videos by it."""
    figures, report = van_figures
    if not _interval(figures["van-no-graph"]["r_content"])[1] > 0.0:
        pytest.xfail(f"van does not learn the content part from the frames at this size: {report}")


def _link_baselines(graph, cfg) -> dict[str, float]:
    """Test AUC of two training-free scores on the test links of ``cfg``'s split: preferential attachment
    ``deg(s)`` over the split's message-passing links, and the cosine between a video's features and its candidate
    song's (the mean of the song's message-passing videos, as the GAT's song input)."""
    from sklearn.metrics import roc_auc_score

    from models.gat import USES, _seeded, _split

    with _seeded(cfg.seed):
        _, _, test = _split(graph.data, cfg)
    pairs, labels = test[USES].edge_label_index, test[USES].edge_label.numpy()
    deg = np.bincount(test[USES].edge_index[1].numpy(), minlength=test["song"].num_nodes)
    xv = test["video"].x[pairs[0]].numpy()
    xs = test["song"].x[pairs[1]].numpy()
    cos = (xv * xs).sum(1) / np.maximum(np.linalg.norm(xv, axis=1) * np.linalg.norm(xs, axis=1), 1e-9)
    return {"degree": float(roc_auc_score(labels, deg[pairs[1].numpy()])),
            "feature_cosine": float(roc_auc_score(labels, cos))}


def test_gat_link_prediction_beats_chance(mech):
    """GAT link prediction on the store's song-video graph against training-free baselines, over 5 link splits.

    With featureless videos (the pipeline's default) every video has the same embedding, so a held-out link can
    only be ranked by its song: the GAT has to learn song popularity, which the graph carries as song degree.
    ``song_degree=False`` is the ablation (a per-song vector trained on the supervision links is then all that
    carries popularity). With the whole-clip audio as video features the looped melody says which song plays."""
    from features.graph import build_graph
    from features.packs import node_features
    from models.gat import GATConfig, pretrain_link_prediction

    store, _ = mech
    video_ids = sorted(store.manifest()["video_id"])
    edges = store.edges()
    plain = build_graph(edges, video_ids)
    heard = build_graph(edges, video_ids, video_features=node_features(store, video_ids, "audio")[0])
    figures: dict[str, list[float]] = {}
    for s in range(5):
        for label, graph, kw in (("gat", plain, {}), ("gat-no-degree", plain, {"song_degree": False}),
                                 ("gat-audio", heard, {})):
            cfg = GATConfig(epochs=100, seed=s, **kw)
            figures.setdefault(label, []).append(pretrain_link_prediction(graph, cfg).metrics["test_auc"])
        for name, auc in _link_baselines(heard, GATConfig(seed=s)).items():
            figures.setdefault(name, []).append(auc)
    report = (f"test AUC over 5 link splits ({len(edges)} links, about {len(edges) // 10} test links and half as "
              "many negatives per split): " + "; ".join(f"{k} {_summary(v)}" for k, v in figures.items()))
    print("\n" + report)
    # the planted graph carries song popularity: the preferential-attachment score ranks test links above chance
    assert _interval(figures["degree"])[1] > 0.5, report
    # the GAT learns it from the graph: above chance, and no worse than the score it has to learn
    assert _interval(figures["gat"])[1] > 0.5, report
    assert np.mean(figures["gat"]) >= np.mean(figures["degree"]) - 0.05, report
