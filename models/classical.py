"""Classical floor baselines on pooled features: linear regression, random forest and SVR via scikit-learn.

MTAF (paper 003, Table 2) compares against exactly these (LR, RFR, SVR). They are not ``VidModel``s and are not
registered: :func:`pooled_features` turns a tensor pack (or one batch of it) into a flat (N, D) matrix, and
:func:`fit_classical` / :func:`predict_classical` fit and apply an estimator in the task's output space, so the
comparison flow can score them with ``models.metrics.compute_metrics`` next to the deep models.

Pooling (masked items count as absent; per key, in the order of ``keys``):

* ``vision`` (N, T, 3, H, W): mean over the real frames, then a ``grid`` × ``grid`` average pool per channel
  (3·grid² features; a bare mean over frames would leave 3·H·W pixel features, far too many for these estimators);
* ``vision_seg`` (N, S, T, 3, H, W): the same over the real segments' frames;
* ``audio`` (N, n_mfcc, F): mean and standard deviation over the real frames per coefficient (2·n_mfcc; the classic
  MFCC functionals; a short clip's padding is not counted); an item without audio gives zeros;
* ``audio_seg`` (N, S, 3, n_mfcc, F): mean and SD over the real segments and time per channel and coefficient;
* ``text``, ``graph``, ``meta`` (N, D): as they are (zeros when masked).

Arrays may be numpy arrays or lazily read h5py datasets; rows are pooled ``chunk`` at a time so a pack of frames
never has to fit in memory. ``uint8`` frames are scaled to [0, 1].
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from models.base import mask_shape

__all__ = ["CLASSICAL_KINDS", "POOLABLE_KEYS", "fit_classical", "pooled_features", "predict_classical"]

POOLABLE_KEYS = ("vision", "vision_seg", "audio", "audio_seg", "text", "graph", "meta")
CLASSICAL_KINDS = ("linear", "random-forest", "svr")


# ---------------------------------------------------------------------------------------------------------- pooling


def _frames(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)


def _grid_pool(img: np.ndarray, grid: int) -> np.ndarray:
    """Average pool the last two axes to grid × grid (cells as equal as integer edges allow).

    Shapes:
        (n, C, H, W) → (n, C·grid²)
    """
    n, c, h, w = img.shape
    rows = np.array_split(np.arange(h), min(grid, h))
    cols = np.array_split(np.arange(w), min(grid, w))
    cells = [img[:, :, r[0]:r[-1] + 1, q[0]:q[-1] + 1].mean(axis=(2, 3)) for r in rows for q in cols]
    return np.stack(cells, axis=-1).reshape(n, -1)


def _masked_mean(x: np.ndarray, mask: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    w = mask.astype(np.float64).reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
    return (x * w).sum(axis=axis) / np.maximum(w.sum(axis=axis), 1.0)


def _pool_rows(key: str, x: np.ndarray, mask: np.ndarray, grid: int) -> np.ndarray:
    """Pooled features of a chunk of rows of one key (see module docstring).

    Shapes:
        x (n, ...), mask (n,) / (n, T) / (n, S) → (n, D_key)
    """
    n = x.shape[0]
    if key == "vision":  # (n, T, 3, H, W), mask (n, T)
        return _grid_pool(_masked_mean(_frames(x), mask, (1,)), grid)
    if key == "vision_seg":  # (n, S, T, 3, H, W), mask (n, S)
        m = np.broadcast_to(mask[:, :, None], x.shape[:3])
        return _grid_pool(_masked_mean(_frames(x), m, (1, 2)), grid)
    if key == "audio":  # (n, n_mfcc, F), mask (n, F) per MFCC frame or (n,) per clip: statistics of the real frames
        m = np.broadcast_to(mask[:, None] if mask.ndim == 1 else mask, (n, x.shape[2]))[:, None, :]  # (n, 1, F)
        x = x.astype(np.float64)
        mean = _masked_mean(x, m, (2,))
        std = np.sqrt(_masked_mean((x - mean[:, :, None]) ** 2, m, (2,)))
        return np.concatenate([mean, std], axis=1)
    if key == "audio_seg":  # (n, S, 3, n_mfcc, F), mask (n, S)
        x = x.astype(np.float64)
        m = np.broadcast_to(mask[:, :, None], (n, x.shape[1], x.shape[-1]))  # (n, S, F)
        w = m.astype(np.float64)[:, :, None, None, :]
        count = np.maximum(w.sum(axis=(1, 4)), 1.0)  # (n, 1, 1)
        mean = (x * w).sum(axis=(1, 4)) / count
        var = (((x - mean[:, None, :, :, None]) ** 2) * w).sum(axis=(1, 4)) / count
        return np.concatenate([mean.reshape(n, -1), np.sqrt(var).reshape(n, -1)], axis=1)
    return x.astype(np.float64).reshape(n, -1) * mask[:, None]  # text / graph / meta (n, D)


def pooled_features(batch_arrays: Mapping[str, Any], keys: Sequence[str] | None = None, *, grid: int = 4,
                    chunk: int = 256) -> np.ndarray:
    """Pool pack arrays into one flat feature matrix (module docstring); missing ``<key>_mask`` = all real.

    ``keys`` defaults to every poolable key present, in the order of POOLABLE_KEYS.

    Shapes:
        batch_arrays[key] (N, ...) → (N, D) float64, D = Σ over keys of the pooled widths
    """
    if keys is None:
        keys = [k for k in POOLABLE_KEYS if k in batch_arrays]
    keys = list(keys)
    bad = [k for k in keys if k not in POOLABLE_KEYS]
    if bad:
        raise ValueError(f"keys={bad!r} cannot be pooled; expected some of {list(POOLABLE_KEYS)}")
    missing = [k for k in keys if k not in batch_arrays]
    if not keys or missing:
        raise ValueError(f"batch_arrays has keys {sorted(batch_arrays)}; expected the key(s) {missing or list(POOLABLE_KEYS)}")
    if grid < 1 or chunk < 1:
        raise ValueError(f"grid={grid}, chunk={chunk}; expected both >= 1")
    n = len(batch_arrays[keys[0]])
    blocks = []
    for key in keys:
        arr = batch_arrays[key]
        if len(arr) != n:
            raise ValueError(f"batch_arrays[{key!r}] has {len(arr)} rows; expected {n} like {keys[0]!r}")
        mask_arr = batch_arrays.get(f"{key}_mask")
        flags = mask_shape(key, np.shape(arr), None if mask_arr is None else np.shape(mask_arr), where="batch_arrays")
        parts = []
        for start in range(0, n, chunk):
            x = np.asarray(arr[start:start + chunk])
            mask = (np.ones((len(x), *flags[1:]), dtype=bool) if mask_arr is None
                    else np.asarray(mask_arr[start:start + chunk], dtype=bool))
            parts.append(_pool_rows(key, x, mask, grid))
        blocks.append(np.concatenate(parts, axis=0) if parts else np.zeros((0, 0)))
    return np.concatenate(blocks, axis=1)


# ------------------------------------------------------------------------------------------------------ estimators


def _estimator(kind: str, seed: int, params: Mapping[str, Any], k: int) -> BaseEstimator:
    if kind == "linear":
        # Ridge, not plain OLS: pooled features easily outnumber the training videos; alpha → 0 gives OLS back.
        return make_pipeline(StandardScaler(), Ridge(**{"alpha": 1.0, **params}))
    if kind == "random-forest":
        return RandomForestRegressor(**{"n_estimators": 200, "random_state": seed, "n_jobs": 1, **params})
    assert kind == "svr", kind
    svr = SVR(**{"C": 1.0, "epsilon": 0.05, **params})
    return make_pipeline(StandardScaler(), MultiOutputRegressor(svr) if k > 1 else svr)  # SVR is single-output


def fit_classical(kind: str, X_train: Any, y_train: Any, *, seed: int = 0, **params: Any) -> BaseEstimator:
    """Fit a floor baseline: ``linear`` (standardise + ridge, α = 1), ``random-forest`` (200 trees) or ``svr``
    (standardise + RBF SVR per output). ``params`` go to the sklearn estimator (Ridge / RandomForestRegressor / SVR).

    Emotion targets (0/1) are regressed too; ``compute_metrics`` thresholds the predictions at 0.5.

    Shapes:
        X_train (N, D), y_train (N,) or (N, K) → fitted estimator whose ``predict`` gives (N, K)
    """
    if kind not in CLASSICAL_KINDS:
        raise ValueError(f"kind={kind!r}; expected one of {list(CLASSICAL_KINDS)}")
    x = np.asarray(X_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"X_train {x.shape}, y_train {np.shape(y_train)}: expected (N, D) and (N,) or (N, K), N >= 2")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("X_train or y_train contains NaN or inf; expected finite values")
    est = clone(_estimator(kind, seed, params, y.shape[1]))
    return est.fit(x, y[:, 0] if y.shape[1] == 1 else y)  # 1-D for one output: sklearn warns on column vectors


def predict_classical(estimator: BaseEstimator, X: Any) -> np.ndarray:
    """Predictions of a :func:`fit_classical` estimator, clipped to the task's output space [0, 1].

    Shapes:
        X (N, D) → (N, K)
    """
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"X has shape {x.shape}; expected (N, D)")
    p = np.asarray(estimator.predict(x), dtype=np.float64)
    return np.clip(p[:, None] if p.ndim == 1 else p, 0.0, 1.0)
