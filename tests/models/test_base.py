"""Tests of models/base.py and models/registry.py: tasks, losses, config building, the registry."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from models import TASKS, create_model, list_models, register_model
from models.base import ModelConfig, all_real, bell_loss, build_config, masked_mean
from models.sec2sec import Sec2SecConfig


def test_tasks_table():
    assert {t: s.k for t, s in TASKS.items()} == {"emotion": 2, "personality": 5, "popularity": 1,
                                                  "popularity_mtaf": 1}
    assert {t: s.loss for t, s in TASKS.items()} == {"emotion": "bce", "personality": "l1", "popularity": "mse",
                                                     "popularity_mtaf": "mse"}
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


def test_all_real_and_the_mean_over_an_all_real_mask():
    assert all_real(torch.ones(3, 4, dtype=torch.bool)) and all_real(torch.ones(2, dtype=torch.bool))
    assert not all_real(torch.tensor([[True, False]])) and not all_real(torch.zeros(2, dtype=torch.bool))
    assert not all_real(torch.ones(2))  # float weights are not flags: weighted means stay weighted
    x = torch.randn(3, 5, 4, requires_grad=True)
    mask = torch.ones(3, 5, dtype=torch.bool)
    fast = masked_mean(x, mask)
    w = mask.to(x.dtype).unsqueeze(-1)
    ref = (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(torch.autograd.grad(fast.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0])


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


def test_optimizer_is_fused_on_cpu_and_steps_like_the_per_tensor_adam(tiny):
    model = tiny.model("van")
    reference, start = copy.deepcopy(model), copy.deepcopy(model)
    opt = model.configure_optimizer(1e-2, 0.01)
    assert all(g["fused"] for g in opt.param_groups)
    groups = [{"params": [p for p in reference.parameters() if p.dim() >= 2], "weight_decay": 0.01},
              {"params": [p for p in reference.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    ref = torch.optim.Adam(groups, lr=1e-2, foreach=False)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):  # the same gradients for both: only the update rule can differ
        for p, q in zip(model.parameters(), reference.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        ref.step()
    moved = max((p - q).abs().max().item() for p, q in zip(model.parameters(), start.parameters()))
    assert moved > 1e-2  # 3 steps at lr 1e-2
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ target subsets, frame normalisation
def test_task_spec_narrows_to_a_target_subset():
    from models.base import TASKS, task_spec

    assert task_spec("emotion") is TASKS["emotion"]
    v = task_spec("emotion", ["valence"])
    assert (v.k, v.targets, v.monitor, v.loss) == (1, ("valence",), "accuracy_mean", "bce")
    assert task_spec("personality", ("openness", "extraversion")).targets == ("openness", "extraversion")
    for bad in ([], ["valence", "valence"], ["openness"]):
        with pytest.raises(ValueError, match="targets="):
            task_spec("emotion", bad)


def test_single_target_model_predicts_one_column_and_round_trips(tmp_path):
    from models import create_model
    from models.base import example_batch
    from models.engine import load_checkpoint, save_checkpoint

    model = create_model("sec2sec", task="emotion", targets=["arousal"], dim=16, heads=2, n_segments=3,
                         frames_per_segment=1, frame_size=16, n_mfcc=8, mfcc_frames=8, cnn_width=8, lstm_hidden=16)
    out = model(example_batch(model, 3))
    assert out.pred.shape == (3, 1) and model.spec.targets == ("arousal",)
    again, _ = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model))
    assert again.config.targets == ("arousal",) and again.spec.k == 1
    with pytest.raises(ValueError, match="targets="):
        create_model("mcat", task="personality", targets=("valence",))


def test_normalize_images_standardises_channels_and_keeps_missing_frames_zero():
    from models.base import IMAGENET_MEAN, IMAGENET_STD, normalize_images

    x = torch.full((2, 3, 3, 4, 4), 0.5)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = normalize_images({"vision": x, "vision_mask": mask, "audio": torch.ones(2, 5)})
    for c in range(3):
        want = (0.5 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out["vision"][0, 0, c], torch.full((4, 4), want))
    assert out["vision"][0, 2].eq(0).all() and out["vision"][1, 1:].eq(0).all()
    assert torch.equal(out["audio"], torch.ones(2, 5)) and x.eq(0.5).all()  # other keys and the input untouched


def test_vision_norm_imagenet_changes_what_the_model_sees():
    from models import create_model
    from models.base import example_batch, normalize_images

    kw = dict(task="personality", modalities=("vision",), dim=16, heads=2, n_frames=2, frame_size=16, patch_size=8,
              patch_dim=4, dropout=0.0)
    torch.manual_seed(0)
    plain = create_model("mcat", **kw).eval()
    torch.manual_seed(0)
    normed = create_model("mcat", vision_norm="imagenet", **kw).eval()
    batch = example_batch(plain, 2, target=False)
    with torch.no_grad():
        assert torch.allclose(normed(batch).pred, plain(normalize_images(batch)).pred)
        assert not torch.allclose(normed(batch).pred, plain(batch).pred)
    with pytest.raises(ValueError, match="vision_norm="):
        create_model("mcat", vision_norm="zscore")


def test_geometry_overrides_read_the_input_shapes_and_fit_the_tiles(tiny):
    mcat = tiny.model("mcat")  # patch_size 8, audio_chunk 4
    shapes = {"vision": (6, 3, 12, 12), "audio": (10, 24), "text": (30,), "graph": (7,)}
    got = mcat.cfg.geometry_overrides(mcat.inputs, shapes)
    # 12 is not a multiple of 8: the largest divisor below it; 24 frames are tiled by 4 as they are
    assert got == {"n_frames": 6, "frame_size": 12, "patch_size": 6, "n_mfcc": 10, "mfcc_frames": 24,
                   "vocab_size": 30}  # no graph: MCAT does not read it
    sec2sec = tiny.model("sec2sec")  # no tile fields
    assert sec2sec.cfg.geometry_overrides(sec2sec.inputs, {"vision_seg": (5, 2, 3, 16, 16)}) == {
        "n_segments": 5, "frames_per_segment": 2, "frame_size": 16}
    create_model("mcat", **{**tiny.overrides("mcat"), **got})  # the overrides build a model


@pytest.mark.parametrize("name", list_models())
def test_example_batch_shapes_read_back_as_the_configured_geometry(tiny, name):
    """example_batch derives its shapes from INPUT_GEOMETRY (input_shape): reading them back with
    geometry_overrides gives the model's own configuration."""
    from models.base import example_batch, input_shape

    model = tiny.model(name)
    batch = example_batch(model, 2, target=False)
    shapes = {k: tuple(batch[k].shape[1:]) for k in model.inputs}
    assert shapes == {k: input_shape(k, model.config) for k in model.inputs}
    got = model.config.geometry_overrides(model.inputs, shapes)
    assert got and got == {f: getattr(model.config, f) for f in got}
    with pytest.raises(ValueError, match="key='early_trend' has no declared geometry"):
        input_shape("early_trend", model.config)


def test_unchosen_fields_are_the_geometry_the_task_and_unset_tiles():
    fields = ModelConfig.unchosen_fields()
    assert {"n_frames", "frame_size", "vocab_size", "graph_dim", "vision_emb_dim", "task", "pretrained_path",
            "patch_size", "audio_chunk"} <= fields
    assert not {"dim", "heads", "targets", "loss"} & fields
    assert "patch_size" not in ModelConfig.unchosen_fields(chosen={"patch_size": 4})
