"""VAN: generalized multimodal co-attention over any number of modalities (dissertation Ch. 4), for popularity.

Each modality (vision, audio, the frozen graph embedding, text, metadata — any key ``models.encoders`` knows) goes
through its own encoder and its own Transformer (weights not shared, eq. 4.9), is summarised to one row, and the rows
are stacked into z_j of shape M×D (eq. 4.10). One multi-head co-attention block over the stack (eq. 4.11) gives F_j;
its M×M attention per head is returned in ``extras["modality_attention"]`` for interpretation. F_j is unstacked,
concatenated (M·D) and an FC + sigmoid predicts. A modality is added by listing it in ``modalities``.

Deviation on purpose: the paper feeds one embedding per modality to each per-modality Transformer, whose
self-attention is then over one token (a no-op). Here the per-modality Transformer runs over that modality's tokens
(frames or patches, MFCC chunks, ``vector_tokens`` learned tokens) and a mask-aware mean gives its row of z_j;
``token_mode="pooled"`` restores the single-token reading. The co-attention over the M rows is the paper's.
A modality whose mask is False is a masked key of the co-attention and contributes a zero row to the predictor.

Visual input (Table 4.1, §4.6 / Fig. 4.3): each video is cut into ``frame_segments`` = 15 equal segments, one frame is
taken from each, and the first ``first_segments`` = 2 of them are used (2 frames won Fig. 4.3's sweep over n = 1..15),
at 224² (the ``uniform_224`` frame profile) with 32×32 patches. The ``vision`` input may hold more frames (``uniform_224``
stores 2 per segment, ``uniform`` 100 over the clip): VAN keeps, for each of the first ``first_segments`` segments, the
frame whose instant ``(i + 0.5)·D/T`` is the first inside the segment, ``i_s = ceil(s·T/S − 0.5)``.
``first_segments=0`` keeps all T frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import dataclasses
import math

import torch
from torch import Tensor, nn

from models.attention import AttentionBlock
from models.base import VidModel, build_config, masked_mean
from models.encoders import MODALITY_KEYS, ClipConfig, build_modality_encoder, load_pretrained
from models.registry import register_model

__all__ = ["VAN", "VANConfig"]


@dataclass(kw_only=True)
class VANConfig(ClipConfig):
    """VAN configuration; geometry defaults follow Table 4.1 (2 frames, one from each of the first 2 of 15 segments,
    at 224², 32×32 patches)."""

    task: str = "popularity"  # default task of VAN
    modalities: tuple[str, ...] = ("vision", "audio", "graph")  # whole-clip keys stacked into the M×D matrix
    n_frames: int = 30  # T of the ``vision`` input (uniform_224: 2 per segment × 15); VAN keeps ``first_segments``
    frame_segments: int = 15  # S: the equal segments a video is cut into (§4.6)
    first_segments: int = 2  # n: one frame from each of the first n segments (Table 4.1: 2); 0 = all T frames
    frame_size: int = 224  # H = W of ``vision`` frames
    patch_size: int = 32  # ViT patch side (Table 4.1)
    patch_dim: int = 16  # l, width of one projected patch
    modality_layers: int = 1  # Transformer blocks per modality before stacking (eq. 4.9)

    def __post_init__(self) -> None:
        super().__post_init__()
        mods = tuple(self.modalities)
        if not mods or len(set(mods)) != len(mods) or any(m not in MODALITY_KEYS for m in mods):
            raise ValueError(f"modalities={self.modalities!r}; expected distinct keys from {list(MODALITY_KEYS)}")
        if self.modality_layers < 0:
            raise ValueError(f"modality_layers={self.modality_layers}; expected >= 0")
        if self.frame_segments < 1 or not 0 <= self.first_segments <= self.frame_segments:
            raise ValueError(f"frame_segments={self.frame_segments}, first_segments={self.first_segments}; expected "
                             "frame_segments >= 1 and 0 <= first_segments <= frame_segments")

    @property
    def frame_indices(self) -> tuple[int, ...]:
        """Indices into the T input frames that VAN reads: ``i_s = ceil(s·T/S − 0.5)`` for ``s < first_segments``
        (the first frame inside segment s); all T when ``first_segments`` is 0. With fewer frames than segments
        (T < S) frame s stands for segment s."""
        t, s = self.n_frames, self.frame_segments
        if self.first_segments == 0:
            return tuple(range(t))
        if t < s:
            return tuple(range(min(self.first_segments, t)))
        return tuple(min(t - 1, max(0, math.ceil(k * t / s - 0.5))) for k in range(self.first_segments))


class VAN(VidModel):
    """VAN (see module docstring).

    Shapes:
        batch["vision"] (B, T, 3, H, W) (VAN reads ``frame_indices`` of the T frames), or (B, n, 3, H, W) already cut
        to those n (``input_positions``; likewise ``vision_emb`` (B, T | n, D_v) and the masks (B, T | n));
        batch[m] per ``models.encoders.ModalityEncoder`` for m in modalities
        → logits (B, K); extras["modality_attention"] (B, H, M, M) (rows of present modalities sum to 1),
          extras["modality_embeddings"] (B, M, D)
    """

    def __init__(self, config: VANConfig) -> None:
        super().__init__(config)
        cfg = config
        self.modalities = tuple(cfg.modalities)
        self.frame_indices = cfg.frame_indices
        self.register_buffer("frame_index", torch.tensor(self.frame_indices), persistent=False)  # (n,) into T
        # the vision encoder sees only the selected frames (its frame positions are 0..n−1)
        seen = dataclasses.replace(cfg, n_frames=len(self.frame_indices))
        self.encoders = nn.ModuleDict({m: build_modality_encoder(m, seen if m == "vision" else cfg)
                                       for m in self.modalities})
        self.inputs = tuple(self.encoders[m].input_key for m in self.modalities)  # raw keys or their embeddings
        block = dict(ff_mult=cfg.ff_mult, dropout=cfg.dropout, norm=cfg.norm)
        self.transformers = nn.ModuleDict(
            {m: nn.ModuleList(AttentionBlock(cfg.dim, cfg.heads, **block) for _ in range(cfg.modality_layers))
             for m in self.modalities}
        )
        self.coattention = AttentionBlock(cfg.dim, cfg.heads, **block)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(len(self.modalities) * cfg.dim, self.spec.k))
        if cfg.pretrained_path:
            load_pretrained(self.encoders, cfg.pretrained_path)

    def input_positions(self) -> dict[str, tuple[int, ...]]:
        """``{vision key: frame_indices}`` when VAN reads only some of the T frames (see VidModel.input_positions)."""
        if "vision" not in self.modalities or len(self.frame_indices) == self.config.n_frames:
            return {}
        return {self.encoders["vision"].input_key: self.frame_indices}

    def compute_logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        cut = self.input_positions()
        for key in cut:  # frames (B, T, 3, H, W) or their embeddings (B, T, D); a loader may have cut them already
            x = batch[key]
            if x.dim() < 2 or x.shape[1] not in (self.config.n_frames, len(self.frame_indices)):
                raise ValueError(f"batch[{key!r}] has shape {tuple(x.shape)}; expected {self.config.n_frames} frames "
                                 f"(or the {len(self.frame_indices)} at frame_indices) on axis 1")
            if x.shape[1] == len(self.frame_indices):
                continue
            idx = self.frame_index.to(x.device)
            batch = {**batch, key: x.index_select(1, idx)}
            if batch.get(f"{key}_mask") is not None:
                m = batch[f"{key}_mask"]
                batch[f"{key}_mask"] = m.index_select(1, idx.to(m.device))
        rows, present = [], []
        for m in self.modalities:
            tok, tmask = self.encoders[m](batch)
            for blk in self.transformers[m]:  # z_m = Transformer(m), eq. 4.9
                tok = blk(tok, x_mask=tmask)[0]
            rows.append(masked_mean(tok, tmask))
            present.append(tmask.any(dim=1))
        z = torch.stack(rows, dim=1)  # z_j = [z_v; z_a; z_n], (B, M, D), eq. 4.10
        p = torch.stack(present, dim=1)  # (B, M)
        f, weights = self.coattention(z, x_mask=p, return_weights=True)  # F_j, eq. 4.11; weights (B, H, M, M)
        logits = self.head(f.flatten(1))  # unstack + concat (M·D), FC (+ sigmoid in VidModel.forward)
        return logits, {"modality_attention": weights, "modality_embeddings": f}


@register_model("van")
def van(**overrides: Any) -> VAN:
    """VAN over vision, audio and the graph embedding; popularity by default."""
    return VAN(build_config(VANConfig, overrides))  # type: ignore[arg-type]
