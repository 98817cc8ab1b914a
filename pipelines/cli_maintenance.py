"""Operations commands of the ``vidpipe`` CLI: ``serve`` (scheduled deployments) and ``refresh`` (reruns after a
data refresh). :func:`register` adds them to the main typer app (``pipelines.cli``).
"""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from pipelines.cli_runner import run_flow

__all__ = ["register", "serve", "refresh"]


def serve(
    dataset: str = typer.Option("demo", "--dataset", help="Dataset (store) the deployments work on."),
    root: Optional[str] = typer.Option(None, "--root", envvar="VIDPIPE_ROOT",
                                       help="Data root (path or fsspec URL). Default ./data."),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Serve only this flow (repeatable): refresh, "
                                             "extract-features, pretrain-graph, train, sweep, compare."),
    schedules: bool = typer.Option(True, "--schedules/--no-schedules", help="Attach the default schedules."),
    timezone: str = typer.Option("UTC", "--timezone", help="Time zone of the cron schedules."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Most flow runs executed at once."),
) -> None:
    """Serve vidpipe's deployments on the Prefect server at $PREFECT_API_URL (until Ctrl-C or SIGTERM).

    Stops within 10 s of Ctrl-C / SIGTERM, also when the server has gone away; runs in flight are cancelled.

    Needs a running server: [cyan]prefect server start[/cyan] (binds 127.0.0.1:4200) and
    [cyan]export PREFECT_API_URL=http://127.0.0.1:4200/api[/cyan]. Then trigger a run with
    [cyan]prefect deployment run 'extract-features/demo' --param batch_size=4[/cyan].

    Examples: [cyan]vidpipe serve --dataset demo[/cyan];
    [cyan]python flows.py serve --dataset fi2 --no-schedules[/cyan]; [cyan]vidpipe serve --only refresh --only train[/cyan]
    """
    from pipelines.deploy import serve_deployments

    code = run_flow(serve_deployments, quiet_console=False, dataset=dataset, root=root, only=only,
                    schedules=schedules, timezone=timezone, limit=limit)
    if code:
        raise typer.Exit(code)


def refresh(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and stop; change nothing."),
    stage: Optional[List[str]] = typer.Option(None, "--stage", help="Keep only this stage fresh (repeatable); "
                                              "default: the stages the store has."),
    workers: Optional[int] = typer.Option(None, help="Videos in parallel (default: CPU count)."),
    dask_address: Optional[str] = typer.Option(None, help="Extract on an existing Dask cluster (tcp://host:8786)."),
    root: Optional[str] = typer.Option(None, "--root", envvar="VIDPIPE_ROOT",
                                       help="Data root (path or fsspec URL). Default ./data."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (last line of stdout)."),
) -> None:
    """Re-ingest the dataset's source and rerun only the stages its changes touch (features, graph).

    Prints the plan (added / changed / removed videos, stages to rerun, stale training packs), then what it did.

    Examples: [cyan]vidpipe refresh demo --dry-run[/cyan]; [cyan]vidpipe refresh fi2 --json[/cyan]
    """
    from rich.console import Console

    from pipelines.refresh import describe_refresh
    from pipelines.refresh import refresh as flow

    result = run_flow(flow, dataset=dataset, root=root, dry_run=dry_run, stages=stage or None, workers=workers,
                  dask_address=dask_address)
    if as_json:
        print(json.dumps(result, default=str))
    else:
        Console(highlight=False).print(describe_refresh(result), markup=False)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` and ``refresh`` commands to ``app``."""
    app.command("serve")(serve)
    app.command("refresh")(refresh)
