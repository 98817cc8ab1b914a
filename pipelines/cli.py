"""The ``vidpipe`` command line: a thin typer wrapper over the Prefect flows of the stage modules in :mod:`pipelines`.

Every command takes ``--root`` (default ``$VIDPIPE_ROOT`` or ``./data``). Commands that accept ``--json`` print exactly
one JSON document as the last line of stdout (progress goes to stderr). A failure prints one ``error:`` line and exits
non-zero; ``vidpipe --debug COMMAND ...`` prints the full traceback (:mod:`pipelines.cli_runner`).

Start-up time matters here (interactive reruns): each command imports its flow's module inside its body, so
``vidpipe --help`` and ``vidpipe inspect`` never import Prefect, torch or the other stages.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from pipelines.cli_maintenance import register as register_ops
from pipelines.cli_runner import DEBUG_ENV, fail, one_line, parse_overrides, run_flow, set_debug

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


def _prefect_server_configured() -> bool:
    """Whether flow runs go to a Prefect server (``PREFECT_API_URL`` in the environment or the active profile)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


@app.callback()
def _global_options(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", envvar=DEBUG_ENV,
                               help="On failure print the full traceback; show Prefect's INFO lines."),
) -> None:
    """vidpipe — multimodal video understanding: ingest → extract → pretrain-graph → train → compare."""
    # `serve` keeps Prefect's INFO lines: its console is the log of the runs it executes
    set_debug(debug, quiet_prefect=ctx.invoked_subcommand != "serve")


@app.command()
def ingest(
    dataset: str = typer.Argument(..., help="Dataset (store) name, e.g. 'fi2'."),
    source: str = typer.Option(..., "--source", help="folder | first-impressions | liris-accede | tiktok | synthetic"),
    path: Optional[str] = typer.Argument(None, help="Dataset folder (tiktok: a post file, or a folder of them). Synthetic: optional."),
    videos: int = typer.Option(100, help="Synthetic: number of videos to generate."),
    seed: int = typer.Option(0, help="Synthetic: random seed."),
    rescrapes: int = typer.Option(0, help="Synthetic: early re-scrapes per post (the scrape history of MTAF's early trend)."),
    threshold: Optional[float] = typer.Option(None, help="LIRIS-ACCEDE: high/low threshold (default 3.0)."),
    split: str = typer.Option("official", "--split", help="LIRIS-ACCEDE: official (ACCEDEsets.txt) or hashed (70/10/20 by video id)."),
    scrape_time: Optional[float] = typer.Option(None, help="TikTok: scrape time (epoch s) if the files lack it."),
    columns: Optional[str] = typer.Option(None, "--columns", help="TikTok CSV: FIELD=COLUMN pairs, e.g. 'id=video_id,plays=views' (fields: README)."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Record a dataset's manifest in its store.

    Examples: [cyan]vidpipe ingest demo --source synthetic --videos 20[/cyan];
    [cyan]vidpipe ingest fi2 --source first-impressions /data/chalearn[/cyan];
    [cyan]vidpipe ingest tk --source tiktok posts.csv --columns id=video_id,plays=views[/cyan]
    """
    from pipelines.ingest import ingest as flow

    result = run_flow(flow, dataset=dataset, source=source, path=path, root=root, videos=videos, seed=seed,
                  threshold=threshold, split=split, scrape_time=scrape_time, columns=columns, rescrapes=rescrapes)
    _emit(result, as_json, f"ingest {dataset}")
    if result.get("missing_files"):
        _err.print(f"[yellow]{result['missing_files']} of {result['videos']} listed video(s) have no file (e.g. "
                   f"{', '.join(result['missing_examples'])}): extraction records them as missing and skips them; "
                   "re-ingest once they are downloaded[/yellow]")


@app.command()
def unpack(
    src: str = typer.Argument(..., help="A .zip file, or a folder searched recursively for .zip files."),
    dest: str = typer.Argument(..., help="Folder to unpack into (created); then run `vidpipe ingest ... DEST`."),
    archive_password: Optional[List[str]] = typer.Option(
        None, "--archive-password", help="Password for encrypted members (repeatable: each is tried in turn)."),
    archive_password_file: Optional[str] = typer.Option(
        None, "--archive-password-file", help="File with one password per line (keeps them out of the process list)."),
    as_json: bool = JsonOpt,
) -> None:
    """Unpack a dataset's nested (and password-protected) zip archives into the layout ingest reads; resumable.

    Media and label files (.pkl, .txt, .csv, .json) land in DEST/<zip name>/<inner zip name>/...
    A rerun skips files already in place and nested zips already unpacked. Progress goes to stderr.
    Example: [cyan]vidpipe unpack /data/fi-v2-download /data/chalearn --archive-password "$PW"[/cyan]
    """
    from rich.markup import escape

    from features.sources.archives import ArchiveError, unpack_archives

    passwords = list(archive_password or [])
    try:
        if archive_password_file is not None:
            with open(archive_password_file, encoding="utf-8") as fh:
                passwords += [line.rstrip("\r\n") for line in fh if line.rstrip("\r\n")]
        report = unpack_archives(src, dest, passwords=passwords,
                                 progress=lambda line: _err.print(escape(line), highlight=False))
    except (OSError, ArchiveError, ValueError) as exc:
        fail(one_line(exc))
    _emit(report.to_dict(), as_json, "unpack")


@app.command()
def inspect(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    root: Optional[str] = RootOpt,
    schema: bool = typer.Option(False, "--schema", help="Also show what each stage writes per video: arrays "
                                "(dtype, shape) and record fields, as declared in features/schema.py."),
    as_json: bool = JsonOpt,
) -> None:
    """Show what the store holds: per stage done / failed / pending / missing (no source file), and the failures.

    Examples: [cyan]vidpipe inspect demo --json[/cyan]; [cyan]vidpipe inspect demo --schema[/cyan]
    """
    from features.schema import EMBED_STAGES, STAGE_SCHEMAS, STAGES
    from features.store import StoreError, open_store

    try:
        store = open_store(root, dataset)
        # embedding stages are listed once some video has one (they run only when an encoder is given)
        failed = set(store.failures()["stage"])
        embedded = [s for s in EMBED_STAGES if store.entries(s) or s in failed]
        summary = store.summary([*STAGES, *embedded])
    except (StoreError, ValueError) as exc:
        fail(one_line(exc))
    if schema:
        summary["schema"] = {s: STAGE_SCHEMAS[s].to_dict() for s in summary["stages"] if s in STAGE_SCHEMAS}
    if as_json:
        print(json.dumps(summary))
        return
    console = Console()
    missing = summary.get("missing", 0)
    table = Table(title=f"{dataset}: {summary['videos']} videos" + (f", {missing} without a source file" if missing
                                                                     else ""))
    for col in ("stage", "done", "failed", "pending", "missing"):
        table.add_column(col)
    for stage, c in summary["stages"].items():
        table.add_row(stage, str(c["done"]), f"[red]{c['failed']}[/red]" if c["failed"] else "0", str(c["pending"]),
                      str(summary["videos"] - c["done"] - c["failed"] - c["pending"]))
    console.print(table)
    if missing:
        console.print(f"[yellow]{missing} video(s) have no source file[/yellow] (e.g. "
                      f"{', '.join(summary['missing_videos'][:5])}): not pending, skipped until the files are there "
                      "and the dataset is re-ingested")
    if summary["failures"]:
        ft = Table(title="failures")
        for col in ("video_id", "stage", "error"):
            ft.add_column(col, overflow="fold")
        for f in summary["failures"][:50]:
            ft.add_row(f["video_id"], f["stage"], f["error"][:200])
        console.print(ft)
    for stage, declared in summary.get("schema", {}).items():
        st = Table(title=f"{stage}: {declared['doc']}")
        for col in ("array / record field", "dtype", "shape", "holds"):
            st.add_column(col, overflow="fold")
        for a in declared["arrays"]:
            st.add_row(a["name"], a["dtype"], a["shape"], a["doc"] + (" (optional)" if a["optional"] else ""))
        for f in declared["record"]:
            st.add_row(f"record.{f['name']}", f["type"], "", f["doc"])
        console.print(st)


@app.command()
def compact(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Fold the store's per-video files into shards and index partitions (every extraction ends with this).

    Also upgrades a store written by an older vidpipe (format version 1) to the current format.
    Example: [cyan]vidpipe compact demo --json[/cyan]
    """
    from features.store import StoreError, open_store

    try:
        result = open_store(root, dataset).compact()
    except (StoreError, ValueError) as exc:
        fail(one_line(exc))
    _emit(result, as_json, f"compact {dataset}")


@app.command()
def extract(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    stage: Optional[List[str]] = typer.Option(None, "--stage", help="Run only this stage (repeatable): probe, frames, audio, transcripts, metadata, text, embed_vision, embed_audio, embed_text."),
    refresh: bool = typer.Option(False, "--refresh", help="Recompute even if fingerprints match; retry failed videos."),
    workers: Optional[int] = typer.Option(None, help="Videos in parallel (default: CPU count)."),
    batch_size: int = typer.Option(8, help="Videos per Prefect task."),
    profile: Optional[List[str]] = typer.Option(None, "--profile", help="Frame profiles: per_second, uniform, uniform_224 (repeatable)."),
    frames_per_segment: int = typer.Option(1, help="m frames per 1-second segment (per_second profile)."),
    n_frames: int = typer.Option(100, help="N frames of the uniform profile."),
    sample_rate: int = typer.Option(16000, help="Audio rate: 16000 or 44100."),
    n_mfcc: int = typer.Option(20, help="MFCC coefficients."),
    audio_feature: str = typer.Option("mfcc", help="Per-segment audio feature: mfcc or logmel."),
    clip_seconds: float = typer.Option(15.0, help="Seconds the whole-clip MFCC matrix covers (papers: 15)."),
    egemaps: bool = typer.Option(False, "--egemaps", help="Audio stage: also the 88 eGeMAPS functionals (needs opensmile)."),
    asr: str = typer.Option("pocketsphinx", help="ASR backend when the dataset has no transcript: pocketsphinx, whisper, none."),
    asr_model_path: Optional[str] = typer.Option(None, help="Local weights for --asr whisper."),
    keyframes: bool = typer.Option(False, "--keyframes", help="Sample frames from the nearest keyframes (faster)."),
    exact_decode: bool = typer.Option(False, "--exact-decode", help="Bit-exact video decoding (keep the deblocking filter; ~12% slower)."),
    dask_address: Optional[str] = typer.Option(None, help="Run on an existing Dask cluster (tcp://host:8786)."),
    dask_workers: Optional[int] = typer.Option(None, help="Start a local Dask cluster with N worker processes."),
    vision_model: Optional[str] = typer.Option(None, "--vision-model", help="Local Hugging Face image model directory (CLIP, ViT, DINOv2…): stage embed_vision."),
    audio_model: Optional[str] = typer.Option(None, "--audio-model", help="Local audio model directory (wav2vec 2.0, HuBERT, WavLM, AST, CLAP, Whisper): stage embed_audio."),
    text_model: Optional[str] = typer.Option(None, "--text-model", help="Local text model / sentence-transformers directory or GloVe .txt: stage embed_text."),
    patch_tokens: bool = typer.Option(False, "--patch-tokens", help="embed_vision: also store each frame's patch tokens."),
    faces: Optional[str] = typer.Option(None, "--faces", help="embed_vision: embed each frame's largest face (frames without one are masked): 'haar' (OpenCV's bundled cascade) or a local detector file (YuNet .onnx, cascade .xml)."),
    text_max_tokens: int = typer.Option(64, help="embed_text: token vectors kept per transcript."),
    embed_batch_size: int = typer.Option(32, help="embed_*: frames / segments / transcripts per forward pass."),
    embed_device: str = typer.Option("auto", help="embed_*: auto, cpu or cuda (bf16 on CUDA)."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Extract cached features for every ingested video (only what changed).

    Examples: [cyan]vidpipe extract demo[/cyan]; [cyan]vidpipe extract demo --stage audio --refresh[/cyan];
    [cyan]vidpipe extract demo --vision-model ~/models/clip-vit-base-patch16 --stage embed_vision[/cyan]
    """
    from pipelines.extract import ExtractConfig, extract_features, nothing_to_extract

    try:
        cfg = ExtractConfig(**{k: v for k, v in dict(
            profiles=tuple(profile) if profile else None, frames_per_segment=frames_per_segment, n_frames=n_frames,
            sample_rate=sample_rate, n_mfcc=n_mfcc, audio_feature=audio_feature, clip_seconds=clip_seconds, egemaps=egemaps, asr=asr,
            asr_model_path=asr_model_path, keyframes=keyframes, fast_decode=not exact_decode,
            vision_patch_tokens=patch_tokens, vision_faces=faces, text_max_tokens=text_max_tokens, embed_batch_size=embed_batch_size,
            embed_device=embed_device).items()
            if v is not None})
    except Exception as exc:  # pydantic.ValidationError
        fail(f"invalid extraction option: {one_line(exc)}")
    result = None
    if not (refresh or dask_address or dask_workers or vision_model or audio_model or text_model
            or _prefect_server_configured()):
        # Nothing to do and no server to record a run on: answer without starting a temporary Prefect server.
        result = run_flow(nothing_to_extract, dataset=dataset, root=root, stages=stage or None, config=cfg)
    if result is None:
        kwargs = dict(dataset=dataset, root=root, stages=stage or None, refresh=refresh, config=cfg, workers=workers,
                      batch_size=batch_size)
        kwargs.update(dask_address=dask_address, dask_workers=dask_workers, vision_model=vision_model,
                      audio_model=audio_model, text_model=text_model)
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
    from pipelines.graph import pretrain_graph as flow

    result = run_flow(flow, dataset=dataset, root=root, features=features, epochs=epochs, hidden=hidden, out=out,
                  heads=heads, loss=loss, minibatch=minibatch, seed=seed, refresh=refresh)
    if as_json:
        print(json.dumps({k: result[k] for k in ("val_auc", "test_auc", "val_mse", "test_mse", "epochs", "seconds")}))
    else:
        _emit(result, False, f"pretrain-graph {dataset}")


@app.command()
def train(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    model: str = typer.Option(..., "--model", help="Registered model (see `vidpipe models`)."),
    task: str = typer.Option(..., "--task", help="emotion, personality, popularity or popularity_mtaf (MTAF eq. 1)."),
    epochs: int = typer.Option(30, help="Maximum epochs."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    batch_size: int = typer.Option(16, help="Batch size."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Model config override FIELD=VALUE (repeatable)."),
    run_id: Optional[str] = typer.Option(None, help="Run name; reusing one resumes from its last checkpoint."),
    weight_decay: float = typer.Option(0.0, help="L2 weight decay on weight matrices."),
    hflip: float = typer.Option(0.0, help="Probability of mirroring a training video's frames (MCAT: 0.5)."),
    vision_norm: Optional[str] = typer.Option(None, help="Frame normalisation: none or imagenet (Sec2Sec)."),
    vision_profile: str = typer.Option("uniform", help="Frame profile feeding `vision`: uniform (64²) or uniform_224."),
    targets: Optional[List[str]] = typer.Option(None, "--targets", help="Train on this target only, e.g. valence (repeatable)."),
    separate_targets: bool = typer.Option(False, "--separate-targets", help="One model per target, each selected on its own."),
    inputs: str = typer.Option("raw", "--inputs", help="raw (frames, MFCC, bag of words) or embeddings (cached pretrained-encoder vectors)."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train a registered model on cached features and record the run.

    Example: [cyan]vidpipe train demo --model sec2sec --task emotion --epochs 10 --json[/cyan]
    """
    from pipelines.train import train as flow

    overrides = parse_overrides(set_)
    if vision_norm is not None:
        overrides["vision_norm"] = vision_norm
    run = run_flow(flow, dataset=dataset, model=model, task=task, root=root, epochs=epochs, lr=lr,
               batch_size=batch_size, seed=seed, device=device, overrides=overrides, run_id=run_id,
               weight_decay=weight_decay, hflip=hflip, vision_profile=vision_profile, targets=targets or None,
               separate_targets=separate_targets, inputs=inputs)
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
    weight_decay: float = typer.Option(0.0, help="L2 weight decay (unless in the grid)."),
    hflip: float = typer.Option(0.0, help="Probability of mirroring a training video's frames (unless in the grid)."),
    vision_profile: str = typer.Option("uniform", help="Frame profile feeding `vision`: uniform or uniform_224."),
    inputs: str = typer.Option("raw", "--inputs", help="raw or embeddings (cached pretrained-encoder vectors)."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train a model over a hyper-parameter grid; report the best run by validation metric.

    Example: [cyan]vidpipe sweep demo --model mcat --task personality --grid '{"heads": [2, 4]}' --json[/cyan]
    """
    from pipelines.sweep import sweep as flow

    try:
        grid_d = json.loads(grid)
    except json.JSONDecodeError as exc:
        fail(f"--grid is not JSON: {exc}")
    result = run_flow(flow, dataset=dataset, model=model, task=task, grid=grid_d, root=root, epochs=epochs,
                  batch_size=batch_size, seed=seed, device=device, weight_decay=weight_decay, hflip=hflip,
                  vision_profile=vision_profile, inputs=inputs)
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
    workers: Optional[int] = typer.Option(None, help="Processes training models, then interpreting them, at once (default: the cores available)."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run every stage on a generated dataset with planted signals (what `make demo` runs).

    Example: [cyan]vidpipe demo --videos 40 --epochs 5[/cyan]
    """
    from pipelines.demo import demo as flow

    result = run_flow(flow, root=root, dataset=dataset, videos=videos, epochs=epochs, seed=seed, workers=workers)
    if as_json:
        print(json.dumps(result, default=str))
        return
    from models.base import TASKS

    console = Console()
    for task_name, rows in result["tables"].items():
        metric = TASKS[task_name].monitor
        table = Table(title=f"{task_name} — test split ({metric}, higher is better)")
        for col in ("model", metric, "95% CI", "Δ vs headline", "params", "s/epoch"):  # fits 80 columns
            table.add_column(col, no_wrap=col != "model")
        for r in rows:
            value = r.get(metric)
            table.add_row(str(r.get("model")), "n/a" if value is None else f"{value:.3f}", r.get("ci95") or "",
                          r.get("delta_ci95") or "",
                          str(r.get("params", "")), f"{r['sec_per_epoch']:.2f}" if r.get("sec_per_epoch") else "")
        console.print(table)
    g = result["graph"]
    lo, hi = g["test_auc_ci95"]
    console.print(f"graph link prediction: test AUC {g['test_auc_mean']:.3f} (95% CI {lo:.3f}–{hi:.3f}) over "
                  f"{len(g['test_auc_seeds'])} link splits")
    for name, line in result.get("mechanisms", {}).items():
        console.print(f"[bold]planted mechanism, {name}:[/bold] {line}")
    stages = Table(title="time per stage (CPU = this process and its workers, whatever else shares the machine)")
    for col in ("stage", "wall s", "CPU s", "CPU / wall"):
        stages.add_column(col, no_wrap=col != "stage")
    for st in result["stages"]:
        ratio = f"{st['cpu_s'] / st['wall_s']:.2f}" if st["wall_s"] > 0 else ""
        stages.add_row(st["stage"], f"{st['wall_s']:.1f}", f"{st['cpu_s']:.1f}", ratio)
    console.print(stages)
    console.print(f"[bold]report:[/bold] {result['report']}")


@app.command()
def models() -> None:
    """List the registered models."""
    from models.registry import list_models

    for name in list_models():
        print(name)


register_ops(app)  # serve, refresh


@app.command()
def compare(
    dataset: str = typer.Argument(..., help="Dataset (store) name."),
    task: str = typer.Option("all", "--task", help="emotion, personality, popularity or all."),
    model: Optional[List[str]] = typer.Option(None, "--model", help="Model to compare (repeatable; default: the task's headline model + baselines)."),
    epochs: int = typer.Option(15, help="Maximum epochs per model."),
    seed: int = typer.Option(0, help="Random seed (the video split is the dataset's own)."),
    batch_size: int = typer.Option(16, help="Batch size."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Config override for every model FIELD=VALUE (repeatable)."),
    ablation: Optional[List[str]] = typer.Option(None, "--ablation", help='Ablation as JSON, e.g. \'{"heads": 4}\' (repeatable).'),
    retrain: bool = typer.Option(False, "--retrain", help="Retrain even when a run with identical settings exists."),
    no_interpret: bool = typer.Option(False, "--no-interpret", help="Skip the interpretability plots."),
    weight_decay: float = typer.Option(0.0, help="L2 weight decay on weight matrices."),
    hflip: float = typer.Option(0.0, help="Probability of mirroring a training video's frames (MCAT: 0.5)."),
    vision_norm: Optional[str] = typer.Option(None, help="Frame normalisation for every model: none or imagenet."),
    vision_profile: str = typer.Option("uniform", help="Frame profile feeding `vision`: uniform (64²) or uniform_224."),
    separate_targets: bool = typer.Option(False, "--separate-targets", help="One model per target (e.g. valence, arousal)."),
    inputs: str = typer.Option("raw", "--inputs", help="raw or embeddings; add --ablation '{\"input_kind\": \"embeddings\"}' for both side by side."),
    workers: int = typer.Option(1, "--workers", help="Processes training the tables' models, then running the interpretability analyses, at once, one torch thread each (1: one after another in this process)."),
    root: Optional[str] = RootOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the table rows as a JSON list (last line of stdout)."),
) -> None:
    """Train or reuse several models per task, score them on one test split, write tables and plots.

    Example: [cyan]vidpipe compare demo --task personality --json[/cyan]
    """
    if workers < 1:
        fail(f"--workers {workers}: expected a number of processes, at least 1")
    from pipelines.compare import compare_models

    try:
        ablations = [json.loads(a) for a in ablation or []]
    except json.JSONDecodeError as exc:
        fail(f"--ablation is not JSON: {exc}")
    overrides = parse_overrides(set_)
    if vision_norm is not None:
        overrides["vision_norm"] = vision_norm
    result = run_flow(compare_models, dataset=dataset, root=root, task=task, models=model or None, epochs=epochs,
                  seed=seed, batch_size=batch_size, device=device, overrides=overrides or None,
                  ablations=ablations or None, retrain=retrain, interpret=not no_interpret,
                  weight_decay=weight_decay, hflip=hflip, vision_profile=vision_profile,
                  separate_targets=separate_targets, inputs=inputs, workers=workers)
    rows = [r for t in result["tables"].values() for r in t] + [r for t in result["ablations"].values() for r in t]
    if as_json:
        print(json.dumps(rows, default=str))
        return
    for t, t_rows in result["tables"].items():
        _emit([{k: v for k, v in r.items() if k not in ("task", "run_id", "cached")} for r in t_rows], False,
              f"compare {t} on {dataset} (test split)")
    Console().print(f"[bold]report:[/bold] {result['report']}")


@app.command()
def reproduce(
    preset: Optional[str] = typer.Argument(None, help="Preset name (see --list) or a path to a preset .toml."),
    dataset: Optional[str] = typer.Argument(None, help="Dataset (store) name."),
    epochs_scale: float = typer.Option(1.0, help="Multiply the preset's epochs (at least one epoch)."),
    quick: bool = typer.Option(False, "--quick", help="Tiny widths and 1 epoch: checks the pipeline, not the paper."),
    seed: int = typer.Option(0, help="Random seed (also of the graph's link split; videos keep the dataset's split)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    list_: bool = typer.Option(False, "--list", help="List the shipped presets and what they reproduce."),
    root: Optional[str] = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Rerun one paper table with the paper's settings; the report puts the paper's numbers beside vidpipe's.

    Example: [cyan]vidpipe reproduce van-tiktok-table-4.2 tiktok[/cyan]; [cyan]vidpipe reproduce --list[/cyan]
    """
    from pipelines.reproduce import list_presets, load_preset

    if list_:
        rows = [{"preset": n, "reproduces": load_preset(n).title} for n in list_presets()]
        if as_json:
            print(json.dumps(rows))
        else:
            _emit(rows, False, "presets (pipelines/presets/*.toml)")
        return
    if preset is None or dataset is None:
        fail("expected PRESET and DATASET (or --list), e.g. vidpipe reproduce mcat-fi-tables-3.2-3.3 fi2")
    from pathlib import Path

    from pipelines.reproduce import reproduce as flow

    result = run_flow(flow, preset=preset, dataset=dataset, root=root, epochs_scale=epochs_scale, quick=quick,
                      seed=seed, device=device)
    if as_json:
        print(json.dumps(result, default=str))
        return
    Console().print(Path(result["report"]).read_text(encoding="utf-8"))
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
    from pipelines.analyze import analyze_outcomes as flow

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
