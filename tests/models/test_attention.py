"""Tests of models/attention.py: shapes, masks, the single-key identity, SA/CA through one block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import attention
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


def _sdpa_reference(a: Attention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Self-attention as ``scaled_dot_product_attention`` computes it, the mask always applied and rows without a
    real key zeroed: what the padded softmax and the all-real shortcut must reproduce."""
    b, n, d = x.shape
    q = a._split(a.to_q(x))
    k, v = (a._split(t) for t in a.to_kv(x).chunk(2, dim=-1))
    row_ok = mask.any(dim=-1)
    attn_mask = (mask | ~row_ok[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=a.dropout if a.training else 0.0)
    return a.to_out(out.transpose(1, 2).reshape(b, n, d)) * row_ok[:, None, None].to(x.dtype)


def _out_and_grads(fn, module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    torch.manual_seed(1)  # the same dropout draws on both sides
    out = fn()
    return out.detach(), torch.autograd.grad(out.pow(2).sum(), [x, *module.parameters()])


@pytest.mark.parametrize("n_keys", [8, 15])
@pytest.mark.parametrize("masked", [False, True])
def test_padded_softmax_gives_sdpas_output_gradients_and_dropout(n_keys, masked):
    torch.manual_seed(0)
    a = Attention(16, 4, dropout=0.3).train()
    x = torch.randn(5, n_keys, 16, requires_grad=True)
    mask = torch.ones(5, n_keys, dtype=torch.bool)
    if masked:
        mask[1, 3:] = False
        mask[2] = False  # a row with no real key
    assert attention._pads_softmax(x, n_keys) and not attention._pads_softmax(x, 16)
    out, grads = _out_and_grads(lambda: a(x, mask=mask)[0], a, x)
    ref, ref_grads = _out_and_grads(lambda: _sdpa_reference(a, x, mask), a, x)
    torch.testing.assert_close(out, ref)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)
    a.eval()
    torch.testing.assert_close(a(x, mask=mask)[0], _sdpa_reference(a, x, mask))
    w = a(x, mask=mask, return_weights=True)[1]
    assert w.shape == (5, 4, n_keys, n_keys) and w.is_contiguous()
    torch.testing.assert_close(w[mask.any(-1)].sum(-1), torch.ones(int(mask.any(-1).sum()), 4, n_keys))


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_a_block_skips_an_all_real_mask_with_the_same_output_weights_and_gradients(norm, monkeypatch):
    torch.manual_seed(0)
    blk = AttentionBlock(16, 4, dropout=0.2, norm=norm).train()
    x = torch.randn(4, 15, 16, requires_grad=True)
    mask = torch.ones(4, 15, dtype=torch.bool)
    assert attention.all_real(mask) and not attention.all_real(torch.tensor([True, False]))
    out, grads = _out_and_grads(lambda: blk(x, x_mask=mask)[0], blk, x)
    weights = blk(x, x_mask=mask, return_weights=True)[1]
    monkeypatch.setattr(attention, "all_real", lambda m: False)  # the mask applied everywhere
    ref, ref_grads = _out_and_grads(lambda: blk(x, x_mask=mask)[0], blk, x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(weights, blk(x, x_mask=mask, return_weights=True)[1])
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)
