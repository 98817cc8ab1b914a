"""Tests of models/sec2sec.py: the named variants read their modalities, the attention variants return segment
weights, and the prediction comes from the last real segment."""

from __future__ import annotations

import pytest
import torch

from models import create_model


@pytest.mark.parametrize("name", ["sec2sec-attn", "sec2sec-attn-wang"])
def test_sec2sec_attention_variants_return_segment_weights(tiny, name):
    model = tiny.model(name).eval()
    batch = tiny.batch(model, b=2)
    batch["vision_seg_mask"] = torch.tensor([[True, True, False], [True, True, True]])
    batch["audio_seg_mask"] = torch.tensor([[True, False, False], [True, True, True]])
    w = model(batch).extras["segment_attention"]
    assert w.shape == (2, 3)
    torch.testing.assert_close(w.sum(1), torch.ones(2))
    assert w[0, 2] == 0  # a segment with neither frames nor audio gets no attention


def test_sec2sec_variants_read_their_modalities(tiny):
    assert tiny.model("sec2sec-audio").inputs == ("audio_seg",)
    assert tiny.model("sec2sec-vision").inputs == ("vision_seg",)
    assert tiny.model("sec2sec-sa-sa").config.second_layer == "sa"
    with pytest.raises(ValueError, match="second_layer='ca' needs both"):
        create_model("sec2sec", modalities=("audio",))
    assert tiny.model("sec2sec-attn").config.temporal == "attention-pool"
    assert tiny.model("sec2sec-attn-wang").config.temporal == "attention-lstm"
    with pytest.raises(ValueError, match="temporal='gru'"):
        create_model("sec2sec", temporal="gru")
    with pytest.raises(ValueError, match="attention_values='keys'"):
        create_model("sec2sec-attn", attention_values="keys")


def test_sec2sec_predicts_from_last_real_segment(tiny):
    """Padding segments after the last real one do not change the prediction."""
    model = tiny.model("sec2sec").eval()
    batch = tiny.batch(model, b=1)
    short = {k: v.clone() for k, v in batch.items()}
    for key in ("vision_seg", "audio_seg"):
        short[f"{key}_mask"][0, 2] = False
    base = model(short).pred
    short["vision_seg"][0, 2] = 0.77
    torch.testing.assert_close(model(short).pred, base)
