"""Modality encoders trained from scratch: small CNNs (Sec2Sec), a ViT-style patch encoder with hierarchical
positional encoding (MCAT, VAN), MFCC and vector tokenisers, and the per-key encoder table MCAT/VAN build from.

Every encoder returns tokens (B, N, D) and a token mask (B, N) so attention has an axis to attend over; in the
paper-faithful ``token_mode="pooled"`` each modality is collapsed to one token (a mask-aware mean, or for audio the
single FC over the flattened MFCC matrix that the dissertation describes).

Pretrained weights are only ever read from a local file (``load_pretrained``); nothing is downloaded.

With ``input_kind="embeddings"`` the vision, audio and text encoders read the cached vectors of pretrained encoders
(``vision_emb`` (B, T, D_v), ``audio_emb`` (B, S, D_a), ``text_emb`` (B, L, D_t); :mod:`features.embed`) through an
:class:`EmbeddingProjection` instead of raw frames / MFCC / bag of words; graph and metadata are vectors either way.
A one-token text modality (``text_emb_groups=1``) reads the transcript's stored sentence vector
``text_sentence_emb`` (B, D_t) — the text encoder's own pooling (sentence-transformers pooling and normalisation) —
instead of averaging its token vectors.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ModelConfig, all_real, check_shape, mask_shape, masked_mean
from models.input_versions import check_input_versions

__all__ = [
    "MODALITY_KEYS",
    "EMBEDDING_KEYS",
    "INPUT_KINDS",
    "TEXT_SENTENCE_KEY",
    "ClipConfig",
    "EmbeddingProjection",
    "FrameCNN",
    "MfccCNN",
    "MfccTokenizer",
    "ModalityEncoder",
    "PatchEncoder",
    "VectorTokenizer",
    "build_modality_encoder",
    "hierarchical_positional_encoding",
    "input_key",
    "load_pretrained",
    "patchify",
    "pool_groups",
    "pool_tokens",
    "sinusoidal_encoding",
]


def sinusoidal_encoding(n_positions: int, dim: int) -> Tensor:
    """Transformer positional encoding (eq. 3.3–3.4): PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(·).

    Shapes:
        → (n_positions, dim) float32
    """
    if n_positions < 1 or dim < 1:
        raise ValueError(f"n_positions={n_positions}, dim={dim}; expected both >= 1")
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, two_i / dim)  # (N, ceil(D/2))
    pe = torch.zeros(n_positions, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return pe.float()


def hierarchical_positional_encoding(n_frames: int, n_patches: int, dim: int, *, mode: str = "split") -> Tensor:
    """Hierarchical PE of MCAT: PE[t, p] = PE_frame[t] + PE_patch[p], both sinusoidal.

    ``mode="sum"`` is eq. 3.5 / 4.3 literally: both encodings span all ``dim`` dims. That sum is symmetric —
    PE[t, p] == PE[p, t], so patch 2 of frame 1 and patch 1 of frame 2 get the same code — which the paper does not
    address. ``mode="split"`` (default) keeps the additive form but gives the frame encoding the first ⌊dim/2⌋ dims
    and the patch encoding the rest (each zero elsewhere), so every (frame, patch) pair gets a distinct code.

    Shapes:
        → (T, P, dim) float32
    """
    if mode == "sum":
        return sinusoidal_encoding(n_frames, dim)[:, None, :] + sinusoidal_encoding(n_patches, dim)[None, :, :]
    if mode != "split":
        raise ValueError(f"mode={mode!r}; expected 'split' or 'sum'")
    if dim < 2:
        raise ValueError(f"dim={dim}; expected >= 2 for mode='split'")
    half = dim // 2
    frame = F.pad(sinusoidal_encoding(n_frames, half), (0, dim - half))
    patch = F.pad(sinusoidal_encoding(n_patches, dim - half), (half, 0))
    return frame[:, None, :] + patch[None, :, :]


def patchify(frames: Tensor, patch_size: int) -> Tensor:
    """Split each frame into non-overlapping p×p patches, row-major, each flattened channel-first.

    Shapes:
        frames (B, T, C, H, W) → (B, T, P, C·p·p) with P = (H/p)·(W/p)
    """
    b, t, c, h, w = frames.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"frame size {h}×{w} is not divisible by patch_size={patch_size}")
    x = frames.reshape(b, t, c, h // patch_size, patch_size, w // patch_size, patch_size)
    x = x.permute(0, 1, 3, 5, 2, 4, 6)  # (B, T, H/p, W/p, C, p, p)
    return x.reshape(b, t, (h // patch_size) * (w // patch_size), c * patch_size * patch_size)


def pool_tokens(tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Collapse a token axis to one token (mask-aware mean): the paper-faithful single-vector modality.

    Shapes:
        tokens (B, N, D), mask (B, N) → (B, 1, D), (B, 1)
    """
    return masked_mean(tokens, mask).unsqueeze(1), mask.any(dim=1, keepdim=True)


def pool_groups(x: Tensor, mask: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Mask-aware mean over ``groups`` contiguous runs of k = ceil(N / groups) positions (the last run may be short).

    g_j = Σ_{n in run j} m_n x_n / max(1, Σ_{n in run j} m_n); run j is real when any of its positions is. groups >= N
    returns the input unchanged; groups = 1 is :func:`pool_tokens`.

    Shapes:
        x (B, N, D), mask (B, N) → (B, ceil(N / k), D), (B, ceil(N / k))
    """
    if groups < 1:
        raise ValueError(f"groups={groups}; expected >= 1")
    b, n, d = x.shape
    if groups >= n:
        return x, mask
    k = math.ceil(n / groups)
    g = math.ceil(n / k)
    w = F.pad(mask.to(x.dtype), (0, g * k - n)).view(b, g, k, 1)
    total = (F.pad(x, (0, 0, 0, g * k - n)).view(b, g, k, d) * w).sum(dim=2)
    count = w.sum(dim=2)
    return total / count.clamp(min=1.0), count[..., 0] > 0


def _conv(cin: int, cout: int, stride: int | tuple[int, int]) -> nn.Sequential:
    # GroupNorm, not BatchNorm: no batch statistics, so padded (masked) frames cannot leak into real ones.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(1, cout), nn.GELU())


class FrameCNN(nn.Module):
    """Small from-scratch CNN over single frames, keeping a grid of spatial tokens (stands in for R(2+1)D).

    Three 3×3 stride-2 convs (widths w, 2w, 2w) with GroupNorm + GELU, adaptive average pool to grid×grid, 1×1 conv
    to D.

    Shapes:
        x (N, 3, H, W) → (N, grid², D)
    """

    def __init__(self, dim: int, *, grid: int = 4, width: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        self.grid = grid
        self.body = nn.Sequential(
            _conv(in_channels, width, 2), _conv(width, 2 * width, 2), _conv(2 * width, 2 * width, 2)
        )
        self.head = nn.Conv2d(2 * width, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.head(F.adaptive_avg_pool2d(self.body(x), self.grid))  # (N, D, g, g)
        return y.flatten(2).transpose(1, 2)


class MfccCNN(nn.Module):
    """Small from-scratch CNN over a 3-channel (MFCC, Δ, ΔΔ) "image", keeping time tokens (stands in for ResNet-18).

    Two 3×3 stride-2 convs (widths w, 2w) with GroupNorm + GELU, mean over the MFCC axis, linear to D.

    Shapes:
        x (N, 3, n_mfcc, F) → (N, ceil(F/4), D)
    """

    def __init__(self, dim: int, *, width: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(in_channels, width, 2), _conv(width, 2 * width, 2))
        self.head = nn.Linear(2 * width, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x).mean(dim=2).transpose(1, 2))


class PatchEncoder(nn.Module):
    """ViT-style encoder of uniformly sampled frames with MCAT's hierarchical positional encoding.

    Each frame is cut into P patches; PE_frame[t] + PE_patch[p] (same width as a raw patch, C·p·p, as the paper says;
    ``hierarchical_pe`` = "split" | "sum" | "none", see hierarchical_positional_encoding) is added to every patch
    *before* the linear projection to ``patch_dim`` (l). Then either one token per frame
    (its P projected patches concatenated, l·P, then linear to D — the paper's "concatenated visual embedding") or
    one token per patch (linear l → D).

    Shapes:
        x (B, T, 3, H, W), mask (B, T) → tokens (B, T, D) or (B, T·P, D), token mask (B, T) or (B, T·P)
    """

    def __init__(
        self,
        *,
        frame_size: int,
        patch_size: int,
        n_frames: int,
        patch_dim: int,
        dim: int,
        hierarchical_pe: str = "split",
        tokens: str = "frames",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if frame_size % patch_size:
            raise ValueError(f"frame_size={frame_size} is not divisible by patch_size={patch_size}")
        if tokens not in ("frames", "patches"):
            raise ValueError(f"vision_tokens={tokens!r}; expected 'frames' or 'patches'")
        self.patch_size = patch_size
        self.tokens = tokens
        self.n_patches = (frame_size // patch_size) ** 2
        raw = in_channels * patch_size * patch_size
        if hierarchical_pe not in ("split", "sum", "none"):
            raise ValueError(f"hierarchical_pe={hierarchical_pe!r}; expected 'split', 'sum' or 'none'")
        pe = None
        if hierarchical_pe != "none":
            pe = hierarchical_positional_encoding(n_frames, self.n_patches, raw, mode=hierarchical_pe)
        self.register_buffer("pe", pe, persistent=False)
        self.proj = nn.Linear(raw, patch_dim)
        self.out = nn.Linear(patch_dim * self.n_patches if tokens == "frames" else patch_dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        t = x.shape[1]
        patches = patchify(x, self.patch_size)  # (B, T, P, C·p·p)
        if self.pe is not None:
            patches = patches + self.pe[:t].to(patches.dtype)
        e = self.proj(patches)  # (B, T, P, l)
        if self.tokens == "frames":
            return self.norm(self.out(e.flatten(2))), mask
        return self.norm(self.out(e)).flatten(1, 2), mask.repeat_interleave(self.n_patches, dim=1)


class MfccTokenizer(nn.Module):
    """Whole-clip MFCC matrix → tokens: chunks of ``chunk`` MFCC frames, each flattened and linearly projected.

    chunk = F is exactly the paper's "FC over the flattened MFCC" (one token); smaller chunks keep a time axis
    (sinusoidal chunk-position encoding added). F is zero-padded up to a multiple of ``chunk``.

    ``mask`` is per MFCC frame (B, F) — False on the zero padding after a short clip — or one flag per clip (B,).
    A token is real when any of its frames is, so the tokens of a clip's padding are masked and more padding leaves
    the real tokens, and therefore any masked consumer, unchanged.

    Shapes:
        x (B, n_mfcc, F), mask (B, F) or (B,) → tokens (B, ceil(F/chunk), D), token mask (B, ceil(F/chunk))
    """

    def __init__(self, *, n_mfcc: int, n_frames: int, chunk: int, dim: int) -> None:
        super().__init__()
        if not 1 <= chunk:
            raise ValueError(f"audio_chunk={chunk}; expected >= 1")
        self.chunk = min(chunk, n_frames)
        self.n_tokens = math.ceil(n_frames / self.chunk)
        self.pad = self.n_tokens * self.chunk - n_frames
        self.proj = nn.Linear(n_mfcc * self.chunk, dim)
        pe = sinusoidal_encoding(self.n_tokens, dim) if self.n_tokens > 1 else None
        self.register_buffer("pe", pe, persistent=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b, n_mfcc, _ = x.shape
        x = F.pad(x, (0, self.pad))
        x = x.view(b, n_mfcc, self.n_tokens, self.chunk).permute(0, 2, 1, 3).reshape(b, self.n_tokens, -1)
        tokens = self.proj(x)
        if self.pe is not None:
            tokens = tokens + self.pe.to(tokens.dtype)
        if mask.dim() == 1:
            return self.norm(tokens), mask[:, None].expand(b, self.n_tokens)
        token_mask = F.pad(mask, (0, self.pad)).view(b, self.n_tokens, self.chunk).any(dim=-1)
        return self.norm(tokens), token_mask


class VectorTokenizer(nn.Module):
    """A vector modality (bag of words, graph embedding, metadata) → ``n_tokens`` learned tokens.

    tokens = LayerNorm(reshape(W x + b, (n_tokens, D))). n_tokens = 1 is the paper's FC embedding; more tokens give
    self-attention within the modality something to attend over (a single token would make it a no-op).

    Shapes:
        x (B, V), mask (B,) → tokens (B, n_tokens, D), token mask (B, n_tokens)
    """

    def __init__(self, *, in_dim: int, n_tokens: int, dim: int) -> None:
        super().__init__()
        if n_tokens < 1:
            raise ValueError(f"vector_tokens={n_tokens}; expected >= 1")
        self.n_tokens = n_tokens
        self.proj = nn.Linear(in_dim, n_tokens * dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        return self.norm(self.proj(x).view(b, self.n_tokens, -1)), mask[:, None].expand(b, self.n_tokens)


class EmbeddingProjection(nn.Module):
    """Cached encoder vectors → model tokens: z_j = LayerNorm(W x̄_j + b) + PE[j] (sinusoidal over the token positions).

    The small per-modality encoder of a head trained on pretrained embeddings; the frozen encoder already did the
    heavy lifting, so one linear map to the model width is the whole front end. With ``groups`` < N the N vectors are
    first mean-pooled (mask-aware) into ``groups`` contiguous runs, x̄_j (:func:`pool_groups`): a frozen encoder's
    vectors of neighbouring frames or words are close to each other, and attention cost grows with the square of the
    token count, so fewer, pooled tokens are what a head on cached embeddings trains fastest on. ``groups=None``
    keeps one token per vector.

    Shapes:
        x (B, N, D_in), mask (B, N) → tokens (B, G, D), token mask (B, G); G = N, or ceil(N / ceil(N / groups))
    """

    def __init__(self, *, in_dim: int, dim: int, n_positions: int, groups: int | None = None) -> None:
        super().__init__()
        if in_dim < 1 or n_positions < 1:
            raise ValueError(f"in_dim={in_dim}, n_positions={n_positions}; expected both >= 1")
        if groups is not None and groups < 1:
            raise ValueError(f"groups={groups}; expected >= 1 or None")
        self.groups = groups if groups is not None and groups < n_positions else None
        if self.groups is not None:
            k = math.ceil(n_positions / self.groups)
            n_positions = math.ceil(n_positions / k)
        self.proj = nn.Linear(in_dim, dim)
        self.norm = nn.LayerNorm(dim)
        pe = sinusoidal_encoding(n_positions, dim) if n_positions > 1 else None
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if self.groups is not None:
            x, mask = pool_groups(x, mask, self.groups)
        tokens = self.norm(self.proj(x))
        if self.pe is not None:
            tokens = tokens + self.pe[: x.shape[1]].to(tokens.dtype)
        return tokens, mask


#: what a model reads: "raw" (frames, MFCC, bag of words) or "embeddings" (cached pretrained-encoder vectors)
INPUT_KINDS: tuple[str, ...] = ("raw", "embeddings")
#: whole-clip modality → the pack key of its cached embeddings (input_kind="embeddings")
EMBEDDING_KEYS: Mapping[str, str] = {"vision": "vision_emb", "audio": "audio_emb", "text": "text_emb"}
#: the pack key of the transcript's sentence vector (stage ``embed_text``'s ``sentence``), read by a one-token text
#: modality on embeddings (``text_emb_groups=1``) in place of ``text_emb``
TEXT_SENTENCE_KEY = "text_sentence_emb"


def input_key(modality: str, cfg: "ClipConfig") -> str:
    """The batch key a whole-clip modality is read from under ``cfg.input_kind``: the modality itself (raw), its
    cached vectors (:data:`EMBEDDING_KEYS`), or for text pooled to one token the sentence vector
    (:data:`TEXT_SENTENCE_KEY`)."""
    if getattr(cfg, "input_kind", "raw") == "embeddings" and modality in EMBEDDING_KEYS:
        if modality == "text" and getattr(cfg, "text_emb_groups", None) == 1:
            return TEXT_SENTENCE_KEY
        return EMBEDDING_KEYS[modality]
    return modality


@dataclass(kw_only=True)
class ClipConfig(ModelConfig):
    """Input geometry of the whole-clip modalities (vision, audio, text, graph, meta) for MCAT and VAN."""

    n_frames: int = 100  # T, frames in ``vision`` (MCAT: 100 at 64×64)
    frame_size: int = 64  # H = W of ``vision`` frames
    patch_size: int = 8  # ViT patch side p; frame_size must be divisible by it
    patch_dim: int = 8  # l, width of one projected patch
    hierarchical_pe: str = "split"  # PE_frame + PE_patch on patches: "split" (distinct codes), "sum" (eq. 3.5), "none"
    vision_tokens: str = "frames"  # "frames": one token per frame; "patches": one token per patch (T·P tokens)
    n_mfcc: int = 40  # MFCC coefficients in ``audio``
    mfcc_frames: int = 480  # F, MFCC frames in ``audio`` (whole clip, padded/cropped by the store)
    audio_chunk: int = 16  # MFCC frames per audio token (= mfcc_frames in token_mode="pooled")
    vocab_size: int = 1000  # V, length of the ``text`` bag-of-words vector
    graph_dim: int = 128  # width of the ``graph`` (frozen GAT) embedding
    meta_dim: int = 8  # width of the ``meta`` vector
    egemaps_dim: int = 88  # width of the ``egemaps`` vector (the 88 eGeMAPS v02 functionals, paper 004)
    vector_tokens: int = 4  # tokens made from each vector modality (= 1 in token_mode="pooled")
    input_kind: str = "raw"  # "raw": frames / MFCC / bag of words; "embeddings": cached pretrained-encoder vectors
    vision_emb_dim: int = 512  # D_v of ``vision_emb`` (one vector per frame; T = n_frames)
    audio_emb_dim: int = 768  # D_a of ``audio_emb`` (one vector per 1-second segment)
    audio_tokens: int = 15  # S, segments in ``audio_emb``
    text_emb_dim: int = 768  # D_t of ``text_emb`` (one vector per token) and of ``text_sentence_emb``
    text_tokens: int = 64  # L, tokens in ``text_emb``
    # Model tokens made from the cached vectors (contiguous runs, mask-aware mean; see EmbeddingProjection). Fewer
    # tokens keep a head on embeddings cheap: attention over 100 frame + 64 word vectors costs more than the
    # whole raw front end. vision_emb_groups=10 gives MCAT's 100 frames 10 tokens (one per ~1.5 s of a 15-s clip);
    # text_emb_groups=1 is one sentence token, read from the stored sentence vector ``text_sentence_emb`` (the text
    # encoder's own pooling), not from ``text_emb``. >= T (or L) keeps every vector.
    vision_emb_groups: int = 10  # tokens from the T frame vectors of ``vision_emb``
    audio_emb_groups: int = 15  # tokens from the S segment vectors of ``audio_emb`` (15 = one per second)
    text_emb_groups: int = 1  # tokens from the L token vectors of ``text_emb``; 1 = the sentence vector instead

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind={self.input_kind!r}; expected one of {list(INPUT_KINDS)}")
        for name in ("n_frames", "frame_size", "patch_size", "patch_dim", "n_mfcc", "mfcc_frames", "audio_chunk",
                     "vocab_size", "graph_dim", "meta_dim", "egemaps_dim", "vector_tokens", "vision_emb_dim",
                     "audio_emb_dim",
                     "audio_tokens", "text_emb_dim", "text_tokens", "vision_emb_groups", "audio_emb_groups",
                     "text_emb_groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}; expected >= 1")
        if self.frame_size % self.patch_size:
            raise ValueError(f"frame_size={self.frame_size} is not divisible by patch_size={self.patch_size}")
        if self.hierarchical_pe not in ("split", "sum", "none"):
            raise ValueError(f"hierarchical_pe={self.hierarchical_pe!r}; expected 'split', 'sum' or 'none'")
        if self.vision_tokens not in ("frames", "patches"):
            raise ValueError(f"vision_tokens={self.vision_tokens!r}; expected 'frames' or 'patches'")


# Which config fields give each whole-clip key's width; adding a vector modality is one line here.
_VECTOR_DIMS: Mapping[str, str] = {"text": "vocab_size", "graph": "graph_dim", "meta": "meta_dim",
                                   "egemaps": "egemaps_dim"}
MODALITY_KEYS: tuple[str, ...] = ("vision", "audio", *_VECTOR_DIMS)


class ModalityEncoder(nn.Module):
    """Reads one key (and its mask) from the batch, checks its shape, and returns tokens + token mask.

    ``input_key`` is the batch key read: the modality itself, or with ``input_kind="embeddings"`` its cached
    embeddings (:data:`EMBEDDING_KEYS`), encoded by an :class:`EmbeddingProjection`.

    Shapes:
        batch[key]: vision (B, T, 3, H, W) | audio (B, n_mfcc, F) (mask (B, F) per frame or (B,)) | text/graph/meta
        (B, V)
        | vision_emb (B, T, D_v) | audio_emb (B, S, D_a) | text_emb (B, L, D_t) (masks (B, T) / (B, S) / (B, L))
        | text_sentence_emb (B, D_t) (mask (B,))
        → tokens (B, N, D), token mask (B, N); N = 1 in token_mode="pooled" and for text_sentence_emb; for another
        embedding key N is at most its ``*_emb_groups`` (EmbeddingProjection)
    """

    def __init__(self, key: str, cfg: ClipConfig) -> None:
        super().__init__()
        if key not in MODALITY_KEYS:
            raise ValueError(f"modality {key!r} is not supported; expected one of {list(MODALITY_KEYS)}")
        self.key = key
        self.input_key = input_key(key, cfg)
        self.pooled = cfg.token_mode == "pooled"
        if self.input_key == TEXT_SENTENCE_KEY:  # one vector per clip → one token
            self.expected = (None, cfg.text_emb_dim)
            self.net = EmbeddingProjection(in_dim=cfg.text_emb_dim, dim=cfg.dim, n_positions=1)
        elif self.input_key != key:
            n, width, groups = {
                "vision": (cfg.n_frames, cfg.vision_emb_dim, cfg.vision_emb_groups),
                "audio": (cfg.audio_tokens, cfg.audio_emb_dim, cfg.audio_emb_groups),
                "text": (cfg.text_tokens, cfg.text_emb_dim, cfg.text_emb_groups)}[key]
            self.expected = (None, n, width)
            self.net = EmbeddingProjection(in_dim=width, dim=cfg.dim, n_positions=n, groups=groups)
        elif key == "vision":
            self.expected: tuple[int | None, ...] = (None, cfg.n_frames, 3, cfg.frame_size, cfg.frame_size)
            self.net: nn.Module = PatchEncoder(
                frame_size=cfg.frame_size, patch_size=cfg.patch_size, n_frames=cfg.n_frames, patch_dim=cfg.patch_dim,
                dim=cfg.dim, hierarchical_pe=cfg.hierarchical_pe, tokens=cfg.vision_tokens,
            )
        elif key == "audio":
            self.expected = (None, cfg.n_mfcc, cfg.mfcc_frames)
            chunk = cfg.mfcc_frames if self.pooled else cfg.audio_chunk
            self.net = MfccTokenizer(n_mfcc=cfg.n_mfcc, n_frames=cfg.mfcc_frames, chunk=chunk, dim=cfg.dim)
        else:
            width = getattr(cfg, _VECTOR_DIMS[key])
            self.expected = (None, width)
            n_tokens = 1 if self.pooled else cfg.vector_tokens
            self.net = VectorTokenizer(in_dim=width, n_tokens=n_tokens, dim=cfg.dim)

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        key = self.input_key
        x = batch[key]
        check_shape(key, x, self.expected)
        if key == TEXT_SENTENCE_KEY:
            return self._sentence(x, batch.get(f"{key}_mask"))
        frame_mask = key == "audio"  # raw MFCC: a flag per frame (B, F) or one per clip (B,)
        mask = batch.get(f"{key}_mask")
        shape = mask_shape(key, x.shape, None if mask is None else mask.shape)
        if mask is None:
            mask = torch.ones(shape, dtype=torch.bool, device=x.device)
        mask = mask.to(device=x.device, dtype=torch.bool)
        # Masked items are zero by contract; zero them anyway so a caller's stale values cannot leak.
        if not all_real(mask):
            if frame_mask and mask.dim() == 2:
                keep = mask[:, None, :].to(x.dtype)  # (B, 1, F): the MFCC frames of the clip, not its padding
            else:
                keep = mask.view(*mask.shape, *([1] * (x.dim() - mask.dim()))).to(x.dtype)
            x = x * keep
        tokens, tmask = self.net(x, mask)
        if self.pooled and tokens.shape[1] > 1:
            tokens, tmask = pool_tokens(tokens, tmask)
        return tokens, tmask

    def _sentence(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """The sentence vector as a sequence of one token: x (B, D_t), mask (B,) or None → (B, 1, D), (B, 1)."""
        if mask is None:
            mask = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        elif tuple(mask.shape) != (x.shape[0],):
            raise ValueError(f"batch[{TEXT_SENTENCE_KEY + '_mask'!r}] has shape {tuple(mask.shape)}; expected "
                             f"{(x.shape[0],)}")
        mask = mask.to(device=x.device, dtype=torch.bool)[:, None]
        return self.net((x * mask.to(x.dtype))[:, None], mask)


def build_modality_encoder(key: str, cfg: ClipConfig) -> ModalityEncoder:
    """The encoder for whole-clip key ``key`` at the geometry in ``cfg`` (see ModalityEncoder)."""
    return ModalityEncoder(key, cfg)


def _input_keys(module: nn.Module) -> list[str]:
    """The batch keys the modality encoders inside ``module`` read."""
    return sorted({m.input_key for m in module.modules() if isinstance(getattr(m, "input_key", None), str)})


def load_pretrained(module: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a local state_dict into ``module`` (a model's ``encoders``); never downloads.

    Accepts a bare state_dict or a vidpipe checkpoint (a dict with ``state_dict``), from which keys under
    ``encoders.`` are taken, so encoders trained in one model can initialise another. Raises FileNotFoundError when
    the file is missing and ValueError when its keys or shapes do not fit, or when a vidpipe checkpoint's inputs are
    at other versions than this code's (:func:`models.input_versions.check_input_versions`).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"pretrained_path={str(path)!r} does not exist; vidpipe never downloads weights — "
            "point it at a local state_dict file or leave pretrained_path=None"
        )
    state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        if "model_name" in state:  # a vidpipe checkpoint: its encoders must have read this code's inputs
            recorded = state.get("input_versions")  # None: written before versions, read as these encoders' keys at 0
            check_input_versions(recorded, _input_keys(module) if recorded is None else None,
                                 source=f"pretrained_path={str(path)!r}")
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"pretrained_path={str(path)!r} holds {type(state).__name__}; expected a state_dict")
    if any(k.startswith("encoders.") for k in state):
        state = {k[len("encoders."):]: v for k, v in state.items() if k.startswith("encoders.")}
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch
        raise ValueError(f"pretrained_path={str(path)!r} does not fit the encoders: {err}") from err
    if len(result.missing_keys) == len(module.state_dict()):
        raise ValueError(
            f"pretrained_path={str(path)!r} has no weights for these encoders (keys: {sorted(state)[:5]}…)"
        )
    if result.missing_keys or result.unexpected_keys:
        warnings.warn(
            f"pretrained_path={str(path)!r}: missing {result.missing_keys}, unexpected {result.unexpected_keys}",
            stacklevel=2,
        )
