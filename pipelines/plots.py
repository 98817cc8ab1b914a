"""Plots for the comparison and decision-support reports: matplotlib (Agg backend, no display needed) → PNG bytes.

Each helper draws one figure from arrays and returns it as PNG bytes, which the calling flow stores with
:meth:`features.store.Store.write_report`; nothing here computes a statistic or writes a file. Figures are small (a few
hundred kB at most) so they can be linked from Markdown reports and Prefect artifacts.
"""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless, thread-safe enough for flows (one figure per call, closed after)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_contributions", "plot_frames", "plot_modality_shares", "plot_regions", "plot_scree", "plot_seconds"]

_DPI = 110


def _png(fig: "plt.Figure") -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plot_seconds(curves: Mapping[str, np.ndarray], *, title: str, last: int = 3) -> bytes:
    """Per-second lift curves aligned to the end (x = seconds before the end; 1 = uniform), last ``last`` shaded.

    Shapes:
        curves {label: (S,)} with NaN where no video has that second
    """
    fig, ax = plt.subplots(figsize=(7, 3.2))
    s = max(len(c) for c in curves.values())
    x = np.arange(-s + 1, 1)
    for label, c in curves.items():
        ax.plot(x[-len(c):], c, marker="o", label=label)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--", label="uniform")
    ax.axvspan(-last + 0.5, 0.5, color="orange", alpha=0.15, label=f"last {last} s")
    ax.set_xlabel("second relative to the video's last second")
    ax.set_ylabel("normalised weight (lift)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_modality_shares(shares: np.ndarray, targets: Sequence[str], modalities: Sequence[str], *,
                         title: str) -> bytes:
    """Grouped bars: share of attribution per modality for each output.

    Shapes:
        shares (K, M)
    """
    k, m = shares.shape
    fig, ax = plt.subplots(figsize=(1.4 * k + 2, 3.2))
    width = 0.8 / m
    for j, name in enumerate(modalities):
        ax.bar(np.arange(k) + (j - (m - 1) / 2) * width, shares[:, j], width, label=name)
    ax.set_xticks(np.arange(k), targets, rotation=20)
    ax.set_ylabel("share of |attribution|")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_frames(frames: np.ndarray, trends: Sequence[tuple[float, float]], targets: Sequence[str], *,
                title: str) -> bytes:
    """Mean |attribution| per frame position with its fitted trend line, one line per output.

    Shapes:
        frames (K, T); trends K × (slope, intercept)
    """
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = np.arange(frames.shape[1])
    for curve, (slope, intercept), name in zip(frames, trends, targets):
        line = ax.plot(x, curve, marker=".", label=name)[0]
        ax.plot(x, intercept + slope * x, ls="--", color=line.get_color(), lw=1)
    ax.set_xlabel("frame position")
    ax.set_ylabel("mean |attribution|")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_regions(regions: np.ndarray, targets: Sequence[str], *, title: str) -> bytes:
    """One heat-map per output of where in the frame the attribution falls.

    Shapes:
        regions (K, size, size)
    """
    k = len(regions)
    fig, axes = plt.subplots(1, k, figsize=(2.4 * k, 2.8), squeeze=False)
    for ax, heat, name in zip(axes[0], regions, targets):
        ax.imshow(heat, cmap="magma", interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    return _png(fig)


def plot_contributions(overall: np.ndarray, per_head: np.ndarray, modalities: Sequence[str], *,
                       title: str) -> bytes:
    """Bar charts of modality contributions: overall, then one panel per head.

    Shapes:
        overall (M,), per_head (H, M)
    """
    h = len(per_head)
    fig, axes = plt.subplots(1, h + 1, figsize=(2.6 * (h + 1), 2.8), squeeze=False, sharey=True)
    panels = [("overall", overall), *((f"head {i + 1}", row) for i, row in enumerate(per_head))]
    for ax, (name, values) in zip(axes[0], panels):
        ax.bar(list(modalities), values, color=plt.cm.tab10(np.arange(len(modalities))))
        ax.set_title(name, fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    axes[0][0].set_ylabel("contribution")
    fig.suptitle(title)
    return _png(fig)


def plot_scree(observed: np.ndarray, random_mean: np.ndarray, random_quantile: np.ndarray, *,
               title: str, quantile: float = 0.95) -> bytes:
    """Parallel-analysis scree plot: observed eigenvalues vs random-data eigenvalues.

    Shapes:
        observed, random_mean, random_quantile (P,)
    """
    fig, ax = plt.subplots(figsize=(5, 3.2))
    x = np.arange(1, len(observed) + 1)
    ax.plot(x, observed, marker="o", label="observed")
    ax.plot(x, random_mean, ls="--", label="random data (mean)")
    ax.plot(x, random_quantile, ls=":", label=f"random data ({quantile:.0%} quantile)")
    ax.set_xlabel("factor")
    ax.set_ylabel("eigenvalue")
    ax.set_xticks(x)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig)
