"""Tests of models/convlstm.py: the ConvLSTM cell equations, masked frames, the pre-training schedule through the engine
(the autoencoder learns to reconstruct, then freezes), and the quartile-class variant."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from models.convlstm import ConvLSTMAutoencoder, ConvLSTMCell, quartile_thresholds
from models.engine import TrainConfig, fit, seed_everything


def test_convlstm_cell_equations():
    cell = ConvLSTMCell(2, 3)
    b_i, b_f, b_o, b_g = 0.5, -1.0, 2.0, 0.3
    with torch.no_grad():
        cell.conv.weight.zero_()
        cell.conv.bias.copy_(torch.tensor([b_i] * 3 + [b_f] * 3 + [b_o] * 3 + [b_g] * 3))
    c0 = torch.full((1, 3, 4, 5), 0.7)
    h, c = cell(torch.randn(1, 2, 4, 5), (torch.zeros(1, 3, 4, 5), c0))
    sig = torch.sigmoid
    c_expected = sig(torch.tensor(b_f)) * 0.7 + sig(torch.tensor(b_i)) * torch.tanh(torch.tensor(b_g))
    torch.testing.assert_close(c, torch.full_like(c, c_expected.item()))
    torch.testing.assert_close(h, sig(torch.tensor(b_o)) * torch.tanh(c))


def test_autoencoder_shapes_and_masked_frames_keep_the_state():
    torch.manual_seed(0)
    ae = ConvLSTMAutoencoder(channels=4, downsample=2)
    x = torch.rand(2, 5, 3, 16, 16)
    mask = torch.tensor([[True, True, False, True, False], [True] * 5])
    states, (h, c) = ae.encode(x, mask)
    assert states.shape == (2, 5, 4, 4, 4) and h.shape == c.shape == (2, 4, 4, 4)
    torch.testing.assert_close(states[0, 2], states[0, 1])  # a padded frame leaves the state as it was
    torch.testing.assert_close(h[0], states[0, 3])
    recon = ae.decode((h, c), 5)
    assert recon.shape == (2, 5, 3, 16, 16) and recon.min() >= 0 and recon.max() <= 1
    assert ConvLSTMAutoencoder(channels=4, downsample=0).decode((torch.zeros(1, 4, 8, 8),) * 2, 2).shape == (1, 2, 3, 8, 8)


def _clips(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Clips of 4 frames at one random brightness b (plus pixel noise); popularity = 0.2 + 0.6 b."""
    g = torch.Generator().manual_seed(seed)
    b = torch.rand(n, generator=g)
    frames = (b[:, None, None, None, None] + 0.05 * torch.randn(n, 4, 3, 16, 16, generator=g)).clamp(0, 1)
    text = torch.rand(n, 20, generator=g)
    return [{"vision": frames[i], "vision_mask": torch.ones(4, dtype=torch.bool), "text": text[i],
             "text_mask": torch.tensor(True), "target": torch.tensor([0.2 + 0.6 * float(b[i])])} for i in range(n)]


def _params(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def _fit_and_watch(tiny, rows, n_train, epochs, **overrides):
    """Fit through the engine; parameters of encoder / decoder / head and validation reconstruction error per epoch."""
    train, val = DataLoader(rows[:n_train], batch_size=8, shuffle=True), DataLoader(rows[n_train:], batch_size=16)
    seed_everything(0)
    model = tiny.model("convlstm-ae", dropout=0.0, **overrides)
    val_batch = {k: torch.stack([r[k] for r in rows[n_train:]]) for k in rows[0]}
    parts = {"encoder": model.autoencoder.encoder, "decoder": model.autoencoder.decoder, "head": model.head}
    snaps, errors = [], []

    def watch(_=None):
        snaps.append({k: _params(m) for k, m in parts.items()})
        model.eval()
        with torch.no_grad():
            errors.append(float(model(val_batch).extras["recon_error"].mean()))

    watch()
    fit(model, train, val, TrainConfig(epochs=epochs, lr=3e-3, device="cpu", patience_no_improve=epochs,
                                       patience_rising=epochs), on_epoch=watch)
    changed = {k: [not torch.equal(a[k], b[k]) for a, b in zip(snaps, snaps[1:])] for k in parts}
    return changed, errors, val_batch


def test_pretraining_learns_to_reconstruct_then_freezes_the_autoencoder(tiny):
    rows = _clips(64)
    changed, errors, val_batch = _fit_and_watch(tiny, rows, 48, 6, pretrain_epochs=5)
    assert changed == {"encoder": [True] * 5 + [False], "decoder": [True] * 5 + [False], "head": [True] * 6}
    mean_frame = torch.stack([r["vision"] for r in rows[:48]]).mean(0)
    trivial = float(((val_batch["vision"] - mean_frame) ** 2).mean())  # reconstructing every clip as the mean clip
    assert errors[5] <= 0.5 * trivial, (errors, trivial)  # observed 0.021 vs 0.079: it encodes the clip
    assert errors[6] == pytest.approx(errors[5])  # frozen autoencoder: the same reconstructions


def test_finetune_encoder_lets_the_task_train_the_encoder_but_not_the_decoder(tiny):
    changed, _, _ = _fit_and_watch(tiny, _clips(24), 16, 2, pretrain_epochs=1, finetune_encoder=True)
    assert changed == {"encoder": [True, True], "decoder": [True, False], "head": [True, True]}


def test_quartile_variant_adds_a_class_head_and_its_cross_entropy(tiny):
    edges = quartile_thresholds(np.arange(1, 9) / 10)  # 0.1 … 0.8
    assert edges == pytest.approx((0.275, 0.45, 0.625))
    model = tiny.model("convlstm-ae", quartile_edges=edges).eval()
    plain = tiny.model("convlstm-ae").eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    batch = tiny.batch(model, b=4)
    batch["target"] = torch.tensor([[0.1], [0.3], [0.5], [0.9]])  # classes 0, 1, 2, 3
    out = model(batch)
    q = out.extras["quartile_logits"]
    assert q.shape == (4, 1, 4)
    ce = torch.nn.functional.cross_entropy(q[:, 0], torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(out.loss, plain(batch).loss + ce)
    with pytest.raises(ValueError, match="quartile_edges"):
        tiny.model("convlstm-ae", quartile_edges=(0.5, 0.4, 0.6))
    with pytest.raises(ValueError, match="needs 'vision'"):
        tiny.model("convlstm-ae", modalities=("text",))
    with pytest.raises(ValueError, match="frame_size=16 is not divisible"):
        tiny.model("convlstm-ae", ae_downsample=5)
