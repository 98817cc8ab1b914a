"""Tests of models/siamese.py: trait classes, the multi-similarity loss by hand, extreme-class accuracy, the freezing
schedule through the engine, and cross-modal embeddings that learn to separate the extreme classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from models import compute_metrics, constant_baseline
from models.engine import TrainConfig, evaluate, fit, seed_everything
from models.siamese import extreme_class_accuracy, multi_similarity_loss, trait_classes


def test_trait_classes_cut_at_mean_plus_minus_one_sd():
    y = np.array([[0.19], [0.2], [0.49], [0.5], [0.79], [0.8]])
    expected = [[1], [2], [2], [3], [3], [4]]  # t̄ = 0.5, σ = 0.3: C1 < 0.2 ≤ C2 < 0.5 ≤ C3 < 0.8 ≤ C4
    assert trait_classes(y, [0.5], [0.3]).tolist() == expected
    assert trait_classes(torch.tensor(y), [0.5], [0.3]).tolist() == expected


def _ms_term(pos: list[float], neg: list[float], a: float = 2.0, b: float = 40.0, lam: float = 0.5) -> float:
    return (math.log1p(sum(math.exp(-a * (s - lam)) for s in pos)) / a
            + math.log1p(sum(math.exp(b * (s - lam)) for s in neg)) / b)


def test_multi_similarity_loss_matches_eq7_by_hand():
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [1.6, 1.2]])  # unit, unit, 2 × unit: cosines 0.6, 0.8, 0.96
    classes = torch.tensor([[1], [1], [2]])
    # anchors: items 0 and 1 (C1); item 2 is ordinary (C2), never an anchor, but a negative of both
    expected = (_ms_term([0.6], [0.8]) + _ms_term([0.6], [0.96])) / 3
    got = multi_similarity_loss(emb, classes)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # a class-4 anchor counts too; a class-2 item alone has no extreme anchor: 0
    assert multi_similarity_loss(emb, torch.tensor([[4], [4], [3]])).item() == pytest.approx(expected, rel=1e-5)
    assert multi_similarity_loss(emb, torch.tensor([[2], [2], [3]])).item() == 0.0
    # invalid embeddings are left out of every pair and of the average: anchor 1 then has no negative
    got = multi_similarity_loss(emb, classes, torch.tensor([True, True, False]))
    assert got.item() == 0.0


def test_multi_similarity_mining_drops_easy_pairs():
    emb = torch.tensor([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0], [0.6, 0.8]])  # 0–1 close, 0–2 far, 0–3 medium
    classes = torch.tensor([[1], [1], [3], [3]])
    # anchor 0: positive 1 (0.99) is kept only if < max negative (0.6) + 0.1 → dropped → anchor 0 skipped;
    # anchor 1 likewise (its negatives are 0.141 and 0.707): neither anchor has a kept positive
    assert multi_similarity_loss(emb, classes).item() == 0.0
    loss = multi_similarity_loss(emb, classes, margin=0.5)  # a wide margin keeps them
    assert loss.item() > 0


def test_extreme_class_accuracy_values():
    train = np.array([[0.2], [0.5], [0.8], [0.5]])  # mean 0.5, SD √0.045 ≈ 0.212: C1 < 0.288, C4 ≥ 0.712
    y = np.array([[0.1], [0.5], [0.9], [0.85]])
    p = np.array([[0.3], [0.5], [0.6], [0.85]])
    out = extreme_class_accuracy(y, p, train, names=["x"])
    assert out["all"] == pytest.approx(1 - (0.2 + 0 + 0.3 + 0) / 4)
    assert out["low"] == pytest.approx(0.8) and out["low_x"] == pytest.approx(0.8)
    assert out["high"] == pytest.approx(1 - 0.15)
    assert out["extreme"] == pytest.approx((0.8 + 0.85) / 2)
    five = extreme_class_accuracy(np.tile(y, 5), np.tile(p, 5), np.tile(train, 5))
    assert five["high_openness"] == pytest.approx(0.85)
    no_low = extreme_class_accuracy(y[1:], p[1:], train, names=["x"])
    assert math.isnan(no_low["low"]) and no_low["extreme"] == pytest.approx(0.85)
    with pytest.raises(ValueError, match="train_targets"):
        extreme_class_accuracy(y, p, np.ones((4, 2)))


def _data(n: int, k: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Traits u planted in both modalities: MFCC rows 0..k-1 and bag-of-words columns 0..k-1."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, k, generator=g)
    audio = 0.3 * torch.randn(n, 8, 16, generator=g)
    audio[:, :k, :] += 3 * (u[:, :, None] - 0.5)
    text = torch.rand(n, 20, generator=g)
    text[:, :k] = u
    ones = torch.ones(n, dtype=torch.bool)
    return {"audio": audio, "audio_mask": ones, "text": text, "text_mask": ones, "target": 0.2 + 0.6 * u}


def _loaders(data: dict[str, torch.Tensor], n_train: int) -> tuple[DataLoader, DataLoader]:
    rows = [{k: v[i] for k, v in data.items()} for i in range(len(data["target"]))]
    return DataLoader(rows[:n_train], batch_size=32, shuffle=True), DataLoader(rows[n_train:], batch_size=64)


def test_staged_schedule_freezes_each_component_after_its_stage(tiny):
    data = _data(64, 5)
    train, val = _loaders(data, 48)
    seed_everything(0)
    model = tiny.model("siamese", modalities=("audio", "text"), stage_epochs=(1, 1, 1), dropout=0.0)
    parts = {"sub": model.encoders, "m1": model.m1, "siamese": model.siamese, "m2": model.m2}
    snaps = [{k: torch.cat([p.detach().flatten().clone() for p in m.parameters()]) for k, m in parts.items()}]
    result = fit(model, train, val, TrainConfig(epochs=4, lr=3e-3, device="cpu", patience_no_improve=4, patience_rising=4),
                 on_epoch=lambda _: snaps.append({k: torch.cat([p.detach().flatten().clone() for p in m.parameters()])
                                                  for k, m in parts.items()}))
    changed = {k: [not torch.equal(a[k], b[k]) for a, b in zip(snaps, snaps[1:])] for k in parts}
    assert changed == {"sub": [True, False, False, False], "m1": [True, True, False, False],
                       "siamese": [True, True, True, False], "m2": [True, True, True, True]}
    # label statistics = every training target of every epoch (buffers: rolled back with the best epoch's weights)
    assert model.label_count.item() == 48 * result.best_epoch
    torch.testing.assert_close(model.label_stats()[0], data["target"][:48].double().mean(0))
    out = model.eval()({k: v[:3] for k, v in data.items()})
    torch.testing.assert_close(model.member_prediction(out), torch.sigmoid(out.extras["member_logits"]).mean(1))


def test_cross_modal_embeddings_separate_extremes_and_help_on_extremes(tiny):
    """Audio and text embeddings of the same extreme class end up closer than those of opposite extremes."""
    data = _data(176, 1)
    n_train = 112
    y_train = data["target"][:n_train].numpy()
    val_batch = {k: v[n_train:] for k, v in data.items()}
    classes = trait_classes(val_batch["target"].numpy(), y_train.mean(0), y_train.std(0))[:, 0]
    lo, hi = classes == 1, classes == 4

    def same_minus_opposite(model) -> float:
        model.eval()
        with torch.no_grad():
            e = model(val_batch).extras["embeddings"]
        s = (e[:, 0] @ e[:, 1].T).numpy()  # cosine of audio item i with text item k
        same = (s[np.ix_(lo, lo)].mean() + s[np.ix_(hi, hi)].mean()) / 2
        opposite = (s[np.ix_(lo, hi)].mean() + s[np.ix_(hi, lo)].mean()) / 2
        return float(same - opposite)

    seed_everything(0)
    model = tiny.model("siamese", task="popularity", modalities=("audio", "text"), schedule="joint", dropout=0.0)
    gaps = [same_minus_opposite(model)]
    train, val = _loaders(data, n_train)
    fit(model, train, val, TrainConfig(epochs=12, lr=3e-3, device="cpu", patience_no_improve=12, patience_rising=12),
        on_epoch=lambda _: gaps.append(same_minus_opposite(model)))
    assert abs(gaps[0]) < 0.05 and gaps[-1] >= 0.15, gaps  # observed 0.00 → 0.32
    y_true, y_pred = evaluate(model, val)
    const = constant_baseline("popularity", y_train).predict(len(y_true))
    ours, base = extreme_class_accuracy(y_true, y_pred, y_train), extreme_class_accuracy(y_true, const, y_train)
    assert ours["extreme"] >= base["extreme"] + 0.08, (ours, base)
    assert compute_metrics("popularity", y_true, y_pred)["spearman"] >= 0.8


def test_siamese_reads_the_egemaps_functionals_as_its_audio_input():
    from models import create_model
    from models.base import example_batch

    model = create_model("siamese", modalities=("egemaps", "text"), dim=16, heads=2, vocab_size=20, vector_tokens=2)
    assert "egemaps" in model.inputs
    batch = example_batch(model, 4)
    assert batch["egemaps"].shape == (4, 88)
    out = model(batch)
    assert out.pred.shape == (4, 5) and out.loss is not None
    other = {**batch, "egemaps": batch["egemaps"] + 1.0}
    model.eval()
    with torch.no_grad():
        assert not torch.equal(model(batch).pred, model(other).pred)
