"""Deployments of vidpipe's flows, with default parameters and schedules, served on a Prefect server.

One deployment per flow, named after the dataset it works on (``extract-features/demo``, ``train/demo``, ...):

============================  ==================  ===========================================================
deployment                    default schedule    what a scheduled run does
============================  ==================  ===========================================================
``refresh/<dataset>``         nightly 01:00       re-ingest the source; rerun only the stages its changes touch
``extract-features/<dataset>`` nightly 02:00      extraction catch-up: no-op when nothing changed (fingerprints)
``pretrain-graph/<dataset>``  Sundays 03:00       GAT embeddings; no-op unless the graph or its inputs changed
``train/<dataset>``           Sundays 04:00       weekly retraining (default ``sec2sec`` on ``emotion``)
``compare/<dataset>``         Sundays 06:00       weekly comparison table and report (when the stage is installed)
``sweep/<dataset>``           none (on demand)    a small learning-rate grid; pass ``--param grid=...``
============================  ==================  ===========================================================

Cron schedules are in UTC unless told otherwise. Every deployment has a concurrency limit of one run at a time (one
writer per dataset: object-store roots have no lock), validates its parameters against the flow's typed signature
before a run is created (``enforce_parameter_schema``), and points at its flow by module path
(``pipelines.extract.extract_features``), so it runs from any working directory where vidpipe is installed.

:func:`serve_deployments` serves them from this process with :func:`prefect.serve` (``vidpipe serve`` /
``python flows.py serve``); teams that deploy to work pools use ``prefect.yaml`` instead.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Optional, Sequence

from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from features.store import check_dataset_name, resolve_root

__all__ = ["DEFAULT_SCHEDULES", "deployment_flows", "deployments", "serve_deployments"]

#: flow name → default cron schedule (None: run on demand only)
DEFAULT_SCHEDULES: dict[str, Optional[str]] = {
    "refresh": "0 1 * * *",
    "extract-features": "0 2 * * *",
    "pretrain-graph": "0 3 * * 0",
    "train": "0 4 * * 0",
    "compare": "0 6 * * 0",
    "sweep": None,
}

# flow name → (module, function, default parameters beyond dataset/root)
_FLOWS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "refresh": ("pipelines.refresh", "refresh", {}),
    "extract-features": ("pipelines.extract", "extract_features", {}),
    "pretrain-graph": ("pipelines.graph", "pretrain_graph", {}),
    "train": ("pipelines.train", "train", {"model": "sec2sec", "task": "emotion"}),
    "sweep": ("pipelines.sweep", "sweep", {"model": "sec2sec", "task": "emotion", "grid": {"lr": [1e-3, 3e-4]}}),
    "compare": ("pipelines.compare", "compare_models", {"task": "all"}),
}
_OPTIONAL = {"compare"}  # stages that may be absent from a trimmed install


def deployment_flows() -> dict[str, Any]:
    """Flow name → flow object, for every flow that has a deployment (optional stages only when importable)."""
    out = {}
    for name, (module, attr, _) in _FLOWS.items():
        try:
            out[name] = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            if name not in _OPTIONAL:
                raise
    return out


def deployments(dataset: str, root: Optional[str] = None, *, only: Optional[Sequence[str]] = None,
                schedules: bool = True, timezone: str = "UTC") -> list[Any]:
    """The deployments of vidpipe's flows for ``dataset`` (see the module docstring for names and schedules).

    Args:
        dataset: the store the deployments work on; the deployment name of every flow.
        root: data root (path or fsspec URL) passed to every flow (a relative path is made absolute here); ``None``
            lets each run resolve ``$VIDPIPE_ROOT`` or ``./data`` on the machine that runs it.
        only: flow names to deploy (default: all of :data:`DEFAULT_SCHEDULES` that are installed).
        schedules: attach the default schedules (``False``: every deployment runs on demand only).
        timezone: IANA time zone of the cron schedules.

    Returns:
        ``prefect.deployments.runner.RunnerDeployment`` objects, ready for :func:`prefect.serve`.

    Raises:
        ValueError: a bad dataset name, or an unknown / unavailable flow name in ``only``.
    """
    check_dataset_name(dataset)
    root = resolve_root(root) if root else None  # a relative path means the same folder wherever runs start
    flows = deployment_flows()
    names = list(flows) if only is None else list(dict.fromkeys(only))
    unknown = [n for n in names if n not in flows]
    if unknown:
        raise ValueError(f"only={unknown}: expected some of {sorted(flows)} "
                         f"({', '.join(sorted(set(_FLOWS) - set(flows))) or 'none'} not installed)")
    out = []
    for name in names:
        fl = flows[name]
        accepted = set(inspect.signature(fl.fn).parameters)
        params = {"dataset": dataset, "root": root, **_FLOWS[name][2]}
        params = {k: v for k, v in params.items() if k in accepted}
        cron = DEFAULT_SCHEDULES.get(name) if schedules else None
        out.append(fl.to_deployment(
            name=dataset,
            parameters=params,
            schedules=[Cron(cron, timezone=timezone)] if cron else None,
            concurrency_limit=1,
            tags=["vidpipe", dataset],
            description=f"vidpipe {name} on dataset {dataset!r}"
                        + (f" (schedule: {cron} {timezone})" if cron else " (on demand)"),
            enforce_parameter_schema=True,
            entrypoint_type=EntrypointType.MODULE_PATH,
        ))
    return out


def serve_deployments(dataset: str, root: Optional[str] = None, *, only: Optional[Sequence[str]] = None,
                      schedules: bool = True, timezone: str = "UTC", limit: Optional[int] = None) -> None:
    """Serve :func:`deployments` from this process until interrupted (``prefect.serve``).

    Raises:
        ValueError: no Prefect server is configured (``PREFECT_API_URL``): served deployments must live on a server
            that outlives this process, not on a temporary in-process API.
    """
    from prefect import serve
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        raise ValueError("PREFECT_API_URL is not set: start a server with `prefect server start` (it binds "
                         "127.0.0.1:4200) and `export PREFECT_API_URL=http://127.0.0.1:4200/api`, then serve again")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit!r}: expected a positive number of concurrent runs, or None")
    serve(*deployments(dataset, root, only=only, schedules=schedules, timezone=timezone), limit=limit)
