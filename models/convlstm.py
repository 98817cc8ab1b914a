"""ConvLSTM autoencoder + dual-transformer late fusion for video success (student report, paper 001), a baseline.

The report (a draft, read as an idea, not a spec) pre-trains a ConvLSTM autoencoder (Shi et al. 2015; Nielsen 2020)
without labels to reconstruct frame sequences (MSE), takes the encoder's output as the visual embedding, runs it and
a transcript (text) branch "through two transformers, concat at the end, then pass to MLP" (its Fig. 1 note), trained
with MSE; MAE is reported; a quartile-class variant is mentioned.

Here:

* Autoencoder: ``ae_downsample`` stride-2 convs per frame → a ConvLSTM cell over the T frames (masked frames leave
  the state unchanged) → final state (h_T, c_T). The decoder is a second ConvLSTM cell started from (h_T, c_T) that
  reads h_T at every step (the "repeated encoder vector" of Nielsen's design) and unrolls T steps; transposed convs
  and a sigmoid turn each step into a frame. L_rec = mean over real frames of the per-frame MSE.
* Visual embedding: the encoder's hidden state at every frame, spatially averaged and projected to D (one token per
  frame, sinusoidal frame position added), so the visual transformer has a token axis to attend over.
* Each branch (visual; every other modality through the shared encoders) has its own transformer
  (``modality_layers`` AttentionBlocks), is mean-pooled, and the rows are concatenated and regressed by an MLP.
* Training through the one engine loop: the objective is recon_weight·L_rec + L_task every epoch. During the first
  ``pretrain_epochs`` epochs the autoencoder learns from L_rec only (the visual tokens reach the regressor through a
  stop-gradient, so the task never shapes the unsupervised embedding); afterwards the autoencoder is frozen (L_rec
  still reported, without gradient, so the validation loss stays one quantity) — or, with ``finetune_encoder``,
  its encoder is fine-tuned by the task loss. The regressor trains from the first epoch on the (stop-gradient)
  embeddings, a warm start the report's two-phase recipe does not have. The model counts its own epochs
  (models.fusion.StagedFusionModel).
* Quartile variant: ``quartile_edges`` = the training targets' quartiles (see :func:`quartile_thresholds`) adds a
  4-class head per output trained with cross-entropy on the target's quartile class; the regression prediction is
  unchanged and the class logits are in extras["quartile_logits"].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ModelOutput, build_config, check_shape, masked_mean
from models.encoders import sinusoidal_encoding
from models.fusion import FusionConfig, StagedFusionModel, gate, mlp_head
from models.registry import register_model

__all__ = ["ConvLSTMAE", "ConvLSTMAEConfig", "ConvLSTMAutoencoder", "ConvLSTMCell", "quartile_thresholds"]


# ---------------------------------------------------------------------------------------------------------- helpers


def quartile_thresholds(y_train: Any) -> tuple[float, float, float]:
    """The 25th, 50th and 75th percentiles of the training targets (all outputs pooled) — ``quartile_edges``.

    Shapes:
        y_train (N,) or (N, K) → three floats
    """
    y = np.asarray(y_train, dtype=np.float64).ravel()
    if y.size == 0 or not np.isfinite(y).all():
        raise ValueError(f"y_train has {y.size} values or non-finite ones; expected finite training targets")
    q = np.quantile(y, [0.25, 0.5, 0.75])
    return float(q[0]), float(q[1]), float(q[2])


# ----------------------------------------------------------------------------------------------------------- blocks


class ConvLSTMCell(nn.Module):
    r"""Convolutional LSTM cell (Shi et al. 2015, without peepholes).

    .. math::
        [i, f, o, g] = W * [x_t, h_{t-1}] + b, \quad c_t = \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g), \quad
        h_t = \sigma(o) \odot \tanh(c_t)

    with * a 3×3 convolution (same padding).

    Shapes:
        x (B, C_in, H, W), state (h, c) each (B, C, H, W) → (h, c) each (B, C, H, W)
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(in_channels + channels, 4 * channels, 3, padding=1)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        i, f, o, g = self.conv(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class ConvLSTMAutoencoder(nn.Module):
    """Frame-sequence autoencoder: per-frame stride-2 convs → ConvLSTM encoder → ConvLSTM decoder → transposed convs.

    Shapes:
        ``encode``: x (B, T, 3, H, W), mask (B, T) → states (B, T, C, H/2^n, W/2^n), final (h, c)
        ``decode``: final (h, c), T → frames (B, T, 3, H, W) in [0, 1]
    """

    def __init__(self, *, channels: int, downsample: int, in_channels: int = 3) -> None:
        super().__init__()
        down: list[nn.Module] = []
        cin = in_channels
        for _ in range(downsample):
            down += [nn.Conv2d(cin, channels, 3, stride=2, padding=1), nn.GroupNorm(1, channels), nn.GELU()]
            cin = channels
        if not downsample:
            down += [nn.Conv2d(cin, channels, 3, padding=1), nn.GELU()]
        self.down = nn.Sequential(*down)
        self.encoder = ConvLSTMCell(channels, channels)
        self.decoder = ConvLSTMCell(channels, channels)
        up: list[nn.Module] = []
        for _ in range(max(downsample - 1, 0)):
            up += [nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1), nn.GELU()]
        up.append(nn.ConvTranspose2d(channels, in_channels, 4, stride=2, padding=1) if downsample
                  else nn.Conv2d(channels, in_channels, 3, padding=1))
        self.up = nn.Sequential(*up)

    def encode(self, x: Tensor, mask: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        b, t = x.shape[:2]
        feats = self.down(x.flatten(0, 1))
        feats = feats.view(b, t, *feats.shape[1:])  # (B, T, C, H', W')
        h = torch.zeros_like(feats[:, 0])
        c = torch.zeros_like(h)
        states = []
        for step in range(t):
            h_new, c_new = self.encoder(feats[:, step], (h, c))
            m = mask[:, step].view(b, 1, 1, 1)
            h, c = torch.where(m, h_new, h), torch.where(m, c_new, c)  # a padded frame leaves the state as it was
            states.append(h)
        return torch.stack(states, dim=1), (h, c)

    def decode(self, state: tuple[Tensor, Tensor], t: int) -> Tensor:
        h, c = state
        context = h
        outs = []
        for _ in range(t):
            h, c = self.decoder(context, (h, c))
            outs.append(h)
        y = torch.stack(outs, dim=1)  # (B, T, C, H', W')
        frames = torch.sigmoid(self.up(y.flatten(0, 1)))
        return frames.view(*y.shape[:2], *frames.shape[1:])


# ----------------------------------------------------------------------------------------------------------- config


@dataclass(kw_only=True)
class ConvLSTMAEConfig(FusionConfig):
    """ConvLSTM-autoencoder late-fusion regressor (paper 001 idea): autoencoder, branch transformers, schedule."""

    task: str = "popularity"  # default task (the report predicts TikTok success)
    modalities: tuple[str, ...] = ("vision", "text")  # "vision" → the autoencoder; the others → shared encoders
    n_frames: int = 16  # T, frames the autoencoder reads and reconstructs
    ae_channels: int = 16  # ConvLSTM channels (the report found a small hidden size works best)
    ae_downsample: int = 2  # stride-2 convs before the ConvLSTM (frame side / 2^n); frame_size must divide by 2^n
    pretrain_epochs: int = 5  # epochs the autoencoder trains on reconstruction before it is frozen
    finetune_encoder: bool = False  # after pre-training, let the task loss fine-tune the encoder (default: frozen)
    recon_weight: float = 1.0  # weight of the reconstruction MSE in the objective
    quartile_edges: tuple[float, ...] = ()  # () = off; three ascending training-target quartiles = quartile variant

    def __post_init__(self) -> None:
        super().__post_init__()
        if "vision" not in self.modalities:
            raise ValueError(f"modalities={self.modalities!r}; the ConvLSTM autoencoder needs 'vision'")
        if self.ae_channels < 1 or self.ae_downsample < 0 or self.pretrain_epochs < 0:
            raise ValueError(f"ae_channels={self.ae_channels}, ae_downsample={self.ae_downsample}, "
                             f"pretrain_epochs={self.pretrain_epochs}; expected >= 1, >= 0, >= 0")
        if self.frame_size % (2**self.ae_downsample):
            raise ValueError(f"frame_size={self.frame_size} is not divisible by 2**ae_downsample={2**self.ae_downsample}")
        if self.recon_weight < 0:
            raise ValueError(f"recon_weight={self.recon_weight}; expected >= 0")
        q = tuple(self.quartile_edges)
        if q and (len(q) != 3 or any(b <= a for a, b in zip(q, q[1:]))):
            raise ValueError(f"quartile_edges={self.quartile_edges!r}; expected () or three ascending values")


# ------------------------------------------------------------------------------------------------------------ model


class ConvLSTMAE(StagedFusionModel):
    """ConvLSTM autoencoder visual branch + per-modality transformer branches, concatenated and regressed.

    Shapes:
        batch["vision"] (B, T, 3, H, W) + "vision_mask" (B, T); other modalities per models.encoders
        → logits (B, K); extras["reconstruction"] (B, T, 3, H, W), extras["recon_error"] (B, T) (per-frame MSE, 0 on
        padded frames), extras["frame_mask"] (B, T), extras["modality_embeddings"] (B, M, D), extras["quartile_logits"] (B, K, 4) when enabled
    """

    def __init__(self, config: ConvLSTMAEConfig) -> None:
        super().__init__(config, encoded=tuple(m for m in config.modalities if m != "vision"))
        cfg = config
        self.autoencoder = ConvLSTMAutoencoder(channels=cfg.ae_channels, downsample=cfg.ae_downsample)
        self.visual_proj = nn.Linear(cfg.ae_channels, cfg.dim)
        self.register_buffer("frame_pe", sinusoidal_encoding(cfg.n_frames, cfg.dim), persistent=False)
        self.visual_blocks = nn.ModuleList(self._block() for _ in range(cfg.modality_layers))
        width = len(self.modalities) * cfg.dim
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), mlp_head(width, cfg.hidden, self.spec.k, cfg.dropout))
        self.quartile_head = mlp_head(width, cfg.hidden, 4 * self.spec.k, cfg.dropout) if cfg.quartile_edges else None

    def pretraining(self) -> bool:
        """True while the autoencoder trains on reconstruction (the first ``pretrain_epochs`` epochs)."""
        return self.epoch < self.config.pretrain_epochs  # type: ignore[attr-defined]

    def compute_logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        cfg: ConvLSTMAEConfig = self.config  # type: ignore[assignment]
        x = batch["vision"]
        check_shape("vision", x, (None, cfg.n_frames, 3, cfg.frame_size, cfg.frame_size))
        b, t = x.shape[:2]
        mask = self.mask(batch, "vision", (b, t))
        x = x * mask.view(b, t, 1, 1, 1).to(x.dtype)  # padded frames are zeros whatever the caller sent
        states, final = self.autoencoder.encode(x, mask)
        recon = self.autoencoder.decode(final, t)
        err = ((recon.float() - x.float()) ** 2).mean(dim=(2, 3, 4)) * mask.to(torch.float32)  # (B, T)

        feats = states.mean(dim=(-2, -1))  # (B, T, C)
        if self.pretraining() or not cfg.finetune_encoder:
            feats = feats.detach()  # the task does not shape the unsupervised embedding
        tok = self.visual_proj(feats) + self.frame_pe[:t].to(feats.dtype)
        for blk in self.visual_blocks:
            tok = blk(tok, x_mask=mask)[0]
        rows = {"vision": masked_mean(tok, mask)}
        if self.encoded:
            other, _ = self.embed(batch)
            rows.update({m: other[:, i] for i, m in enumerate(self.encoded)})
        z = torch.stack([rows[m] for m in self.modalities], dim=1)  # (B, M, D)
        extras = {"reconstruction": recon, "recon_error": err, "frame_mask": mask, "modality_embeddings": z}
        if self.quartile_head is not None:
            extras["quartile_logits"] = self.quartile_head(z.flatten(1)).view(b, self.spec.k, 4)
        return self.head(z.flatten(1)), extras

    def objective(self, out: ModelOutput, target: Tensor) -> Tensor:
        """recon_weight · L_rec (gated: trains only while pre-training) + L_task (+ quartile cross-entropy).

        L_rec = Σ_{b,t} m_bt MSE(x̂_bt, x_bt) / max(1, Σ m_bt).

        Shapes:
            target (B, K) → () scalar
        """
        cfg: ConvLSTMAEConfig = self.config  # type: ignore[assignment]
        err = out.extras["recon_error"]
        n_real = out.extras["frame_mask"].sum().clamp(min=1)
        l_rec = cfg.recon_weight * err.sum() / n_real
        assert out.loss is not None
        total = gate(l_rec, self.pretraining()) + out.loss
        if self.quartile_head is not None:
            edges = torch.as_tensor(cfg.quartile_edges, dtype=target.dtype, device=target.device)
            classes = torch.bucketize(target.contiguous(), edges, right=True)  # (B, K) in 0..3
            total = total + F.cross_entropy(out.extras["quartile_logits"].flatten(0, 1).float(), classes.flatten())
        return total


@register_model("convlstm-ae")
def convlstm_ae(**overrides: Any) -> ConvLSTMAE:
    """ConvLSTM autoencoder (vision) + text branch, late fusion; popularity by default."""
    return ConvLSTMAE(build_config(ConvLSTMAEConfig, overrides))  # type: ignore[arg-type]
