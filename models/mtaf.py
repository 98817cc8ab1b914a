"""MTAF: multimodal and temporal attention fusion for micro-video popularity (Ou et al.; paper 003).

Per feature group one representation: content modalities (the paper's BERT text, VGGish audio, ResNet-152 visual
features; here the shared encoders of :mod:`models.encoders`, mask-aware mean-pooled) and the content-agnostic
metadata (``meta``, standardised by the pack builder) each go through their own fully-connected layer; an early
popularity time series (``early_trend``) goes through a bi-directional GRU whose two final hidden states are
concatenated and projected. An attention layer fuses the M' group vectors and dense layers predict the popularity
score; the task loss is MSE (paper eq. 2) and the metrics MAE, MSE, R², Spearman, NDCG@10 come from models.metrics.

Choices where the paper is vague (written down so they can be changed knowingly):

* "An attention-based mechanism to fuse multimodal features" (after Xu et al. 2020) — here attention pooling with the
  one Attention block: a learned query q attends over the group vectors, f = W^O[softmax(q W^Q (G W^K)^T/√d) G W^V]
  per head; missing groups are masked keys. extras["modality_attention"] is its head-averaged weight per group.
* "Three dense layers and an attention layer" — ``dense_layers`` (default 3) dense layers after the fusion, the last
  one giving the K outputs; the per-group FC layers come before it.
* The early trend is optional. ``trend_len`` = T_e > 0 switches the BiGRU branch on and adds ``early_trend`` (B, T_e)
  to the model's inputs: the pack builds it from the dataset's scrape history (:mod:`features.trend`: ``log(1 + y)``
  of eq. 1's score at 24, 48, 72, 96 and 120 h after posting, interpolated between repeated scrapes), so T_e = 5
  (``vidpipe train NAME --model mtaf --task popularity_mtaf --set trend_len=5``, the paper's Table 4 setting).
  ``early_trend_mask`` (B,) marks videos that have a series — a post scraped once, or first scraped after the
  window, gets a masked key and the prediction comes from the other groups alone. With ``trend_len = 0`` (default:
  most datasets have no scrape history) the model reads no ``early_trend`` at all, which is the paper's "predict
  before release" setting (its Tables 2–3).
* Table 4's time-series baselines are the trend branch alone: ``modalities=()`` with ``trend_len`` > 0 (the fusion
  then attends over the one trend vector), with ``trend_rnn="gru"`` (Bi-GRU) or ``"lstm"`` (Bi-LSTM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from models.attention import Attention
from models.base import build_config, check_shape
from models.fusion import FusionConfig, FusionModel
from models.registry import register_model
from names import EARLY_TREND

__all__ = ["MTAF", "MTAFConfig"]


@dataclass(kw_only=True)
class MTAFConfig(FusionConfig):
    """MTAF configuration: feature groups, the optional early-trend BiGRU and the fusion predictor."""

    task: str = "popularity"  # default task of MTAF
    modalities: tuple[str, ...] = ("vision", "audio", "text", "meta")  # content groups + content-agnostic metadata
    modality_layers: int = 0  # MTAF has no per-modality attention: encoder → mean → FC
    trend_len: int = 0  # T_e, steps of ``early_trend``; 0 = no early trend, the BiGRU branch is off
    gru_hidden: int = 32  # BiGRU hidden width per direction (paper: a 256-d hidden vector, i.e. 2 × 128)
    trend_rnn: str = "gru"  # recurrent cell of the trend branch: "gru" (MTAF) or "lstm" (Table 4's Bi-LSTM baseline)
    dense_layers: int = 3  # dense layers after the attention fusion, the last one outputs K

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.trend_len < 0:
            raise ValueError(f"trend_len={self.trend_len}; expected >= 0 (0 = no early trend)")
        if self.gru_hidden < 1:
            raise ValueError(f"gru_hidden={self.gru_hidden}; expected >= 1")
        if self.trend_rnn not in ("gru", "lstm"):
            raise ValueError(f"trend_rnn={self.trend_rnn!r}; expected 'gru' or 'lstm'")
        if self.dense_layers < 1:
            raise ValueError(f"dense_layers={self.dense_layers}; expected >= 1")

    def other_inputs(self) -> bool:
        """The early trend is an input besides ``modalities``: with it, ``modalities`` may be empty."""
        return self.trend_len > 0


class MTAF(FusionModel):
    """MTAF (see module docstring).

    g_m = ReLU(W_m r_m + b_m) for each modality m; g_trend = ReLU(W_s [h→_T; h←_1]) from the BiGRU over the trend;
    f = AttentionPool(q; g_1 … g_M'); ŷ = σ(Dense_L(… ReLU(Dense_1(f)))).

    Shapes:
        batch[m] per models.encoders.ModalityEncoder; batch["early_trend"] (B, T_e) + "early_trend_mask" (B,) when
        trend_len > 0 → logits (B, K); extras["modality_attention"] (B, M') in the order of ``modalities`` then the
        trend, rows sum to 1 over present groups; extras["group_embeddings"] (B, M', D)
    """

    def __init__(self, config: MTAFConfig) -> None:
        super().__init__(config)
        cfg = config
        d = cfg.dim
        self.fc = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(cfg.dropout)) for m in self.modalities})
        if cfg.trend_len:
            self.inputs = (*self.inputs, EARLY_TREND)
            rnn = nn.LSTM if cfg.trend_rnn == "lstm" else nn.GRU  # named ``gru`` after MTAF's BiGRU either way
            self.gru = rnn(1, cfg.gru_hidden, batch_first=True, bidirectional=True)
            self.trend_fc = nn.Sequential(nn.Linear(2 * cfg.gru_hidden, d), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.fusion = Attention(d, cfg.heads, dropout=cfg.dropout)
        dense: list[nn.Module] = []
        width = d
        for _ in range(cfg.dense_layers - 1):
            dense += [nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden
        self.predictor = nn.Sequential(*dense, nn.Linear(width, self.spec.k))

    def _trend(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The early-trend group vector and whether the video has a trend.

        Shapes:
            batch["early_trend"] (B, T_e) → (B, D), (B,)
        """
        cfg: MTAFConfig = self.config  # type: ignore[assignment]
        x = batch[EARLY_TREND]
        check_shape(EARLY_TREND, x, (None, cfg.trend_len))
        present = self.mask(batch, EARLY_TREND, (x.shape[0],))
        x = x * present[:, None].to(x.dtype)  # a missing trend is zeros whatever the caller sent
        with torch.autocast(device_type=x.device.type, enabled=False):  # GRU in float32
            _, state = self.gru(x.float().unsqueeze(-1))  # an LSTM's state is (h_n, c_n)
        h_n = state[0] if isinstance(state, tuple) else state  # (2, B, hidden): forward last step, backward first
        return self.trend_fc(torch.cat([h_n[0], h_n[1]], dim=-1)), present

    def compute_logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        if self.modalities:
            rows, present = self.embed(batch)  # (B, M, D), (B, M)
            groups = torch.stack([self.fc[m](rows[:, i]) for i, m in enumerate(self.modalities)], dim=1)
        else:  # the trend alone (Table 4's time-series rows): no content group
            x = batch[EARLY_TREND]
            groups = x.new_zeros(x.shape[0], 0, self.query.shape[-1])
            present = torch.zeros(x.shape[0], 0, dtype=torch.bool, device=x.device)
        if self.config.trend_len:  # type: ignore[attr-defined]
            g_trend, p_trend = self._trend(batch)
            groups = torch.cat([groups, g_trend.to(groups.dtype).unsqueeze(1)], dim=1)
            present = torch.cat([present, p_trend.unsqueeze(1)], dim=1)
        b = groups.shape[0]
        fused, weights = self.fusion(self.query.expand(b, -1, -1).to(groups.dtype), groups, present, return_weights=True)
        assert weights is not None
        logits = self.predictor(fused[:, 0])
        return logits, {"modality_attention": weights[:, :, 0].float().mean(dim=1), "group_embeddings": groups}


@register_model("mtaf")
def mtaf(**overrides: Any) -> MTAF:
    """MTAF over vision, audio, text and metadata (+ the early trend when ``trend_len`` > 0); popularity by default."""
    return MTAF(build_config(MTAFConfig, overrides))  # type: ignore[arg-type]
