"""Stage ``sweep``: train one model over a hyper-parameter grid and report the best run.

The grid maps names to lists of values. Training settings (``lr``, ``batch_size``, ``epochs``, ``seed``,
``weight_decay``, ``hflip``, ``vision_profile``) go to the engine; every other name is a model config override
(``heads``, ``dim``, ``patch_size``, ``vision_norm``, ``targets``, ...). Each combination is one
:func:`pipelines.train.run_training` call (the same code as ``vidpipe train``), so sweep runs appear in the runs table
like any other. The best run is chosen by the task's **validation** metric — never the test split.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal, Optional

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from pydantic import Field

from pipelines.flow_io import DatasetName, publish_table, store_for
from pipelines.train import InputKind, TaskName, VisionProfile, run_training

__all__ = ["sweep", "expand_grid"]

_TRAIN_KEYS = {"lr", "batch_size", "epochs", "seed", "weight_decay", "hflip", "vision_profile"}


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """All combinations of a grid, in a stable order (keys sorted, values in the order given).

    Raises:
        ValueError: an empty grid entry or a non-list value.
    """
    for k, v in grid.items():
        if not isinstance(v, (list, tuple)) or len(v) == 0:
            raise ValueError(f"grid[{k!r}]={v!r}: expected a non-empty list of values")
    keys = sorted(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


@task(cache_policy=NONE, persist_result=False, name="sweep-run")
def _one(root: Optional[str], dataset: str, model: str, task_name: str, combo: dict, base: dict) -> dict:
    train_kw = {**base, **{k: v for k, v in combo.items() if k in _TRAIN_KEYS}}
    overrides = {k: v for k, v in combo.items() if k not in _TRAIN_KEYS}
    run = run_training(store_for(root, dataset), model, task_name, overrides=overrides, **train_kw)
    return {"params": combo, "run_id": run["run_id"], "val": run["val_metrics"], "metrics": run["metrics"],
            "baseline": run["baseline"], "checkpoint": run["checkpoint"], "n_params": run["n_params"],
            "total_seconds": run["total_seconds"]}


@flow(name="sweep", validate_parameters=True)
def sweep(
    dataset: DatasetName,
    model: str,
    task: TaskName,
    grid: dict[str, list[Any]],
    root: Optional[str] = None,
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 20,
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3,
    batch_size: Annotated[int, Field(ge=1)] = 16,
    seed: int = 0,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0,
    hflip: Annotated[float, Field(ge=0, le=1)] = 0.0,
    vision_profile: VisionProfile = "uniform",
    inputs: InputKind = "raw",
) -> dict:
    """Train ``model`` on ``task`` for every combination of ``grid``; return all runs and the best.

    Example grid: ``{"lr": [1e-3, 3e-4], "heads": [2, 4]}``. ``inputs="embeddings"`` trains every run on the cached
    pretrained-encoder vectors (a grid entry ``"input_kind": ["raw", "embeddings"]`` compares both).

    Returns:
        ``{"model", "task", "runs": [...], "best": {...}, "monitor"}``; ``best`` has the largest validation metric.
    """
    from models.base import TASKS
    from models.registry import list_models

    if model not in list_models():
        raise ValueError(f"model={model!r}: expected one of {list_models()}")
    combos = expand_grid(grid)
    base = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed, "device": device,
            "weight_decay": weight_decay, "hflip": hflip, "vision_profile": vision_profile}
    if inputs != "raw":
        base["input_kind"] = inputs
    runs = [_one(root, dataset, model, task, c, base) for c in combos]
    monitor = TASKS[task].monitor
    best = max(runs, key=lambda r: r["val"].get(monitor, float("-inf")))
    get_run_logger().info("sweep %s/%s: best %s with val %s=%.4f", model, task, best["params"], monitor,
                          best["val"].get(monitor, float("nan")))
    publish_table(f"{dataset}-sweep-{model}-{task}",
                  [{**r["params"], f"val_{monitor}": r["val"].get(monitor), **{f"test_{k}": v for k, v in r["metrics"].items()}}
                   for r in runs], f"sweep of {model} on {task} ({dataset})")
    return {"model": model, "task": task, "monitor": monitor, "runs": runs, "best": best}
