"""Fusion baselines over per-modality encoders: late fusion (concatenation MLP; AVM bi-modal and tri-modal),
per-modality models averaged at the decision level (NJU-LAMDA / MP-style ensemble), a learned linear combination of
modality embeddings (SiMVC-style) and one standard Transformer over all modality tokens concatenated (VATT-style).

Every baseline here shares the front end of :class:`FusionModel`: each whole-clip modality (``vision``, ``audio``,
``text``, ``graph``, ``meta``) goes through the shared encoder of :mod:`models.encoders` (the very modules MCAT and VAN
use, kept under ``self.encoders`` so ``pretrained_path`` encoders transfer between families), then
``modality_layers`` self-attention blocks (the one :class:`~models.attention.AttentionBlock`), then a mask-aware mean:

    r_m = Σ_n m_n z_mn / max(1, Σ_n m_n)      (one row r_m ∈ R^D per modality; 0 when the modality is missing)

so a missing modality (mask False) contributes exactly zero and its content never reaches a prediction.

Also here, for the multi-stage baselines (``models.siamese``, ``models.convlstm``): :class:`StagedFusionModel`, a
FusionModel that counts its own training epochs in a persistent buffer, and :meth:`FusionModel.objective`, the hook a
model overrides to train on more than the task loss. Both let the one engine loop (``models.engine.fit``) train them
without knowing which model it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import AttentionBlock
from models.base import ModelOutput, VidModel, build_config, masked_mean
from models.encoders import MODALITY_KEYS, ClipConfig, build_modality_encoder, load_pretrained
from models.registry import register_model

__all__ = [
    "DecisionAverage",
    "FusionConfig",
    "FusionModel",
    "LateFusion",
    "SiMVC",
    "StagedFusionModel",
    "VATT",
    "VATTConfig",
    "gate",
    "mlp_head",
    "present_weights",
]


# ---------------------------------------------------------------------------------------------------------- helpers


def gate(term: Tensor, active: bool) -> Tensor:
    """``term`` itself while ``active``; otherwise its value without a gradient (the objective of a frozen part).

    Multi-stage models report the sum of all their objectives every epoch (so the validation loss the engine's early
    stopping watches stays one comparable quantity) and use ``gate`` to decide which objectives still train.

    Shapes:
        term (any) → the same
    """
    return term if active else term.detach()


def present_weights(scores: Tensor, present: Tensor) -> Tensor:
    """Softmax of ``scores`` over the modalities that are present (over all of them when none is).

    w_bm = exp(s_bm) [present_bm] / Σ_m' exp(s_bm') [present_bm']

    Shapes:
        scores (B, M) or (M,), present (B, M) bool → (B, M), rows sum to 1
    """
    scores = scores.expand(present.shape).float()
    any_present = present.any(dim=1, keepdim=True)
    keep = present | ~any_present  # a row with nothing present falls back to every modality
    return scores.masked_fill(~keep, float("-inf")).softmax(dim=1)


def mlp_head(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Linear → GELU → Dropout → Linear, the two-layer head the baselines share.

    Shapes:
        (..., in_dim) → (..., out_dim)
    """
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


def _check_modalities(modalities: Sequence[str], *, allow_empty: bool = False) -> None:
    mods = tuple(modalities)
    if (not mods and not allow_empty) or len(set(mods)) != len(mods) or any(m not in MODALITY_KEYS for m in mods):
        raise ValueError(f"modalities={modalities!r}; expected distinct keys from {list(MODALITY_KEYS)}")


# ----------------------------------------------------------------------------------------------------------- config


@dataclass(kw_only=True)
class FusionConfig(ClipConfig):
    """Configuration shared by the fusion baselines: whole-clip geometry (ClipConfig) plus the modality front end."""

    task: str = "personality"  # default task (First-Impressions-style baselines)
    modalities: tuple[str, ...] = ("vision", "audio", "text")  # whole-clip keys; 2 = bi-modal, 3 = tri-modal, …
    modality_layers: int = 1  # self-attention blocks per modality before its mask-aware mean (0 = none)
    hidden: int = 64  # hidden width of the MLP heads

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_modalities(self.modalities, allow_empty=self.other_inputs())
        if self.modality_layers < 0:
            raise ValueError(f"modality_layers={self.modality_layers}; expected >= 0")
        if self.hidden < 1:
            raise ValueError(f"hidden={self.hidden}; expected >= 1")

    def other_inputs(self) -> bool:
        """Whether the model reads an input besides ``modalities`` (then ``modalities`` may be empty)."""
        return False


# ------------------------------------------------------------------------------------------------------- base model


class FusionModel(VidModel):
    """Base of the fusion baselines: per-modality encoders + self-attention + mask-aware mean (module docstring).

    ``encoded`` names the modalities that get the shared encoder (default: all of ``config.modalities``; a model that
    encodes one modality its own way, like the ConvLSTM autoencoder, passes the others).

    Shapes:
        batch[m] per models.encoders.ModalityEncoder → ``embed``: rows (B, M, D), present (B, M)
    """

    def __init__(self, config: FusionConfig, *, encoded: Sequence[str] | None = None) -> None:
        super().__init__(config)
        cfg = config
        self.modalities = tuple(cfg.modalities)
        self.encoded = self.modalities if encoded is None else tuple(encoded)
        self.encoders = nn.ModuleDict({m: build_modality_encoder(m, cfg) for m in self.encoded})
        # raw keys or, with input_kind="embeddings", the cached embeddings of the modalities the encoders read
        self.inputs = tuple(self.encoders[m].input_key if m in self.encoders else m for m in self.modalities)
        self.modality_blocks = nn.ModuleDict(
            {m: nn.ModuleList(self._block() for _ in range(cfg.modality_layers)) for m in self.encoded}
        )
        if cfg.pretrained_path:
            load_pretrained(self.encoders, cfg.pretrained_path)

    def _block(self) -> AttentionBlock:
        cfg = self.config
        return AttentionBlock(cfg.dim, cfg.heads, ff_mult=cfg.ff_mult, dropout=cfg.dropout, norm=cfg.norm)

    def encode(self, batch: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        """Tokens of every encoded modality after its self-attention blocks; masked tokens are zero.

        Shapes:
            → {m: (tokens (B, N_m, D), token mask (B, N_m))}
        """
        out = {}
        for m in self.encoded:
            tok, tmask = self.encoders[m](batch)
            for blk in self.modality_blocks[m]:
                tok = blk(tok, x_mask=tmask)[0]
            out[m] = (tok, tmask)
        return out

    def embed(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """One row per encoded modality (mask-aware mean of its tokens) and whether the modality is present.

        Shapes:
            → rows (B, M, D) (zero rows for missing modalities), present (B, M) bool
        """
        tokens = self.encode(batch)
        rows = torch.stack([masked_mean(t, mk) for t, mk in tokens.values()], dim=1)
        present = torch.stack([mk.any(dim=1) for _, mk in tokens.values()], dim=1)
        return rows, present

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        """VidModel.forward, with the loss replaced by :meth:`objective` when the batch has ``target``.

        Shapes:
            see VidModel.forward
        """
        out = super().forward(batch)
        if out.loss is not None:
            out.loss = self.objective(out, batch["target"])
        return out

    def objective(self, out: ModelOutput, target: Tensor) -> Tensor:
        """The training objective; by default the task loss VidModel computed. Multi-objective models override it.

        Shapes:
            out.pred (B, K), target (B, K) → () scalar
        """
        assert out.loss is not None
        return out.loss


class StagedFusionModel(FusionModel):
    """A FusionModel that counts the training epochs it has been through, for multi-stage training schedules.

    An epoch is one training phase: ``train()``, at least one forward pass with gradients, then ``eval()`` — exactly
    what the engine does each epoch before validating. The count lives in the persistent buffer ``epochs_seen``, so it
    is saved in checkpoints, restored on resume and rolled back with the best epoch's weights. The engine needs to
    know nothing about stages.
    """

    def __init__(self, config: FusionConfig, *, encoded: Sequence[str] | None = None) -> None:
        super().__init__(config, encoded=encoded)
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        self._steps_this_epoch = 0

    @property
    def epoch(self) -> int:
        """Completed training epochs (0 during the first)."""
        return int(self.epochs_seen)

    def train(self, mode: bool = True) -> "StagedFusionModel":
        if not mode and self.training and self._steps_this_epoch:
            with torch.no_grad():
                self.epochs_seen += 1
            self._steps_this_epoch = 0
        return super().train(mode)

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        """Counts training steps, then FusionModel.forward.

        Shapes:
            see VidModel.forward
        """
        if self.training and torch.is_grad_enabled():
            self._steps_this_epoch += 1
        return super().forward(batch)


# ------------------------------------------------------------------------------------------------------ baselines


class LateFusion(FusionModel):
    """Late fusion by concatenation: ŷ = σ(MLP([r_1; …; r_M])) over the per-modality rows (AVM-style when M = 2).

    Shapes:
        batch[m] for m in modalities → logits (B, K); extras["modality_embeddings"] (B, M, D)
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        cfg = config
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), mlp_head(len(self.modalities) * cfg.dim, cfg.hidden, self.spec.k, cfg.dropout))

    def compute_logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        rows, _ = self.embed(batch)
        return self.head(rows.flatten(1)), {"modality_embeddings": rows}


class DecisionAverage(FusionModel):
    """Per-modality models averaged at the decision level (NJU-LAMDA / MP-style ensemble).

    Each modality m has its own encoder and head: ŷ_m = σ(MLP_m(r_m)). The ensemble predicts the mean over the
    modalities that are present, ŷ = Σ_m w_m ŷ_m with w = 1[present] / Σ 1[present] (all members when none is).
    The members are trained as separate models, as in the ensemble: the objective is the mean of each member's own
    task loss on the items where its modality is present (their parameters are disjoint, so no member's gradient
    depends on another's prediction). ``logits`` are logit(ŷ) so VidModel's sigmoid returns ŷ.

    Shapes:
        batch[m] for m in modalities → logits (B, K); extras["member_logits"] (B, M, K), extras["weights"] (B, M)
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        cfg = config
        self.members = nn.ModuleDict({m: mlp_head(cfg.dim, cfg.hidden, self.spec.k, cfg.dropout) for m in self.modalities})

    def compute_logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        rows, present = self.embed(batch)
        member_logits = torch.stack([self.members[m](rows[:, i]) for i, m in enumerate(self.modalities)], dim=1)
        w = present_weights(torch.zeros(len(self.modalities), device=rows.device), present)  # (B, M)
        p = (w.unsqueeze(-1) * torch.sigmoid(member_logits.float())).sum(dim=1)  # (B, K)
        logits = torch.logit(p, eps=1e-6)
        return logits, {"member_logits": member_logits, "weights": w, "present": present}

    def objective(self, out: ModelOutput, target: Tensor) -> Tensor:
        """Mean over members of each member's task loss on the items that have its modality.

        Shapes:
            out.extras["member_logits"] (B, M, K), target (B, K) → () scalar
        """
        member_logits, present = out.extras["member_logits"], out.extras["present"]
        losses = []
        for i in range(member_logits.shape[1]):
            sel = present[:, i]
            if sel.any():
                lg = member_logits[sel, i]
                losses.append(self.loss(torch.sigmoid(lg), target[sel], logits=lg))
        if not losses:  # no item has any modality: nothing to learn from, keep the graph alive
            return member_logits.sum() * 0.0
        return torch.stack(losses).mean()


class SiMVC(FusionModel):
    """Linear combination of modality embeddings with learned weights (SiMVC, Trosten et al., CVPR 2021).

    z = Σ_m w_m r_m with w = softmax(a) over the present modalities (a ∈ R^M learned), ŷ = σ(MLP(z)).
    SiMVC feeds z to a clustering module; here a regression / classification head predicts the task instead.

    Shapes:
        batch[m] for m in modalities → logits (B, K); extras["fusion_weights"] (B, M)
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        cfg = config
        self.fusion_logits = nn.Parameter(torch.zeros(len(self.modalities)))  # a; softmax(0) = equal weights
        self.head = mlp_head(cfg.dim, cfg.hidden, self.spec.k, cfg.dropout)

    def compute_logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        rows, present = self.embed(batch)
        w = present_weights(self.fusion_logits, present).to(rows.dtype)  # (B, M)
        z = (w.unsqueeze(-1) * rows).sum(dim=1)  # (B, D)
        return self.head(z), {"fusion_weights": w}


@dataclass(kw_only=True)
class VATTConfig(FusionConfig):
    """VATT-style joint Transformer: the modality tokens go straight from the encoders into one shared stack."""

    modality_layers: int = 0  # no per-modality blocks: all attention happens in the joint stack
    layers: int = 2  # AttentionBlocks in the joint Transformer over all tokens

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layers < 1:
            raise ValueError(f"layers={self.layers}; expected >= 1")


class VATT(FusionModel):
    """A standard Transformer over all modality tokens concatenated, read out from a [CLS] token.

    x = [cls; z_1 + t_1; …; z_M + t_M] (t_m a learned modality-type embedding; positions inside a modality come from
    its encoder), L post-norm AttentionBlocks with padding masked, ŷ = σ(FC(x_cls)).

    Deviation on purpose: VATT (Akbari et al., 2021) runs each modality through a shared, modality-agnostic backbone
    separately and trains it with contrastive (NCE / MIL-NCE) objectives; as a supervised baseline we keep its
    modality-agnostic Transformer but feed it all tokens at once (early fusion), which is what the comparison needs.
    extras["modality_attention"] is the [CLS] row of the last block's attention (head-averaged), summed per modality
    and renormalised over the modality tokens: the share of [CLS] attention each modality receives.

    Shapes:
        batch[m] for m in modalities → logits (B, K); extras["modality_attention"] (B, M), rows sum to 1 (0 when
        no modality is present)
    """

    def __init__(self, config: VATTConfig) -> None:
        super().__init__(config)
        cfg = config
        self.cls = nn.Parameter(torch.randn(1, 1, cfg.dim) * 0.02)
        self.type_embedding = nn.Parameter(torch.randn(len(self.modalities), cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(self._block() for _ in range(cfg.layers))
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.dim, self.spec.k))

    def compute_logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        tokens = self.encode(batch)
        parts, masks, owner = [], [], []
        for i, (tok, tmask) in enumerate(tokens.values()):
            parts.append(tok + self.type_embedding[i].to(tok.dtype))
            masks.append(tmask)
            owner.append(torch.full((tok.shape[1],), i, device=tok.device))
        b = parts[0].shape[0]
        x = torch.cat([self.cls.expand(b, -1, -1).to(parts[0].dtype), *parts], dim=1)  # (B, 1 + ΣN_m, D)
        mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), *masks], dim=1)
        weights = None
        for j, blk in enumerate(self.blocks):
            x, weights = blk(x, x_mask=mask, return_weights=j == len(self.blocks) - 1)
        assert weights is not None
        cls_att = weights[:, :, 0, 1:].float().mean(dim=1)  # (B, ΣN_m), head-averaged [CLS] row without itself
        one_hot = F.one_hot(torch.cat(owner), len(self.modalities)).to(cls_att.dtype)  # (ΣN_m, M)
        share = cls_att @ one_hot
        share = share / share.sum(dim=1, keepdim=True).clamp_min(1e-12)  # share among modalities (0 if none real)
        return self.head(x[:, 0]), {"modality_attention": share}


# ----------------------------------------------------------------------------------------------- registered names


def _register(name: str, model_cls: type[FusionModel], config_cls: type[FusionConfig], **variant: Any) -> None:
    def build(**overrides: Any) -> FusionModel:
        return model_cls(build_config(config_cls, overrides, **variant))  # type: ignore[arg-type]

    build.__name__ = build.__qualname__ = f"build_{name.replace('-', '_')}"  # stable, unique per name (reloads)
    register_model(name)(build)


_register("late-fusion", LateFusion, FusionConfig)
_register("avm", LateFusion, FusionConfig, modalities=("vision", "audio"))
_register("decision-average", DecisionAverage, FusionConfig)
_register("simvc", SiMVC, FusionConfig)
_register("vatt", VATT, VATTConfig)
