"""Task metrics (sklearn / scipy implementations) and the constant baseline every result is compared with.

emotion: accuracy and F1 per valence/arousal at threshold 0.5, and their means.
personality: mean accuracy per trait, 1 − mean|y − ŷ| (eq. 3.9), averaged over traits; MAE, MSE, R², NDCG@10.
popularity: Spearman rank correlation, MAE, MSE, R², NDCG@10.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error, ndcg_score, r2_score

from models.base import TASKS

__all__ = ["ConstantBaseline", "compute_metrics", "constant_baseline"]


def _as_2d(name: str, y: object, k: int) -> np.ndarray:
    a = np.asarray(y, dtype=np.float64)
    if a.ndim == 1 and k == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] != k:
        raise ValueError(f"{name} has shape {a.shape}; expected (N, {k})")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _spearman(y: np.ndarray, p: np.ndarray) -> float:
    # A constant ranking carries no rank information: report 0 rather than scipy's NaN (JSON- and max()-friendly).
    if len(y) < 2 or np.ptp(y) == 0 or np.ptp(p) == 0:
        return 0.0
    return float(spearmanr(y, p).statistic)


def _ndcg10(y: np.ndarray, p: np.ndarray) -> float:
    # sklearn needs non-negative relevance; targets live in [0, 1] by contract, shift defensively if not.
    if len(y) < 2:
        return 1.0
    rel = y - min(0.0, float(y.min()))
    return float(ndcg_score(rel[None, :], p[None, :], k=10))


def compute_metrics(task: str, y_true: object, y_pred: object) -> dict[str, float]:
    """Metrics of ``task`` for targets and predictions in the task's output space (probabilities for emotion).

    Shapes:
        y_true (N, K), y_pred (N, K) (a 1-D array is accepted for K = 1) → dict of python floats
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not a known task; expected one of {sorted(TASKS)}")
    spec = TASKS[task]
    y = _as_2d("y_true", y_true, spec.k)
    p = _as_2d("y_pred", y_pred, spec.k)
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"y_true has {len(y)} rows and y_pred {len(p)}; expected the same non-zero number")
    out: dict[str, float] = {}
    if task == "emotion":
        yt, yp = (y >= 0.5).astype(int), (p >= 0.5).astype(int)
        for j, name in enumerate(spec.targets):
            out[f"accuracy_{name}"] = float(accuracy_score(yt[:, j], yp[:, j]))
            out[f"f1_{name}"] = float(f1_score(yt[:, j], yp[:, j], zero_division=0.0))
        out["accuracy_mean"] = float(np.mean([out[f"accuracy_{n}"] for n in spec.targets]))
        out["f1_mean"] = float(np.mean([out[f"f1_{n}"] for n in spec.targets]))
        return out
    if task == "personality":
        for j, name in enumerate(spec.targets):
            out[f"mean_accuracy_{name}"] = float(1.0 - mean_absolute_error(y[:, j], p[:, j]))
        out["mean_accuracy"] = float(np.mean([out[f"mean_accuracy_{n}"] for n in spec.targets]))
    else:
        out["spearman"] = _spearman(y[:, 0], p[:, 0])
    out["mae"] = float(mean_absolute_error(y, p))
    out["mse"] = float(mean_squared_error(y, p))
    out["r2"] = float(r2_score(y, p)) if len(y) > 1 else 0.0
    out["ndcg@10"] = float(np.mean([_ndcg10(y[:, j], p[:, j]) for j in range(spec.k)]))
    return out


@dataclass(frozen=True)
class ConstantBaseline:
    """A predictor that outputs the same value for every input."""

    task: str  # task the value was fitted for
    value: np.ndarray  # (K,) the constant prediction

    def predict(self, n: int) -> np.ndarray:
        """Shapes: → (n, K)."""
        return np.tile(self.value, (n, 1))


def constant_baseline(task: str, y_train: object) -> ConstantBaseline:
    """Fit the constant predictor on training targets: majority class per column (emotion), else the mean.

    Ties in the majority vote go to class 1. Shapes: y_train (N, K).
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not a known task; expected one of {sorted(TASKS)}")
    y = _as_2d("y_train", y_train, TASKS[task].k)
    if len(y) == 0:
        raise ValueError("y_train is empty; expected at least one training target")
    value = (y >= 0.5).mean(axis=0) >= 0.5 if task == "emotion" else y.mean(axis=0)
    return ConstantBaseline(task=task, value=np.asarray(value, dtype=np.float64))
