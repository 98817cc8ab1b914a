"""Multimodal Co-attention Transformer (MCAT) for apparent personality (dissertation Ch. 3).

Visual encoder: ViT-style patches of N frames with hierarchical positional encoding (sinusoidal patch position +
sinusoidal frame position, added to each patch before projection, eq. 3.5; eq. 3.5 taken literally is symmetric in
frame and patch index, so by default the two encodings use disjoint halves of the dims — ``hierarchical_pe="sum"``
is the literal formula, see models.encoders.hierarchical_positional_encoding). Audio encoder: FC over the flattened
MFCC. Text encoder: FC over the bag-of-words vector. Three symmetric sub-blocks: SA per modality (eq. 3.6), then each
modality queries the stack of the other two (eq. 3.7: vision attends over [audio, text], …). Predictor:
sigmoid(FC(concat(F_v, F_a, F_t))) with one output per trait (eq. 3.8).

Deviation on purpose: the paper collapses each modality to one vector (I_v of width d, "expanded to [1, d]"), so its
self-attention is over one token — a no-op — and its co-attention query sees exactly two keys. Here each modality keeps
a token axis (one token per frame — or per patch —, one per chunk of ``audio_chunk`` MFCC frames, ``vector_tokens``
learned tokens for the bag of words) and the sub-block output is a mask-aware mean over tokens.
``token_mode="pooled"`` restores the paper's one-token reading (audio is then exactly one FC over the flattened MFCC).
On cached embeddings (``input_kind="embeddings"``) the 100 frame vectors are mean-pooled into ``vision_emb_groups=10``
tokens, and the text is ``text_emb_groups=1`` token, the transcript's stored sentence vector
(models.encoders.ClipConfig):
attention over 100 + 15 + 64 embedding tokens cost more per epoch than MCAT's whole raw front end (a linear patch
projection), which left nothing for the frozen encoder to save.
The paper's FC(Norm(·)) sub-layers are our post-norm AttentionBlock (see models.attention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from models.attention import AttentionBlock
from models.base import VidModel, build_config, masked_mean
from models.encoders import MODALITY_KEYS, ClipConfig, build_modality_encoder, load_pretrained
from models.registry import register_model

__all__ = ["MCAT", "MCATConfig"]


@dataclass(kw_only=True)
class MCATConfig(ClipConfig):
    """MCAT configuration: whole-clip geometry (ClipConfig) plus the co-attention stack."""

    task: str = "personality"  # default task of MCAT
    modalities: tuple[str, ...] = ("vision", "audio", "text")  # whole-clip keys; each queries the stack of the others
    sa_layers: int = 1  # self-attention blocks per modality (eq. 3.6)
    ca_layers: int = 1  # co-attention blocks per modality (eq. 3.7)

    def __post_init__(self) -> None:
        super().__post_init__()
        mods = tuple(self.modalities)
        if not mods or len(set(mods)) != len(mods) or any(m not in MODALITY_KEYS for m in mods):
            raise ValueError(f"modalities={self.modalities!r}; expected distinct keys from {list(MODALITY_KEYS)}")
        if self.sa_layers < 0 or self.ca_layers < 0:
            raise ValueError(f"sa_layers={self.sa_layers}, ca_layers={self.ca_layers}; expected >= 0")


class MCAT(VidModel):
    """Multimodal co-attention transformer (see module docstring).

    Shapes:
        batch["vision"] (B, T, 3, H, W) + "vision_mask" (B, T); batch["audio"] (B, n_mfcc, F) + "audio_mask" (B, F) or (B,);
        batch["text"] (B, V) + "text_mask" (B,) → logits (B, K); extras["modality_embeddings"] (B, M, D)
    """

    def __init__(self, config: MCATConfig) -> None:
        super().__init__(config)
        cfg = config
        self.modalities = tuple(cfg.modalities)
        self.encoders = nn.ModuleDict({m: build_modality_encoder(m, cfg) for m in self.modalities})
        self.inputs = tuple(self.encoders[m].input_key for m in self.modalities)  # raw keys or their embeddings

        def blocks(n: int) -> nn.ModuleList:
            return nn.ModuleList(
                AttentionBlock(cfg.dim, cfg.heads, ff_mult=cfg.ff_mult, dropout=cfg.dropout, norm=cfg.norm)
                for _ in range(n)
            )

        self.sa = nn.ModuleDict({m: blocks(cfg.sa_layers) for m in self.modalities})
        n_ca = cfg.ca_layers if len(self.modalities) > 1 else 0  # one modality has nothing to co-attend to
        self.ca = nn.ModuleDict({m: blocks(n_ca) for m in self.modalities})
        self.n_ca = n_ca
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(len(self.modalities) * cfg.dim, self.spec.k))
        if cfg.pretrained_path:
            load_pretrained(self.encoders, cfg.pretrained_path)

    def compute_logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x: dict[str, Tensor] = {}
        mask: dict[str, Tensor] = {}
        for m in self.modalities:
            x[m], mask[m] = self.encoders[m](batch)
            for blk in self.sa[m]:  # eq. 3.6: I_m = Block(z_m)
                x[m] = blk(x[m], x_mask=mask[m])[0]
        for layer in range(self.n_ca):  # eq. 3.7: F_v = Block(I_v, context=[I_a, I_t]), symmetric for a and t
            new = {}
            for m in self.modalities:
                others = [o for o in self.modalities if o != m]
                ctx = torch.cat([x[o] for o in others], dim=1)
                ctx_mask = torch.cat([mask[o] for o in others], dim=1)
                new[m] = self.ca[m][layer](x[m], ctx, x_mask=mask[m], context_mask=ctx_mask)[0]
            x = new
        feats = torch.stack([masked_mean(x[m], mask[m]) for m in self.modalities], dim=1)  # (B, M, D)
        logits = self.head(feats.flatten(1))  # eq. 3.8 (sigmoid applied by VidModel.forward)
        return logits, {"modality_embeddings": feats}


@register_model("mcat")
def mcat(**overrides: Any) -> MCAT:
    """MCAT with the paper's three modalities; personality by default."""
    return MCAT(build_config(MCATConfig, overrides))  # type: ignore[arg-type]
