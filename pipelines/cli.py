"""The ``vidpipe`` command line: a thin typer wrapper over the Prefect flows in :mod:`flows`.

Every command takes ``--root`` (default ``$VIDPIPE_ROOT`` or ``./data``). Commands that accept ``--json`` print exactly
one JSON document as the last line of stdout (progress goes to stderr).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app", "main"]

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="vidpipe — multimodal video understanding: ingest → extract → pretrain-graph → train → compare.")
_err = Console(stderr=True)
RootOpt = typer.Option(None, "--root", envvar="VIDPIPE_ROOT", help="Data root (path or fsspec URL). Default ./data.")
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON (last line of stdout).")


def _emit(result: Any, as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(result, default=str))
        return
    console = Console()
    if isinstance(result, dict):
        table = Table(title=title, show_header=False)
        for k, v in result.items():
            table.add_row(str(k), json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v))
        console.print(table)
    elif isinstance(result, list) and result and isinstance(result[0], dict):
        table = Table(title=title)
        for col in result[0]:
            table.add_column(str(col))
        for row in result:
            table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()])
        console.print(table)
    else:
        console.print(result)


def _run(fn, **kwargs: Any) -> Any:
    """Call a flow, turning user errors into a short message and exit code 2."""
    from features.sources import SourceError
    from features.store import StoreError

    try:
        return fn(**kwargs)
    except (ValueError, SourceError, StoreError, FileNotFoundError, KeyError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _err.print(f"[red]error:[/red] {msg}")
        raise typer.Exit(2) from None


@app.command()
def ingest(
    dataset: str = typer.Argument(..., help="Dataset (store) name, e.g. 'fi2'."),
    source: str = typer.Option(..., "--source", help="folder | first-impressions | liris-accede | tiktok | synthetic"),
    path: Optional[str] = typer.Argument(None, help="Dataset folder (tiktok: the .jsonl). Synthetic: optional."),
    videos: int = typer.Option(100, help="Synthetic: number of videos to generate."),
    seed: int = typer.Option(0, help="Synthetic: random seed."),
    threshold: Optional[float] = typer.Option(None, help="LIRIS-ACCEDE: high/low threshold (default 3.0)."),
    scrape_time: Optional[float] = typer.Option(None, help="TikTok: scrape time (epoch s) if the files lack it."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Record a dataset's manifest in its store.

    Examples: [cyan]vidpipe ingest demo --source synthetic --videos 20[/cyan];
    [cyan]vidpipe ingest fi2 --source first-impressions /data/chalearn[/cyan]
    """
    from flows import ingest as flow

    result = _run(flow, dataset=dataset, source=source, path=path, root=root, videos=videos, seed=seed,
                  threshold=threshold, scrape_time=scrape_time)
    _emit(result, as_json, f"ingest {dataset}")


@app.command()
def inspect(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show what the store holds: per stage done / failed / pending, and the failures.

    Example: [cyan]vidpipe inspect demo --json[/cyan]
    """
    from features.store import StoreError, open_store
    from pipelines.extract import STAGES

    try:
        summary = open_store(root, dataset).summary(list(STAGES))
    except (StoreError, ValueError) as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(summary))
        return
    console = Console()
    table = Table(title=f"{dataset}: {summary['videos']} videos")
    for col in ("stage", "done", "failed", "pending"):
        table.add_column(col)
    for stage, c in summary["stages"].items():
        table.add_row(stage, str(c["done"]), f"[red]{c['failed']}[/red]" if c["failed"] else "0", str(c["pending"]))
    console.print(table)
    if summary["failures"]:
        ft = Table(title="failures")
        for col in ("video_id", "stage", "error"):
            ft.add_column(col, overflow="fold")
        for f in summary["failures"][:50]:
            ft.add_row(f["video_id"], f["stage"], f["error"][:200])
        console.print(ft)


def main(argv: Optional[List[str]] = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="vidpipe")
