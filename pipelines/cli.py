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

__all__ = ["app", "main", "run_flow"]

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="vidpipe — multimodal video understanding: ingest → extract → pretrain-graph → train → compare.")
_err = Console(stderr=True, soft_wrap=True)  # errors stay on one line (greppable, copyable)
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


def run_flow(fn, **kwargs: Any) -> Any:
    """Call a flow, turning user errors into a short message and exit code 2 (shared by every CLI command)."""
    from prefect.exceptions import ParameterTypeError

    from features.sources import SourceError
    from features.store import StoreError

    try:
        return fn(**kwargs)
    except (ValueError, SourceError, StoreError, FileNotFoundError, KeyError, ParameterTypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, ParameterTypeError):  # e.g. `vidpipe extract ../x`: the parameter is on the next lines
            msg = " ".join(line.strip() for line in str(exc).splitlines())
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

    result = run_flow(flow, dataset=dataset, source=source, path=path, root=root, videos=videos, seed=seed,
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


@app.command()
def extract(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    stage: Optional[List[str]] = typer.Option(None, "--stage", help="Run only this stage (repeatable): probe, frames, audio, transcripts, metadata, text."),
    refresh: bool = typer.Option(False, "--refresh", help="Recompute even if fingerprints match; retry failed videos."),
    workers: Optional[int] = typer.Option(None, help="Videos in parallel (default: CPU count)."),
    batch_size: int = typer.Option(8, help="Videos per Prefect task."),
    profile: Optional[List[str]] = typer.Option(None, "--profile", help="Frame profiles: per_second, uniform, uniform_224 (repeatable)."),
    frames_per_segment: int = typer.Option(1, help="m frames per 1-second segment (per_second profile)."),
    n_frames: int = typer.Option(100, help="N frames of the uniform profile."),
    sample_rate: int = typer.Option(16000, help="Audio rate: 16000 or 44100."),
    n_mfcc: int = typer.Option(20, help="MFCC coefficients."),
    audio_feature: str = typer.Option("mfcc", help="Per-segment audio feature: mfcc or logmel."),
    asr: str = typer.Option("pocketsphinx", help="ASR backend when the dataset has no transcript: pocketsphinx, whisper, none."),
    asr_model_path: Optional[str] = typer.Option(None, help="Local weights for --asr whisper."),
    keyframes: bool = typer.Option(False, "--keyframes", help="Sample frames from the nearest keyframes (faster)."),
    exact_decode: bool = typer.Option(False, "--exact-decode", help="Bit-exact video decoding (keep the deblocking filter; ~12% slower)."),
    dask_address: Optional[str] = typer.Option(None, help="Run on an existing Dask cluster (tcp://host:8786)."),
    dask_workers: Optional[int] = typer.Option(None, help="Start a local Dask cluster with N worker processes."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Extract cached features for every ingested video (only what changed).

    Examples: [cyan]vidpipe extract demo[/cyan]; [cyan]vidpipe extract demo --stage audio --refresh[/cyan]
    """
    from flows import extract_features
    from pipelines.extract import ExtractConfig

    try:
        cfg = ExtractConfig(**{k: v for k, v in dict(
            profiles=tuple(profile) if profile else None, frames_per_segment=frames_per_segment, n_frames=n_frames,
            sample_rate=sample_rate, n_mfcc=n_mfcc, audio_feature=audio_feature, asr=asr,
            asr_model_path=asr_model_path, keyframes=keyframes, fast_decode=not exact_decode).items()
            if v is not None})
    except Exception as exc:  # pydantic.ValidationError
        _err.print(f"[red]error:[/red] invalid extraction option: {exc}")
        raise typer.Exit(2) from None
    kwargs = dict(dataset=dataset, root=root, stages=stage or None, refresh=refresh, config=cfg, workers=workers,
                  batch_size=batch_size)
    kwargs.update(dask_address=dask_address, dask_workers=dask_workers)
    result = run_flow(extract_features, **kwargs)
    _emit(result, as_json, f"extract {dataset}")
    if result.get("failed_videos"):
        _err.print(f"[yellow]{result['failed_videos']} video(s) failed a stage: see `vidpipe inspect {dataset}`[/yellow]")


@app.command("pretrain-graph")
def pretrain_graph(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    features: str = typer.Option("none", help="Video node features: none, metadata, audio."),
    epochs: int = typer.Option(100, help="Maximum epochs."),
    hidden: int = typer.Option(64, help="Hidden width."),
    out: int = typer.Option(32, help="Embedding width."),
    heads: int = typer.Option(4, help="Attention heads (concatenated)."),
    loss: str = typer.Option("mse", help="mse (paper) or bce."),
    minibatch: bool = typer.Option(False, "--minibatch", help="LinkNeighborLoader mini-batches."),
    seed: int = typer.Option(0, help="Random seed."),
    refresh: bool = typer.Option(False, "--refresh", help="Retrain even if nothing changed."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Pre-train the song–video GAT by link prediction and store video embeddings (stage 'graph').

    Example: [cyan]vidpipe pretrain-graph demo --epochs 50 --json[/cyan]
    """
    from flows import pretrain_graph as flow

    result = run_flow(flow, dataset=dataset, root=root, features=features, epochs=epochs, hidden=hidden, out=out,
                  heads=heads, loss=loss, minibatch=minibatch, seed=seed, refresh=refresh)
    if as_json:
        print(json.dumps({k: result[k] for k in ("val_auc", "test_auc", "val_mse", "test_mse", "epochs", "seconds")}))
    else:
        _emit(result, False, f"pretrain-graph {dataset}")


def _parse_overrides(items: Optional[List[str]]) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"--set {item!r}: expected FIELD=VALUE, e.g. --set dim=32")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


@app.command()
def train(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    model: str = typer.Option(..., "--model", help="Registered model (see `vidpipe models`)."),
    task: str = typer.Option(..., "--task", help="emotion, personality or popularity."),
    epochs: int = typer.Option(30, help="Maximum epochs."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    batch_size: int = typer.Option(16, help="Batch size."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Model config override FIELD=VALUE (repeatable)."),
    run_id: Optional[str] = typer.Option(None, help="Run name; reusing one resumes from its last checkpoint."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train a registered model on cached features and record the run.

    Example: [cyan]vidpipe train demo --model sec2sec --task emotion --epochs 10 --json[/cyan]
    """
    from flows import train as flow

    run = run_flow(flow, dataset=dataset, model=model, task=task, root=root, epochs=epochs, lr=lr,
               batch_size=batch_size, seed=seed, device=device, overrides=_parse_overrides(set_), run_id=run_id)
    if as_json:
        print(json.dumps({k: run[k] for k in ("model", "task", "metrics", "baseline", "checkpoint")}, default=str))
    else:
        rows = [{"predictor": model, **run["metrics"]}, {"predictor": "constant", **run["baseline"]}]
        _emit(rows, False, f"{model} on {task} ({dataset}), test split")
        Console().print(f"checkpoint: {run['checkpoint']}")


@app.command()
def sweep(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    model: str = typer.Option(..., "--model", help="Registered model."),
    task: str = typer.Option(..., "--task", help="emotion, personality or popularity."),
    grid: str = typer.Option(..., "--grid", help='JSON grid, e.g. \'{"lr": [0.001, 0.0003], "heads": [2, 4]}\'.'),
    epochs: int = typer.Option(20, help="Maximum epochs per run."),
    batch_size: int = typer.Option(16, help="Batch size (unless in the grid)."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train a model over a hyper-parameter grid; report the best run by validation metric.

    Example: [cyan]vidpipe sweep demo --model mcat --task personality --grid '{"heads": [2, 4]}' --json[/cyan]
    """
    from flows import sweep as flow

    try:
        grid_d = json.loads(grid)
    except json.JSONDecodeError as exc:
        _err.print(f"[red]error:[/red] --grid is not JSON: {exc}")
        raise typer.Exit(2) from None
    result = run_flow(flow, dataset=dataset, model=model, task=task, grid=grid_d, root=root, epochs=epochs,
                  batch_size=batch_size, seed=seed, device=device)
    rows = [{**r["params"], f"val_{result['monitor']}": r["val"].get(result["monitor"]), **r["metrics"]}
            for r in result["runs"]]
    if as_json:
        b = result["best"]
        print(json.dumps({"model": model, "task": task, "metrics": b["metrics"], "baseline": b["baseline"],
                          "checkpoint": b["checkpoint"], "best_params": b["params"], "runs": rows}, default=str))
    else:
        _emit(rows, False, f"sweep {model} on {task}")


@app.command()
def demo(
    dataset: str = typer.Option("demo", help="Dataset name for the demo store."),
    videos: int = typer.Option(120, help="Synthetic videos to generate."),
    epochs: int = typer.Option(12, help="Training epochs per model."),
    seed: int = typer.Option(0, help="Random seed."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run every stage on a generated dataset with planted signals (what `make demo` runs).

    Example: [cyan]vidpipe demo --videos 40 --epochs 5[/cyan]
    """
    from pipelines.demo import demo as flow

    result = run_flow(flow, root=root, dataset=dataset, videos=videos, epochs=epochs, seed=seed)
    if as_json:
        print(json.dumps(result, default=str))
        return
    from models.base import TASKS

    console = Console()
    for task_name, rows in result["tables"].items():
        metric = TASKS[task_name].monitor
        table = Table(title=f"{task_name} — test split ({metric}, higher is better)")
        for col in ("model", metric, "params", "s/epoch", "reused"):
            table.add_column(col)
        for r in rows:
            value = r.get(metric)
            table.add_row(str(r.get("model")), "n/a" if value is None else f"{value:.3f}",
                          str(r.get("params", "")), f"{r['sec_per_epoch']:.2f}" if r.get("sec_per_epoch") else "",
                          str(r.get("cached", "")))
        console.print(table)
    g = result["graph"]
    console.print(f"graph link prediction: val AUC {g['val_auc']:.3f}, test AUC {g['test_auc']:.3f}")
    console.print(f"timings (s): {result['timings']}; total {result['seconds']:.0f}s")
    console.print(f"[bold]report:[/bold] {result['report']}")


@app.command()
def models() -> None:
    """List the registered models."""
    from models.registry import list_models

    for name in list_models():
        print(name)


from pipelines.cli_ops import register as _register_ops  # noqa: E402  (serve, refresh)
_register_ops(app)


@app.command()
def compare(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    task: str = typer.Option("all", "--task", help="emotion, personality, popularity or all."),
    model: Optional[List[str]] = typer.Option(None, "--model", help="Model to compare (repeatable; default: the task's headline model + baselines)."),
    epochs: int = typer.Option(15, help="Maximum epochs per model."),
    seed: int = typer.Option(0, help="Random seed (also fixes the split)."),
    batch_size: int = typer.Option(16, help="Batch size."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Config override for every model FIELD=VALUE (repeatable)."),
    ablation: Optional[List[str]] = typer.Option(None, "--ablation", help='Ablation as JSON, e.g. \'{"heads": 4}\' (repeatable).'),
    retrain: bool = typer.Option(False, "--retrain", help="Retrain even when a run with identical settings exists."),
    no_interpret: bool = typer.Option(False, "--no-interpret", help="Skip the interpretability plots."),
    root: Optional[str] = RootOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the table rows as a JSON list (last line of stdout)."),
) -> None:
    """Train or reuse several models per task, score them on one test split, write tables and plots.

    Example: [cyan]vidpipe compare demo --task personality --json[/cyan]
    """
    from flows import compare_models

    try:
        ablations = [json.loads(a) for a in ablation or []]
    except json.JSONDecodeError as exc:
        _err.print(f"[red]error:[/red] --ablation is not JSON: {exc}")
        raise typer.Exit(2) from None
    result = run_flow(compare_models, dataset=dataset, root=root, task=task, models=model or None, epochs=epochs,
                  seed=seed, batch_size=batch_size, device=device, overrides=_parse_overrides(set_) or None,
                  ablations=ablations or None, retrain=retrain, interpret=not no_interpret)
    rows = [r for t in result["tables"].values() for r in t] + [r for t in result["ablations"].values() for r in t]
    if as_json:
        print(json.dumps(rows, default=str))
        return
    for t, t_rows in result["tables"].items():
        _emit([{k: v for k, v in r.items() if k not in ("task", "run_id", "cached")} for r in t_rows], False,
              f"compare {t} on {dataset} (test split)")
    Console().print(f"[bold]report:[/bold] {result['report']}")


@app.command("analyze-outcomes")
def analyze_outcomes(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    run: str = typer.Option(..., "--run", help="Run id of a trained model (see `vidpipe compare/train --json`)."),
    outcomes: str = typer.Option(..., "--outcomes", help="CSV or Parquet file with video_id, the outcome and controls."),
    outcome: str = typer.Option(..., "--outcome", help="Binary (0/1) outcome column."),
    controls: str = typer.Option("", "--controls", help="Comma-separated control columns."),
    n_iter: int = typer.Option(200, help="Random data sets of the parallel analysis."),
    seed: int = typer.Option(0, help="Random seed of the parallel analysis."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Logit / probit of an outcome on a run's predicted traits, VIF, KMO, parallel analysis, one-factor model.

    Example: [cyan]vidpipe analyze-outcomes fi2 --run mcat-personality-... --outcomes admit.csv --outcome admitted --controls age,gpa[/cyan]
    """
    from flows import analyze_outcomes as flow

    result = run_flow(flow, dataset=dataset, run_id=run, outcomes=outcomes, outcome=outcome,
                  controls=[c.strip() for c in controls.split(",") if c.strip()], root=root, n_iter=n_iter, seed=seed)
    if as_json:
        print(json.dumps(result, default=str))
        return
    _emit([{k: v for k, v in r.items() if k in ("link", "predictor", "coef", "se", "p", "stars", "pseudo_r2")}
           for r in result["regressions"]], False, f"{outcome} ~ predicted traits ({result['n']} rows)")
    Console().print(f"KMO {result['kmo']:.3f}; parallel analysis: {result['n_factors']} factor(s)")
    Console().print(f"[bold]report:[/bold] {result['report']}")


def main(argv: Optional[List[str]] = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="vidpipe")
