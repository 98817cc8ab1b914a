"""Task metrics (sklearn / scipy implementations) and the constant baseline every result is compared with.

emotion: accuracy and F1 per valence/arousal at threshold 0.5, and their means.
personality: mean accuracy per trait, 1 − mean|y − ŷ| (eq. 3.9), averaged over traits; MAE, MSE, R², NDCG@10.
popularity, popularity_mtaf (MTAF eq. 1): Spearman rank correlation, MAE, MSE, R², NDCG@10.

Intervals: :func:`bootstrap_intervals` resamples the test videos (percentile bootstrap; with a ``reference``
prediction it also gives the interval of the paired difference, the same resample for both, which is what tells a
0.02 difference from noise); :func:`seed_interval` is the Student-t interval of a mean over independent runs (seeds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata, spearmanr, t as student_t
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error, ndcg_score, r2_score

from models.base import task_spec

__all__ = ["ConstantBaseline", "bootstrap_intervals", "compute_metrics", "constant_baseline", "seed_interval"]


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


def compute_metrics(task: str, y_true: object, y_pred: object, *,
                    targets: tuple[str, ...] | list[str] | None = None) -> dict[str, float]:
    """Metrics of ``task`` for targets and predictions in the task's output space (probabilities for emotion).

    ``targets``: the columns are only these targets of the task (a model trained on a subset, see
    ``models.base.task_spec``); per-target metrics are named after them and the means run over them.

    Shapes:
        y_true (N, K), y_pred (N, K) (a 1-D array is accepted for K = 1) → dict of python floats
    """
    spec = task_spec(task, targets)
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


def constant_baseline(task: str, y_train: object, *,
                      targets: tuple[str, ...] | list[str] | None = None) -> ConstantBaseline:
    """Fit the constant predictor on training targets: majority class per column (emotion), else the mean.

    Ties in the majority vote go to class 1. ``targets`` as in :func:`compute_metrics`. Shapes: y_train (N, K).
    """
    y = _as_2d("y_train", y_train, task_spec(task, targets).k)
    if len(y) == 0:
        raise ValueError("y_train is empty; expected at least one training target")
    value = (y >= 0.5).mean(axis=0) >= 0.5 if task == "emotion" else y.mean(axis=0)
    return ConstantBaseline(task=task, value=np.asarray(value, dtype=np.float64))


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r}: expected a confidence level strictly between 0 and 1, e.g. 0.95")
    return float(level)


def _resampled_metrics(task: str, names: tuple[str, ...], y: np.ndarray, p: np.ndarray,
                       idx: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of :func:`compute_metrics` (all but NDCG@10) on every resample at once, vectorised.

    Shapes:
        y, p (N, K); idx (B, N) row indices of B resamples → {metric: (B,)}
    """
    yb, pb = y[idx], p[idx]  # (B, N, K)
    out: dict[str, np.ndarray] = {}
    if task == "emotion":
        yt, yp = yb >= 0.5, pb >= 0.5
        acc = (yt == yp).mean(axis=1)
        tp = (yt & yp).sum(axis=1)
        wrong = (yt != yp).sum(axis=1)
        f1 = np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)  # sklearn zero_division=0
        for j, name in enumerate(names):
            out[f"accuracy_{name}"], out[f"f1_{name}"] = acc[:, j], f1[:, j]
        out["accuracy_mean"], out["f1_mean"] = acc.mean(axis=1), f1.mean(axis=1)
        return out
    err = pb - yb
    if task == "personality":
        per = 1.0 - np.abs(err).mean(axis=1)
        for j, name in enumerate(names):
            out[f"mean_accuracy_{name}"] = per[:, j]
        out["mean_accuracy"] = per.mean(axis=1)
    else:
        ry, rp = rankdata(yb[:, :, 0], axis=1), rankdata(pb[:, :, 0], axis=1)
        ry, rp = ry - ry.mean(axis=1, keepdims=True), rp - rp.mean(axis=1, keepdims=True)
        den = np.sqrt((ry ** 2).sum(axis=1) * (rp ** 2).sum(axis=1))
        out["spearman"] = np.where(den > 0, (ry * rp).sum(axis=1) / np.where(den > 0, den, 1.0), 0.0)
    out["mae"] = np.abs(err).mean(axis=(1, 2))
    out["mse"] = (err ** 2).mean(axis=(1, 2))
    ss_res = (err ** 2).sum(axis=1)
    ss_tot = ((yb - yb.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    # sklearn's r2_score (force_finite): a constant target scores 1 if predicted exactly, else 0
    r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.where(ss_res == 0, 1.0, 0.0))
    out["r2"] = r2.mean(axis=1)
    return out


def bootstrap_intervals(task: str, y_true: object, y_pred: object, *, reference: object | None = None,
                        n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                        targets: tuple[str, ...] | list[str] | None = None) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap intervals of the metrics of ``task``, resampling the videos (rows) with replacement.

    Every metric of :func:`compute_metrics` except NDCG@10 (a resample repeats videos, and repeats tie inside the
    top 10, so NDCG@10 of a resample is not the statistic of the test set). With ``reference`` (another model's
    predictions for the same rows) the result also holds ``delta_<metric>``: the interval of ``metric(y_pred) -
    metric(reference)`` over the same resamples (a paired bootstrap); an interval that excludes 0 says the difference
    is larger than the resampling noise of this test set. ``targets`` as in :func:`compute_metrics`.

    Shapes:
        y_true (N, K), y_pred (N, K), reference (N, K) (1-D accepted for K = 1) → {metric: (low, high)}
    """
    level = _check_level(level)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot={n_boot!r}: expected an integer >= 2")
    spec = task_spec(task, targets)
    y, p = _as_2d("y_true", y_true, spec.k), _as_2d("y_pred", y_pred, spec.k)
    r = None if reference is None else _as_2d("reference", reference, spec.k)
    if len(y) != len(p) or (r is not None and len(r) != len(y)) or len(y) < 2:
        raise ValueError(f"y_true has {len(y)} rows, y_pred {len(p)}" + ("" if r is None else f", reference {len(r)}")
                         + "; expected the same number, at least 2")
    idx = np.random.default_rng(seed).integers(0, len(y), (int(n_boot), len(y)))
    draws = _resampled_metrics(task, tuple(spec.targets), y, p, idx)
    if r is not None:
        base = _resampled_metrics(task, tuple(spec.targets), y, r, idx)
        draws.update({f"delta_{name}": v - base[name] for name, v in list(draws.items())})
    tail = 100 * (1 - level) / 2
    return {name: (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))) for name, v in draws.items()}


def seed_interval(values: object, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of independent replicate values (one per seed): ``(mean, low, high)``.

    One value gives ``(v, nan, nan)``: an interval needs at least two replicates.

    Shapes:
        values (R,) → three floats
    """
    level = _check_level(level)
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"values={values!r}: expected at least one finite number")
    mean = float(v.mean())
    if v.size < 2:
        return mean, float("nan"), float("nan")
    half = float(student_t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return mean, mean - half, mean + half
