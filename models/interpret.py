"""Interpretability: which seconds, modalities, frames and image regions drove a prediction (pure functions).

Three analyses from the dissertation, each split into a *collect* step (runs a trained model on a batch or a loader,
no training, eval mode) and a *summarise* step (arrays in, arrays out), so the summaries can be tested on tensors whose
answer is known:

* **Seconds (Sec2Sec, Ch. 2).** The attention variant (``sec2sec-attn``) returns per-video softmax weights over
  its 1-second segments, ``extras["segment_attention"]`` (B, S). :func:`second_profile` averages them over videos.
  Videos have different lengths, so weights are *normalised to uniform* before averaging — lift_t = α_t · n_b, where
  n_b is the number of real seconds of video b (lift 1 = uniform attention) — and aligned both from the start and
  from the end ("3 s before the end"). Without that normalisation a perfectly uniform attention looks like recency
  (short videos have few seconds, each with a large weight) — the trap the paper's plain average falls into when
  clip lengths vary. The same summary applies to per-second Integrated-Gradients magnitudes
  (:func:`segment_attributions`), which test what the model *uses* rather than where it attends. (Wang et al.'s
  attention-LSTM as published, ``sec2sec-attn-wang``, predicts from h* = tanh(W_p r + W_x h_N); the last hidden state
  h_N already carries the final seconds, so its attention weights stay near uniform on data whose labels weigh the
  last seconds most. ``sec2sec-attn`` predicts only through the attention; see :mod:`models.sec2sec`.)
* **Integrated Gradients (MCAT, Ch. 3, eq. 3.12)** via captum:
  IG_i(x) = (x_i − x'_i) · ∫_0^1 ∂F(x' + α(x − x'))/∂x_i dα, with the baseline x' = 0 for every input — exactly what
  the model sees for a missing modality (docs/ARCHITECTURE.md: "missing modality = mask False + zeros"), i.e. the
  paper's "absence of input". Completeness: Σ_i IG_i = F(x) − F(x'). Masks are held fixed (not attributed).
  "Absence" is far from every real input for some features (MFCC c0 of the synthetic clips is about -230, of
  the zero baseline 0), which hands that modality attribution for merely being present; ``baselines=`` (e.g.
  :func:`mean_baselines`: the training set's mean image, mean MFCC frame, mean word counts) asks instead what moved
  the prediction away from the average video's.
  Aggregations: modality level (signed sum over a modality's inputs per video), frame level (signed sum per frame
  position, with a least-squares trend line — the paper's "linear regression fitted for each trait"), region level
  (signed sum over frames and channels per pixel, resampled to a 64×64 heat-map). Averages over videos are of
  *magnitudes* (|signed sum|), so a modality that pushes some predictions up and others down is not averaged away.
* **VAN modality contributions (Ch. 4, eq. 4.15–4.17).** Per head h a relation matrix R^h (M × M), c_i^h = Σ_j R_ij^h,
  c̃^h = softmax_i(c^h) over the modalities present, c̃ = (1/H) Σ_h c̃^h (eq. 4.17 prints 1/n — the number of
  modalities — in front of a sum over heads; an average over heads needs 1/H, which we use). Which R? The paper
  calls c_i "the cumulative sum of [modality i's] contributions to all modalities". With the co-attention weights
  A^h (query row, key column; rows sum to 1) modality i contributes A_ji^h to modality j's output, so by default
  R^h = (A^h)ᵀ and c_i^h = Σ_j A_ji^h is the attention modality i *receives*. The literal reading, R^h = (W^Q Q)(W^K
  K)ᵀ/√d (pre-softmax scores, row = query), is available as ``relation="scores"``; its row sum measures how a query
  aligns with the sum of all keys, not a contribution, and on planted data it does not single out the driving
  modality reliably. Softmaxed rows (R = A) would make every c_i^h = 1.
  Attention is not attribution, so :func:`modality_ablation` (mean |Δ prediction| when one modality is masked out)
  is reported next to it as a check.

Shapes use B videos, S seconds, T frames, M modalities, H heads, K outputs (targets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import linregress
from torch import Tensor
from torch.nn import functional as F

from models.base import VidModel, mask_shape

__all__ = [
    "IG_CHUNK",
    "AttributionSummary",
    "ContributionSummary",
    "Contributions",
    "SecondProfile",
    "Trend",
    "collect_segment_attention",
    "collect_segment_attributions",
    "fit_trend",
    "frame_attribution",
    "integrated_gradients",
    "mean_baselines",
    "modality_ablation",
    "modality_attribution",
    "modality_contributions",
    "region_attribution",
    "second_profile",
    "segment_attributions",
    "summarise_attributions",
    "summarise_contributions",
    "top_left_share",
    "van_relation",
]

_SEG_KEYS = ("vision_seg", "audio_seg")
#: per input key: the axes (after the batch axis) that run over time, averaged by :func:`mean_baselines`, and the
#: axis a 2-D mask (B, T|F|S) lines up with; keys not listed are vectors (B, D) with a per-video mask (B,)
_TIME_AXES: dict[str, tuple[tuple[int, ...], int]] = {
    "vision": ((1,), 1), "audio": ((-1,), -1), "vision_seg": ((1, 2), 1), "audio_seg": ((1, -1), 1)}
#: interpolated inputs per forward/backward pass of Integrated Gradients in the collect steps (bounds their memory)
IG_CHUNK = 64


# --------------------------------------------------------------------------------------------------------- helpers


def _as_tensor(name: str, x: Any, dim: int) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().cpu()
    if t.dim() != dim:
        raise ValueError(f"{name} has shape {tuple(t.shape)}; expected {dim} dimensions")
    return t


def _device(model: VidModel) -> torch.device:
    return next(model.parameters()).device


def _model_batch(model: VidModel, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The model's inputs and their masks from ``batch``, on the model's device (no target)."""
    missing = [k for k in model.inputs if k not in batch]
    if missing:
        raise ValueError(f"batch is missing input key(s) {missing}; model reads {list(model.inputs)}")
    device = _device(model)
    keys = [*model.inputs, *(f"{k}_mask" for k in model.inputs if f"{k}_mask" in batch)]
    return {k: batch[k].to(device) for k in keys}


def _mask_of(batch: Mapping[str, Tensor], key: str, shape: tuple[int, ...]) -> Tensor:
    m = batch.get(f"{key}_mask")
    return torch.ones(shape, dtype=torch.bool) if m is None else m.detach().cpu().to(torch.bool)


# --------------------------------------------------------------------------------------------- seconds (Sec2Sec)


@dataclass(frozen=True)
class SecondProfile:
    """Per-second weights averaged over videos (see :func:`second_profile`). All arrays have length S.

    ``from_end[j]`` is the position S − j seconds before the end (the last entry = the last real second), so both
    profiles read left to right in time.
    """

    from_start: np.ndarray  # (S,) mean lift of second t (0-based from the start) over videos that have it
    from_end: np.ndarray  # (S,) mean lift of the (S − j)-th last real second over videos that have it
    count_from_start: np.ndarray  # (S,) videos contributing to each from_start entry
    count_from_end: np.ndarray  # (S,) videos contributing to each from_end entry
    last: int  # k, the number of final seconds summarised below
    last_share: float  # mean over videos of the share of weight on their last k real seconds
    uniform_last_share: float  # the same for uniform weights: mean of min(k, n_b) / n_b
    last_lift: float  # mean lift over every video's last k real seconds (1 = uniform)
    earlier_lift: float  # mean lift over the earlier real seconds (NaN when no video has more than k)


def second_profile(weights: Any, mask: Any, *, last: int = 3) -> SecondProfile:
    """Average per-second weights (attention or attribution magnitudes) over videos of different lengths.

    Per video b with n_b real seconds the weights are normalised to sum to 1 over its real seconds (padding ignored),
    then turned into lifts, lift_bt = n_b · w_bt / Σ_t' w_bt' (1 = uniform), and averaged per position aligned from the
    start and from the end (the end = the video's last real second; a padded gap inside a video keeps its place).
    The "last k seconds" are the real seconds among the final k positions up to that end. Videos whose weights are
    all zero are skipped.

    Shapes:
        weights (B, S) ≥ 0, mask (B, S) bool, True = real second → SecondProfile
    """
    w = _as_tensor("weights", weights, 2).double()
    m = _as_tensor("mask", mask, 2).to(torch.bool)
    if w.shape != m.shape:
        raise ValueError(f"weights {tuple(w.shape)} and mask {tuple(m.shape)}: expected the same (B, S) shape")
    if last < 1:
        raise ValueError(f"last={last}; expected >= 1")
    if (w < 0).any() or not torch.isfinite(w).all():
        raise ValueError("weights: expected finite non-negative values (attention, or attribution magnitudes)")
    n = m.sum(dim=1)
    w = w * m
    total = w.sum(dim=1)
    keep = (n > 0) & (total > 0)
    b, s = w.shape
    lift = torch.zeros_like(w)
    lift[keep] = w[keep] / total[keep, None] * n[keep, None].double()
    m = m & keep[:, None]

    pos = torch.arange(s)
    last_idx = (s - 1 - m.flip(1).to(torch.int8).argmax(dim=1)).where(m.any(dim=1), torch.full_like(n, s - 1))
    from_end_index = pos[None, :] + (s - 1 - last_idx[:, None])  # end-aligned: the last real second lands at S − 1
    end_lift = torch.zeros(b, s, dtype=torch.double)
    end_mask = torch.zeros(b, s, dtype=torch.bool)
    rows = torch.arange(b)[:, None].expand(b, s)
    sel = m
    end_lift[rows[sel], from_end_index[sel]] = lift[sel]
    end_mask[rows[sel], from_end_index[sel]] = True

    def mean(vals: Tensor, msk: Tensor) -> tuple[np.ndarray, np.ndarray]:
        cnt = msk.sum(dim=0)
        avg = (vals * msk).sum(dim=0) / cnt.clamp(min=1)
        avg = torch.where(cnt > 0, avg, torch.full_like(avg, float("nan")))
        return avg.numpy(), cnt.numpy()

    from_start, count_start = mean(lift, m)
    from_end, count_end = mean(end_lift, end_mask)
    late = m & (pos[None, :] > (last_idx[:, None] - last))
    early = m & ~late
    kept = keep.nonzero().flatten()
    share = (lift * late).sum(dim=1)[kept] / n[kept].double()
    uniform = late.sum(dim=1)[kept].double() / n[kept].double()
    return SecondProfile(
        from_start=from_start,
        from_end=from_end,
        count_from_start=count_start,
        count_from_end=count_end,
        last=last,
        last_share=float(share.mean()) if len(kept) else float("nan"),
        uniform_last_share=float(uniform.mean()) if len(kept) else float("nan"),
        last_lift=float(lift[late].mean()) if late.any() else float("nan"),
        earlier_lift=float(lift[early].mean()) if early.any() else float("nan"),
    )


def _segment_mask(model: VidModel, batch: Mapping[str, Tensor]) -> Tensor:
    """(B, S) True where a segment has real frames or audio (what Sec2Sec treats as a real second)."""
    masks = []
    for key in _SEG_KEYS:
        if key in model.inputs:
            x = batch[key]
            masks.append(_mask_of(batch, key, tuple(x.shape[:2])))
    if not masks:
        raise ValueError(f"model {model.model_name or type(model).__name__!r} reads {list(model.inputs)}; "
                         f"expected a per-second model reading {list(_SEG_KEYS)}")
    return torch.stack(masks).any(dim=0)


@torch.no_grad()
def collect_segment_attention(model: VidModel, loader: Iterable[Mapping[str, Tensor]]) -> tuple[Tensor, Tensor]:
    """Run an attention Sec2Sec (``sec2sec-attn``, ``sec2sec-attn-wang``) over ``loader``; gather its per-second attention.

    Shapes:
        → attention (N, S) (each row sums to 1 over real seconds), mask (N, S) bool (real seconds)
    """
    model.eval()
    atts, masks = [], []
    for raw in loader:
        batch = _model_batch(model, raw)
        out = model(batch)
        if "segment_attention" not in out.extras:
            raise ValueError(f"model {model.model_name!r} returns no extras['segment_attention']; "
                             "expected an attention variant (e.g. 'sec2sec-attn')")
        atts.append(out.extras["segment_attention"].float().cpu())
        masks.append(_segment_mask(model, raw))
    if not atts:
        raise ValueError("loader yielded no batches")
    return torch.cat(atts), torch.cat(masks)


# ------------------------------------------------------------------------------------------- integrated gradients


def _ig_baselines(baselines: Mapping[str, Tensor] | None, keys: Sequence[str],
                  data: Mapping[str, Tensor]) -> tuple[Tensor, ...]:
    """The IG starting point of each attributed key: ``baselines[key]`` broadcast to the input, else zeros."""
    baselines = dict(baselines or {})
    unknown = sorted(set(baselines) - set(keys))
    if unknown:
        raise ValueError(f"baselines has key(s) {unknown} that are not attributed; expected some of {list(keys)}")
    out = []
    for key in keys:
        x = data[key].float()
        if key not in baselines:
            out.append(torch.zeros_like(x))
            continue
        b = torch.as_tensor(baselines[key], dtype=torch.float32, device=x.device)
        try:
            out.append(b.expand_as(x).contiguous())
        except RuntimeError:
            raise ValueError(f"baselines[{key!r}] has shape {tuple(b.shape)}; expected one that broadcasts to the "
                             f"input's {tuple(x.shape)}") from None
    return tuple(out)


def mean_baselines(loader: Iterable[Mapping[str, Tensor]], keys: Sequence[str]) -> dict[str, Tensor]:
    """The mean input over ``loader``'s real positions, per key: an Integrated-Gradients baseline "the average
    video" instead of "no input" (a zero MFCC frame is far from any real one: c0 of the synthetic clips is about -230).

    Time is averaged away so the baseline carries no temporal pattern: the mean image for ``vision`` (over real
    frames), the mean MFCC frame for ``audio`` (over frames its mask marks real; with a per-clip mask over clips
    that have audio), the mean per-second clip / MFCC frame for ``vision_seg`` / ``audio_seg``; other keys (vectors)
    are averaged over the videos whose mask is True. Positions and videos a mask marks absent do not count.

    Shapes:
        vision (B, T, 3, H, W) → (1, 3, H, W); audio (B, n_mfcc, F) → (n_mfcc, 1);
        vision_seg (B, S, T, 3, H, W) → (1, 1, 3, H, W); audio_seg (B, S, 3, n_mfcc, F) → (1, 3, n_mfcc, 1);
        other (B, D) → (D,)
    """
    sums: dict[str, Tensor] = {}
    counts: dict[str, Tensor] = {}
    for batch in loader:
        for key in keys:
            x = batch[key].detach().cpu().double()
            axes, mask_axis = _TIME_AXES.get(key, ((), 1))
            w = _mask_weights(batch.get(f"{key}_mask"), x, mask_axis)
            dims = (0, *(a % x.dim() for a in axes))
            sums[key] = sums.get(key, 0) + (x * w).sum(dim=dims, keepdim=True)
            counts[key] = counts.get(key, 0) + w.expand_as(x).sum(dim=dims, keepdim=True)
    missing = [k for k in keys if k not in sums]
    if missing:
        raise ValueError(f"loader yielded no batch for key(s) {missing}")
    return {k: (sums[k] / counts[k].clamp(min=1)).squeeze(0).float() for k in keys}


def _mask_weights(mask: Tensor | None, x: Tensor, axis: int) -> Tensor:
    """A 0/1 weight broadcastable to ``x`` (B, ...) from a mask (B,) or (B, n) lined up with ``x``'s ``axis``."""
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    if mask is None:
        return torch.ones(shape, dtype=x.dtype)
    m = mask.detach().cpu().to(x.dtype)
    if m.dim() == 2:
        shape[axis % x.dim()] = m.shape[1]
    return m.reshape(shape)


def integrated_gradients(
    model: VidModel,
    batch: Mapping[str, Tensor],
    *,
    target: int,
    keys: Sequence[str] | None = None,
    steps: int = 32,
    internal_batch_size: int | None = None,
    return_delta: bool = False,
    baselines: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor] | tuple[dict[str, Tensor], Tensor]:
    """Integrated Gradients (captum) of output ``target`` w.r.t. the model's input tensors.

    IG_i(x) = (x_i − x'_i) · ∫_0^1 ∂F_target(x' + α (x − x'))/∂x_i dα (eq. 3.12; captum's Gauss–Legendre quadrature
    with ``steps`` points approximates the integral more accurately than the paper's right Riemann sum with as many
    steps). The baseline x' is ``baselines[key]`` (broadcast to the input, e.g. the training mean of
    :func:`mean_baselines`) for the keys it holds and zero (= a missing input) for the others. Masks are passed
    through unchanged, so padded positions read as padding along the whole path. With ``return_delta`` also the
    completeness error Σ_i IG_i − (F(x) − F(x')) per video.

    Shapes:
        batch[key] per docs/ARCHITECTURE.md, baselines[key] broadcastable to batch[key] → {key: attribution of the
        same shape as batch[key]} (CPU, float32); delta (B,)
    """
    from captum.attr import IntegratedGradients

    k = model.spec.k
    if not isinstance(target, int) or not 0 <= target < k:
        raise ValueError(f"target={target!r}; expected an output index in [0, {k}) for task {model.task!r}")
    if steps < 2:
        raise ValueError(f"steps={steps}; expected >= 2")
    keys = tuple(keys) if keys is not None else tuple(model.inputs)
    unknown = [key for key in keys if key not in model.inputs]
    if unknown:
        raise ValueError(f"keys={list(unknown)}: not inputs of the model; expected some of {list(model.inputs)}")
    data = _model_batch(model, batch)
    start = _ig_baselines(baselines, keys, data)
    fixed_names = [name for name in data if name not in keys]
    fixed = tuple(data[name] for name in fixed_names)
    inputs = tuple(data[key].float() for key in keys)

    def forward(*args: Tensor) -> Tensor:
        feed = dict(zip(keys, args[: len(keys)]))
        feed.update(zip(fixed_names, args[len(keys):]))
        return model(feed).pred

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            ig = IntegratedGradients(forward)
            out = ig.attribute(inputs, baselines=start, target=target,
                               additional_forward_args=fixed or None, n_steps=steps,
                               internal_batch_size=internal_batch_size, return_convergence_delta=return_delta)
    finally:
        model.train(was_training)
    attrs, delta = (out if return_delta else (out, None))
    result = {key: a.detach().float().cpu() for key, a in zip(keys, attrs)}
    return (result, delta.detach().float().cpu()) if return_delta else result


def modality_attribution(attributions: Mapping[str, Tensor]) -> Tensor:
    """Signed total attribution of each modality per video (by completeness: how far it moved the prediction).

    Shapes:
        attributions {key: (B, ...)} for M keys (in mapping order) → (B, M)
    """
    if not attributions:
        raise ValueError("attributions is empty; expected {modality key: attribution tensor}")
    return torch.stack([a.flatten(1).sum(dim=1) for a in attributions.values()], dim=1)


def frame_attribution(vision: Tensor, mask: Tensor | None = None) -> Tensor:
    """Signed attribution of each frame position (sum over channels and pixels); masked frames give 0.

    Shapes:
        vision (B, T, 3, H, W), mask (B, T) or None → (B, T)
    """
    v = _as_tensor("vision", vision, 5)
    per = v.flatten(2).sum(dim=2)
    return per if mask is None else per * _as_tensor("mask", mask, 2).to(per.dtype)


def region_attribution(vision: Tensor, mask: Tensor | None = None, *, size: int = 64) -> Tensor:
    """Signed attribution of each pixel position, summed over real frames and channels, resampled to size × size.

    Resampling: area averaging when shrinking, nearest neighbour when enlarging (a heat-map cell then covers whole
    input pixels), scaled so each map keeps its total attribution.

    Shapes:
        vision (B, T, 3, H, W), mask (B, T) or None → (B, size, size)
    """
    v = _as_tensor("vision", vision, 5)
    if size < 1:
        raise ValueError(f"size={size}; expected >= 1")
    if mask is not None:
        v = v * _as_tensor("mask", mask, 2).to(v.dtype)[:, :, None, None, None]
    per_pixel = v.sum(dim=(1, 2))  # (B, H, W)
    h, w = per_pixel.shape[-2:]
    if (h, w) == (size, size):
        return per_pixel
    mode = "area" if h >= size and w >= size else "nearest"
    out = F.interpolate(per_pixel[:, None], size=(size, size), mode=mode)[:, 0]
    return out * (h * w) / (size * size)


def top_left_share(regions: Any) -> np.ndarray:
    """Share of each map's total attribution that falls in its top-left quadrant (rows and columns < size // 2).

    Shapes:
        regions (K, size, size) ≥ 0 (e.g. :attr:`AttributionSummary.regions`) → (K,)
    """
    r = np.asarray(regions, dtype=np.float64)
    if r.ndim != 3:
        raise ValueError(f"regions has shape {r.shape}; expected (K, size, size)")
    half = r.shape[-1] // 2
    return r[:, :half, :half].sum(axis=(1, 2)) / np.maximum(r.sum(axis=(1, 2)), 1e-30)


@dataclass(frozen=True)
class Trend:
    """A least-squares line y = intercept + slope · x (scipy.stats.linregress) over frame positions."""

    slope: float  # change per frame position
    intercept: float  # value at position 0
    r: float  # Pearson correlation of y with x
    p: float  # two-sided p-value of slope = 0


def fit_trend(values: Any, x: Any | None = None) -> Trend:
    """Fit the trend line of a per-position curve (the paper's linear regression per trait, Fig. 3.5).

    Shapes:
        values (T,), x (T,) or None (= 0..T−1) → Trend
    """
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or len(y) < 2:
        raise ValueError(f"values has shape {y.shape}; expected (T,) with T >= 2")
    xs = np.arange(len(y), dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64)
    if xs.shape != y.shape:
        raise ValueError(f"x has shape {xs.shape}; expected {y.shape} like values")
    if np.ptp(y) == 0:
        return Trend(slope=0.0, intercept=float(y[0]), r=0.0, p=1.0)
    res = linregress(xs, y)
    return Trend(slope=float(res.slope), intercept=float(res.intercept), r=float(res.rvalue), p=float(res.pvalue))


@dataclass(frozen=True)
class AttributionSummary:
    """Integrated-Gradients summary of a whole-clip model over a set of videos, one row per output (trait)."""

    targets: tuple[str, ...]  # K output names (e.g. the five traits)
    modalities: tuple[str, ...]  # M input keys attributed
    modality: np.ndarray  # (K, M) mean over videos of |signed modality attribution|
    modality_share: np.ndarray  # (K, M) the same, normalised to sum to 1 per output
    modality_signed: np.ndarray  # (K, M) mean over videos of the signed modality attribution
    frames: np.ndarray | None  # (K, T) mean over videos of |frame attribution| (real frames only); None without vision
    trends: tuple[Trend, ...]  # K trend lines of ``frames`` (empty without vision)
    regions: np.ndarray | None  # (K, size, size) mean over videos of |region attribution|; None without vision
    n_videos: int  # videos averaged


def summarise_attributions(
    model: VidModel,
    loader: Iterable[Mapping[str, Tensor]],
    *,
    steps: int = 32,
    max_videos: int | None = None,
    size: int = 64,
    internal_batch_size: int | None = None,
    baselines: Mapping[str, Tensor] | None = None,
) -> AttributionSummary:
    """Integrated Gradients of every output of a whole-clip model (MCAT, VAN, fusion baselines) over ``loader``,
    aggregated at modality, frame and region level (see the module docstring); ``baselines`` as for
    :func:`integrated_gradients` (None: zeros).

    Shapes:
        loader yields batches with the model's inputs → AttributionSummary with K outputs, M = len(model.inputs)
    """
    keys = tuple(model.inputs)
    if any(k in _SEG_KEYS for k in keys):
        raise ValueError(f"model reads {list(keys)}; summarise_attributions expects whole-clip inputs "
                         "(use segment_attributions for per-second models)")
    if max_videos is not None and max_videos < 1:
        raise ValueError(f"max_videos={max_videos}; expected None or >= 1")
    spec = model.spec
    mods, frames, regions = [[] for _ in range(spec.k)], [[] for _ in range(spec.k)], [[] for _ in range(spec.k)]
    frame_masks: list[Tensor] = []
    seen = 0
    for raw in loader:
        if max_videos is not None and seen >= max_videos:
            break
        take = len(raw[keys[0]]) if max_videos is None else min(len(raw[keys[0]]), max_videos - seen)
        batch = {k: v[:take] for k, v in raw.items() if isinstance(v, Tensor)}
        seen += take
        vmask = _mask_of(batch, "vision", tuple(batch["vision"].shape[:2])) if "vision" in keys else None
        if vmask is not None:
            frame_masks.append(vmask)
        for j in range(spec.k):
            attr = integrated_gradients(model, batch, target=j, steps=steps, internal_batch_size=internal_batch_size,
                                        baselines=baselines)
            mods[j].append(modality_attribution(attr))
            if vmask is not None:
                frames[j].append(frame_attribution(attr["vision"], vmask))
                regions[j].append(region_attribution(attr["vision"], vmask, size=size).abs())
    if seen == 0:
        raise ValueError("loader yielded no videos")
    mod = torch.stack([torch.cat(m) for m in mods])  # (K, N, M)
    magnitude = mod.abs().mean(dim=1).numpy()
    share = magnitude / np.clip(magnitude.sum(axis=1, keepdims=True), 1e-30, None)
    frame_curve = trends = region_map = None
    if frame_masks:
        fm = torch.cat(frame_masks).to(torch.float64)  # (N, T)
        per = torch.stack([torch.cat(f) for f in frames]).abs().double()  # (K, N, T)
        frame_curve = ((per * fm).sum(dim=1) / fm.sum(dim=0).clamp(min=1)).numpy()
        trends = tuple(fit_trend(c) for c in frame_curve)
        region_map = torch.stack([torch.cat(r) for r in regions]).mean(dim=1).numpy()
    return AttributionSummary(
        targets=spec.targets, modalities=keys, modality=magnitude, modality_share=share,
        modality_signed=mod.mean(dim=1).numpy(), frames=frame_curve, trends=trends or (), regions=region_map,
        n_videos=seen,
    )


def segment_attributions(model: VidModel, batch: Mapping[str, Tensor], *, target: int, steps: int = 32,
                         internal_batch_size: int | None = None,
                         baselines: Mapping[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Per-second Integrated Gradients of a Sec2Sec model: |signed sum over both streams| per second (``baselines``
    as for :func:`integrated_gradients`; None: zeros).

    Feed the result to :func:`second_profile` to see which seconds the prediction of ``target`` depends on.

    Shapes:
        batch["vision_seg"] (B, S, T, 3, H, W) and/or batch["audio_seg"] (B, S, 3, n_mfcc, F)
        → magnitudes (B, S) (0 on padding), mask (B, S)
    """
    mask = _segment_mask(model, batch)
    keys = [k for k in _SEG_KEYS if k in model.inputs]
    attr = integrated_gradients(model, batch, target=target, keys=keys, steps=steps,
                                internal_batch_size=internal_batch_size, baselines=baselines)
    per = sum(attr[k].flatten(2).sum(dim=2) for k in keys)
    return per.abs() * mask, mask


def collect_segment_attributions(model: VidModel, batches: Iterable[Mapping[str, Tensor]], *, target: int,
                                 steps: int = 32, max_videos: int | None = None,
                                 internal_batch_size: int | None = IG_CHUNK,
                                 baselines: Mapping[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """:func:`segment_attributions` over the first ``max_videos`` videos of ``batches`` (all when None), one batch at
    a time with at most ``internal_batch_size`` interpolated inputs per forward/backward pass (bounds the memory of
    Integrated Gradients).

    Shapes:
        batches as for :func:`segment_attributions` → magnitudes (N, S), mask (N, S), N ≤ max_videos
    """
    if max_videos is not None and max_videos < 1:
        raise ValueError(f"max_videos={max_videos}; expected None or >= 1")
    mags, masks, seen = [], [], 0
    for batch in batches:
        if max_videos is not None and seen >= max_videos:
            break
        part = batch if max_videos is None else {k: v[: max_videos - seen] for k, v in batch.items()}
        m, mk = segment_attributions(model, part, target=target, steps=steps, internal_batch_size=internal_batch_size,
                                     baselines=baselines)
        mags.append(m)
        masks.append(mk)
        seen += len(m)
    if not mags:
        raise ValueError("batches yielded no videos")
    return torch.cat(mags), torch.cat(masks)


# ------------------------------------------------------------------------------------------------------ VAN (Ch. 4)


def van_relation(model: VidModel, batch: Mapping[str, Tensor], *, relation: str = "attention") -> tuple[Tensor, Tensor]:
    """The per-head modality relation matrices of a VAN-style model (one ``coattention`` block over M rows).

    ``relation="attention"`` (default): R^h = (A^h)ᵀ, R_ij = the weight modality j's query puts on modality i, so row
    i holds what i contributes to every modality. ``relation="scores"``: the literal R^h = (W^Q z)(W^K z)ᵀ / √(D/H)
    before the softmax (row = query). See the module docstring for why the default differs from the literal formula.

    Shapes:
        batch per the model's inputs → R (B, H, M, M), present (B, M) bool (modality has real input)
    """
    if relation not in ("attention", "scores"):
        raise ValueError(f"relation={relation!r}; expected 'attention' or 'scores'")
    block = getattr(model, "coattention", None)
    if block is None:
        raise ValueError(f"model {model.model_name or type(model).__name__!r} has no 'coattention' block; "
                         "expected a VAN-style model (e.g. 'van')")
    captured: dict[str, Tensor] = {}

    def hook(_module: Any, args: tuple, kwargs: dict, _out: Any) -> None:
        captured["z"] = args[0].detach()
        captured["present"] = kwargs["x_mask"].detach()

    handle = block.register_forward_hook(hook, with_kwargs=True)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(_model_batch(model, batch))
    finally:
        handle.remove()
        model.train(was_training)
    present = captured["present"].cpu().to(torch.bool)
    if relation == "attention":
        weights = out.extras["modality_attention"].float().cpu()  # (B, H, M_query, M_key)
        return weights.transpose(-1, -2).contiguous(), present
    attn = block.attn
    with torch.no_grad():
        z = captured["z"]
        b, m, d = z.shape
        q = attn.to_q(z).view(b, m, attn.heads, -1).transpose(1, 2)
        k = attn.to_kv(z).chunk(2, dim=-1)[0].view(b, m, attn.heads, -1).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
    return scores.float().cpu(), present


@dataclass(frozen=True)
class Contributions:
    """VAN modality contributions (eq. 4.15–4.17), averaged over videos."""

    per_head: np.ndarray  # (H, M) mean over videos of c̃^h (each row sums to 1)
    overall: np.ndarray  # (M,) mean over heads of per_head (sums to 1)


def modality_contributions(relation: Any, present: Any | None = None) -> Contributions:
    """c_i^h = Σ_j R_ij^h; c̃^h = softmax over present modalities; c̃ = mean over heads; then mean over videos.

    A modality that is missing in a video (``present`` False) gets c̃ = 0 there and is left out of that softmax.

    Shapes:
        relation (B, H, M, M), present (B, M) bool or None → Contributions(per_head (H, M), overall (M,))
    """
    r = _as_tensor("relation", relation, 4).double()
    b, h, m, m2 = r.shape
    if m != m2 or b == 0:
        raise ValueError(f"relation has shape {tuple(r.shape)}; expected (B, H, M, M) with B >= 1")
    p = torch.ones(b, m, dtype=torch.bool) if present is None else _as_tensor("present", present, 2).to(torch.bool)
    if tuple(p.shape) != (b, m):
        raise ValueError(f"present has shape {tuple(p.shape)}; expected (B, M) = {(b, m)}")
    keep = p.any(dim=1)
    if not keep.any():
        raise ValueError("present: no video has any modality present")
    c = r.sum(dim=-1)  # (B, H, M), eq. 4.15
    c = c.masked_fill(~p[:, None, :], float("-inf")).softmax(dim=-1)  # eq. 4.16
    per_head = c[keep].mean(dim=0)  # (H, M)
    return Contributions(per_head=per_head.numpy(), overall=per_head.mean(dim=0).numpy())  # eq. 4.17 with 1/H


def _absent_mask(batch: Mapping[str, Tensor], key: str) -> Tensor:
    """An all-False ``<key>_mask``: shaped like the batch's own mask of ``key`` when it has one, else per item of the
    key's second axis for frames, seconds and embedding sequences, and per clip for vectors and raw MFCC.

    Shapes:
        vision (B, T, 3, H, W) · vision_seg / audio_seg (B, S, ...) · *_emb (B, N, D) → (B, T) / (B, S) / (B, N);
        audio (B, n_mfcc, F), vectors (B, D) → (B,)
    """
    x, m = batch[key], batch.get(f"{key}_mask")
    shape = m.shape if m is not None else mask_shape(key, x.shape)
    return torch.zeros(shape, dtype=torch.bool, device=x.device)


@torch.no_grad()
def modality_ablation(model: VidModel, batch: Mapping[str, Tensor]) -> np.ndarray:
    """Mean |Δ prediction| when each input modality in turn is masked out (input zeroed, mask False).

    A model-agnostic check on attention-based contributions: masking the modality a prediction depends on moves it.

    Shapes:
        batch per the model's inputs → (M,) in the order of ``model.inputs``, averaged over videos and outputs
    """
    was_training = model.training
    model.eval()
    try:
        data = _model_batch(model, batch)
        base = model(data).pred
        out = []
        for key in model.inputs:
            x = data[key]
            ablated = {**data, key: torch.zeros_like(x), f"{key}_mask": _absent_mask(data, key)}
            out.append(float((model(ablated).pred - base).abs().mean()))
    finally:
        model.train(was_training)
    return np.asarray(out)


@dataclass(frozen=True)
class ContributionSummary:
    """VAN modality contributions over a set of videos next to the modality-ablation check."""

    contributions: Contributions  # eq. 4.15–4.17 averaged over the videos
    ablation: np.ndarray  # (M,) mean over videos of :func:`modality_ablation`, in the order of ``model.inputs``
    n_videos: int  # videos summarised


def summarise_contributions(model: VidModel, loader: Iterable[Mapping[str, Tensor]], *,
                            relation: str = "attention") -> ContributionSummary:
    """:func:`van_relation` and :func:`modality_ablation` over every batch of ``loader``: the contributions of all
    videos together and the ablation averaged over videos (each batch's mean weighted by its size).

    Shapes:
        loader yields batches with the model's inputs → ContributionSummary(per_head (H, M), overall (M,),
        ablation (M,))
    """
    rels, present, ablated, n = [], [], [], 0
    for batch in loader:
        r, p = van_relation(model, batch, relation=relation)
        rels.append(r)
        present.append(p)
        ablated.append(modality_ablation(model, batch) * len(r))
        n += len(r)
    if n == 0:
        raise ValueError("loader yielded no videos")
    return ContributionSummary(contributions=modality_contributions(torch.cat(rels), torch.cat(present)),
                               ablation=np.sum(ablated, axis=0) / n, n_videos=n)
