"""Stage ``reproduce``: rerun one table of a method paper with the paper's settings, and print it beside the paper.

A **preset** is a plain TOML file in ``pipelines/presets/`` (copy one to change it; a path works wherever a name
does). It holds everything a table needs:

* ``[preset]``: ``title``, ``paper``, ``task``, ``dataset`` (which real dataset the paper used), ``metrics`` (the
  columns of the table, as vidpipe metric names) and ``[preset.metric_definitions]``;
* ``[extract]``: :class:`pipelines.extract.ExtractConfig` fields (frame profile, sample rate, MFCC / log-mel, clip
  length, eGeMAPS); ``[graph]`` (optional): ``pretrain-graph`` settings and the paper's GAT numbers;
* ``[train]``: engine settings (``epochs``, ``lr``, ``batch_size``, ``weight_decay``, ``hflip``, ``vision_profile``,
  ``separate_targets``) and ``overrides`` shared by the rows whose model has those fields;
* ``[[rows]]``: one per table row — ``label``, ``model`` (registered), ``overrides`` (the paper's widths, depths,
  heads, token mode, positional encoding), ``features`` (extraction settings of this row only, e.g. 44.1 kHz),
  ``paper`` (metric → the paper's number), optionally ``paper_params`` with ``params_note`` / ``params_reading``;
* ``[quick]``: what ``--quick`` changes (epochs, widths, frame counts) so a preset runs in seconds on the synthetic
  dataset; ``[[departures]]``: every setting where vidpipe departs from the paper, and why.

:func:`reproduce` extracts the dataset with the preset's settings (only what changed), pre-trains the graph when a
row reads it, trains every row with :func:`pipelines.train.run_training` (one run per target when
``separate_targets``; a row with ``features`` trains on a variant dataset, see :mod:`pipelines.compare`), and writes
a Markdown report: the paper's table with vidpipe's numbers beside it, parameter counts, the metric definitions and
the departures.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional

from prefect import flow, get_run_logger
from pydantic import Field

from features.fingerprint import fingerprint
from names import EARLY_TREND
from pipelines.flow_io import DatasetName, markdown_table, publish_markdown, store_for

__all__ = ["PRESET_DIR", "Preset", "PresetRow", "count_parameters", "list_presets", "load_preset",
           "paper_size_parameters", "reproduce", "row_overrides"]

#: the presets shipped with vidpipe
PRESET_DIR = Path(__file__).with_name("presets")
_TRAIN_KEYS = {"epochs", "lr", "batch_size", "weight_decay", "hflip", "vision_profile", "separate_targets",
               "overrides"}
_QUICK_KEYS = {"epochs", "overrides", "extract", "graph_epochs"}


@dataclass(frozen=True)
class PresetRow:
    """One row of a paper's table."""

    label: str  # the row's name in the paper
    model: str  # registered vidpipe model
    overrides: Mapping[str, Any] = field(default_factory=dict)  # model config (on top of [train].overrides)
    features: Mapping[str, Any] = field(default_factory=dict)  # extraction settings of this row only
    paper: Mapping[str, float] = field(default_factory=dict)  # metric → the paper's number
    paper_params: Optional[int] = None  # the paper's parameter count, when it states one
    params_note: str = ""  # why vidpipe's count differs from the paper's (required when it does by > 1 %)
    params_reading: Optional[int] = None  # the count the paper's text implies, when the note derives one
    params_geometry: Mapping[str, Any] = field(default_factory=dict)  # the paper data's input sizes, for the count
    #   only (training takes its input sizes from the tensor pack)


@dataclass(frozen=True)
class Preset:
    """A parsed, validated preset file (see the module docstring)."""

    name: str
    path: Path
    title: str
    paper: str
    task: str
    dataset: str
    metrics: tuple[str, ...]
    metric_definitions: Mapping[str, str]
    extract: Mapping[str, Any]
    train: Mapping[str, Any]
    rows: tuple[PresetRow, ...]
    quick: Mapping[str, Any]
    departures: tuple[Mapping[str, str], ...]
    graph: Mapping[str, Any]
    extreme_classes: bool


def list_presets() -> list[str]:
    """Names of the shipped presets (file stems), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def _require(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise ValueError(f"{where}: missing {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise ValueError(f"{where}: {key}={value!r}; expected {kind.__name__}")
    return value


def _first_error(err: Exception) -> str:
    """A pydantic validation error on one line: the field and what it expects."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[1:3]) if len(lines) > 1 else (lines[0] if lines else type(err).__name__)


def _read_toml(name: str) -> tuple[Path, dict[str, Any]]:
    """The preset file of ``name`` (a shipped name or a ``.toml`` path) and its parsed content."""
    path = Path(name) if name.endswith(".toml") else PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"preset={name!r}: no such preset; expected one of {list_presets()} or a path to a .toml file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"preset {str(path)!r} is not valid TOML: {err}") from None
    unknown = sorted(set(data) - {"preset", "extract", "graph", "train", "rows", "quick", "departures"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}")
    return path, data


def _extract_settings(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``table`` as :class:`pipelines.extract.ExtractConfig` fields, checked by building the config."""
    from pipelines.extract import ExtractConfig

    try:
        ExtractConfig(**table)
    except Exception as err:  # pydantic.ValidationError: name the file, then the field and what it expects
        raise ValueError(f"{where}: {_first_error(err)}") from None
    return dict(table)


def _keys_in(table: Mapping[str, Any], allowed: set[str], where: str) -> dict[str, Any]:
    """``table`` as a dict, refused when it has a key outside ``allowed``."""
    bad = sorted(set(table) - allowed)
    if bad:
        raise ValueError(f"{where}: unknown key(s) {bad}; expected some of {sorted(allowed)}")
    return dict(table)


def _read_rows(data: Mapping[str, Any], extract: Mapping[str, Any], where: str) -> tuple[PresetRow, ...]:
    """The ``[[rows]]`` of a preset: registered models, known keys, valid per-row extraction settings."""
    from models.registry import list_models

    registered = set(list_models())
    rows = []
    for i, r in enumerate(_require(data, "rows", list, where)):
        at = f"{where} rows[{i}]"
        model = _require(r, "model", str, at)
        if model not in registered:
            raise ValueError(f"{at}: model={model!r} is not registered; expected one of {sorted(registered)}")
        unknown = sorted(set(r) - {f.name for f in PresetRow.__dataclass_fields__.values()})
        if unknown:
            raise ValueError(f"{at}: unknown key(s) {unknown}")
        if r.get("features"):
            _extract_settings({**extract, **r["features"]}, f"{at} features")
        rows.append(PresetRow(label=_require(r, "label", str, at), model=model, overrides=r.get("overrides", {}),
                              features=r.get("features", {}), paper=r.get("paper", {}),
                              paper_params=r.get("paper_params"), params_note=r.get("params_note", ""),
                              params_reading=r.get("params_reading"), params_geometry=r.get("params_geometry", {})))
    if not rows:
        raise ValueError(f"{where}: expected at least one [[rows]] entry")
    return tuple(rows)


def load_preset(name: str) -> Preset:
    """Read and validate a preset by name (see :func:`list_presets`) or path to a ``.toml`` file.

    Raises:
        ValueError: unknown name, unreadable TOML, or a field that is missing, unknown or of the wrong kind (the
            message names the file and the field); models must be registered and extraction settings valid.
    """
    from models.base import TASKS

    path, data = _read_toml(name)
    where = str(path)
    head = _require(data, "preset", dict, where)
    task = _require(head, "task", str, f"{where} [preset]")
    if task not in TASKS:
        raise ValueError(f"{where} [preset]: task={task!r}; expected one of {sorted(TASKS)}")
    extract = _extract_settings(data.get("extract", {}), f"{where} [extract]")
    train = _keys_in(data.get("train", {}), _TRAIN_KEYS, f"{where} [train]")
    quick = _keys_in(data.get("quick", {}), _QUICK_KEYS, f"{where} [quick]")
    rows = _read_rows(data, extract, where)
    metrics = tuple(_require(head, "metrics", list, f"{where} [preset]"))
    for row in rows:
        extra = sorted(set(row.paper) - set(metrics))
        if extra:
            raise ValueError(f"{where}: row {row.label!r} gives paper numbers for {extra}, not in metrics {metrics}")
    return Preset(name=path.stem, path=path, title=_require(head, "title", str, f"{where} [preset]"),
                  paper=_require(head, "paper", str, f"{where} [preset]"), task=task,
                  dataset=_require(head, "dataset", str, f"{where} [preset]"), metrics=metrics,
                  metric_definitions=head.get("metric_definitions", {}), extract=extract, train=train,
                  rows=rows, quick=quick, departures=tuple(data.get("departures", [])),
                  graph=dict(data.get("graph", {})), extreme_classes=bool(head.get("extreme_classes", False)))


def row_overrides(preset: Preset, row: PresetRow, *, quick: bool = False) -> dict[str, Any]:
    """The model config a row trains with: those of ``[train].overrides`` that the row's model has (shared settings
    such as ``lstm_layers`` apply to the rows whose model has the field), then the row's own (all must be fields),
    then (``quick``) those of ``[quick].overrides`` the model has, except ``heads`` when the row sets it (a heads
    ablation keeps its heads; ``dim`` is then raised to a multiple of them)."""
    fields = _config_fields(row.model)
    out = {**{k: v for k, v in preset.train.get("overrides", {}).items() if k in fields}, **row.overrides}
    if quick:
        out.update({k: v for k, v in preset.quick.get("overrides", {}).items()
                    if k in fields and not (k == "heads" and "heads" in row.overrides)})
        heads, dim = out.get("heads"), out.get("dim")
        if heads and dim and dim % heads:
            out["dim"] = heads * math.ceil(dim / heads)
    return out


def _config_fields(model: str) -> set[str]:
    import dataclasses

    import torch

    from models.registry import create_model

    with torch.device("meta"):
        return {f.name for f in dataclasses.fields(create_model(model).cfg)}


def _model_inputs(model: str, task: str, overrides: Mapping[str, Any]) -> tuple[str, ...]:
    """The batch keys a model reads (built on torch's meta device: no memory, any size)."""
    import torch

    from models.registry import create_model

    with torch.device("meta"):
        return tuple(create_model(model, task=task, **dict(overrides)).inputs)


def _lacks_scrape_history(store: Any, preset: Preset, quick: bool) -> bool:
    """Whether a row reads MTAF's early trend while no post of the dataset was scraped twice: every series would be
    masked, and the trend rows would learn nothing from it."""
    if not any(EARLY_TREND in _model_inputs(r.model, preset.task, row_overrides(preset, r, quick=quick))
               for r in preset.rows):
        return False
    history = store.scrape_history()
    return history.empty or int(history.groupby("video_id")["scrape_time"].nunique().max()) < 2


def count_parameters(model: str, task: str, overrides: Mapping[str, Any]) -> int:
    """Trainable parameters of ``model`` at ``overrides`` without allocating them (built on torch's meta device), so
    paper-sized models (hundreds of millions of weights) can be counted anywhere."""
    import torch

    from models.registry import create_model

    with torch.device("meta"):
        net = create_model(model, task=task, **dict(overrides))
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))


def paper_size_parameters(preset: Preset, row: PresetRow) -> int:
    """vidpipe's parameter count for ``row`` at the paper's widths and input sizes (``params_geometry``)."""
    return count_parameters(row.model, preset.task, {**row_overrides(preset, row), **row.params_geometry})


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _extreme_metrics(store: Any, run: Mapping[str, Any]) -> dict[str, float]:
    """Paper 004 Table 2: accuracy on the extreme classes C1 (low) / C4 (high), from the best checkpoint."""
    import numpy as np

    from models.data import split_sets
    from models.engine import evaluate
    from models.siamese import extreme_class_accuracy
    from pipelines.train import load_run_model, split_loader

    model, arrays = load_run_model(store, run["checkpoint"])
    _, loader = split_loader(model, arrays, "test", batch_size=64)
    y, p = evaluate(model, loader)
    train_rows = split_sets(arrays["split"])["train"]
    return extreme_class_accuracy(y, p, np.asarray(arrays["target"])[train_rows], names=list(model.spec.targets))


def _report(preset: Preset, dataset: str, rows: list[dict[str, Any]], graph: Optional[dict], quick: bool,
            epochs: int) -> str:
    lines = [f"# Reproducing {preset.title}\n",
             f"*Paper:* {preset.paper}. *Paper's dataset:* {preset.dataset}. *Here:* `{dataset}`, "
             f"{epochs} epoch(s){' (quick mode: reduced widths, for testing the pipeline, not the paper)' if quick else ''}. "
             f"Preset file: `{preset.path.name}`.\n"]
    if quick:
        lines.append("> Quick mode numbers say nothing about the paper's claims.\n")
    table = []
    for r in rows:
        entry = {"row": r["label"], "model": r["model"]}
        for m in preset.metrics:
            entry[f"{m} (paper)"] = _fmt(r["paper"].get(m))
            entry[f"{m} (vidpipe)"] = _fmt(r["metrics"].get(m))
        if any(x["paper_params"] for x in rows):  # the paper states parameter counts for this table
            entry["params (paper)"] = _fmt(r["paper_params"])
            entry["params (vidpipe, paper sizes)"] = _fmt(r["params_paper_sizes"])
        entry["params (trained)"] = _fmt(r["n_params"])
        table.append(entry)
    lines += ["## The table\n", markdown_table(table, list(table[0]))]
    notes = [f"- **{r['label']}**: {r['params_note']}" for r in rows if r["params_note"]]
    if notes:
        lines += ["\n## Parameter counts\n", *notes, ""]
    if graph is not None:
        lines += ["\n## GAT link prediction (pre-training)\n",
                  markdown_table([{"metric": k, "paper": _fmt(v), "vidpipe": _fmt(graph.get(k))}
                                  for k, v in preset.graph.get("paper", {}).items()], ["metric", "paper", "vidpipe"])]
    lines.append("\n## Metric definitions\n")
    lines += [f"- `{k}`: {v}" for k, v in preset.metric_definitions.items()]
    lines.append("\n## Where vidpipe departs from the paper\n")
    lines += [f"- **{d.get('setting', '?')}**: {d.get('why', '')}" for d in preset.departures]
    return "\n".join(lines) + "\n"


@flow(name="reproduce", validate_parameters=True)
def reproduce(
    preset: str,
    dataset: DatasetName,
    root: Optional[str] = None,
    epochs_scale: Annotated[float, Field(gt=0, le=100)] = 1.0,
    quick: bool = False,
    seed: int = 0,
    device: Literal["auto", "cpu", "cuda"] = "auto",
) -> dict:
    """Run one paper table's preset on ``dataset`` and write the report beside the paper's numbers.

    Args:
        preset: a shipped preset name (``vidpipe reproduce --list``) or a path to a preset ``.toml``.
        dataset: an ingested store (the paper's dataset for a real reproduction; any dataset with the task's labels
            runs).
        root: data root.
        epochs_scale: multiply the preset's epochs (e.g. 0.1 for a first look); at least one epoch.
        quick: the preset's ``[quick]`` settings (tiny widths, 1 epoch): checks the pipeline, not the paper.
        seed, device: as for ``vidpipe train``.

    Returns:
        ``{"preset", "dataset", "rows": [{"label", "model", "metrics", "paper", "n_params", ...}], "graph",
        "report"}``.
    """
    from pipelines.compare import _feature_variant  # the variant datasets compare's feature ablations train on
    from pipelines.extract import ExtractConfig, extract_features
    from pipelines.graph import pretrain_graph
    from pipelines.train import run_per_target, run_training

    logger = get_run_logger()
    p = load_preset(preset)
    store = store_for(root, dataset)
    if store.manifest().empty:
        raise ValueError(f"dataset={dataset!r}: the manifest is empty: run `vidpipe ingest {dataset} ...` first")
    if _lacks_scrape_history(store, p, quick):
        logger.warning("reproduce %s: rows read the early trend, but no post of %s was scraped more than once, so "
                       "every series is masked; re-scrape the posts and `vidpipe refresh` (docs/REPRODUCING.md, "
                       "MTAF's early trend)", p.name, dataset)
    extract = {**p.extract, **(p.quick.get("extract", {}) if quick else {})}
    extract_features(dataset=dataset, root=root, config=ExtractConfig(**extract))
    epochs = int(p.quick.get("epochs", 1)) if quick else max(1, round(int(p.train.get("epochs", 30)) * epochs_scale))
    graph_result = None
    needs_graph = any("graph" in _model_inputs(r.model, p.task, row_overrides(p, r, quick=quick)) for r in p.rows)
    if p.graph or needs_graph:
        g = dict(p.graph.get("settings", {}))
        if quick:
            g["epochs"] = int(p.quick.get("graph_epochs", 5))
        graph_result = pretrain_graph(dataset=dataset, root=root, seed=seed, **g)
    train = {"lr": float(p.train.get("lr", 1e-3)), "batch_size": int(p.train.get("batch_size", 16)),
             "weight_decay": float(p.train.get("weight_decay", 0.0)), "hflip": float(p.train.get("hflip", 0.0)),
             "vision_profile": p.train.get("vision_profile", "uniform")}
    rows = []
    for i, row in enumerate(p.rows):
        overrides = row_overrides(p, row, quick=quick)
        source = _feature_variant(root, dataset, {**extract, **row.features}) if row.features else dataset
        key = fingerprint("reproduce-run", 1, {"preset": p.name, "row": i, "overrides": overrides, "train": train,
                                                "epochs": epochs, "seed": seed, "features": dict(row.features)})
        kwargs = dict(epochs=epochs, seed=seed, device=device, overrides=overrides, run_id=f"repro-{p.name}-{i:02d}-"
                      f"{key[:8]}", **train)
        target_store = store_for(root, source)
        if p.train.get("separate_targets"):
            run = run_per_target(target_store, row.model, p.task, **kwargs)
        else:
            run = run_training(target_store, row.model, p.task, **kwargs)
        metrics = dict(run["metrics"])
        if run["total_seconds"] > 0:  # eq. 3.11 in Table 3.3's unit: parameters per training minute
            metrics["efficiency_per_minute"] = float(run["n_params"]) / (float(run["total_seconds"]) / 60.0)
        if p.extreme_classes and run.get("checkpoint"):
            metrics.update(_extreme_metrics(target_store, run))
        paper_sizes = paper_size_parameters(p, row) if row.paper_params else None
        rows.append({"label": row.label, "model": row.model, "dataset": source, "run_id": run["run_id"],
                     "metrics": metrics, "paper": dict(row.paper), "n_params": int(run["n_params"]),
                     "paper_params": row.paper_params, "params_paper_sizes": paper_sizes,
                     "params_note": row.params_note, "epochs_run": run["epochs_run"]})
        logger.info("reproduce %s: %s → %s", p.name, row.label, {m: metrics.get(m) for m in p.metrics})
    text = _report(p, dataset, rows, graph_result, quick, epochs)
    report = store.write_report(f"reproduce-{p.name}.md", text)
    publish_markdown(f"{dataset}-reproduce-{p.name}".lower().replace(".", "-"), text, f"{p.title} on {dataset}")
    return {"preset": p.name, "dataset": dataset, "rows": rows,
            "graph": {k: graph_result.get(k) for k in ("val_auc", "test_auc", "val_mse", "test_mse")}
            if graph_result else None, "report": str(report)}
