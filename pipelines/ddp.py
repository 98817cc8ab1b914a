"""Data-parallel training on several GPUs (or CPU processes) with PyTorch's own DDP, launched by ``torchrun``.

::

    torchrun --nproc_per_node 4 -m pipelines.ddp demo --model mcat --task personality --epochs 30
    python -m torch.distributed.run --nproc_per_node 2 -m pipelines.ddp demo --model sec2sec --task emotion --device cpu

Every process does the same thing, :func:`train_ddp`:

1. ``init_process_group`` from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
   ``MASTER_PORT``): backend ``nccl`` with one GPU per process (``cuda:LOCAL_RANK``), ``gloo`` on CPU.
2. Rank 0 names the run and broadcasts the name. The local rank 0 of each machine builds (or reuses) the tensor pack
   for the model's default inputs while the other processes wait at a barrier, so N processes do not build it N times.
3. :func:`pipelines.train.run_training` — the same code as ``vidpipe train`` — trains. Inside it,
   :func:`models.engine.fit` sees the process group, wraps the model in ``DistributedDataParallel`` and shards the
   training rows per rank (:meth:`models.data.PackLoader.shard`); gradients are averaged over ranks every step, so
   the effective batch is ``batch_size × WORLD_SIZE``. Rank 0 alone writes checkpoints and the run record.

Rank 0 prints the run summary as one JSON line (the last line of its stdout); the other ranks print nothing.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, List, Optional

import torch
import torch.distributed as dist
import typer

__all__ = ["train_ddp", "main"]


def _device(requested: str, local_rank: int) -> str:
    """This process's device: ``cuda:LOCAL_RANK`` when CUDA is asked for (or ``auto`` and available), else ``cpu``."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={requested!r}: expected 'auto', 'cpu' or 'cuda' (each process takes cuda:LOCAL_RANK)")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but CUDA is not available; use --device cpu")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible: "
                             "start at most one process per GPU (--nproc_per_node)")
        return f"cuda:{local_rank}"
    return "cpu"


def train_ddp(dataset: str, model: str, task: str, *, root: Optional[str] = None, epochs: int = 30,
              lr: float = 1e-3, batch_size: int = 16, seed: int = 0, device: str = "auto",
              overrides: Optional[dict[str, Any]] = None, vision_profile: str = "uniform",
              run_id: Optional[str] = None) -> Optional[dict]:
    """Train one model on one task in this torchrun process; returns the run record on rank 0, ``None`` elsewhere.

    Args:
        dataset, model, task, root, epochs, lr, batch_size, seed, overrides, vision_profile, run_id: as for the
            ``train`` flow; ``batch_size`` is per process.
        device: ``auto`` (a GPU per process when CUDA is available), ``cpu`` or ``cuda``.

    Raises:
        ValueError: not started by torchrun (no ``RANK``/``WORLD_SIZE`` in the environment), or a bad device.
    """
    from features.packs import build_pack
    from models.registry import create_model
    from pipelines.flow_io import store_for
    from pipelines.train import new_run_id, run_training

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ValueError("RANK/WORLD_SIZE are not set: start this with torchrun "
                         "(python -m torch.distributed.run --nproc_per_node N -m pipelines.ddp ...)")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = _device(device, local_rank)
    if dev.startswith("cuda"):
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if dev.startswith("cuda") else "gloo")
    try:
        rank = dist.get_rank()
        name = [run_id or new_run_id(model, task, "ddp")]
        dist.broadcast_object_list(name, src=0)  # one run name for every rank (rank 0's)
        store = store_for(root, dataset)
        if local_rank == 0:  # one pack build per machine; run_training below then finds and reuses it
            inputs = create_model(model, task=task).inputs
            build_pack(store, inputs, task, vision_profile=vision_profile)
        dist.barrier()
        run = run_training(store, model, task, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=dev,
                           overrides=overrides, vision_profile=vision_profile, run_id=name[0], record=rank == 0)
        run["world_size"] = dist.get_world_size()
        return run if rank == 0 else None
    finally:
        dist.destroy_process_group()


_app = typer.Typer(add_completion=False, rich_markup_mode="rich")


@_app.command()
def _cli(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    model: str = typer.Option(..., "--model", help="Registered model (see `vidpipe models`)."),
    task: str = typer.Option(..., "--task", help="emotion, personality or popularity."),
    epochs: int = typer.Option(30, help="Maximum epochs."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    batch_size: int = typer.Option(16, help="Batch size per process (effective: × WORLD_SIZE)."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda (each process takes cuda:LOCAL_RANK)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Model config override FIELD=VALUE (repeatable)."),
    vision_profile: str = typer.Option("uniform", help="Frame profile feeding `vision` inputs."),
    run_id: Optional[str] = typer.Option(None, help="Run name; reusing one resumes from its last checkpoint."),
    root: Optional[str] = typer.Option(None, "--root", envvar="VIDPIPE_ROOT", help="Data root (path or URL)."),
) -> None:
    """Train a registered model with DDP (one process per GPU); start it with torchrun.

    Example: [cyan]torchrun --nproc_per_node 4 -m pipelines.ddp demo --model mcat --task personality[/cyan]
    """
    from pipelines.cli_runner import parse_overrides

    try:
        run = train_ddp(dataset, model, task, root=root, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                        device=device, overrides=parse_overrides(set_), vision_profile=vision_profile,
                        run_id=run_id)
    except ValueError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        raise typer.Exit(2) from None
    if run is not None:
        print(json.dumps({k: run.get(k) for k in ("run_id", "model", "task", "metrics", "baseline", "checkpoint",
                                                  "epochs_run", "world_size", "n_train")}, default=str))


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of ``python -m pipelines.ddp`` (under torchrun)."""
    _app(args=argv if argv is not None else sys.argv[1:], prog_name="pipelines.ddp")


if __name__ == "__main__":
    main()
