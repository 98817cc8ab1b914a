"""Tiny model geometry and random batches shared by the tests of ``models/``."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models import VidModel, create_model
from models.base import example_batch

# Union of tiny geometry overrides; each model takes the fields its config has.
TINY = dict(
    dim=16, heads=2, ff_mult=2, dropout=0.0,
    # Sec2Sec
    n_segments=3, frames_per_segment=2, frame_size=16, n_mfcc=8, mfcc_frames=8, vision_grid=2, cnn_width=8,
    lstm_hidden=16,
    # MCAT / VAN (frame_size and n_mfcc shared with the above)
    n_frames=4, patch_size=8, patch_dim=4, audio_chunk=4, vocab_size=20, graph_dim=6, meta_dim=3, vector_tokens=2,
)
CLIP_MFCC_FRAMES = 16  # whole-clip F for MCAT/VAN (Sec2Sec's mfcc_frames is per segment)


def tiny_overrides(name: str, **extra: object) -> dict[str, object]:
    """TINY filtered to the fields of model ``name``'s config, plus ``extra``."""
    fields = {f.name for f in dataclasses.fields(create_model(name).config)}
    out = {k: v for k, v in TINY.items() if k in fields}
    if "audio_chunk" in fields:
        out["mfcc_frames"] = CLIP_MFCC_FRAMES
    return {**out, **extra}


def tiny_model(name: str, **extra: object) -> VidModel:
    return create_model(name, **tiny_overrides(name, **extra))


def random_batch(model: VidModel, b: int = 3, *, seed: int = 0, target: bool = True) -> dict[str, torch.Tensor]:
    """A batch with every key ``model`` reads (all masks True) at the model's configured geometry."""
    return example_batch(model, b, seed=seed, target=target)


@pytest.fixture(autouse=True)
def _small_threads():
    """Two shared cores: keep torch from oversubscribing them."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class _Tiny:
    """Helpers handed to tests through the ``tiny`` fixture (test modules cannot import conftest under importlib)."""

    overrides = staticmethod(tiny_overrides)
    model = staticmethod(tiny_model)
    batch = staticmethod(random_batch)


@pytest.fixture
def tiny() -> _Tiny:
    return _Tiny()
