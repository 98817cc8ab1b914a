"""The one training engine for every model: ``fit``, ``evaluate`` and checkpoints.

The loop never branches on the model: the loss, the optimizer (``configure_optimizer``) and the task (which metrics,
which one picks the best epoch) come from the model. Loaders yield dict batches (docs/ARCHITECTURE.md keys +
``target``); only the model's inputs, their masks and the target are moved to the device.

Early stopping (dissertation §3.5.2): stop when the validation loss has risen ``patience_rising`` epochs in a row, or
has not improved on its best for ``patience_no_improve`` epochs. The best epoch is chosen by the task's validation
metric (higher is better); it and the ``top_k`` best epochs are kept as checkpoints, and after ``fit`` the model holds
the best epoch's weights. ``last.pt`` holds everything needed to resume (optimizer, scaler, RNG states, history);
a run that does not resume first removes the folder's earlier ``best.pt`` / ``last.pt`` / ``epoch_*.pt``.

Checkpoints are written atomically (temporary file in the same folder, then ``os.replace``) and carry the registered
model name and config, so ``load_checkpoint`` rebuilds the model through ``create_model`` alone, and the version of
every input the model reads (:mod:`models.input_versions`): a checkpoint trained on other inputs than this code feeds
its model is refused on reload (and not resumed) instead of silently reading other inputs.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

from models.base import IMAGE_KEYS, VidModel
from models.input_versions import check_input_versions, recorded_versions
from models.metrics import compute_metrics
from models.registry import create_model

__all__ = [
    "EarlyStopping",
    "FitResult",
    "TrainConfig",
    "evaluate",
    "fit",
    "hflip_batch",
    "load_checkpoint",
    "save_checkpoint",
    "seed_everything",
]

_FORMAT = 1  # checkpoint format version; bump when the payload layout changes


@dataclass(kw_only=True)
class TrainConfig:
    """How to train (the same for every model)."""

    epochs: int = 50  # maximum number of epochs
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # L2 weight decay on weight matrices (see VidModel.configure_optimizer)
    hflip: float = 0.0  # probability that a training video's frames are mirrored left-right (MCAT §3.5.2: 0.5)
    batch_size: int = 32  # used by the caller's DataLoader; kept here so a run's record is complete
    grad_clip: float | None = 1.0  # max global gradient norm; None or 0 disables clipping
    patience_rising: int = 5  # stop after this many consecutive epochs of rising validation loss
    patience_no_improve: int = 10  # stop after this many epochs without a new best validation loss
    top_k: int = 3  # keep checkpoints of the k best epochs by the monitored metric (0 = only best.pt)
    seed: int = 0  # seeds python, numpy and torch at the start of fit
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
    amp: bool = True  # mixed precision (bf16, else fp16 + GradScaler) — only ever on CUDA
    monitor: str | None = None  # validation metric that picks the best epoch; None = the task's (TaskSpec.monitor)

    def __post_init__(self) -> None:
        for name in ("epochs", "patience_rising", "patience_no_improve", "top_k", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name == "batch_size" else 0):
                raise ValueError(f"{name}={value!r}; expected a non-negative int (batch_size >= 1)")
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr}; expected > 0")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay={self.weight_decay}; expected >= 0 (L2 penalty, e.g. 1e-4)")
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"hflip={self.hflip}; expected a probability in [0, 1] (MCAT: 0.5)")
        if self.grad_clip is not None and self.grad_clip < 0:
            raise ValueError(f"grad_clip={self.grad_clip}; expected None or >= 0")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device={self.device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


@dataclass
class EarlyStopping:
    """The two stopping rules, fed one validation loss per epoch; ``update`` returns the reason to stop or None."""

    patience_rising: int  # consecutive rises that stop training
    patience_no_improve: int  # epochs without a new best that stop training
    best: float = math.inf  # best validation loss so far
    previous: float | None = None  # last epoch's validation loss
    rising: int = 0  # current run of consecutive rises
    stale: int = 0  # epochs since the best

    def update(self, val_loss: float) -> str | None:
        finite = math.isfinite(val_loss)
        rose = not finite or (self.previous is not None and val_loss > self.previous)
        self.rising = self.rising + 1 if rose else 0
        if finite and val_loss < self.best:
            self.best, self.stale = val_loss, 0
        else:
            self.stale += 1
        self.previous = val_loss
        if self.patience_rising and self.rising >= self.patience_rising:
            return "val_loss_rising"
        if self.patience_no_improve and self.stale >= self.patience_no_improve:
            return "no_improvement"
        return None


@dataclass
class FitResult:
    """What a training run produced."""

    history: list[dict[str, float]]  # one record per epoch: epoch, train_loss, val_loss, seconds, val_<metric>…
    best_epoch: int | None  # epoch with the best monitored validation metric (None when no epoch ran)
    best_metrics: dict[str, float]  # validation metrics of the best epoch
    monitor: str  # the metric that picked it
    best_checkpoint: Path | None  # best.pt (None without a checkpoint_dir)
    top_k: list[Path]  # checkpoints of the k best epochs, best first
    last_checkpoint: Path | None  # last.pt, for resuming
    total_seconds: float  # sum of epoch wall times (training + validation), across resumes
    n_params: int  # trainable parameters
    efficiency: float  # E = n_params / total_seconds (parameters per training second; the paper uses minutes)
    stop_reason: str  # "epochs", "val_loss_rising" or "no_improvement"
    device: str  # device the run used


@dataclass
class _RunState:
    history: list[dict[str, float]] = field(default_factory=list)
    best_value: float = -math.inf
    best_epoch: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    top_k: list[tuple[float, int, str]] = field(default_factory=list)  # (value, epoch, path), best first
    stop_reason: str | None = None


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(name)


def _amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA). Call it before ``create_model`` too: initial weights are drawn
    when the model is built, before ``fit`` (which seeds again with ``TrainConfig.seed``) is called."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _move(batch: Mapping[str, Any], keys: Iterable[str], device: torch.device) -> dict[str, Tensor]:
    return {k: batch[k].to(device, non_blocking=True) for k in keys if isinstance(batch.get(k), Tensor)}


def hflip_batch(batch: Mapping[str, Tensor], p: float, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """A copy of ``batch`` in which each video's frames (:data:`models.base.IMAGE_KEYS`) are mirrored left-right with
    probability ``p`` — every frame of a chosen video, so motion and the per-second order stay consistent.

    The draw is one uniform number per video from ``generator`` (default: torch's global CPU generator, which
    ``seed_everything`` seeds and a resumed run restores).

    Shapes:
        vision (B, T, 3, H, W), vision_seg (B, S, T, 3, H, W) → the same shapes
    """
    out = dict(batch)
    keys = [k for k in IMAGE_KEYS if isinstance(batch.get(k), Tensor)]
    if p <= 0 or not keys:
        return out
    b = batch[keys[0]].shape[0]
    flip = torch.rand(b, generator=generator) < p
    for key in keys:
        x = batch[key]
        chosen = flip.to(x.device).view(b, *([1] * (x.dim() - 1)))
        out[key] = torch.where(chosen, x.flip(-1), x)
    return out


def _batch_keys(model: VidModel) -> tuple[str, ...]:
    return (*model.inputs, *(f"{k}_mask" for k in model.inputs), "target")


def _eval_pass(model: VidModel, loader: Iterable[Mapping[str, Any]], device: torch.device,
               amp_dtype: torch.dtype | None) -> tuple[float, np.ndarray, np.ndarray]:
    model.eval()
    keys = _batch_keys(model)
    losses, trues, preds, n = 0.0, [], [], 0
    with torch.inference_mode():
        for raw in loader:
            batch = _move(raw, keys, device)
            if "target" not in batch:
                raise ValueError("evaluation batches must carry 'target' (B, K)")
            with _autocast(device, amp_dtype):
                out = model(batch)
            bs = batch["target"].shape[0]
            losses += float(out.loss) * bs
            n += bs
            trues.append(batch["target"].float().cpu().numpy())
            preds.append(out.pred.float().cpu().numpy())
    if n == 0:
        raise ValueError("the evaluation loader yielded no batches")
    return losses / n, np.concatenate(trues), np.concatenate(preds)


def evaluate(model: VidModel, loader: Iterable[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Targets and predictions over ``loader`` (eval mode, no gradients), on the model's device.

    Shapes:
        → y_true (N, K), y_pred (N, K) float32 numpy
    """
    device = next(model.parameters()).device
    _, y_true, y_pred = _eval_pass(model, loader, device, None)
    return y_true, y_pred


def _train_epoch(model: VidModel, loader: Iterable[Mapping[str, Any]], optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, cfg: TrainConfig, device: torch.device,
                 amp_dtype: torch.dtype | None, net: torch.nn.Module | None = None) -> float:
    model.train()
    keys = _batch_keys(model)
    total, n = torch.zeros((), device=device), 0  # summed on the device: no host sync per step
    for raw in loader:
        batch = _move(raw, keys, device)
        if "target" not in batch:
            raise ValueError("training batches must carry 'target' (B, K)")
        if cfg.hflip:
            batch = hflip_batch(batch, cfg.hflip)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, amp_dtype):  # net: the DDP wrapper under torch.distributed (all-reduces gradients)
            out = (net if net is not None else model)(batch)
        assert out.loss is not None
        scaler.scale(out.loss).backward()
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        bs = batch["target"].shape[0]
        total += out.loss.detach().float() * bs
        n += bs
    if n == 0:
        raise ValueError("train_loader yielded no batches")
    return float(total) / n


def _resume_key(model: VidModel, cfg: TrainConfig, extra: Mapping[str, Any] | None) -> str:
    # What must match for last.pt to be continued: the model, the training settings (more epochs or another device
    # are fine) and the caller's extra (e.g. input fingerprints).
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("epochs", "device")}
    blob = json.dumps({"model": model.model_name, "config": model.config_dict(), "train": train,
                       "extra": dict(extra or {})}, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def save_checkpoint(path: str | os.PathLike[str], model: VidModel, extra: Mapping[str, Any] | None = None) -> Path:
    """Write model name, config, weights and ``extra`` (fingerprints, metrics…) atomically; returns the path.

    ``extra`` must hold plain python values and tensors (it is read back with ``weights_only=True``).
    """
    if not model.model_name:
        raise ValueError(
            "model.model_name is empty; build models with models.create_model so checkpoints can rebuild them"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": _FORMAT,
        "model_name": model.model_name,
        "config": model.config_dict(),
        "input_versions": recorded_versions(model.inputs),  # what it was trained on (models.input_versions)
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[VidModel, dict[str, Any]]:
    """Rebuild the model from a checkpoint (registry name + config + weights), in eval mode; returns (model, extra).

    ``pretrained_path`` is ignored on reload: the checkpoint's weights already include the encoders.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{str(path)!r} is not a vidpipe checkpoint of format {_FORMAT}")
    config = {**payload["config"], "pretrained_path": None}
    model = create_model(payload["model_name"], **config)
    check_input_versions(payload.get("input_versions"), model.inputs, source=repr(str(path)))
    model.load_state_dict(payload["state_dict"])
    model.to(map_location).eval()
    return model, payload["extra"]


def _load_resume(path: Path, key: str, reads: Iterable[str]) -> dict[str, Any] | None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        resume = payload["extra"]["resume"]
        check_input_versions(payload.get("input_versions"), reads, source=repr(str(path)))
    except Exception as err:  # unreadable or foreign file: start afresh, but say so
        warnings.warn(f"cannot resume from {str(path)!r} ({err}); training from scratch", stacklevel=4)
        return None
    if resume.get("key") != key:
        warnings.warn(
            f"{str(path)!r} was written with another model/training config; training from scratch", stacklevel=4
        )
        return None
    return {"state_dict": payload["state_dict"], **resume}


def fit(
    model: VidModel,
    train_loader: Iterable[Mapping[str, Any]],
    val_loader: Iterable[Mapping[str, Any]],
    cfg: TrainConfig,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    resume: bool = True,
    *,
    checkpoint_extra: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` with Adam, early stopping, best/top-k/last checkpoints and resume; see the module docstring.

    ``checkpoint_extra`` (e.g. input fingerprints) is stored in every checkpoint and must match for a resume.
    Identical runs need identical initial weights: call ``seed_everything`` before building the model.
    ``on_epoch`` receives each epoch's record. On return the model holds the best epoch's weights.
    """
    device = _resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model.to(device)
    optimizer = model.configure_optimizer(cfg.lr, cfg.weight_decay)
    amp_dtype = _amp_dtype(device, cfg.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    monitor = cfg.monitor or model.spec.monitor
    stopper = EarlyStopping(cfg.patience_rising, cfg.patience_no_improve)
    state = _RunState()
    ckdir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    key = _resume_key(model, cfg, checkpoint_extra)
    extra_base = dict(checkpoint_extra or {})
    best_weights: dict[str, Tensor] | None = None

    if ckdir is not None and resume and (ckdir / "last.pt").is_file():
        restored = _restore_run(ckdir / "last.pt", key, model, optimizer, scaler)
        if restored is not None:
            stopper, state = restored
    net, train_loader, rank = _data_parallel(model, train_loader, device)
    if rank > 0:  # DDP: rank 0 alone writes checkpoints; the other ranks hold the same weights and keep them in memory
        ckdir = None
    if ckdir is not None and not state.history:  # a fresh run: checkpoints of an earlier run must not pass as ours
        _remove_checkpoints(ckdir)

    for epoch in range(len(state.history) + 1, cfg.epochs + 1):
        if state.stop_reason is not None:
            break
        record, metrics = _train_and_validate(model, net, train_loader, val_loader, optimizer, scaler, cfg, device,
                                              amp_dtype, epoch, monitor)
        state.history.append(record)
        value = metrics[monitor] if math.isfinite(metrics[monitor]) else -math.inf
        ck_extra = {**extra_base, "epoch": epoch, "metrics": metrics, "monitor": monitor}
        if state.best_epoch is None or value > state.best_value:  # ties keep the earlier epoch
            state.best_value, state.best_epoch, state.best_metrics = value, epoch, metrics
            best_weights = _keep_best(model, ckdir, ck_extra)
        if ckdir is not None and cfg.top_k > 0:
            _update_top_k(state, ckdir, model, value, epoch, cfg.top_k, ck_extra)
        # only early stops persist; more epochs may resume a finished run
        state.stop_reason = stopper.update(record["val_loss"])
        if ckdir is not None:
            _save_last(ckdir, model, ck_extra, key, optimizer, scaler, stopper, state)
        if on_epoch is not None:
            on_epoch(dict(record))

    _load_best(model, ckdir, state, best_weights)
    return _fit_result(model, state, monitor, ckdir, device)


def _restore_run(path: Path, key: str, model: VidModel, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler) -> tuple[EarlyStopping, _RunState] | None:
    """Load ``last.pt`` into the model, optimizer, scaler and RNGs and return its stopper and run state; ``None``
    (after a warning) when the file cannot be continued."""
    saved = _load_resume(path, key, model.inputs)
    if saved is None:
        return None
    model.load_state_dict(saved["state_dict"])
    optimizer.load_state_dict(saved["optimizer"])
    scaler.load_state_dict(saved["scaler"])
    state = _RunState(history=saved["history"], best_value=saved["best_value"], best_epoch=saved["best_epoch"],
                      best_metrics=saved["best_metrics"], top_k=[tuple(t) for t in saved["top_k"]],
                      stop_reason=saved["stop_reason"])
    _set_rng_state(saved["rng"])
    return EarlyStopping(**saved["stopper"]), state


def _remove_checkpoints(ckdir: Path) -> None:
    """Delete the folder's ``epoch_*.pt``, ``best.pt`` and ``last.pt``."""
    for stale in (*ckdir.glob("epoch_*.pt"), ckdir / "best.pt", ckdir / "last.pt"):
        stale.unlink(missing_ok=True)


def _train_and_validate(
    model: VidModel, net: torch.nn.Module, train_loader: Any, val_loader: Iterable[Mapping[str, Any]],
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, cfg: TrainConfig, device: torch.device,
    amp_dtype: torch.dtype | None, epoch: int, monitor: str,
) -> tuple[dict[str, float], dict[str, float]]:
    """One epoch of training then validation: ``(record, validation metrics)``; the record is the history row
    (epoch, train_loss, val_loss, seconds, val_<metric>…)."""
    t0 = time.perf_counter()
    if hasattr(train_loader, "set_epoch"):  # epoch-seeded shuffling (PackLoader, DistributedSampler): resumable
        train_loader.set_epoch(epoch)
    train_loss = _train_epoch(model, train_loader, optimizer, scaler, cfg, device, amp_dtype, net)
    if net is not model:  # the record holds the mean over every rank's share, not rank 0's alone
        train_loss = _mean_over_ranks(train_loss, device)
    val_loss, y_true, y_pred = _eval_pass(model, val_loader, device, amp_dtype)
    metrics = compute_metrics(model.task, y_true, y_pred, targets=model.spec.targets)
    seconds = time.perf_counter() - t0
    if monitor not in metrics:
        raise ValueError(
            f"monitor={monitor!r} is not a metric of task {model.task!r}; expected one of {sorted(metrics)}"
        )
    record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": seconds,
              **{f"val_{k}": v for k, v in metrics.items()}}
    return record, metrics


def _keep_best(model: VidModel, ckdir: Path | None, extra: Mapping[str, Any]) -> dict[str, Tensor] | None:
    """Keep the current weights as the best epoch's: ``best.pt`` in ``ckdir`` (returns ``None``), or, without a
    folder, a copy in memory (returned)."""
    if ckdir is not None:
        save_checkpoint(ckdir / "best.pt", model, extra)
        return None
    return copy.deepcopy({k: v.detach() for k, v in model.state_dict().items()})


def _save_last(ckdir: Path, model: VidModel, extra: Mapping[str, Any], key: str, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, stopper: EarlyStopping, state: _RunState) -> None:
    """Write ``last.pt``: the weights plus everything a resume needs (optimizer, scaler, stopper, history, RNGs)."""
    resume_state = {
        "key": key, "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        "stopper": dataclasses.asdict(stopper), "history": state.history, "best_value": state.best_value,
        "best_epoch": state.best_epoch, "best_metrics": state.best_metrics, "top_k": state.top_k,
        "stop_reason": state.stop_reason, "rng": _rng_state(),
    }
    save_checkpoint(ckdir / "last.pt", model, {**extra, "resume": resume_state})


def _load_best(model: VidModel, ckdir: Path | None, state: _RunState,
               best_weights: Mapping[str, Tensor] | None) -> None:
    """Put the best epoch's weights back into ``model``: from ``best.pt``, else from the copy kept in memory."""
    if ckdir is not None and (ckdir / "best.pt").is_file() and state.best_epoch is not None:
        best = torch.load(ckdir / "best.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(best["state_dict"])
    elif best_weights is not None:
        model.load_state_dict(best_weights)


def _fit_result(model: VidModel, state: _RunState, monitor: str, ckdir: Path | None,
                device: torch.device) -> FitResult:
    """The run's outcome from its state (history, best epoch, kept checkpoints) and the model's size."""
    total = float(sum(r["seconds"] for r in state.history))
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return FitResult(
        history=state.history,
        best_epoch=state.best_epoch,
        best_metrics=state.best_metrics,
        monitor=monitor,
        best_checkpoint=ckdir / "best.pt" if ckdir is not None and state.best_epoch is not None else None,
        top_k=[Path(p) for _, _, p in state.top_k],
        last_checkpoint=ckdir / "last.pt" if ckdir is not None and state.history else None,
        total_seconds=total,
        n_params=n_params,
        efficiency=n_params / total if total > 0 else 0.0,
        stop_reason=state.stop_reason or "epochs",
        device=str(device),
    )


def _data_parallel(model: VidModel, train_loader: Any, device: torch.device) -> tuple[torch.nn.Module, Any, int]:
    """``(net, train_loader, rank)``: under an initialised ``torch.distributed`` process group (e.g. ``torchrun``),
    the model wrapped in ``DistributedDataParallel`` (gradients all-reduced, i.e. averaged over ranks, every step)
    and the training loader sharded to this rank (``loader.shard(rank, world_size)``); otherwise the model and loader
    unchanged and rank 0.

    Validation is not sharded: every rank evaluates the whole validation split with identical weights, so every rank
    takes the same best-epoch and early-stopping decisions without extra communication.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return model, train_loader, 0
    rank, world = dist.get_rank(), dist.get_world_size()
    if hasattr(train_loader, "shard"):
        train_loader = train_loader.shard(rank, world)
    else:
        warnings.warn("the training loader has no shard(rank, world_size): every rank trains on all rows; use a "
                      "PackLoader or a DistributedSampler", stacklevel=3)
    # find_unused_parameters: a model may skip a branch for a batch (e.g. a modality whose mask is all False)
    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" and device.index is not None else None,
        find_unused_parameters=True)
    return net, train_loader, rank


def _mean_over_ranks(value: float, device: torch.device) -> float:
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def _update_top_k(state: _RunState, ckdir: Path, model: VidModel, value: float, epoch: int, k: int,
                  extra: Mapping[str, Any]) -> None:
    ranked = sorted([*state.top_k, (value, epoch, "")], key=lambda t: (-t[0], t[1]))
    if all(e != epoch for _, e, _ in ranked[:k]):
        return  # not among the k best: nothing written
    path = ckdir / f"epoch_{epoch:04d}.pt"
    save_checkpoint(path, model, extra)
    ranked = [(v, e, str(path) if e == epoch else p) for v, e, p in ranked]
    for _, _, dropped in ranked[k:]:
        Path(dropped).unlink(missing_ok=True)
    state.top_k = ranked[:k]
