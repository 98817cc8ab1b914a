"""Tests of models/base.py and models/registry.py: tasks, losses, config building, the registry."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from models import TASKS, create_model, list_models, register_model
from models.base import ModelConfig, bell_loss, build_config, masked_mean
from models.sec2sec import Sec2SecConfig


def test_tasks_table():
    assert {t: s.k for t, s in TASKS.items()} == {"emotion": 2, "personality": 5, "popularity": 1}
    assert {t: s.loss for t, s in TASKS.items()} == {"emotion": "bce", "personality": "l1", "popularity": "mse"}
    assert TASKS["personality"].targets[0] == "extraversion"
    with pytest.raises(TypeError):
        TASKS["new"] = TASKS["emotion"]  # read-only


def test_bell_loss_values():
    pred, target = torch.tensor([[0.5]]), torch.tensor([[0.41]])
    # d = 9 on the 0-100 scale = σ → γ (1 − e^{-1/2})
    assert bell_loss(pred, target).item() == pytest.approx(300 * (1 - math.exp(-0.5)), rel=1e-5)
    assert bell_loss(target, target).item() == 0.0
    assert bell_loss(torch.tensor([[1.0]]), torch.tensor([[0.0]])).item() == pytest.approx(300.0, rel=1e-6)


@pytest.mark.parametrize("loss", ["bce", "l1", "mse", "bell", "mae+mse+bell"])
def test_configured_losses(loss, tiny):
    model = tiny.model("van", loss=loss)
    pred, target = torch.tensor([[0.8], [0.2]]), torch.tensor([[1.0], [0.5]])
    got = model.loss(pred, target).item()
    expected = {
        "bce": -(math.log(0.8) + 0.5 * math.log(0.2) + 0.5 * math.log(0.8)) / 2,
        "l1": (0.2 + 0.3) / 2,
        "mse": (0.04 + 0.09) / 2,
        "bell": 300 * ((1 - math.exp(-400 / 162)) + (1 - math.exp(-900 / 162))) / 2,
    }
    expected["mae+mse+bell"] = 100 * expected["l1"] + 100**2 * expected["mse"] + expected["bell"]
    assert got == pytest.approx(expected[loss], rel=1e-5)


def test_bce_from_logits_equals_bce_from_probabilities(tiny):
    model = tiny.model("sec2sec")
    logits = torch.tensor([[2.0, -1.0]])
    target = torch.tensor([[1.0, 0.0]])
    a = model.loss(torch.sigmoid(logits), target, logits=logits)
    b = model.loss(torch.sigmoid(logits), target)
    torch.testing.assert_close(a, b)


def test_config_validation_names_the_field():
    for kwargs, match in [
        ({"task": "mood"}, "task='mood'"),
        ({"loss": "huber"}, "loss='huber'"),
        ({"dim": 10, "heads": 3}, "dim=10, heads=3"),
        ({"norm": "group"}, "norm='group'"),
        ({"token_mode": "flat"}, "token_mode='flat'"),
        ({"dropout": 1.0}, "dropout=1.0"),
    ]:
        with pytest.raises(ValueError, match=match):
            ModelConfig(**kwargs)
    with pytest.raises(TypeError):
        ModelConfig("emotion")  # keyword-only


def test_build_config_round_trips_through_plain_dicts():
    cfg = build_config(Sec2SecConfig, {"n_segments": 4}, modalities=("audio",), second_layer="sa")
    assert cfg.modalities == ("audio",) and cfg.n_segments == 4
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    assert build_config(Sec2SecConfig, as_json) == cfg
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['n_segmnts'\]"):
        build_config(Sec2SecConfig, {"n_segmnts": 4})


def test_masked_mean():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])
    out = masked_mean(x, torch.tensor([[True, False], [False, False]]))
    assert out.tolist() == [[1.0, 2.0], [0.0, 0.0]]


def test_registry_errors_and_names():
    assert list_models() == sorted(list_models())
    with pytest.raises(ValueError, match="model='nope' is not registered"):
        create_model("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_model("sec2sec")(lambda **kw: None)
    model = create_model("sec2sec-audio")
    assert model.model_name == "sec2sec-audio" and model.cfg is model.config


def test_optimizer_is_adam_without_decay_on_biases(tiny):
    model = tiny.model("van")
    opt = model.configure_optimizer(1e-3, 0.01)
    assert isinstance(opt, torch.optim.Adam)
    decays = {g["weight_decay"]: sum(p.numel() for p in g["params"]) for g in opt.param_groups}
    assert set(decays) == {0.01, 0.0}
    assert sum(decays.values()) == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="lr=0"):
        model.configure_optimizer(0, 0.0)
