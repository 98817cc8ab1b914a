"""Tests of models/classical.py: pooled features (exact values, masks, chunking, h5py), and the three floor baselines
learning a planted signal that the constant predictor cannot."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest

from models import compute_metrics, constant_baseline
from models.classical import fit_classical, pooled_features, predict_classical


def test_pooled_features_exact_values_and_masks():
    vision = np.zeros((2, 3, 3, 4, 4), dtype=np.uint8)
    vision[0, 0] = 255  # frame 0 white, frame 1 black, frame 2 (padding) white
    vision[0, 2] = 255
    vision[1, :, 0, :2, :2] = 51  # red channel, top-left quadrant = 0.2 in every frame
    vision_mask = np.array([[True, True, False], [True, True, True]])
    audio = np.array([[[1.0, 3.0], [2.0, 2.0]], [[5.0, 5.0], [0.0, 4.0]]])
    text = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = pooled_features({"vision": vision, "vision_mask": vision_mask, "audio": audio, "audio_mask": np.array([True, False]),
                         "text": text, "target": np.zeros((2, 1))}, grid=2)
    assert x.shape == (2, 3 * 4 + 2 * 2 + 2)
    np.testing.assert_allclose(x[0, :12], 0.5)  # mean of a white and a black frame; the padded frame is ignored
    np.testing.assert_allclose(x[1, :12], [0.2, 0, 0, 0] + [0.0] * 8)
    np.testing.assert_allclose(x[0, 12:16], [2.0, 2.0, 1.0, 0.0])  # MFCC means, then SDs over time
    np.testing.assert_allclose(x[1, 12:16], 0.0)  # no audio
    np.testing.assert_allclose(x[:, 16:], text)


def test_pooled_audio_statistics_ignore_padded_frames():
    """A per-frame audio mask (B, F): padding frames leave the MFCC mean and SD unchanged, whatever they hold."""
    audio = np.array([[[1.0, 3.0, 100.0, -50.0], [2.0, 2.0, 7.0, 7.0]]])  # (1, n_mfcc=2, F=4), last two frames padding
    frame_mask = np.array([[True, True, False, False]])
    x = pooled_features({"audio": audio, "audio_mask": frame_mask})
    np.testing.assert_allclose(x[0], [2.0, 2.0, 1.0, 0.0])
    counted = pooled_features({"audio": audio, "audio_mask": np.array([True])})
    assert not np.allclose(counted[0], x[0])  # a per-clip flag counts the padding: the mask is what removes it


def test_pooled_features_segments_chunks_and_h5py(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"audio_seg": rng.normal(size=(5, 2, 3, 4, 6)), "audio_seg_mask": np.array([[1, 1], [1, 0], [0, 0], [1, 1], [0, 1]], bool),
              "vision_seg": rng.random((5, 2, 1, 3, 8, 8)), "meta": rng.normal(size=(5, 3))}
    full = pooled_features(arrays, ["audio_seg", "vision_seg", "meta"])
    assert full.shape == (5, 2 * 3 * 4 + 3 * 16 + 3)
    np.testing.assert_allclose(full[1, :12], arrays["audio_seg"][1, 0].mean(axis=-1).ravel())  # only segment 0 is real
    np.testing.assert_allclose(full[2, :24], 0.0)
    with h5py.File(tmp_path / "pack.h5", "w") as f:
        for k, v in arrays.items():
            f[k] = v
    with h5py.File(tmp_path / "pack.h5", "r") as f:
        np.testing.assert_allclose(pooled_features(f, ["audio_seg", "vision_seg", "meta"], chunk=2), full)
    with pytest.raises(ValueError, match="keys=\\['target'\\] cannot be pooled"):
        pooled_features(arrays, ["target"])
    with pytest.raises(ValueError, match="expected the key"):
        pooled_features(arrays, ["text"])


@pytest.mark.parametrize("kind,max_ratio", [("linear", 0.1), ("random-forest", 0.3), ("svr", 0.3)])
def test_classical_baselines_learn_a_planted_signal(kind, max_ratio):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 6))
    y = 1 / (1 + np.exp(-(x[:, 0] - 0.5 * x[:, 1])))  # popularity in (0, 1) from two of six features
    est = fit_classical(kind, x[:120], y[:120])
    pred = predict_classical(est, x[120:])
    assert pred.shape == (40, 1) and pred.min() >= 0 and pred.max() <= 1
    got = compute_metrics("popularity", y[120:], pred)
    base = compute_metrics("popularity", y[120:], constant_baseline("popularity", y[:120, None]).predict(40))
    assert got["mse"] <= max_ratio * base["mse"] and got["spearman"] >= 0.85, (got, base)


def test_fit_classical_multi_output_and_bad_input():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 4))
    y = np.clip(0.5 + 0.1 * x[:, :2], 0, 1)
    for kind in ("linear", "random-forest", "svr"):
        assert predict_classical(fit_classical(kind, x, y, n_estimators=5) if kind == "random-forest"
                                 else fit_classical(kind, x, y), x).shape == (30, 2)
    with pytest.raises(ValueError, match="kind='xgboost'"):
        fit_classical("xgboost", x, y)
    with pytest.raises(ValueError, match="NaN"):
        fit_classical("linear", np.full((3, 2), np.nan), np.zeros(3))
    with pytest.raises(ValueError, match="X_train"):
        fit_classical("linear", x, y[:10])


def test_pooling_and_the_encoders_accept_and_refuse_the_same_audio_masks(tiny):
    """Whole-clip audio (B, n_mfcc, F): one flag per clip (B,) or per MFCC frame (B, F), for the classical pooling
    and for the models' encoders alike (models.base.mask_shape); any other mask is refused, named."""
    import torch

    model = tiny.model("mcat", modalities=("audio",)).eval()
    batch = tiny.batch(model, 3, target=False)
    b, _, f = batch["audio"].shape
    for shape in [(b,), (b, f)]:
        mask = torch.ones(shape, dtype=torch.bool)
        assert pooled_features({"audio": batch["audio"].numpy(), "audio_mask": mask.numpy()}, chunk=2).shape[0] == b
        assert model({**batch, "audio_mask": mask}).pred.shape[0] == b
    for shape in [(b, f - 1), (b - 1,), (b, 2, f)]:
        mask = torch.ones(shape, dtype=torch.bool)
        with pytest.raises(ValueError, match=re.escape(f"batch_arrays['audio_mask'] has shape {shape}; expected one "
                                                       f"of [({b},), ({b}, {f})]")):
            pooled_features({"audio": batch["audio"].numpy(), "audio_mask": mask.numpy()}, chunk=2)
        with pytest.raises(ValueError, match=r"batch\['audio_mask'\] has shape"):
            model({**batch, "audio_mask": mask})
    with pytest.raises(ValueError, match=r"batch_arrays\['vision_mask'\] has shape \(2, 3\); expected \(3, 1\)"):
        pooled_features({"vision": np.zeros((3, 1, 3, 4, 4)), "vision_mask": np.ones((2, 3), bool)}, chunk=2)
