"""Cross-modal Siamese embeddings for apparent personality (Fodor et al.; paper 004), a multi-stage baseline.

The paper trains four learning stages, each freezing what came before (its Fig. 1, §3.2–3.4, §4.2):

1. modality sub-networks f_m (here: shared encoder → mask-aware mean → FC, giving h_m ∈ R^Q, Q = ``dim``), each with
   its own linear head p_m, trained with L = MAE + MSE + Bell (σ = 9, γ = 300; see models.base.bell_loss);
2. the baseline multimodal network ŷ = p₁(M₁(h_A ⊕ h_V ⊕ h_T)) (eq. 5), trained with L on frozen h;
3. one Siamese projection S shared by all modalities, e_m = S(h_m) (eq. 6; two FC layers of ``siamese_hidden`` with
   dropout after the first, a linear E-dim output), trained with a trait-wise multi-similarity loss (eq. 7) whose
   classes C1–C4 are cut at mean ± 1 SD of the training labels and whose anchors come from C1 and C4 only;
4. the fused head ŷ = p₂(M₂(M₁(…) ⊕ e_A ⊕ e_V ⊕ e_T)) (eq. 8), trained with L.

How that runs through the one training loop (``models.engine.fit``), which knows nothing of stages:

* The four objectives are summed every step and every component reads its inputs through a stop-gradient, so each
  component is trained by its own objective only — never by a later one — exactly as with frozen stages.
* Freezing: ``stage_epochs = (e1, e2, e3)`` — f_m train during epochs [0, e1), M₁/p₁ during [0, e1+e2), S during
  [0, e1+e2+e3), M₂/p₂ always. A frozen component's objective still counts in the reported loss (without gradient,
  see models.fusion.gate), so the validation loss early stopping watches is one quantity throughout. The model keeps
  its own epoch count (models.fusion.StagedFusionModel). ``schedule="joint"`` never freezes anything.
* Difference from the paper, on purpose: a later component already trains (on the still-moving, stop-gradient
  features) before its stage begins, instead of sitting idle. That is only a warm start — once the upstream parts
  freeze it keeps training on fixed features as in the paper — and it means the prediction (always the fused head) is
  meaningful from the first epoch, which the engine's best-epoch selection needs.
* The class thresholds need the training labels' mean and SD per trait. The model accumulates Σy, Σy², n over the
  targets of its training batches (buffers ``label_*``); since every epoch sees the same training set this is the
  training-set mean and (population) SD, and it is in checkpoints.

Where paper 004 is vague or inconsistent:

* Eq. 7 defines the similarity "considering only the j-th trait" as D^j = ⟨S(e₁), S(e₂)⟩ — the same embedding for
  every trait; only the positive/negative sets differ per trait. We read it so: one cosine similarity (embeddings are
  L2-normalised, as in the multi-similarity loss of Wang et al. 2019, whose λ = 0.5 only makes sense for cosines), and
  trait-wise pair sets. Pair mining follows Wang et al.: a negative is kept if S⁻ > min S⁺ − ε, a positive if
  S⁺ < max S⁻ + ε; an anchor with no kept positive or negative is skipped. Hyper-parameters default to Wang et al.'s
  released values (α = 2, β = 40, λ = 0.5, ε = 0.1); paper 004 does not give them.
* Eq. 8 writes M₂ : R^{3H+3E}; M₁ outputs Q, so M₂ here reads Q + M·E.
* Anchors and pairs are formed in the "triple-sized batch" {e_A, e_V, e_T}: the embeddings of the same video from two
  modalities are a positive pair, which is what makes the space cross-modal. Missing modalities are left out.
* Eq. 7 averages over all 5n (anchor, trait) pairs; non-extreme anchors contribute 0 to that average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import TASKS, ModelOutput, build_config
from models.fusion import FusionConfig, StagedFusionModel, gate, present_weights
from models.registry import register_model

__all__ = [
    "EXTREME_CLASSES",
    "Siamese",
    "SiameseConfig",
    "extreme_class_accuracy",
    "multi_similarity_loss",
    "trait_classes",
]

EXTREME_CLASSES = (1, 4)  # C1 (low extreme) and C4 (high extreme)
_SCHEDULES = ("staged", "joint")


# ---------------------------------------------------------------------------------------------------------- helpers


def trait_classes(y: Any, mean: Any, std: Any) -> Any:
    """Trait classes C1–C4 (paper 004 §4.4): C1 y < t̄−σ, C2 t̄−σ ≤ y < t̄, C3 t̄ ≤ y < t̄+σ, C4 y ≥ t̄+σ.

    Works on numpy arrays and torch tensors alike (same type out as in).

    Shapes:
        y (N, K), mean (K,), std (K,) → (N, K) integer classes in {1, 2, 3, 4}
    """
    if isinstance(y, Tensor):
        mean, std = torch.as_tensor(mean, dtype=y.dtype, device=y.device), torch.as_tensor(std, dtype=y.dtype, device=y.device)
        return 1 + (y >= mean - std).long() + (y >= mean).long() + (y >= mean + std).long()
    y, mean, std = np.asarray(y, dtype=np.float64), np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    return 1 + (y >= mean - std).astype(np.int64) + (y >= mean).astype(np.int64) + (y >= mean + std).astype(np.int64)


def multi_similarity_loss(
    emb: Tensor,
    classes: Tensor,
    valid: Tensor | None = None,
    *,
    alpha: float = 2.0,
    beta: float = 40.0,
    lam: float = 0.5,
    margin: float = 0.1,
    anchor_classes: Sequence[int] = EXTREME_CLASSES,
) -> Tensor:
    r"""Trait-wise multi-similarity loss with extreme-class anchors (paper 004 eq. 7; Wang et al., CVPR 2019).

    .. math::
        \mathcal{L} = \frac{1}{NK} \sum_{j=1}^{K} \sum_{i \in A_j} \Big\{
            \tfrac{1}{\alpha}\log\big[1 + \sum_{k \in P_i^j} e^{-\alpha (S_{ik} - \lambda)}\big]
          + \tfrac{1}{\beta}\log\big[1 + \sum_{k \in N_i^j} e^{\beta (S_{ik} - \lambda)}\big] \Big\}

    S is the cosine similarity of the L2-normalised embeddings; for trait j, positives share anchor i's class and
    negatives do not, both mined as in Wang et al. (module docstring); A_j = valid anchors whose class is in
    ``anchor_classes`` and that keep at least one positive and one negative. N counts the valid embeddings.

    Shapes:
        emb (N, E), classes (N, K) int, valid (N,) bool or None → () scalar (0 with a graph when no anchor counts)
    """
    n = emb.shape[0]
    if classes.dim() != 2 or classes.shape[0] != n:
        raise ValueError(f"classes has shape {tuple(classes.shape)}; expected (N, K) with N = {n}")
    valid = torch.ones(n, dtype=torch.bool, device=emb.device) if valid is None else valid.to(torch.bool)
    x = F.normalize(emb.float(), dim=-1)
    sim = x @ x.T  # (N, N)
    s = sim.detach()
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    pair_ok = valid[:, None] & valid[None, :] & ~eye
    inf = torch.tensor(float("inf"), device=emb.device)
    total = sim.sum() * 0.0
    for j in range(classes.shape[1]):
        c = classes[:, j]
        same = c[:, None] == c[None, :]
        pos, neg = pair_ok & same, pair_ok & ~same
        min_pos = torch.where(pos, s, inf).min(dim=1, keepdim=True).values
        max_neg = torch.where(neg, s, -inf).max(dim=1, keepdim=True).values
        pos_kept = pos & (s < max_neg + margin)
        neg_kept = neg & (s > min_pos - margin)
        anchor = valid & torch.isin(c, torch.as_tensor(list(anchor_classes), device=c.device))
        anchor = anchor & pos_kept.any(dim=1) & neg_kept.any(dim=1)
        if not anchor.any():
            continue
        zero = torch.zeros(n, 1, device=emb.device)
        pos_term = torch.logsumexp(torch.cat([zero, (-alpha * (sim - lam)).masked_fill(~pos_kept, -inf)], 1), 1) / alpha
        neg_term = torch.logsumexp(torch.cat([zero, (beta * (sim - lam)).masked_fill(~neg_kept, -inf)], 1), 1) / beta
        total = total + ((pos_term + neg_term) * anchor.float()).sum()
    return total / max(1, int(valid.sum()) * classes.shape[1])


def extreme_class_accuracy(y_true: Any, y_pred: Any, train_targets: Any, *,
                           names: Sequence[str] | None = None) -> dict[str, float]:
    """Mean accuracy 1 − MAE (paper 004 eq. 9) overall and on the extreme classes C1 (low) and C4 (high).

    Classes are cut per trait at mean ± 1 SD of ``train_targets`` (population SD), as in paper 004 §4.4 / Table 2.
    Returns ``all``, ``low``, ``high`` and ``extreme`` (mean of low and high) averaged over traits, plus
    ``all_<name>``, ``low_<name>``, ``high_<name>`` per trait. A trait with no test item in a class gets NaN for it
    (an accuracy over nothing), and the averages skip NaN; they are NaN only when every trait's class is empty.

    Shapes:
        y_true (N, K), y_pred (N, K), train_targets (N_train, K) (1-D accepted when K = 1) → dict of floats
    """

    def as2d(name: str, a: Any) -> np.ndarray:
        arr = np.asarray(a, dtype=np.float64)
        arr = arr[:, None] if arr.ndim == 1 else arr
        if arr.ndim != 2 or not np.isfinite(arr).all():
            raise ValueError(f"{name} has shape {np.shape(a)} or non-finite values; expected a finite (N, K) array")
        return arr

    y, p, t = as2d("y_true", y_true), as2d("y_pred", y_pred), as2d("train_targets", train_targets)
    if y.shape != p.shape or y.shape[1] != t.shape[1] or len(y) == 0 or len(t) == 0:
        raise ValueError(f"y_true {y.shape}, y_pred {p.shape}, train_targets {t.shape}: expected equal non-empty "
                         "(N, K) targets and predictions and training targets with the same K")
    k = y.shape[1]
    if names is None:
        names = TASKS["personality"].targets if k == 5 else tuple(f"t{j}" for j in range(k))
    if len(names) != k:
        raise ValueError(f"names={list(names)!r} has {len(names)} entries; expected K = {k}")
    classes = trait_classes(y, t.mean(axis=0), t.std(axis=0))
    acc = 1.0 - np.abs(y - p)  # (N, K)
    out: dict[str, float] = {}
    for part, sel in (("all", np.ones_like(classes, dtype=bool)), ("low", classes == 1), ("high", classes == 4)):
        per = [float(acc[sel[:, j], j].mean()) if sel[:, j].any() else math.nan for j in range(k)]
        out.update({f"{part}_{name}": v for name, v in zip(names, per)})
        out[part] = float(np.nanmean(per)) if not all(math.isnan(v) for v in per) else math.nan
    out["extreme"] = float(np.nanmean([out["low"], out["high"]])) if not (math.isnan(out["low"]) and math.isnan(out["high"])) else math.nan
    return out


# ----------------------------------------------------------------------------------------------------------- config


@dataclass(kw_only=True)
class SiameseConfig(FusionConfig):
    """Cross-modal Siamese model (paper 004): sub-networks, baseline fusion M₁, Siamese S, fused head M₂."""

    task: str = "personality"  # default task
    loss: str | None = "mae+mse+bell"  # L of stages 1, 2 and 4 (paper: MAE + MSE + Bell)
    modality_layers: int = 0  # self-attention blocks inside each sub-network before its mean (paper: none)
    fused_dim: int = 128  # O, output width of M₂ (paper: 512)
    siamese_hidden: int = 200  # width of S's two hidden layers (paper: 200)
    embed_dim: int = 128  # E, width of the cross-modal embedding (paper: 128)
    siamese_dropout: float = 0.5  # dropout after S's first hidden layer (paper: 0.5)
    ms_alpha: float = 2.0  # multi-similarity α (positive scale)
    ms_beta: float = 40.0  # multi-similarity β (negative scale)
    ms_lambda: float = 0.5  # multi-similarity λ (similarity margin)
    ms_margin: float = 0.1  # ε of the pair mining
    ms_weight: float = 1.0  # weight of the multi-similarity term in the summed objective
    schedule: str = "staged"  # "staged": freeze per stage_epochs; "joint": never freeze (stop-gradients only)
    stage_epochs: tuple[int, int, int] = (10, 5, 5)  # epochs of stages 1–3; stage 4 runs until fit ends

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}; expected one of {list(_SCHEDULES)}")
        if len(self.stage_epochs) != 3 or any(int(e) != e or e < 0 for e in self.stage_epochs):
            raise ValueError(f"stage_epochs={self.stage_epochs!r}; expected three non-negative ints (stages 1–3)")
        for name in ("fused_dim", "siamese_hidden", "embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}; expected >= 1")
        if not 0.0 <= self.siamese_dropout < 1.0:
            raise ValueError(f"siamese_dropout={self.siamese_dropout}; expected a value in [0, 1)")
        if min(self.ms_alpha, self.ms_beta) <= 0 or self.ms_weight < 0:
            raise ValueError(f"ms_alpha={self.ms_alpha}, ms_beta={self.ms_beta}, ms_weight={self.ms_weight}; "
                             "expected α, β > 0 and weight >= 0")


# ------------------------------------------------------------------------------------------------------------ model


class Siamese(StagedFusionModel):
    """Cross-modal Siamese embedding model (see module docstring); predicts with the fused head (eq. 8).

    Shapes:
        batch[m] for m in modalities → logits (B, K); extras: "hidden" h (B, M, Q), "embeddings" e (B, M, E)
        (L2-normalised, 0 for missing modalities), "member_logits" (B, M, K) (eq. 2), "m1_logits" (B, K) (eq. 5),
        "present" (B, M)
    """

    def __init__(self, config: SiameseConfig) -> None:
        super().__init__(config)
        cfg = config
        d, k, m = cfg.dim, self.spec.k, len(self.modalities)
        self.sub_fc = nn.ModuleDict({mod: nn.Sequential(nn.Linear(d, d), nn.ReLU()) for mod in self.modalities})
        self.sub_heads = nn.ModuleDict({mod: nn.Linear(d, k) for mod in self.modalities})  # p for each f_m (eq. 2)
        self.m1 = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(m * d, d), nn.ReLU())  # M₁ (eq. 5)
        self.p1 = nn.Linear(d, k)
        h = cfg.siamese_hidden
        self.siamese = nn.Sequential(  # S, shared by every modality (eq. 6)
            nn.Linear(d, h), nn.ReLU(), nn.Dropout(cfg.siamese_dropout), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, cfg.embed_dim)
        )
        self.m2 = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(d + m * cfg.embed_dim, cfg.fused_dim), nn.ReLU())  # M₂
        self.p2 = nn.Linear(cfg.fused_dim, k)
        self.register_buffer("label_sum", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("label_sqsum", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("label_count", torch.zeros((), dtype=torch.float64))

    # -- schedule
    def active(self) -> tuple[bool, bool, bool, bool]:
        """Which of (sub-networks, M₁, S, M₂) still train at the current epoch."""
        cfg: SiameseConfig = self.config  # type: ignore[assignment]
        if cfg.schedule == "joint":
            return True, True, True, True
        e, (e1, e2, e3) = self.epoch, cfg.stage_epochs
        return e < e1, e < e1 + e2, e < e1 + e2 + e3, True

    def label_stats(self) -> tuple[Tensor, Tensor] | None:
        """Mean and population SD per trait of the training targets seen so far (None before two targets).

        Shapes:
            → mean (K,), std (K,) float64
        """
        n = float(self.label_count)
        if n < 2:
            return None
        mean = self.label_sum / n
        return mean, (self.label_sqsum / n - mean**2).clamp(min=0.0).sqrt()

    # -- model
    def compute_logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        rows, present = self.embed(batch)  # (B, M, D)
        keep = present.unsqueeze(-1).to(rows.dtype)
        h = torch.stack([self.sub_fc[m](rows[:, i]) for i, m in enumerate(self.modalities)], dim=1) * keep  # h_m
        member_logits = torch.stack([self.sub_heads[m](h[:, i]) for i, m in enumerate(self.modalities)], dim=1)
        h_in = h.detach()  # every later component reads frozen sub-network features
        z1 = self.m1(h_in.flatten(1))
        m1_logits = self.p1(z1)
        e = F.normalize(self.siamese(h_in), dim=-1) * keep  # (B, M, E)
        z2 = self.m2(torch.cat([z1.detach(), e.detach().flatten(1)], dim=-1))
        logits = self.p2(z2)
        return logits, {"hidden": h, "embeddings": e, "member_logits": member_logits, "m1_logits": m1_logits,
                        "present": present}

    def objective(self, out: ModelOutput, target: Tensor) -> Tensor:
        """L(sub-networks) + L(M₁) + w·L_MS(S) + L(M₂), each gated by the freezing schedule (module docstring).

        Shapes:
            target (B, K) → () scalar
        """
        cfg: SiameseConfig = self.config  # type: ignore[assignment]
        x = out.extras
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                y64 = target.detach().double()
                self.label_sum += y64.sum(dim=0)
                self.label_sqsum += (y64**2).sum(dim=0)
                self.label_count += y64.shape[0]
        sub_active, m1_active, s_active, _ = self.active()

        losses = []
        for i in range(len(self.modalities)):  # stage 1: each sub-network on the items that have its modality
            sel = x["present"][:, i]
            if sel.any():
                lg = x["member_logits"][sel, i]
                losses.append(self.loss(torch.sigmoid(lg), target[sel], logits=lg))
        l_sub = torch.stack(losses).mean() if losses else x["member_logits"].sum() * 0.0
        l_m1 = self.loss(torch.sigmoid(x["m1_logits"]), target, logits=x["m1_logits"])
        l_ms = x["embeddings"].sum() * 0.0
        stats = self.label_stats()
        if stats is not None:
            classes = trait_classes(target.double(), *stats)  # (B, K)
            emb = x["embeddings"].transpose(0, 1).flatten(0, 1)  # triple-sized batch {e_A, e_V, e_T}: (M·B, E)
            l_ms = cfg.ms_weight * multi_similarity_loss(
                emb, classes.repeat(len(self.modalities), 1), x["present"].T.flatten(),
                alpha=cfg.ms_alpha, beta=cfg.ms_beta, lam=cfg.ms_lambda, margin=cfg.ms_margin,
            )
        assert out.loss is not None  # VidModel's task loss of the fused prediction = L(M₂)
        return gate(l_sub, sub_active) + gate(l_m1, m1_active) + gate(l_ms, s_active) + out.loss

    def member_prediction(self, out: ModelOutput) -> Tensor:
        """The uni-modal ensemble ŷ = mean over present modalities of σ(p_m(h_m)) (stage-1 diagnostics).

        Shapes:
            → (B, K)
        """
        w = present_weights(torch.zeros(len(self.modalities), device=out.pred.device), out.extras["present"])
        return (w.unsqueeze(-1) * torch.sigmoid(out.extras["member_logits"].float())).sum(dim=1)


@register_model("siamese")
def siamese(**overrides: Any) -> Siamese:
    """Cross-modal Siamese embedding model over vision, audio and text; personality by default."""
    return Siamese(build_config(SiameseConfig, overrides))  # type: ignore[arg-type]
