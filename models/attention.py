"""The one attention block, used both ways: self-attention (SA, ``context=None``) and co-attention (CA, ``context=``).

``Attention`` is multi-head scaled dot-product attention (Vaswani et al.; dissertation eq. 2.1–2.2 / 4.7–4.8);
``AttentionBlock`` adds the residual connection, normalisation (layer norm by default, batch norm selectable as in
Sec2Sec's Table 2.5) and the feed-forward network. Padding is handled with key masks; a query row whose keys are all
masked gets a zero message (not NaN), and masked query positions leave a block as zeros, so padding carries no signal.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import all_real

__all__ = ["Attention", "AttentionBlock", "TokenNorm"]

#: Key counts [lo, hi) whose attention on CPU runs its own softmax over scores padded with −inf to ``hi`` keys (their
#: weight is 0: the same softmax) instead of ``scaled_dot_product_attention``. torch's CPU softmax over a last axis
#: shorter than one AVX-512 vector (16 floats) takes a slow per-row path: (1,920 rows, 15) took 0.49 ms, (2,048, 16)
#: 0.04 ms, one thread; a 4-head attention over 15 keys, batch 32, forward + backward 1.8 ms by SDPA, 0.9 ms padded.
#: Below 8 keys the slow path costs less than the pad and the slice.
_PAD_KEYS = (8, 16)


def _pads_softmax(x: Tensor, n_keys: int) -> bool:
    return x.device.type == "cpu" and _PAD_KEYS[0] <= n_keys < _PAD_KEYS[1]


def _softmax(scores: Tensor) -> Tensor:
    """Softmax over the last axis (padded to ``_PAD_KEYS[1]`` first where :func:`_pads_softmax`).

    Shapes:
        scores (B, H, Nq, Nk) → (B, H, Nq, Nk)
    """
    n = scores.shape[-1]
    if not _pads_softmax(scores, n):
        return scores.softmax(dim=-1)
    return F.pad(scores, (0, _PAD_KEYS[1] - n), value=float("-inf")).softmax(dim=-1)[..., :n]


class Attention(nn.Module):
    r"""Multi-head scaled dot-product attention; queries from ``x``, keys and values from ``context`` (or ``x``).

    .. math::
        h_i = \mathrm{softmax}\big((x W_i^Q)(c W_i^K)^\top / \sqrt{D/H}\big)(c W_i^V), \qquad
        \mathrm{out} = [h_1, \dots, h_H] W^O

    Keys with ``mask`` False get weight 0. If a row has no real key at all, its weights and output are 0.
    Softmax over a single key is 1, so attention over one token is just ``W^O W^V c`` whatever the query.

    Shapes:
        x (B, Nq, D), context (B, Nk, Dc) or None (= x), mask (B, Nk) bool or None
        → out (B, Nq, D), weights (B, H, Nq, Nk) when ``return_weights`` else None
    """

    def __init__(self, dim: int, heads: int = 4, *, dropout: float = 0.0, context_dim: int | None = None) -> None:
        super().__init__()
        if dim < 1 or heads < 1 or dim % heads:
            raise ValueError(f"dim={dim}, heads={heads}: expected positive dim divisible by heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.dropout = dropout
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)

    def _split(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, H, N, D/H)

    def forward(
        self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None, *, return_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        ctx = x if context is None else context
        if x.dim() != 3 or ctx.dim() != 3 or ctx.shape[0] != x.shape[0]:
            raise ValueError(f"x {tuple(x.shape)} and context {tuple(ctx.shape)}: expected (B, Nq, D) and (B, Nk, Dc)")
        b, nq, d = x.shape
        nk = ctx.shape[1]
        q = self._split(self.to_q(x))
        k, v = (self._split(t) for t in self.to_kv(ctx).chunk(2, dim=-1))

        attn_mask = row_ok = None
        if mask is not None:
            if tuple(mask.shape) != (b, nk):
                raise ValueError(f"mask has shape {tuple(mask.shape)}; expected (B, Nk) = {(b, nk)}")
            mask = mask.to(torch.bool)
        if mask is not None and not all_real(mask):  # every key real: no mask to apply, no row to zero
            row_ok = mask.any(dim=-1)  # (B,)
            # A row with no real key would give softmax over nothing (NaN): let it attend anywhere, zero it below.
            attn_mask = (mask | ~row_ok[:, None])[:, None, None, :]  # (B, 1, 1, Nk)

        weights = None
        p = self.dropout if self.training else 0.0
        if return_weights or _pads_softmax(q, nk):
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, Nq, Nk)
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = _softmax(scores)
            # the dropout draws what scaled_dot_product_attention's own would (same shape, same generator)
            out = F.dropout(weights, p=p, training=self.training) @ v
            weights = weights.contiguous() if return_weights else None  # not a view into padded scores
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        out = self.to_out(out.transpose(1, 2).reshape(b, nq, d))
        if row_ok is not None:
            keep = row_ok.to(out.dtype)
            out = out * keep[:, None, None]
            if weights is not None:
                weights = weights * keep[:, None, None, None]
        return out, weights


class TokenNorm(nn.Module):
    """Layer norm, or batch norm whose statistics come from real tokens only (padding never shifts them).

    Shapes:
        x (B, N, D), mask (B, N) bool or None → (B, N, D); masked tokens come out as 0 in batch-norm mode
    """

    def __init__(self, dim: int, kind: str = "layer") -> None:
        super().__init__()
        if kind not in ("layer", "batch"):
            raise ValueError(f"norm={kind!r}; expected 'layer' or 'batch'")
        self.kind = kind
        self.norm = nn.LayerNorm(dim) if kind == "layer" else nn.BatchNorm1d(dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.kind == "layer":
            return self.norm(x)
        flat = x.reshape(-1, x.shape[-1])
        if mask is None:
            return self._bn(flat).view_as(x)
        sel = mask.reshape(-1).to(torch.bool)
        out = torch.zeros_like(flat)
        if sel.any():
            out[sel] = self._bn(flat[sel])
        return out.view_as(x)

    def _bn(self, flat: Tensor) -> Tensor:
        bn = self.norm
        if self.training and flat.shape[0] < 2:  # one real token: batch statistics undefined, use running ones
            return F.batch_norm(flat, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return bn(flat)


class AttentionBlock(nn.Module):
    r"""Attention + residual + norm, then feed-forward + residual + norm (post-norm Transformer layer).

    .. math::
        y = \mathrm{Norm}_1\big(x + \mathrm{Attention}(x, c)\big), \qquad
        \mathrm{out} = \mathrm{Norm}_2\big(y + \mathrm{FC}(y)\big), \quad \mathrm{FC} = W_2\,\mathrm{GELU}(W_1 y)

    The papers write FC(Norm(MultiHead(z, c, c) + z)) (eq. 2.3, 3.6, 4.9) with no residual around FC; we keep the
    standard second residual and norm of Vaswani et al., which that notation abbreviates and which trains reliably.
    SA: ``context=None`` (keys masked by ``x_mask``); CA: keys/values from ``context`` masked by ``context_mask``.

    Shapes:
        x (B, Nq, D), context (B, Nk, D) or None, x_mask (B, Nq), context_mask (B, Nk)
        → out (B, Nq, D), weights (B, H, Nq, Nk) or None; rows of queries with x_mask False are 0 in both
    """

    def __init__(
        self, dim: int, heads: int = 4, *, ff_mult: int = 2, dropout: float = 0.0, norm: str = "layer"
    ) -> None:
        super().__init__()
        self.attn = Attention(dim, heads, dropout=dropout)
        self.norm1 = TokenNorm(dim, norm)
        self.norm2 = TokenNorm(dim, norm)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        x_mask: Tensor | None = None,
        context_mask: Tensor | None = None,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if x_mask is not None and all_real(x_mask):  # no padding to exclude from the norms or to zero after
            x_mask = None
        key_mask = x_mask if context is None else context_mask
        a, weights = self.attn(x, context, key_mask, return_weights=return_weights)
        y = self.norm1(x + self.drop(a), x_mask)
        out = self.norm2(y + self.drop(self.ff(y)), x_mask)
        if x_mask is not None:
            keep = x_mask.to(out.dtype)
            out = out * keep.unsqueeze(-1)
            if weights is not None:  # padding queries attend nowhere
                weights = weights * keep[:, None, :, None]
        return out, weights
