"""Stage ``train``: train any registered model on cached features only (no video decoding), record the run.

Flow :func:`train` = materialise (or reuse) the tensor pack for the model's inputs × task → build the model at the
pack's geometry → :func:`models.engine.fit` (the one training loop) → evaluate on the test split next to a constant
predictor fitted on the training split → write the run record (store ``runs/``) and a Prefect artifact.

:func:`run_training` is the same thing as a plain function, used by the ``sweep`` and ``compare`` flows so that every
model in every table was trained by exactly this code.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
import uuid
from typing import Annotated, Any, Literal, Optional

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from pydantic import Field

from features.packs import build_pack
from features.store import Store
from pipelines._common import publish_table, store_for

__all__ = ["train", "run_training", "geometry_overrides", "TaskName"]

TaskName = Literal["emotion", "personality", "popularity"]

# pack key → {config field: axis of the pack array (after the video axis) giving its size}
_GEOMETRY = {
    "vision_seg": {"n_segments": 0, "frames_per_segment": 1, "frame_size": 3},
    "audio_seg": {"n_segments": 0, "n_mfcc": 2, "mfcc_frames": 3},
    "vision": {"n_frames": 0, "frame_size": 2},
    "audio": {"n_mfcc": 0, "mfcc_frames": 1},
    "text": {"vocab_size": 0},
    "graph": {"graph_dim": 0},
    "meta": {"meta_dim": 0},
}


def geometry_overrides(model: Any, shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Config overrides that make ``model``'s input sizes match the pack (``shapes`` excludes the video axis).

    Only fields the model's config has are set; e.g. ``audio`` (n_mfcc, F) sets ``n_mfcc`` and ``mfcc_frames``.
    """
    fields = {f.name for f in dataclasses.fields(model.cfg)}
    out: dict[str, int] = {}
    for key in model.inputs:
        for field, axis in _GEOMETRY.get(key, {}).items():
            if field in fields and key in shapes:
                out[field] = int(shapes[key][axis])
    # patch/audio-chunk sizes must divide the geometry they tile
    if "patch_size" in fields and "frame_size" in out and out["frame_size"] % model.cfg.patch_size:
        out["patch_size"] = max(d for d in range(1, out["frame_size"] + 1)
                                if out["frame_size"] % d == 0 and d <= model.cfg.patch_size)
    if "audio_chunk" in fields and "mfcc_frames" in out and out["mfcc_frames"] % model.cfg.audio_chunk:
        out["audio_chunk"] = max(d for d in range(1, out["mfcc_frames"] + 1)
                                 if out["mfcc_frames"] % d == 0 and d <= model.cfg.audio_chunk)
    return out


def run_training(store: Store, model_name: str, task_name: str, *, epochs: int = 30, lr: float = 1e-3,
                 batch_size: int = 16, seed: int = 0, device: str = "auto", overrides: dict | None = None,
                 vision_profile: str = "uniform", run_id: str | None = None, resume: bool = True,
                 record: bool = True) -> dict[str, Any]:
    """Train and evaluate one model on one task from the store's cached features; returns the run record."""
    from models.data import PackLoader, split_sets
    from models.engine import TrainConfig, evaluate, fit, seed_everything
    from models.metrics import compute_metrics, constant_baseline
    from models.registry import create_model, list_models

    if model_name not in list_models():
        raise ValueError(f"model={model_name!r}: expected one of {list_models()}")
    overrides = dict(overrides or {})
    seed_everything(seed)
    probe_model = create_model(model_name, task=task_name, **{k: v for k, v in overrides.items()
                                                               if k not in _geometry_fields()})
    inputs = tuple(probe_model.inputs)
    pack_fp, reused = build_pack(store, inputs, task_name, vision_profile=vision_profile, split_seed=seed)
    arrays, meta = store.read_pack(pack_fp)
    shapes = {k: tuple(v.shape[1:]) for k, v in arrays.items()}
    seed_everything(seed)  # identical initialisation for identical settings (determinism on CPU)
    model = create_model(model_name, task=task_name, **{**geometry_overrides(probe_model, shapes), **overrides})
    keys = [*inputs, *[f"{k}_mask" for k in inputs], "target"]
    idx = split_sets(arrays["split"])
    if len(idx["train"]) == 0:
        raise ValueError(f"dataset {store.dataset!r} has no labelled training videos for task {task_name!r}")
    loaders = {s: PackLoader(arrays, keys, idx[s], batch_size=batch_size, shuffle=(s == "train"), seed=seed)
               for s in idx}
    run_id = run_id or f"{model_name}-{task_name}-{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device)
    ckdir = store.local_dir("runs", run_id)
    result = fit(model, loaders["train"], loaders["val"], cfg, checkpoint_dir=ckdir, resume=resume,
                 checkpoint_extra={"pack": pack_fp, "dataset": store.dataset, "inputs": list(inputs)})
    y_true, y_pred = evaluate(model, loaders["test"])
    metrics = compute_metrics(task_name, y_true, y_pred)
    base = constant_baseline(task_name, arrays["target"][idx["train"]])
    baseline = compute_metrics(task_name, y_true, base.predict(len(y_true)))
    epoch_seconds = [h["seconds"] for h in result.history] or [0.0]
    run = {
        "run_id": run_id, "model": model_name, "task": task_name, "dataset": store.dataset,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "metrics": metrics, "baseline": baseline, "val_metrics": result.best_metrics,
        "checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "epochs_run": len(result.history), "best_epoch": result.best_epoch, "stop_reason": result.stop_reason,
        "n_params": result.n_params, "seconds_per_epoch": float(np.mean(epoch_seconds)),
        "total_seconds": result.total_seconds, "efficiency": result.efficiency, "device": result.device,
        "modalities": [k for k in inputs], "pack": pack_fp, "pack_reused": reused, "vision_profile": vision_profile,
        "config": dataclasses.asdict(model.cfg), "train": dataclasses.asdict(cfg),
        "n_train": int(len(idx["train"])), "n_test": int(len(idx["test"])),
    }
    if record:
        store.save_run(run_id, run)
    return run


def _geometry_fields() -> set[str]:
    return {f for m in _GEOMETRY.values() for f in m}


@task(cache_policy=NONE, persist_result=False, name="train-model")
def _train_task(root: Optional[str], dataset: str, model: str, task_name: str, params: dict) -> dict:
    return run_training(store_for(root, dataset), model, task_name, **params)


@flow(name="train", validate_parameters=True)
def train(
    dataset: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")],
    model: str,
    task: TaskName,
    root: Optional[str] = None,
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 30,
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3,
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 16,
    seed: int = 0,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    overrides: Optional[dict[str, Any]] = None,
    vision_profile: Literal["uniform", "uniform_224"] = "uniform",
    run_id: Optional[str] = None,
) -> dict:
    """Train ``model`` on ``task`` from the dataset's cached features and record the run.

    Args:
        dataset: the store's name (features must be extracted: ``vidpipe extract``; graph inputs need
            ``vidpipe pretrain-graph``).
        model: a registered model name (``vidpipe models`` lists them), e.g. ``sec2sec``, ``mcat``, ``van``.
        task: ``emotion`` | ``personality`` | ``popularity``.
        epochs, lr, batch_size, seed, device: training settings (Adam, early stopping, best + top-k checkpoints).
        overrides: model config fields (e.g. ``{"dim": 32, "heads": 2}``); unknown fields are refused.
        vision_profile: which uniform frame profile feeds ``vision`` inputs.
        run_id: name of the run (default: model-task-timestamp); a rerun with the same id resumes from its last
            checkpoint.

    Returns:
        The run record: ``{"model", "task", "metrics", "baseline", "checkpoint", ...}`` (metrics on the test split;
        baseline = the same metrics for a constant predictor fitted on the training split).
    """
    from models.registry import list_models

    if model not in list_models():
        raise ValueError(f"model={model!r}: expected one of {list_models()}")
    logger = get_run_logger()
    t0 = time.perf_counter()
    params = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed, "device": device,
              "overrides": overrides or {}, "vision_profile": vision_profile, "run_id": run_id}
    run = _train_task(root, dataset, model, task, params)
    logger.info("train %s/%s on %s: %s (baseline %s) in %.1fs", model, task, dataset, run["metrics"],
                run["baseline"], time.perf_counter() - t0)
    publish_table(f"{dataset}-train-{model}-{task}",
                  [{"split": "test", "predictor": model, **run["metrics"]},
                   {"split": "test", "predictor": "constant", **run["baseline"]}],
                  f"{model} on {task} ({dataset}): test metrics vs a constant predictor")
    return run
