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
from typing import Annotated, Any, Callable, Literal, Optional

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from pydantic import Field

from features.packs import build_pack
from features.store import Store
from names import TASK_NAMES
from pipelines.flow_io import DatasetName, publish_table, store_for

__all__ = ["train", "run_training", "run_per_target", "each_target", "merge_target_runs", "pack_keys",
           "load_run_model", "model_targets", "split_loader", "new_run_id", "TaskName", "VisionProfile",
           "VISION_PROFILES", "InputKind", "input_overrides"]

TaskName = Literal[TASK_NAMES]
#: frame profiles that can feed a model's ``vision`` input (``per_second`` feeds ``vision_seg``)
VISION_PROFILES = ("uniform", "uniform_224")
VisionProfile = Literal[VISION_PROFILES]
#: what models read: "raw" (frames / MFCC / bag of words) or "embeddings" (cached pretrained-encoder vectors)
InputKind = Literal["raw", "embeddings"]


def new_run_id(model_name: str, task_name: str, kind: str = "") -> str:
    """A fresh run id, ``<model>-<task>[-<kind>]-<UTC yyyymmddThhmmss>-<6 hex>`` (sortable by start time)."""
    stamp = f"{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    return "-".join(p for p in (model_name, task_name, kind, stamp) if p)


def input_overrides(model_name: str, input_kind: str, overrides: dict | None) -> dict:
    """A copy of ``overrides`` with the model's ``input_kind`` set ("raw" leaves them as they are).

    Raises:
        ValueError: ``input_kind`` is not "raw" / "embeddings", the model has no embedding front end, or
            ``overrides`` already sets another ``input_kind``.
    """
    from models.registry import create_model

    out = dict(overrides or {})
    if input_kind not in ("raw", "embeddings"):
        raise ValueError(f"inputs={input_kind!r}: expected 'raw' or 'embeddings'")
    if input_kind == "raw":
        return out
    if out.get("input_kind", input_kind) != input_kind:
        raise ValueError(f"inputs={input_kind!r} contradicts overrides input_kind={out['input_kind']!r}")
    if "input_kind" not in {f.name for f in dataclasses.fields(create_model(model_name).cfg)}:
        raise ValueError(f"inputs='embeddings': model {model_name!r} has no embedding front end (input_kind)")
    out["input_kind"] = input_kind
    return out


def run_training(store: Store, model_name: str, task_name: str, *, epochs: int = 30, lr: float = 1e-3,
                 batch_size: int = 16, seed: int = 0, device: str = "auto", overrides: dict | None = None,
                 vision_profile: str = "uniform", run_id: str | None = None, resume: bool = True,
                 record: bool = True, weight_decay: float = 0.0, hflip: float = 0.0,
                 targets: list[str] | tuple[str, ...] | None = None, input_kind: str = "raw") -> dict[str, Any]:
    """Train and evaluate one model on one task from the store's cached features; returns the run record.

    ``weight_decay`` (L2) and ``hflip`` (probability of mirroring a training video) are engine settings
    (:class:`models.engine.TrainConfig`); ``targets`` trains on a subset of the task's target columns (the model's
    ``targets`` config field; also accepted in ``overrides``), with its own early stopping and best epoch.
    ``input_kind="embeddings"`` trains on the cached pretrained-encoder vectors instead of raw frames / MFCC / words.
    """
    from models.engine import TrainConfig, evaluate, fit
    from models.input_versions import recorded_versions
    from models.metrics import compute_metrics, constant_baseline
    from models.registry import list_models

    if model_name not in list_models():
        raise ValueError(f"model={model_name!r}: expected one of {list_models()}")
    if vision_profile not in VISION_PROFILES:
        raise ValueError(f"vision_profile={vision_profile!r}: expected one of {list(VISION_PROFILES)}")
    overrides = input_overrides(model_name, input_kind, overrides)
    if targets is not None:
        overrides["targets"] = tuple(targets)
    model, pack_fp, reused, arrays = _model_for_pack(store, model_name, task_name, overrides,
                                                     vision_profile=vision_profile, seed=seed)
    inputs = tuple(model.inputs)
    names = tuple(model.spec.targets)
    arrays, idx, loaders = _split_loaders(store, model, task_name, arrays, batch_size=batch_size, seed=seed)
    run_id = run_id or new_run_id(model_name, task_name)
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device,
                      weight_decay=weight_decay, hflip=hflip)
    ckdir = store.checkpoint_dir(run_id)
    result = fit(model, loaders["train"], loaders["val"], cfg, checkpoint_dir=ckdir, resume=resume,
                 checkpoint_extra={"pack": pack_fp, "dataset": store.dataset, "inputs": list(inputs)})
    y_true, y_pred = evaluate(model, loaders["test"])
    metrics = compute_metrics(task_name, y_true, y_pred, targets=names)
    base = constant_baseline(task_name, arrays["target"][idx["train"]], targets=names)
    baseline = compute_metrics(task_name, y_true, base.predict(len(y_true)), targets=names)
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
        "n_train": int(len(idx["train"])), "n_test": int(len(idx["test"])), "targets": list(names),
        "input_kind": getattr(model.cfg, "input_kind", "raw"),
        "input_versions": recorded_versions(inputs),  # what its checkpoint records (models.input_versions)
    }
    if record:
        store.save_run(run_id, run)
    return run


def _model_for_pack(store: Store, model_name: str, task_name: str, overrides: dict[str, Any], *,
                    vision_profile: str, seed: int) -> tuple[Any, str, bool, dict[str, Any]]:
    """Materialise (or reuse) the tensor pack for the model's inputs × task and build the model at the pack's
    geometry (``overrides`` win over it); returns the model, the pack's fingerprint, whether the pack was reused and
    its arrays."""
    from models.base import ModelConfig
    from models.engine import seed_everything
    from models.registry import create_model

    seed_everything(seed)
    probe_model = create_model(model_name, task=task_name, **{k: v for k, v in overrides.items()
                                                               if k not in ModelConfig.geometry_fields()})
    inputs = tuple(probe_model.inputs)
    pack_fp, reused = build_pack(store, inputs, task_name, vision_profile=vision_profile)
    arrays, _ = store.read_pack(pack_fp)
    shapes = {k: tuple(v.shape[1:]) for k, v in arrays.items()}
    seed_everything(seed)  # identical initialisation for identical settings (determinism on CPU)
    model = create_model(model_name, task=task_name,
                         **{**probe_model.cfg.geometry_overrides(inputs, shapes), **overrides})
    return model, pack_fp, reused, arrays


def model_targets(model: Any, arrays: dict[str, Any]) -> dict[str, Any]:
    """A tensor pack's ``arrays`` with only the target columns ``model`` predicts (a subset of its task's, in the
    model's order); arrays whose target already has the model's width are returned as they are. Apply it once: a
    model of the task's targets in another order would have its columns reordered again.

    Shapes:
        arrays["target"] (N, K_task) → (N, K_model)
    """
    from models.base import TASKS

    names, every = tuple(model.spec.targets), TASKS[model.task].targets
    if names == every or np.shape(arrays["target"])[1] != len(every):
        return arrays
    return {**arrays, "target": np.asarray(arrays["target"][...])[:, [every.index(t) for t in names]]}


def _split_loaders(store: Store, model: Any, task_name: str, arrays: dict[str, Any], *, batch_size: int, seed: int
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """The pack's arrays with only the model's target columns (a target subset, in the model's order), the rows of
    each split and a loader per split (the training one shuffled by ``seed``).

    Raises:
        ValueError: the task has no labelled training video.
    """
    from models.data import PackLoader, split_sets

    arrays = model_targets(model, arrays)
    idx = split_sets(arrays["split"])
    if len(idx["train"]) == 0:
        raise ValueError(f"dataset {store.dataset!r} has no labelled training videos for task {task_name!r}")
    keys, cut = pack_keys(model), model.input_positions()  # only the frames the model reads become float
    loaders = {s: PackLoader(arrays, keys, idx[s], batch_size=batch_size, shuffle=(s == "train"), seed=seed,
                             positions=cut) for s in idx}
    return arrays, idx, loaders


def run_per_target(store: Store, model_name: str, task_name: str, *, run_id: str | None = None,
                   **kwargs: Any) -> dict[str, Any]:
    """One :func:`run_training` per target of the task, merged by :func:`each_target`. ``run_id`` gets the target's
    name appended."""
    return each_target(task_name, lambda t: run_training(store, model_name, task_name, targets=(t,),
                                                         run_id=f"{run_id}-{t}" if run_id else None, **kwargs))


def each_target(task_name: str, train_one: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """``train_one(target)`` for every target of the task, each run selected on its own validation metric (Sec2Sec
    trains and reports valence and arousal separately); returns :func:`merge_target_runs` of them."""
    from models.base import TASKS

    if task_name not in TASKS:
        raise ValueError(f"task={task_name!r}: expected one of {sorted(TASKS)}")
    return merge_target_runs(task_name, {t: train_one(t) for t in TASKS[task_name].targets})


def merge_target_runs(task_name: str, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One record for single-target runs of the same model: each target's metrics from its own run, the task's
    means over them (``accuracy_mean``/``f1_mean``, ``mean_accuracy``; MAE/MSE/R² averaged), ``n_params`` of one
    model, seconds summed, ``runs`` = {target: run_id}."""

    from models.base import TASKS

    order = [t for t in TASKS[task_name].targets if t in runs]
    if not order:
        raise ValueError(f"runs: expected single-target runs of task {task_name!r}, got {sorted(runs)}")

    def merged(key: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in order:
            for k, v in runs[t][key].items():
                if k.endswith(f"_{t}"):
                    out[k] = v
        means = {"emotion": [("accuracy_mean", "accuracy"), ("f1_mean", "f1")],
                 "personality": [("mean_accuracy", "mean_accuracy")]}.get(task_name, [])
        for name, prefix in means:
            out[name] = float(np.mean([out[f"{prefix}_{t}"] for t in order]))
        for k in ("spearman", "mae", "mse", "r2", "ndcg@10"):
            if all(k in runs[t][key] for t in order):
                out[k] = float(np.mean([runs[t][key][k] for t in order]))
        return out

    first = runs[order[0]]
    total = float(sum(r["total_seconds"] for r in runs.values()))
    return {
        **{k: first[k] for k in ("model", "task", "dataset", "pack", "vision_profile", "modalities", "config",
                                 "train", "n_train", "n_test", "device", "input_kind") if k in first},
        "run_id": "+".join(runs[t]["run_id"] for t in order), "runs": {t: runs[t]["run_id"] for t in order},
        "separate_targets": True, "targets": order,
        "metrics": merged("metrics"), "baseline": merged("baseline"), "val_metrics": merged("val_metrics"),
        "checkpoint": None, "checkpoints": {t: runs[t]["checkpoint"] for t in order},
        "epochs_run": max(int(r["epochs_run"]) for r in runs.values()),
        "best_epoch": {t: runs[t]["best_epoch"] for t in order},
        "n_params": int(first["n_params"]), "seconds_per_epoch": float(np.mean([r["seconds_per_epoch"]
                                                                                for r in runs.values()])),
        "total_seconds": total, "efficiency": float(first["n_params"]) / total if total > 0 else 0.0,
    }


def pack_keys(model: Any) -> list[str]:
    """The tensor-pack arrays a batch for ``model`` carries: its inputs, their masks and the target."""
    return [*model.inputs, *[f"{k}_mask" for k in model.inputs], "target"]


def load_run_model(store: Store, checkpoint: str, pack: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The model rebuilt from a run's ``checkpoint`` and the arrays of the tensor pack it was trained on (the pack
    the checkpoint records, else ``pack``).

    ``checkpoint`` is as a run records it: relative to the store, or an absolute path (see
    :meth:`features.store.Store.checkpoint_file`).

    Raises:
        FileNotFoundError: the checkpoint is gone.
        KeyError: the pack was evicted since the run.
    """
    from models.engine import load_checkpoint

    path = store.checkpoint_file(checkpoint)
    if path is None:
        raise FileNotFoundError(f"checkpoint={checkpoint!r}: not found in store {store.url}; retrain the run")
    model, extra = load_checkpoint(path)
    arrays, _ = store.read_pack(extra.get("pack", pack))
    return model, model_targets(model, arrays)  # a model of a target subset is scored on its own columns


def split_loader(model: Any, arrays: dict[str, Any], split: str | None, *, batch_size: int
                 ) -> tuple[np.ndarray, Any]:
    """The pack rows of ``split`` (``None``: every video) and an unshuffled :class:`models.data.PackLoader` over
    them with ``model``'s keys. ``arrays`` hold the model's target columns already (:func:`model_targets`, as
    :func:`load_run_model` returns them). Every frame of the pack becomes float, not only those the model reads
    (``VidModel.input_positions``): the interpretations (Integrated Gradients and its mean baselines) read whole
    inputs.

    Shapes:
        → rows (N,) int, loader batches per docs/ARCHITECTURE.md
    """
    from models.data import PackLoader, split_sets

    rows = np.arange(len(arrays["target"])) if split is None else split_sets(arrays["split"])[split]
    return rows, PackLoader(arrays, pack_keys(model), rows, batch_size=batch_size)


@task(cache_policy=NONE, persist_result=False, name="train-model")
def _train_task(root: Optional[str], dataset: str, model: str, task_name: str, params: dict,
                separate_targets: bool = False) -> dict:
    if separate_targets:
        return run_per_target(store_for(root, dataset), model, task_name, **params)
    return run_training(store_for(root, dataset), model, task_name, **params)


@flow(name="train", validate_parameters=True)
def train(
    dataset: DatasetName,
    model: str,
    task: TaskName,
    root: Optional[str] = None,
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 30,
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3,
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 16,
    seed: int = 0,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    overrides: Optional[dict[str, Any]] = None,
    vision_profile: VisionProfile = "uniform",
    run_id: Optional[str] = None,
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0,
    hflip: Annotated[float, Field(ge=0, le=1)] = 0.0,
    targets: Optional[list[str]] = None,
    separate_targets: bool = False,
    inputs: InputKind = "raw",
) -> dict:
    """Train ``model`` on ``task`` from the dataset's cached features and record the run.

    Args:
        dataset: the store's name (features must be extracted: ``vidpipe extract``; graph inputs need
            ``vidpipe pretrain-graph``).
        model: a registered model name (``vidpipe models`` lists them), e.g. ``sec2sec``, ``mcat``, ``van``.
        task: ``emotion`` | ``personality`` | ``popularity``.
        epochs, lr, batch_size, seed, device: training settings (Adam, early stopping, best + top-k checkpoints).
        overrides: model config fields (e.g. ``{"dim": 32, "heads": 2}``); unknown fields are refused.
        vision_profile: which uniform frame profile feeds ``vision`` inputs (``uniform``: 64², ``uniform_224``:
            224², the VAN paper's input; it must have been extracted, ``vidpipe extract --profile``).
        run_id: name of the run (default: model-task-timestamp); a rerun with the same id resumes from its last
            checkpoint.
        weight_decay: L2 weight decay on weight matrices (MTAF, the Siamese paper).
        hflip: probability of mirroring a training video's frames left-right (MCAT §3.5.2: 0.5).
        targets: train on these target columns only (e.g. ``["valence"]``).
        separate_targets: one model per target, each with its own best epoch; the record merges their metrics
            (``runs`` names the per-target runs).
        inputs: ``raw`` (frames / MFCC / bag of words) or ``embeddings`` (the cached vectors of ``extract
            --vision-model/--audio-model/--text-model``; each model's per-modality encoder becomes a projection).

    Returns:
        The run record: ``{"model", "task", "metrics", "baseline", "checkpoint", ...}`` (metrics on the test split;
        baseline = the same metrics for a constant predictor fitted on the training split).
    """
    from models.registry import list_models

    if model not in list_models():
        raise ValueError(f"model={model!r}: expected one of {list_models()}")
    logger = get_run_logger()
    t0 = time.perf_counter()
    if separate_targets and targets is not None:
        raise ValueError(f"targets={targets!r} with separate_targets=True: give one or the other")
    params = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed, "device": device,
              "overrides": overrides or {}, "vision_profile": vision_profile, "run_id": run_id,
              "weight_decay": weight_decay, "hflip": hflip, "input_kind": inputs}
    if targets is not None:
        params["targets"] = list(targets)
    run = _train_task(root, dataset, model, task, params, separate_targets)
    logger.info("train %s/%s on %s: %s (baseline %s) in %.1fs", model, task, dataset, run["metrics"],
                run["baseline"], time.perf_counter() - t0)
    publish_table(f"{dataset}-train-{model}-{task}",
                  [{"split": "test", "predictor": model, **run["metrics"]},
                   {"split": "test", "predictor": "constant", **run["baseline"]}],
                  f"{model} on {task} ({dataset}): test metrics vs a constant predictor")
    return run
