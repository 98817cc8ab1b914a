"""Tests of models/attention.py: shapes, masks, the single-key identity, SA/CA through one block."""

from __future__ import annotations

import pytest
import torch

from models.attention import Attention, AttentionBlock, TokenNorm


def _attn(dim: int = 8, heads: int = 2) -> Attention:
    torch.manual_seed(0)
    return Attention(dim, heads).eval()


def test_attention_shapes_and_rows_sum_to_one():
    a = _attn()
    x, c = torch.randn(2, 5, 8), torch.randn(2, 7, 8)
    out, w = a(x, c, return_weights=True)
    assert out.shape == (2, 5, 8)
    assert w.shape == (2, 2, 5, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 5))
    out_sa, w_sa = a(x, return_weights=True)
    assert out_sa.shape == (2, 5, 8) and w_sa.shape == (2, 2, 5, 5)
    assert a(x, c)[1] is None


def test_sdpa_path_equals_explicit_weights_path():
    a = _attn()
    x, c = torch.randn(2, 5, 8), torch.randn(2, 7, 8)
    mask = torch.tensor([[1, 1, 0, 1, 0, 1, 1], [0, 0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    fast, _ = a(x, c, mask)
    slow, _ = a(x, c, mask, return_weights=True)
    torch.testing.assert_close(fast, slow)


def test_single_key_is_identity_like():
    """Softmax over one key is 1: the output is W_o W_v c whatever the queries are."""
    a = _attn()
    c = torch.randn(2, 1, 8)
    out1, w = a(torch.randn(2, 4, 8), c, return_weights=True)
    out2, _ = a(torch.randn(2, 4, 8) * 10, c)
    assert torch.equal(w, torch.ones(2, 2, 4, 1))
    v = a.to_kv(c).chunk(2, dim=-1)[1]
    torch.testing.assert_close(out1, a.to_out(v).expand(2, 4, 8))
    torch.testing.assert_close(out1, out2)


def test_masked_keys_get_zero_weight_and_cannot_leak():
    a = _attn()
    x, c = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    mask = torch.tensor([[True, False, True, False]])
    out, w = a(x, c, mask, return_weights=True)
    assert torch.all(w[..., 1] == 0) and torch.all(w[..., 3] == 0)
    c2 = c.clone()
    c2[:, [1, 3]] = 1e3
    torch.testing.assert_close(a(x, c2, mask)[0], out)


def test_row_with_no_real_key_gives_zeros_not_nan():
    a = _attn()
    x, c = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    mask = torch.tensor([[False] * 4, [True, False, False, False]])
    for weights in (False, True):
        out, w = a(x, c, mask, return_weights=weights)
        assert torch.isfinite(out).all()
        assert torch.all(out[0] == 0)
        if weights:
            assert torch.all(w[0] == 0) and torch.allclose(w[1].sum(-1), torch.ones(2, 3))


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="divisible"):
        Attention(10, 3)
    with pytest.raises(ValueError, match="mask"):
        _attn()(torch.randn(2, 3, 8), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="norm"):
        AttentionBlock(8, 2, norm="group")


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_block_self_and_co_attention(norm):
    torch.manual_seed(0)
    blk = AttentionBlock(8, 2, norm=norm).train()
    x, c = torch.randn(3, 5, 8), torch.randn(3, 2, 8)
    x_mask = torch.tensor([[1, 1, 1, 0, 0]] * 3, dtype=torch.bool)
    out, w = blk(x, x_mask=x_mask, return_weights=True)
    assert out.shape == (3, 5, 8) and w.shape == (3, 2, 5, 5)
    assert torch.all(out[:, 3:] == 0)  # masked queries leave as zeros
    out_ca, w_ca = blk(x, c, x_mask=x_mask, context_mask=torch.ones(3, 2, dtype=torch.bool), return_weights=True)
    assert out_ca.shape == (3, 5, 8) and w_ca.shape == (3, 2, 5, 2)


def test_batch_norm_statistics_ignore_padding():
    """Batch-norm mode computes statistics on real tokens only: padding values cannot move real outputs."""
    torch.manual_seed(0)
    blk = AttentionBlock(8, 2, norm="batch").train()
    x = torch.randn(2, 4, 8)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    x2 = x.clone()
    x2[~mask] = 100.0
    torch.testing.assert_close(blk(x, x_mask=mask)[0], blk(x2, x_mask=mask)[0])


def test_token_norm_single_real_token_in_training_uses_running_stats():
    norm = TokenNorm(4, "batch").train()
    x = torch.randn(1, 3, 4)
    out = norm(x, torch.tensor([[True, False, False]]))
    assert torch.isfinite(out).all() and torch.all(out[0, 1:] == 0)
