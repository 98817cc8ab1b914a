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

:func:`serve_deployments` serves them from this process with a Prefect ``Runner`` (``vidpipe serve`` /
``python flows.py serve``) and stops within seconds of SIGTERM / SIGINT; teams that deploy to work pools use
``prefect.yaml`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import importlib
import inspect
import logging
import os
import signal
import sys
from typing import Any, NoReturn, Optional, Sequence

import httpx
from prefect.logging import get_logger
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from features.store import check_dataset_name, resolve_root

__all__ = ["DEFAULT_SCHEDULES", "STOP_TIMEOUT", "deployment_flows", "deployments", "serve_deployments"]

#: seconds :func:`serve_deployments` allows itself to stop after SIGTERM / SIGINT (supervisors wait ~10 s)
STOP_TIMEOUT = 8.0
_log = get_logger("vidpipe.serve")

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
                      schedules: bool = True, timezone: str = "UTC", limit: Optional[int] = None,
                      stop_timeout: float = STOP_TIMEOUT) -> int:
    """Serve :func:`deployments` from this process until SIGTERM or SIGINT (Ctrl-C).

    A Prefect ``Runner`` polls the server for scheduled and triggered runs and executes each in a subprocess. On
    SIGTERM / SIGINT the runner is stopped and awaited (runs in flight are cancelled, schedules paused) within
    ``stop_timeout`` seconds whether or not the server still answers; what has not finished by then is abandoned:
    the flow-run subprocesses are killed (their runs are left to Prefect's crash detection; the store's commits are
    atomic, so it stays consistent) and the process ends with ``os._exit``. A second signal skips the graceful part.

    Returns:
        the exit code: 0 after a graceful stop, 1 when the deadline forced it (the process has then already ended).

    Raises:
        ValueError: no Prefect server is configured (``PREFECT_API_URL``): served deployments must live on a server
            that outlives this process, not on a temporary in-process API; or a bad argument (named).
    """
    from prefect.runner import Runner
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise ValueError("PREFECT_API_URL is not set: start a server with `prefect server start` (it binds "
                         "127.0.0.1:4200) and `export PREFECT_API_URL=http://127.0.0.1:4200/api`, then serve again")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit!r}: expected a positive number of concurrent runs, or None")
    if not stop_timeout > 0:
        raise ValueError(f"stop_timeout={stop_timeout!r}: expected a positive number of seconds")
    deps = deployments(dataset, root, only=only, schedules=schedules, timezone=timezone)
    runner = Runner(pause_on_shutdown=True, limit=limit)
    try:
        for dep in deps:
            runner.add_deployment(dep)
    except (OSError, httpx.TransportError) as exc:  # nobody listens at the URL
        raise ValueError(f"PREFECT_API_URL={url}: no Prefect server answers ({type(exc).__name__}: {exc}); start "
                         "one with `prefect server start` or fix the URL") from exc
    _log.info("serving %s on %s (stop with Ctrl-C or SIGTERM)",
              ", ".join(f"'{d.flow_name}/{d.name}'" for d in deps), url)
    return asyncio.run(_run_until_signalled(runner, stop_timeout))


async def _run_until_signalled(runner: Any, stop_timeout: float) -> int:
    """Run ``runner.start()`` until SIGTERM / SIGINT, then stop it within ``stop_timeout`` seconds (see
    :func:`serve_deployments`)."""
    loop = asyncio.get_running_loop()
    received: list[int] = []
    signalled = asyncio.Event()

    def on_signal(signum: int) -> None:
        received.append(signum)
        signalled.set()
        if len(received) > 1:  # asked twice: stop now
            _hard_exit(1, f"{signal.Signals(signum).name} received again: exiting at once")

    def handler(signum: int, frame: Any) -> None:  # runs between two bytecodes of the main thread
        loop.call_soon_threadsafe(on_signal, signum)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}
    # Runner.start() installs `self.handle_sigterm` as the SIGTERM handler. Prefect's own calls Runner.stop() from the
    # signal handler without awaiting it, then sys.exit(): the stop coroutine never runs and the shutdown can hang.
    runner.handle_sigterm = handler
    serving = asyncio.create_task(runner.start())
    waiter = asyncio.create_task(signalled.wait())
    await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
    try:
        return await _stop(runner, serving, waiter, received, stop_timeout)
    finally:
        for signum, prev in previous.items():
            signal.signal(signum, prev)


async def _stop(runner: Any, serving: asyncio.Task, waiter: asyncio.Task, received: list[int],
                stop_timeout: float) -> int:
    """After a signal: stop ``runner`` politely, then cancel ``serving`` until it ends or the deadline passes."""
    loop = asyncio.get_running_loop()
    if serving.done():  # the runner ended by itself: report how
        waiter.cancel()
        serving.result()
        return 0
    deadline = loop.time() + stop_timeout
    _log.info("%s received: stopping (runs in flight are cancelled; at most %.0f s)",
              signal.Signals(received[0]).name, stop_timeout)
    # asyncio.wait, not wait_for: a stop stuck on a server that went away is left behind, never waited for
    stopper = asyncio.ensure_future(runner.astop())
    await asyncio.wait({stopper}, timeout=0.5 * stop_timeout)
    if not stopper.done():
        stopper.cancel()
    elif not stopper.cancelled() and stopper.exception() is not None:
        exc = stopper.exception()
        _log.warning("stopping the runner: %s: %s", type(exc).__name__, exc)
    while not serving.done() and loop.time() < deadline:
        serving.cancel()  # ends the polling loops; the runner's exit then pauses schedules and closes its client
        await asyncio.wait({serving}, timeout=min(1.0, max(0.05, deadline - loop.time())))
    if not serving.done():
        _hard_exit(1, f"the runner did not stop within {stop_timeout:.0f} s (is the server gone?): exiting")
    return 0


def _hard_exit(code: int, why: str) -> NoReturn:
    """Kill this process's children (flow-run subprocesses), flush the logs and end the process now."""
    _log.warning(why)
    for pid in _child_pids():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _child_pids() -> list[int]:
    """Process ids of this process's descendants (psutil when installed, else Linux's /proc children lists)."""
    try:
        import psutil
    except ImportError:
        pids = []
        for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
            with contextlib.suppress(OSError), open(path) as fh:
                pids += [int(p) for p in fh.read().split()]
        return pids
    with contextlib.suppress(psutil.Error):
        return [p.pid for p in psutil.Process().children(recursive=True)]
    return []
