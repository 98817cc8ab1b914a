"""Learning on planted signal: each headline model beats the constant baseline by a margin a broken model misses,
and the two-modality Sec2Sec beats its single-modality variants when the signal is split across modalities."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from models import compute_metrics, constant_baseline
from models.engine import TrainConfig, evaluate, fit, seed_everything

FRAME = 16  # frame side
N_MFCC = 8  # = the tiny geometry of conftest


def _split(data: dict[str, torch.Tensor], n_train: int) -> tuple[DataLoader, DataLoader, torch.Tensor]:
    n = len(data["target"])
    rows = [{k: v[i] for k, v in data.items()} for i in range(n)]
    return (DataLoader(rows[:n_train], batch_size=32, shuffle=True), DataLoader(rows[n_train:], batch_size=64),
            data["target"][:n_train])


def _train(tiny, name: str, data: dict[str, torch.Tensor], n_train: int, epochs: int, **overrides):
    train, val, y_train = _split(data, n_train)
    seed_everything(0)
    model = tiny.model(name, dropout=0.0, **overrides)
    fit(model, train, val, TrainConfig(epochs=epochs, lr=3e-3, seed=0, device="cpu", patience_no_improve=epochs))
    y_true, y_pred = evaluate(model, val)
    base = constant_baseline(model.task, y_train.numpy()).predict(len(y_true))
    return compute_metrics(model.task, y_true, y_pred), compute_metrics(model.task, y_true, base)


def _emotion_data(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Valence = brightness of the LAST segment's frames (recency); arousal = audio energy (MFCC c0)."""
    g = torch.Generator().manual_seed(seed)
    s = 3
    bright = torch.rand(n, s, generator=g)
    noise = 0.1 * torch.randn(n, s, 1, 3, FRAME, FRAME, generator=g)
    frames = (bright[:, :, None, None, None, None] + noise).clamp(0, 1)
    energy = torch.rand(n, generator=g)
    audio = 0.3 * torch.randn(n, s, 3, N_MFCC, 8, generator=g)
    audio[:, :, 0, 0, :] += 4 * (energy[:, None, None] - 0.5)
    target = torch.stack([bright[:, -1] > 0.5, energy > 0.5], dim=1).float()
    ones = torch.ones(n, s, dtype=torch.bool)
    return {"vision_seg": frames, "vision_seg_mask": ones, "audio_seg": audio, "audio_seg_mask": ones, "target": target}


def test_sec2sec_learns_emotion_and_needs_both_modalities(tiny):
    data = _emotion_data(224)
    geometry = dict(n_segments=3, frames_per_segment=1, mfcc_frames=8)
    full, base = _train(tiny, "sec2sec", data, 160, 12, **geometry)
    vision, _ = _train(tiny, "sec2sec-vision", data, 160, 12, **geometry)
    audio, _ = _train(tiny, "sec2sec-audio", data, 160, 12, **geometry)
    assert full["accuracy_mean"] >= base["accuracy_mean"] + 0.25, (full, base)
    assert full["accuracy_valence"] >= 0.8 and full["accuracy_arousal"] >= 0.8, full
    # each single-modality variant sees only half of the planted signal
    assert full["accuracy_mean"] >= vision["accuracy_mean"] + 0.1, (full, vision)
    assert full["accuracy_mean"] >= audio["accuracy_mean"] + 0.1, (full, audio)
    assert vision["accuracy_valence"] >= 0.8 and audio["accuracy_arousal"] >= 0.8  # …and do learn that half


def _clip_data(n: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Whole-clip inputs with planted cues: brightness v, audio energy a, word counts of two word lists."""
    g = torch.Generator().manual_seed(seed)
    t, vocab = 4, 20
    v, a = torch.rand(n, generator=g), torch.rand(n, generator=g)
    frames = (v[:, None, None, None, None] + 0.1 * torch.randn(n, t, 3, FRAME, FRAME, generator=g)).clamp(0, 1)
    audio = 0.3 * torch.randn(n, N_MFCC, 16, generator=g)
    audio[:, 0, :] += 4 * (a[:, None] - 0.5)
    words = (torch.rand(n, vocab, generator=g) < 0.5).float()
    cues = {"v": v, "a": a, "wa": words[:, :5].mean(1), "wb": words[:, 5:10].mean(1)}
    data = {"vision": frames, "vision_mask": torch.ones(n, t, dtype=torch.bool), "audio": audio,
            "audio_mask": torch.ones(n, dtype=torch.bool), "text": words, "text_mask": torch.ones(n, dtype=torch.bool)}
    return data, cues


def test_mcat_learns_personality_from_three_modalities(tiny):
    data, c = _clip_data(224)
    # extraversion ← vision, neuroticism ← audio, agreeableness / conscientiousness ← two word lists, openness ← v + a
    traits = [c["v"], c["a"], c["wa"], c["wb"], (c["v"] + c["a"]) / 2]
    data["target"] = 0.2 + 0.6 * torch.stack(traits, dim=1)
    model, base = _train(tiny, "mcat", data, 160, 15)
    assert model["mae"] <= 0.4 * base["mae"], (model, base)  # seen: 0.032 vs 0.128
    assert model["mean_accuracy"] >= base["mean_accuracy"] + 0.06, (model, base)


def test_van_learns_popularity_from_content_and_network(tiny):
    data, c = _clip_data(224, seed=1)
    g = torch.Generator().manual_seed(2)
    data["graph"] = torch.randn(224, 6, generator=g)
    data["graph_mask"] = torch.ones(224, dtype=torch.bool)
    data["target"] = torch.sigmoid(1.5 * data["graph"][:, 0] + 3 * (c["v"] - 0.5))[:, None]
    model, base = _train(tiny, "van", data, 160, 15)
    assert base["spearman"] == 0.0
    assert model["spearman"] >= 0.9, model  # seen: 0.97
    assert model["mse"] <= 0.25 * base["mse"], (model, base)  # seen: 0.005 vs 0.098
