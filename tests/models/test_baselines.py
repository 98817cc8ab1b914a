"""Every baseline model (models.fusion, mtaf, siamese, convlstm) is registered, builds at the tiny geometry, and learns a
planted signal through the one engine loop, beating the constant predictor by a margin a broken model would miss."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

import models.convlstm  # noqa: F401  (registration happens on import)
import models.fusion  # noqa: F401
import models.mtaf  # noqa: F401
import models.siamese  # noqa: F401
from models import compute_metrics, constant_baseline, list_models
from models.engine import TrainConfig, evaluate, fit, seed_everything

BASELINES = ("late-fusion", "avm", "decision-average", "simvc", "vatt", "mtaf", "siamese", "convlstm-ae")


def test_baselines_are_registered_with_their_modalities_and_tasks(tiny):
    assert set(BASELINES) <= set(list_models())
    assert tiny.model("avm").inputs == ("vision", "audio")
    assert tiny.model("late-fusion").inputs == ("vision", "audio", "text")
    assert tiny.model("late-fusion", modalities=("audio", "text", "meta")).inputs == ("audio", "text", "meta")
    assert tiny.model("mtaf").inputs == ("vision", "audio", "text", "meta")
    assert tiny.model("convlstm-ae").inputs == ("vision", "text")
    assert {tiny.model(n).task for n in ("late-fusion", "decision-average", "siamese")} == {"personality"}
    assert {tiny.model(n).task for n in ("mtaf", "convlstm-ae")} == {"popularity"}


def _planted(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """One cue u ~ U(0, 1) planted, with noise, in every modality: brightness, MFCC c0, a word weight, meta[0].

    Popularity = 0.2 + 0.6 u, so any model that reads any modality can learn it and the decision-level ensemble
    needs no cross-modal interaction.
    """
    g = torch.Generator().manual_seed(seed)
    t = 4
    u = torch.rand(n, generator=g)
    frames = (u[:, None, None, None, None] + 0.1 * torch.randn(n, t, 3, 16, 16, generator=g)).clamp(0, 1)
    audio = 0.3 * torch.randn(n, 8, 16, generator=g)
    audio[:, 0, :] += 4 * (u[:, None] - 0.5)
    text = torch.rand(n, 20, generator=g)
    text[:, 0] = u
    meta = torch.randn(n, 3, generator=g)
    meta[:, 0] = 2 * (u - 0.5)
    ones = torch.ones(n, dtype=torch.bool)
    return {"vision": frames, "vision_mask": torch.ones(n, t, dtype=torch.bool), "audio": audio, "audio_mask": ones,
            "text": text, "text_mask": ones, "meta": meta, "meta_mask": ones, "target": (0.2 + 0.6 * u)[:, None]}


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_learns_planted_signal_through_the_engine(name, tiny):
    data, n_train = _planted(176), 112
    rows = [{k: v[i] for k, v in data.items()} for i in range(len(data["target"]))]
    train = DataLoader(rows[:n_train], batch_size=32, shuffle=True)
    val = DataLoader(rows[n_train:], batch_size=64)
    seed_everything(0)
    overrides = {"stage_epochs": (3, 2, 1)} if name == "siamese" else {"pretrain_epochs": 3} if name == "convlstm-ae" else {}
    model = tiny.model(name, task="popularity", dropout=0.0, **overrides)
    fit(model, train, val, TrainConfig(epochs=8, lr=3e-3, seed=0, device="cpu", patience_no_improve=8, patience_rising=8))
    y_true, y_pred = evaluate(model, val)
    got = compute_metrics("popularity", y_true, y_pred)
    base = compute_metrics("popularity", y_true, constant_baseline("popularity", data["target"][:n_train]).predict(len(y_true)))
    assert got["mse"] <= 0.3 * base["mse"], (got, base)  # observed ≤ 0.08; a model that learned nothing is ≈ 1
    assert got["spearman"] >= 0.85, got


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_checkpoint_round_trip(name, tiny, tmp_path):
    """Config (tuple fields included) and buffers (epoch count, label statistics) come back from a checkpoint."""
    from models.engine import load_checkpoint, save_checkpoint

    model = tiny.model(name, task="popularity").train()
    batch = tiny.batch(model, b=3)
    model(batch).loss.backward()
    model.eval()  # completes one "epoch" for the staged models
    save_checkpoint(tmp_path / "m.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    assert loaded.config == model.config
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    torch.testing.assert_close(loaded(batch).pred, model(batch).pred)
