"""Sec2Sec co-attention transformer for video emotion (dissertation Ch. 2; conference paper 002).

Per 1-second segment i: a visual encoder over its m frames and an audio encoder over its 3-channel MFCC
(MFCC, Δ, ΔΔ) give token sets z_iv, z_ia; a co-attention block (SA, then CA between the two modalities, eq. 2.3–2.4)
gives F_iv, F_ia; F_i = FC([F_iv; F_ia]) (eq. 2.5); an LSTM runs over the segment sequence (eq. 2.6) and an FC +
sigmoid on its last step predicts (valence, arousal).

Deviations from the paper, on purpose:

* The paper's encoders are pre-trained R(2+1)D / ResNet-18 that output one vector per segment and modality, so
  its SA and CA attend over a single token — a no-op (softmax over one key is 1). Here the encoders are small CNNs
  trained from scratch that keep tokens: T·grid² spatial tokens per segment for vision (hierarchical sinusoidal
  PE over frame and grid cell) and ceil(F/4) time tokens for audio. ``token_mode="pooled"`` restores the paper's
  one-token-per-modality reading so both can be compared.
* The "last step" of the LSTM is the last segment that has any real frames or audio (packed sequences), so short
  videos padded to S segments are not predicted from padding.

* Interpretability (§2.4.4, Fig. 2.7) swaps the LSTM for the attention-LSTM of Wang et al. 2016 [100] and reads its
  softmax weights as "the contribution of each second". In [100] the prediction is h* = tanh(W_p r + W_x h_N), r = Σ α_t
  h_t: the last state h_N reaches the head directly and already summarises every second, so α is free to stay near
  uniform and says little (on planted data its recency lift is +0.05…0.1 where the truth is +1.3). That reading is
  kept as ``temporal="attention-lstm"`` (``sec2sec-attn-wang``). The interpretable variant ``sec2sec-attn``
  (``temporal="attention-pool"``) scores each second from its LSTM state plus a sinusoidal encoding of its distance
  to the clip's last real second, α = softmax_t(wᵀ tanh(W_h h_t + W_e pe(end − t))), and predicts only from the
  pooled per-second features r = Σ α_t F_t (``attention_values="segments"``; ``"states"`` pools h_t instead): every
  path from a second to the prediction goes through α_t, so α is that second's share of the prediction. The distance
  encoding gives the scorer the position the paper's question is about (recency is relative to the end of clips of
  different lengths); it does not say which positions matter — that is learned (on planted data α recovers the
  planted last-3-seconds weighting; see tests/models/test_interpret.py).

Heads on pretrained embeddings (``input_kind="embeddings"``): the streams read ``vision_seg_emb`` (B, S, T, D_v) and
``audio_seg_emb`` (B, S, D_a), one cached vector per frame / per second (:mod:`features.embed`) — the paper's own
setting of one pretrained vector per segment and modality. The CNNs are replaced by an
:class:`~models.encoders.EmbeddingProjection` (T frame tokens per segment for vision, one token for audio); the
co-attention, the LSTM and the head are unchanged.

Variants (registered): ``sec2sec`` (SA-CA), ``sec2sec-sa-sa``, ``sec2sec-audio``, ``sec2sec-vision`` (one modality,
two SA layers), ``sec2sec-attn`` (attention pooling over seconds, above) and ``sec2sec-attn-wang`` (the attention-LSTM
of [100] as published); both attention variants return their per-second weights in ``extras["segment_attention"]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.attention import AttentionBlock
from models.base import ModelConfig, VidModel, build_config, check_shape, masked_mean
from models.encoders import (
    INPUT_KINDS,
    EmbeddingProjection,
    FrameCNN,
    MfccCNN,
    hierarchical_positional_encoding,
    load_pretrained,
    pool_tokens,
    sinusoidal_encoding,
)
from models.registry import register_model

__all__ = ["Sec2Sec", "Sec2SecConfig"]

_STREAMS = ("vision", "audio")


@dataclass(kw_only=True)
class Sec2SecConfig(ModelConfig):
    """Sec2Sec configuration (input geometry, widths, variant switches)."""

    task: str = "emotion"  # default task of Sec2Sec
    modalities: tuple[str, ...] = ("vision", "audio")  # segment streams: "vision" reads vision_seg, "audio" audio_seg
    second_layer: str = "ca"  # "ca": SA then co-attention (SA-CA, default); "sa": two self-attention layers (SA-SA)
    temporal: str = "lstm"  # "lstm": last step; "attention-lstm": Wang et al.; "attention-pool": see module docstring
    attention_values: str = "segments"  # attention-pool only: pool "segments" (F_t) or "states" (h_t)
    n_segments: int = 15  # S, 1-second segments per video
    frames_per_segment: int = 1  # T, frames per segment (m in the paper)
    frame_size: int = 64  # H = W of each frame
    n_mfcc: int = 40  # MFCC coefficients per audio frame
    mfcc_frames: int = 32  # F, MFCC frames per 1-second segment (set from the pack: 101 at the store's 10 ms hop)
    vision_grid: int = 4  # spatial tokens per frame side; each frame gives vision_grid² tokens
    cnn_width: int = 32  # base channel width of the from-scratch CNN encoders
    lstm_layers: int = 1  # stacked LSTM layers (Fig. 2.8 sweeps 1–5)
    lstm_hidden: int = 64  # LSTM hidden width
    input_kind: str = "raw"  # "raw": frames + MFCC per segment; "embeddings": cached pretrained-encoder vectors
    vision_emb_dim: int = 512  # D_v of ``vision_seg_emb`` (input_kind="embeddings")
    audio_emb_dim: int = 768  # D_a of ``audio_seg_emb`` (input_kind="embeddings")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind={self.input_kind!r}; expected one of {list(INPUT_KINDS)}")
        if self.vision_emb_dim < 1 or self.audio_emb_dim < 1:
            raise ValueError(f"vision_emb_dim={self.vision_emb_dim}, audio_emb_dim={self.audio_emb_dim}; "
                             "expected both >= 1")
        mods = tuple(self.modalities)
        if not mods or len(set(mods)) != len(mods) or any(m not in _STREAMS for m in mods):
            raise ValueError(f"modalities={self.modalities!r}; expected a non-empty subset of {_STREAMS}, no repeats")
        if self.second_layer not in ("ca", "sa"):
            raise ValueError(f"second_layer={self.second_layer!r}; expected 'ca' or 'sa'")
        if self.second_layer == "ca" and len(mods) != 2:
            raise ValueError(f"second_layer='ca' needs both modalities; got modalities={mods!r} (use 'sa')")
        if self.temporal not in ("lstm", "attention-lstm", "attention-pool"):
            raise ValueError(f"temporal={self.temporal!r}; expected 'lstm', 'attention-lstm' or 'attention-pool'")
        if self.attention_values not in ("segments", "states"):
            raise ValueError(f"attention_values={self.attention_values!r}; expected 'segments' or 'states'")
        for name in ("n_segments", "frames_per_segment", "frame_size", "n_mfcc", "mfcc_frames", "vision_grid",
                     "cnn_width", "lstm_layers", "lstm_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}; expected >= 1")


class Sec2Sec(VidModel):
    """Sec2Sec co-attention transformer (see module docstring).

    Shapes:
        batch["vision_seg"] (B, S, T, 3, H, W), batch["vision_seg_mask"] (B, S),
        batch["audio_seg"] (B, S, 3, n_mfcc, F), batch["audio_seg_mask"] (B, S);
        input_kind="embeddings": batch["vision_seg_emb"] (B, S, T, D_v), batch["audio_seg_emb"] (B, S, D_a)
        (same masks, keyed ``<key>_mask``)
        → logits (B, K); extras["segment_attention"] (B, S) for temporal="attention-lstm" / "attention-pool"
    """

    def __init__(self, config: Sec2SecConfig) -> None:
        super().__init__(config)
        cfg = config
        d = cfg.dim
        self.modalities = tuple(cfg.modalities)
        self.embedded = cfg.input_kind == "embeddings"
        self.inputs = tuple(f"{m}_seg_emb" if self.embedded else f"{m}_seg" for m in self.modalities)
        encoders: dict[str, nn.Module] = {}
        if self.embedded:
            if "vision" in self.modalities:
                encoders["vision"] = EmbeddingProjection(in_dim=cfg.vision_emb_dim, dim=d,
                                                         n_positions=cfg.frames_per_segment)
            if "audio" in self.modalities:
                encoders["audio"] = EmbeddingProjection(in_dim=cfg.audio_emb_dim, dim=d, n_positions=1)
        if "vision" in self.modalities and not self.embedded:
            encoders["vision"] = FrameCNN(d, grid=cfg.vision_grid, width=cfg.cnn_width)
            pe = hierarchical_positional_encoding(cfg.frames_per_segment, cfg.vision_grid**2, d).flatten(0, 1)  # split
            self.register_buffer("vision_pe", pe, persistent=False)  # (T·grid², D)
        if "audio" in self.modalities and not self.embedded:
            encoders["audio"] = MfccCNN(d, width=cfg.cnn_width)
            n_audio = math.ceil(math.ceil(cfg.mfcc_frames / 2) / 2)  # two stride-2 convs
            self.register_buffer("audio_pe", sinusoidal_encoding(n_audio, d), persistent=False)  # (F', D)
        self.encoders = nn.ModuleDict(encoders)
        block = dict(heads=cfg.heads, ff_mult=cfg.ff_mult, dropout=cfg.dropout, norm=cfg.norm)
        self.first = nn.ModuleDict({m: AttentionBlock(d, **block) for m in self.modalities})
        self.second = nn.ModuleDict({m: AttentionBlock(d, **block) for m in self.modalities})
        self.fuse = nn.Linear(len(self.modalities) * d, d)  # eq. 2.5: F_i = FC(concat(F_iv, F_ia))
        h = cfg.lstm_hidden
        self.lstm = nn.LSTM(d, h, num_layers=cfg.lstm_layers, batch_first=True,
                            dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0)
        if cfg.temporal == "attention-lstm":
            self.att_proj = nn.Linear(h, h)
            self.att_score = nn.Linear(h, 1, bias=False)
            self.att_out = nn.Linear(2 * h, h)
        if cfg.temporal == "attention-pool":
            self.att_proj = nn.Linear(h, h)
            self.att_pos = nn.Linear(d, h, bias=False)
            self.att_score = nn.Linear(h, 1, bias=False)
            self.register_buffer("end_pe", sinusoidal_encoding(cfg.n_segments, d), persistent=False)  # (S, D)
            self.att_out = nn.Linear(d if cfg.attention_values == "segments" else h, h)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(h, self.spec.k))
        if cfg.pretrained_path:
            load_pretrained(self.encoders, cfg.pretrained_path)

    def _encode(self, stream: str, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Tokens of every segment of one stream.

        Shapes:
            → tokens (B·S, N, D), token mask (B·S, N), segment mask (B, S)
        """
        cfg: Sec2SecConfig = self.config  # type: ignore[assignment]
        if self.embedded:
            return self._encode_embedded(stream, batch)
        key = f"{stream}_seg"
        x = batch[key]
        s = cfg.n_segments
        if stream == "vision":
            t, fs = cfg.frames_per_segment, cfg.frame_size
            check_shape(key, x, (None, s, t, 3, fs, fs))
        else:
            check_shape(key, x, (None, s, 3, cfg.n_mfcc, cfg.mfcc_frames))
        b = x.shape[0]
        seg_mask = self.mask(batch, key, (b, s))
        x = x * seg_mask.view(b, s, *([1] * (x.dim() - 2))).to(x.dtype)  # padding is zero whatever the caller sent
        if stream == "vision":
            tok = self.encoders["vision"](x.reshape(b * s * t, 3, fs, fs))  # (B·S·T, G, D)
            tok = tok.reshape(b * s, -1, tok.shape[-1]) + self.vision_pe.to(tok.dtype)
        else:
            tok = self.encoders["audio"](x.reshape(b * s, 3, cfg.n_mfcc, cfg.mfcc_frames))  # (B·S, F', D)
            tok = tok + self.audio_pe.to(tok.dtype)
        tmask = seg_mask.reshape(b * s, 1).expand(-1, tok.shape[1])
        if cfg.token_mode == "pooled":
            tok, tmask = pool_tokens(tok, tmask)
        return tok, tmask, seg_mask

    def _encode_embedded(self, stream: str, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Tokens of every segment from cached embeddings: T frame tokens (vision) or one token (audio) per segment.

        Shapes:
            vision_seg_emb (B, S, T, D_v) | audio_seg_emb (B, S, D_a)
            → tokens (B·S, N, D), token mask (B·S, N), segment mask (B, S); N = T or 1
        """
        cfg: Sec2SecConfig = self.config  # type: ignore[assignment]
        key, s = f"{stream}_seg_emb", cfg.n_segments
        x = batch[key]
        if stream == "vision":
            check_shape(key, x, (None, s, cfg.frames_per_segment, cfg.vision_emb_dim))
        else:
            check_shape(key, x, (None, s, cfg.audio_emb_dim))
        b = x.shape[0]
        seg_mask = self.mask(batch, key, (b, s))
        x = x * seg_mask.view(b, s, *([1] * (x.dim() - 2))).to(x.dtype)  # padding is zero whatever the caller sent
        x = x.reshape(b * s, -1, x.shape[-1])  # (B·S, N, D_in)
        tmask = seg_mask.reshape(b * s, 1).expand(-1, x.shape[1])
        tok, tmask = self.encoders[stream](x, tmask)
        if cfg.token_mode == "pooled":
            tok, tmask = pool_tokens(tok, tmask)
        return tok, tmask, seg_mask

    def compute_logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        cfg: Sec2SecConfig = self.config  # type: ignore[assignment]
        enc = {m: self._encode(m, batch) for m in self.modalities}
        masks = {m: enc[m][1] for m in self.modalities}
        # eq. 2.3: I = Block(z) (self-attention within the segment's tokens)
        inter = {m: self.first[m](enc[m][0], x_mask=masks[m])[0] for m in self.modalities}
        out = {}
        for m in self.modalities:
            if cfg.second_layer == "ca":  # eq. 2.4: F_v = Block(I_v, context=I_a) and vice versa
                other = next(o for o in self.modalities if o != m)
                out[m] = self.second[m](inter[m], inter[other], x_mask=masks[m], context_mask=masks[other])[0]
            else:
                out[m] = self.second[m](inter[m], x_mask=masks[m])[0]
        pooled = torch.cat([masked_mean(out[m], masks[m]) for m in self.modalities], dim=-1)  # (B·S, M·D)
        seg_valid = torch.stack([enc[m][2] for m in self.modalities]).any(dim=0)  # (B, S)
        b, s = seg_valid.shape
        f = self.fuse(pooled).view(b, s, -1) * seg_valid.unsqueeze(-1).to(pooled.dtype)  # (B, S, D)

        # Last real segment per video; a video with none is read for one (all-zero) step and stays finite.
        any_valid = seg_valid.any(dim=1)
        last = s - 1 - seg_valid.flip(1).to(torch.int8).argmax(dim=1)
        lengths = torch.where(any_valid, last + 1, torch.ones_like(last))
        with torch.autocast(device_type=f.device.type, enabled=False):  # LSTM in float32 (no cuDNN bf16 surprises)
            packed = pack_padded_sequence(f.float(), lengths.cpu(), batch_first=True, enforce_sorted=False)
            seq, (h_n, _) = self.lstm(packed)
        h_last = h_n[-1]  # (B, hidden), the last real step of the top layer
        extras: dict[str, Tensor] = {}
        if cfg.temporal == "attention-lstm":
            hs, _ = pad_packed_sequence(seq, batch_first=True, total_length=s)  # (B, S, hidden)
            # Wang et al. 2016: α = softmax(wᵀ tanh(W_h H)), r = Σ_s α_s h_s, h* = tanh(W_p r + W_x h_last)
            score = self.att_score(torch.tanh(self.att_proj(hs))).squeeze(-1)  # (B, S)
            step_ok = seg_valid | ~any_valid[:, None]
            alpha = score.masked_fill(~step_ok, float("-inf")).softmax(dim=1) * any_valid[:, None].to(score.dtype)
            r = (alpha.unsqueeze(-1) * hs).sum(dim=1)
            h_last = torch.tanh(self.att_out(torch.cat([r, h_last], dim=-1)))
            extras["segment_attention"] = alpha
        elif cfg.temporal == "attention-pool":
            hs, _ = pad_packed_sequence(seq, batch_first=True, total_length=s)  # (B, S, hidden)
            from_end = (last[:, None] - torch.arange(s, device=f.device)[None]).clamp(0, s - 1)  # (B, S)
            score = self.att_score(torch.tanh(self.att_proj(hs) + self.att_pos(self.end_pe[from_end].to(hs.dtype))))
            score = score.squeeze(-1)
            step_ok = seg_valid | ~any_valid[:, None]
            alpha = score.masked_fill(~step_ok, float("-inf")).softmax(dim=1) * any_valid[:, None].to(score.dtype)
            values = f.float() if cfg.attention_values == "segments" else hs
            h_last = torch.tanh(self.att_out((alpha.unsqueeze(-1) * values).sum(dim=1)))
            extras["segment_attention"] = alpha
        return self.head(h_last.to(pooled.dtype)), extras


def _factory(**variant: Any):
    def build(**overrides: Any) -> Sec2Sec:
        return Sec2Sec(build_config(Sec2SecConfig, overrides, **variant))  # type: ignore[arg-type]

    return build


register_model("sec2sec")(_factory())
register_model("sec2sec-sa-sa")(_factory(second_layer="sa"))
register_model("sec2sec-audio")(_factory(modalities=("audio",), second_layer="sa"))
register_model("sec2sec-vision")(_factory(modalities=("vision",), second_layer="sa"))
register_model("sec2sec-attn")(_factory(temporal="attention-pool"))
register_model("sec2sec-attn-wang")(_factory(temporal="attention-lstm"))
