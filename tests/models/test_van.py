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
