"""Tests of models/van.py: the paper's visual input (Table 4.1, Fig. 4.3)."""

from __future__ import annotations

import pytest
import torch

from models import create_model
from models.base import example_batch
from models.van import VANConfig

_TINY = dict(dim=16, heads=2, dropout=0.0, patch_size=8, patch_dim=4, n_mfcc=4, mfcc_frames=8, audio_chunk=4,
             graph_dim=6, vector_tokens=2)


def test_defaults_are_the_papers_two_frames_from_the_first_two_of_fifteen_segments_at_224():
    cfg = VANConfig()
    assert (cfg.frame_size, cfg.patch_size, cfg.frame_segments, cfg.first_segments) == (224, 32, 15, 2)
    assert cfg.frame_indices == (0, 2)  # uniform_224: 30 frames, 2 per segment → the first frame of segments 0, 1
    assert VANConfig(n_frames=100).frame_indices == (0, 7)  # uniform: frame 7 at 0.075·D is the first in [D/15, 2D/15)
    assert VANConfig(n_frames=15, first_segments=15).frame_indices == tuple(range(15))
    assert VANConfig(first_segments=0).frame_indices == tuple(range(30))
    with pytest.raises(ValueError, match="first_segments"):
        VANConfig(first_segments=16)


def test_van_reads_only_the_selected_frames():
    torch.manual_seed(0)
    model = create_model("van", n_frames=30, frame_size=16, modalities=("vision", "audio"), **_TINY).eval()
    batch = example_batch(model, 2, target=False)
    assert model.frame_indices == (0, 2)
    changed = dict(batch)
    changed["vision"] = batch["vision"].clone()
    changed["vision"][:, [1, 3, 4, 29]] = torch.rand(2, 4, 3, 16, 16)  # frames VAN does not read
    with torch.no_grad():
        assert torch.equal(model(batch).pred, model(changed).pred)
        changed["vision"][:, 2] = 1.0 - changed["vision"][:, 2]  # the second segment's frame
        assert not torch.equal(model(batch).pred, model(changed).pred)
    every = create_model("van", n_frames=30, frame_size=16, modalities=("vision", "audio"), first_segments=0,
                         **_TINY).eval()
    other = dict(batch)
    other["vision"] = batch["vision"].clone()
    other["vision"][:, 1] = 1.0 - other["vision"][:, 1]
    with torch.no_grad():
        assert not torch.equal(every(batch).pred, every(other).pred)  # first_segments=0 reads every frame


def test_van_on_embeddings_reads_the_same_frames_and_keeps_no_index_in_its_checkpoint():
    torch.manual_seed(0)
    model = create_model("van", n_frames=30, input_kind="embeddings", vision_emb_dim=8, audio_emb_dim=8,
                         audio_tokens=3, **_TINY).eval()
    assert model.inputs == ("vision_emb", "audio_emb", "graph") and model.frame_index.tolist() == [0, 2]
    assert "frame_index" not in model.state_dict()  # derived from the config, not a weight
    batch = example_batch(model, 2, target=False)
    changed = {**batch, "vision_emb": batch["vision_emb"].clone()}
    changed["vision_emb"][:, [1, 3, 29]] = 5.0  # frame vectors VAN does not read
    with torch.no_grad():
        assert torch.equal(model(batch).pred, model(changed).pred)
        changed["vision_emb"][:, 2] = 5.0
        assert not torch.equal(model(batch).pred, model(changed).pred)


def _loss_and_grads(model, batch):
    model.zero_grad()
    out = model(batch)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("input_kind", ["raw", "embeddings"])
def test_a_loader_cut_to_the_frames_van_reads_gives_the_same_loss_and_gradients(input_kind):
    import numpy as np

    from models.data import PackLoader

    torch.manual_seed(0)
    model = create_model("van", n_frames=30, frame_size=16, input_kind=input_kind, vision_emb_dim=8, audio_emb_dim=8,
                         audio_tokens=3, **_TINY)
    key = model.inputs[0]
    assert model.input_positions() == {key: (0, 2)}
    rng = np.random.default_rng(0)
    example = example_batch(model, 6)
    arrays = {k: v.numpy() for k, v in example.items()}
    if input_kind == "raw":
        arrays[key] = rng.integers(0, 256, arrays[key].shape, dtype=np.uint8)  # as a pack stores frames
    else:
        arrays[key][:, [1, 3, 29]] = np.nan  # vectors VAN does not read (it drops them before any arithmetic)
    arrays[f"{key}_mask"][:, 1::2] = False
    arrays[f"{key}_mask"][::2, 2] = False  # a frame VAN reads, missing in half the videos
    keys = [*model.inputs, *(f"{k}_mask" for k in model.inputs), "target"]
    (whole,) = list(PackLoader(arrays, keys, np.arange(6), batch_size=6))
    (cut,) = list(PackLoader(arrays, keys, np.arange(6), batch_size=6, positions=model.input_positions()))
    assert whole[key].shape[1] == 30 and cut[key].shape[1] == 2 and cut[f"{key}_mask"].shape == (6, 2)
    loss_cut, grads_cut = _loss_and_grads(model, cut)
    assert torch.isfinite(loss_cut)
    loss_whole, grads_whole = _loss_and_grads(model, whole)
    assert torch.equal(loss_cut, loss_whole)
    assert grads_cut.keys() == grads_whole.keys() and len(grads_cut) > 10
    assert all(torch.equal(grads_cut[n], grads_whole[n]) for n in grads_cut)



def test_van_on_embeddings_trains_as_with_every_mask_applied_and_sdpas_softmax(monkeypatch):
    """A batch without padding skips the masking work (models.base.all_real), and attention over 8–15 keys pads its
    softmax on CPU (models.attention): the training loss and gradients, dropout included, are those of the plain
    computation (every mask applied, scaled_dot_product_attention)."""
    from models import attention, base, encoders

    torch.manual_seed(0)
    model = create_model("van", input_kind="embeddings", vision_emb_dim=8, audio_emb_dim=8, audio_tokens=15,
                         **{**_TINY, "dropout": 0.2}).train()
    batch = example_batch(model, 4)
    assert model.encoders["audio"](batch)[0].shape[1] == 15 and attention._pads_softmax(batch["audio_emb"], 15)

    def step():
        torch.manual_seed(1)  # the same dropout draws
        return _loss_and_grads(model, batch)

    loss, grads = step()
    for module in (attention, base, encoders):
        monkeypatch.setattr(module, "all_real", lambda mask: False)
    monkeypatch.setattr(attention, "_pads_softmax", lambda x, n_keys: False)
    ref_loss, ref_grads = step()
    torch.testing.assert_close(loss, ref_loss)
    assert grads.keys() == ref_grads.keys() and len(grads) > 10
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name])

def test_van_refuses_a_frame_count_that_is_neither_t_nor_the_frames_it_reads():
    model = create_model("van", n_frames=30, frame_size=16, modalities=("vision", "audio"), **_TINY)
    batch = example_batch(model, 2)
    batch["vision"], batch["vision_mask"] = batch["vision"][:, :5], batch["vision_mask"][:, :5]
    with pytest.raises(ValueError, match=r"expected 30 frames \(or the 2 at frame_indices\)"):
        model(batch)


def test_van_modality_attention_rows_sum_to_one_and_modalities_are_configuration(tiny):
    model = tiny.model("van", modalities=("vision", "audio", "graph", "text", "meta")).eval()
    batch = tiny.batch(model, b=2)
    batch["audio_mask"] = torch.tensor([True, False])
    out = model(batch)
    att = out.extras["modality_attention"]
    assert att.shape == (2, 2, 5, 5)
    torch.testing.assert_close(att[0].sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(att[1, :, [0, 2, 3, 4]].sum(-1), torch.ones(2, 4))
    assert torch.all(att[1, :, :, 1] == 0)  # the missing modality gets no attention
    assert torch.all(att[1, :, 1] == 0)  # …and sends none
    assert out.extras["modality_embeddings"].shape == (2, 5, 16)
