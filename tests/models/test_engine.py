"""Tests of models/engine.py: early stopping, checkpoints (best / top-k / last), round trip, determinism, resume;
the headline models learn planted signal through it."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from models import compute_metrics, constant_baseline
from models.engine import EarlyStopping, TrainConfig, evaluate, fit, load_checkpoint, save_checkpoint, seed_everything


def _samples(n: int, seed: int, graph_dim: int = 6, meta_dim: int = 3) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    graph, meta = torch.randn(n, graph_dim, generator=g), torch.randn(n, meta_dim, generator=g)
    y = torch.sigmoid(graph[:, :1] * 2)
    mask = torch.rand(n, generator=g) > 0.2  # some videos miss their graph embedding
    graph = graph * mask[:, None]
    return [{"graph": graph[i], "graph_mask": mask[i], "meta": meta[i], "meta_mask": torch.tensor(True),
             "target": y[i], "video_id": f"v{i}"} for i in range(n)]


def _loaders(seed: int = 0) -> tuple[DataLoader, DataLoader]:
    return (DataLoader(_samples(48, seed), batch_size=16, shuffle=True),
            DataLoader(_samples(16, seed + 1), batch_size=8))


def _model(tiny, **kw):
    seed_everything(0)
    return tiny.model("van", modalities=("graph", "meta"), dropout=0.1, **kw)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 4, "lr": 3e-3, "seed": 7, "top_k": 2, "device": "cpu", **kw})


def _strip(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_early_stopping_rules():
    s = EarlyStopping(patience_rising=2, patience_no_improve=3)
    assert [s.update(v) for v in [1.0, 0.9, 1.0, 1.1]] == [None, None, None, "val_loss_rising"]
    s = EarlyStopping(patience_rising=5, patience_no_improve=3)
    assert [s.update(v) for v in [1.0, 1.2, 1.1, 1.05]] == [None, None, None, "no_improvement"]
    s = EarlyStopping(patience_rising=2, patience_no_improve=10)
    assert [s.update(v) for v in [1.0, float("nan"), float("nan")]] == [None, None, "val_loss_rising"]


def test_fit_writes_best_top_k_and_last_and_reports(tmp_path, tiny):
    model = _model(tiny)
    train, val = _loaders()
    seen = []
    res = fit(model, train, val, _cfg(), tmp_path, on_epoch=seen.append, checkpoint_extra={"inputs": "fp123"})
    assert [r["epoch"] for r in res.history] == [1, 2, 3, 4] and seen == res.history
    assert set(res.history[0]) >= {"train_loss", "val_loss", "seconds", "val_spearman", "val_mae", "val_ndcg@10"}
    assert res.monitor == "val_spearman"[4:] and res.stop_reason == "epochs"
    best = max(res.history, key=lambda r: (r["val_spearman"], -r["epoch"]))
    assert res.best_epoch == best["epoch"] and res.best_metrics["spearman"] == best["val_spearman"]
    assert res.best_checkpoint == tmp_path / "best.pt" and res.last_checkpoint == tmp_path / "last.pt"
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(["best.pt", "last.pt", *(p.name for p in res.top_k)]) and len(res.top_k) == 2
    assert res.top_k[0].name == f"epoch_{res.best_epoch:04d}.pt"
    assert res.n_params == sum(p.numel() for p in model.parameters())
    assert res.total_seconds == pytest.approx(sum(r["seconds"] for r in res.history))
    assert res.efficiency == pytest.approx(res.n_params / res.total_seconds)
    # the model is left at its best epoch's weights, and best.pt reloads to the same predictions
    loaded, extra = load_checkpoint(tmp_path / "best.pt")
    assert extra["inputs"] == "fp123" and extra["epoch"] == res.best_epoch and extra["monitor"] == "spearman"
    y_true, y_pred = evaluate(model, val)
    y_true2, y_pred2 = evaluate(loaded, val)
    assert y_pred.shape == (16, 1) and (y_true == y_true2).all() and (y_pred == y_pred2).all()


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path, tiny):
    model = tiny.model("sec2sec").eval()
    batch = tiny.batch(model, b=2)
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, {"fingerprint": "abc", "metrics": {"a": 1.0}})
    assert not list(path.parent.glob(".*tmp"))  # no temporary left behind
    loaded, extra = load_checkpoint(path)
    assert type(loaded) is type(model) and loaded.model_name == "sec2sec" and loaded.config == model.config
    assert extra == {"fingerprint": "abc", "metrics": {"a": 1.0}}
    assert torch.equal(loaded(batch).pred, model(batch).pred)
    bare = type(model)(model.config)  # built without the registry: cannot be rebuilt from a checkpoint
    with pytest.raises(ValueError, match="model_name is empty"):
        save_checkpoint(tmp_path / "x.pt", bare)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_fixed_seed_gives_identical_runs_on_cpu(tiny):
    runs = [fit(_model(tiny), *_loaders(), _cfg(epochs=3)) for _ in range(2)]
    assert _strip(runs[0].history) == _strip(runs[1].history)
    other = fit(_model(tiny), *_loaders(), _cfg(epochs=3, seed=8))
    assert _strip(other.history) != _strip(runs[0].history)


def test_resume_continues_exactly(tmp_path, tiny):
    straight = fit(_model(tiny), *_loaders(), _cfg(epochs=4))
    first = fit(_model(tiny), *_loaders(), _cfg(epochs=2), tmp_path)
    assert len(first.history) == 2
    resumed = fit(_model(tiny), *_loaders(), _cfg(epochs=4), tmp_path)
    assert _strip(resumed.history) == _strip(straight.history)
    assert resumed.best_epoch == straight.best_epoch
    again = fit(_model(tiny), *_loaders(), _cfg(epochs=4), tmp_path)  # finished: nothing left to train
    assert _strip(again.history) == _strip(straight.history)


def test_resume_with_other_config_starts_afresh(tmp_path, tiny):
    fit(_model(tiny), *_loaders(), _cfg(epochs=2), tmp_path)
    with pytest.warns(UserWarning, match="another model/training config") as caught:
        res = fit(_model(tiny), *_loaders(), _cfg(epochs=1, lr=1e-3), tmp_path)
    assert [w.filename for w in caught if "another model" in str(w.message)] == [__file__]  # points at fit's caller
    assert len(res.history) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "epoch_0001.pt", "last.pt"]  # old run's gone
    fresh = fit(_model(tiny), *_loaders(), _cfg(epochs=1), tmp_path / "other", resume=False)
    assert len(fresh.history) == 1


def test_early_stop_is_reported(tiny):
    res = fit(_model(tiny), *_loaders(), _cfg(epochs=30, lr=0.3, patience_rising=1, patience_no_improve=2))
    assert res.stop_reason in ("val_loss_rising", "no_improvement") and len(res.history) < 30


def test_train_config_validation():
    with pytest.raises(ValueError, match="lr=0"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="device='tpu'"):
        TrainConfig(device="tpu")
    with pytest.raises(ValueError, match="epochs=-1"):
        TrainConfig(epochs=-1)
    with pytest.raises(TypeError):
        TrainConfig(5)  # keyword-only


def test_bad_monitor_and_missing_target(tiny):
    with pytest.raises(ValueError, match="monitor='auc'"):
        fit(_model(tiny), *_loaders(), _cfg(epochs=1, monitor="auc"))
    no_target = [{k: v for k, v in s.items() if k != "target"} for s in _samples(8, 0)]
    with pytest.raises(ValueError, match="'target'"):
        fit(_model(tiny), DataLoader(no_target, batch_size=4), DataLoader(no_target, batch_size=4), _cfg(epochs=1))
    assert math.isfinite(fit(_model(tiny), *_loaders(), _cfg(epochs=1)).history[0]["val_loss"])


# ------------------------------------------------------------------------------------------ paper training settings
def _frames(b: int = 4) -> dict[str, torch.Tensor]:
    """Frames whose left half is bright: a mirrored frame is bright on the right."""
    x = torch.zeros(b, 2, 3, 8, 8)
    x[..., :4] = 1.0
    seg = torch.zeros(b, 3, 2, 3, 8, 8)
    seg[..., :4] = 1.0
    return {"vision": x, "vision_seg": seg, "target": torch.zeros(b, 1)}


def test_hflip_batch_mirrors_whole_videos_with_probability_p():
    from models.engine import hflip_batch

    batch = _frames()
    none, every = hflip_batch(batch, 0.0), hflip_batch(batch, 1.0)
    assert torch.equal(none["vision"], batch["vision"])
    assert every["vision"][..., 4:].eq(1).all() and every["vision"][..., :4].eq(0).all()
    assert every["vision_seg"][..., 4:].eq(1).all() and torch.equal(every["target"], batch["target"])
    assert batch["vision"][..., :4].eq(1).all()  # the caller's batch is untouched
    big = _frames(400)
    half = hflip_batch(big, 0.5, torch.Generator().manual_seed(0))
    flipped = half["vision"][:, 0, 0, 0, 7].eq(1)  # per video: mirrored or not
    assert 150 < int(flipped.sum()) < 250
    assert torch.equal(half["vision"][:, :, :, :, 7].eq(1).all(dim=(1, 2, 3)), flipped)  # every frame of a video
    assert torch.equal(half["vision_seg"][..., 7].eq(1).all(dim=(1, 2, 3, 4)), flipped)  # both keys, same draw


def test_fit_trains_on_mirrored_frames_only_when_hflip_is_set(tiny):
    seen: list[float] = []  # mean brightness of the right half of every training batch's frames
    model = _model(tiny)
    original = model.compute_logits

    def spy(batch):
        if model.training and "vision" in batch:
            seen.append(float(batch["vision"][..., 4:].mean()))
        return original({k: v for k, v in batch.items() if k != "vision"})

    model.compute_logits = spy
    samples = _samples(16, 0)
    for s in samples:
        s["vision"] = _frames(1)["vision"][0]
    model.inputs = (*model.inputs, "vision")
    loader = DataLoader(samples, batch_size=8)
    fit(model, loader, loader, _cfg(epochs=1))
    assert seen and all(v == 0.0 for v in seen)
    seen.clear()
    fit(model, loader, loader, _cfg(epochs=1, hflip=1.0))
    assert seen and all(v == 1.0 for v in seen)


@pytest.mark.parametrize("kw, match", [({"hflip": 1.5}, "hflip"), ({"weight_decay": -1e-4}, "weight_decay")])
def test_train_config_refuses_bad_paper_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_weight_decay_reaches_weight_matrices_only(tiny):
    model = _model(tiny)
    opt = model.configure_optimizer(1e-3, 1e-4)
    decays = {g["weight_decay"]: sum(p.numel() for p in g["params"]) for g in opt.param_groups}
    assert set(decays) == {1e-4, 0.0} and decays[1e-4] > decays[0.0] > 0


# Learning on planted signal: each headline model trained by the engine beats the constant baseline by a margin a
# broken model misses, and the two-modality Sec2Sec beats its single-modality variants when the signal is split
# across modalities.

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
