"""Stage ``compare``: train (or reuse) several models per task on the same cached features, score them on the same test
split, and write one comparison table per task plus an interpretability report.

Flow :func:`compare_models`, per selected task:

1. **Train or reuse** every selected model with :func:`pipelines.train.run_training` — the code behind ``vidpipe
   train`` — so every row of every table was trained by the same loop, on the same pack split (the dataset's own),
   with the same seed / epochs / learning rate / batch size. A recorded run is reused when its model, task,
   tensor-pack fingerprint (which covers the features, labels and splits), training settings and model config (all
   but the input geometry, which the pack fixes) equal this request, and its checkpoint still exists;
   ``retrain=True`` never reuses. New runs get a deterministic id from those settings, so an interrupted comparison
   resumes from the last checkpoint.
2. **Floor baselines**: a constant predictor (fitted on the training split) and scikit-learn linear / random forest /
   SVR regressors on pooled features of the headline model's inputs (:mod:`models.classical`).
3. **Table** (Markdown + Parquet ``tables/compare-<task>.parquet`` + a Prefect table artifact): per model the test
   metrics, the modalities it reads, its trainable parameters, seconds per epoch, total training seconds and the
   efficiency E = parameters / total training seconds (dissertation eq. 3.11; seconds, not minutes, so E here is 60×
   smaller than in Table 3.3 — whose E values do not all equal P / T either). Each row also carries a 95 %
   bootstrap interval (1,000 resamples of the test videos) of the task's main metric (``accuracy_mean``,
   ``mean_accuracy``, ``spearman``: columns ``<metric>_ci_low`` / ``_ci_high``, shown as ``ci95``) and, for every row
   but the headline, the paired-bootstrap interval of its difference to the headline (``delta_<metric>_ci_low`` /
   ``_ci_high``, shown as ``delta_ci95``), from predictions recomputed from each run's best checkpoint.
4. **Ablations**: each entry of ``ablations`` is a dict of model-config overrides (e.g. ``{"heads": 4}``,
   ``{"hierarchical_pe": "none"}``, ``{"token_mode": "pooled"}``), optionally with ``"model"`` (default: the task's
   headline model), ``"task"`` (default: every selected task), ``"label"`` and ``"features"`` — extraction settings
   (:class:`pipelines.extract.ExtractConfig` fields, e.g. ``{"audio_feature": "logmel"}``, ``{"sample_rate": 44100}``,
   ``{"n_frames": 8}``). A feature ablation trains on a variant dataset ``<dataset>--f<hex>`` extracted with those
   settings (same videos, same split; stages the change does not touch are copied, not recomputed — see
   :func:`_feature_variant`). Ablations are trained the same way and reported in the same table format, plus the
   dataset each row was trained on (``tables/compare-<task>-ablations.parquet``).
5. **Interpretability** (PNG reports via ``store.write_report`` + a Markdown report linking them + a Prefect Markdown
   artifact; the numbers as Parquet tables ``interpret-<task>-*``), on ``interpret_split`` with :mod:`models.interpret`:
   emotion — ``sec2sec-attn``'s normalised attention per second and per-second Integrated Gradients per target;
   personality — Integrated Gradients for ``mcat`` at modality, frame (with trend lines) and region (64×64) level per
   trait (both Integrated-Gradients analyses start from ``ig_baseline``: all-zero inputs, or the training split's
   mean input); popularity — ``van``'s modality contributions overall and per head, next to the modality-ablation
   check.

With ``workers`` > 1 the main tables' models are first trained in that many processes at once (step 1 then finds
them trained), and the tasks' interpretability analyses (independent of each other: each reads its own run and
writes its own tables and plots) run in that many processes while this one assembles the tables.

Returns ``{"tables": {task: rows}, "ablations": {task: rows}, "interpretation": {task: summary}, "report": path,
"skipped": {task: [names]}, "parallel_training": {"workers", "runs", "wall_s", "cpu_s"} or None}``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import warnings
from typing import Annotated, Any, Callable, Iterator, Literal, Mapping, Optional, Union

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from pydantic import Field

from features.fingerprint import fingerprint
from features.schema import GRAPH_ARTIFACT, GRAPH_SONGS_ARTIFACT, VOCABULARY_ARTIFACT
from features.store import Store
from names import PAPER_TASKS
from pipelines.flow_io import (DatasetName, cpu_seconds, markdown_table, publish_markdown, publish_table,
                               single_torch_thread, store_for)
from pipelines.train import each_target, load_run_model, run_training, split_loader

__all__ = ["DEFAULT_MODELS", "HEADLINE_MODELS", "compare_models", "predict_test_split"]

_VAT = ("vision", "audio", "text")
_VAG = ("vision", "audio", "graph")

#: the headline model of each task (first row of its table; ablations default to it; its inputs feed the classical
#: baselines)
HEADLINE_MODELS: Mapping[str, str] = {"emotion": "sec2sec", "personality": "mcat", "popularity": "van"}

#: per task: model → config overrides of that model in the comparison (names not registered are skipped). Fusion
#: baselines read the headline's modalities so rows differ in architecture, not in information (``avm`` stays the
#: bi-modal audio-visual reference: for popularity it is VAN without the network).
DEFAULT_MODELS: Mapping[str, Mapping[str, Mapping[str, Any]]] = {
    "emotion": {"sec2sec": {}, "sec2sec-attn": {}, "sec2sec-sa-sa": {}, "sec2sec-audio": {}, "sec2sec-vision": {},
                "avm": {}},
    "personality": {"mcat": {}, "late-fusion": {"modalities": _VAT}, "decision-average": {"modalities": _VAT},
                    "simvc": {"modalities": _VAT}, "vatt": {"modalities": _VAT}, "siamese": {"modalities": _VAT},
                    "convlstm-ae": {"modalities": _VAT}},
    "popularity": {"van": {}, "late-fusion": {"modalities": _VAG}, "vatt": {"modalities": _VAG}, "mtaf": {},
                   "avm": {}},
}

#: CPU-sized widths (the demo's), applied to every model whose config has the field; ``overrides`` replace them
_SIZE = {"dim": 32, "heads": 2, "lstm_hidden": 32, "cnn_width": 16}
_CLASSICAL = ("linear", "random-forest", "svr")
_TABLE_COLUMNS = ("task", "model", "variant", "modalities", "params", "sec_per_epoch", "total_sec", "efficiency",
                  "epochs")


# ------------------------------------------------------------------------------------------------ run bookkeeping


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _intended(name: str, task_name: str, overrides: Mapping[str, Any]) -> tuple[dict, tuple[str, ...]]:
    """The config (as JSON) a model would be trained with, minus the fields a run does not choose (the geometry the
    tensor pack fixes, whose fingerprint already pins it: :meth:`models.base.ModelConfig.unchosen_fields`), and the
    inputs it reads."""
    from models.registry import create_model

    model = create_model(name, task=task_name, **overrides)
    ignore = model.cfg.unchosen_fields(chosen=overrides)
    cfg = {k: v for k, v in _json(dataclasses.asdict(model.cfg)).items() if k not in ignore}
    return cfg, tuple(model.inputs)


def _settings(name: str, task_name: str, overrides: Mapping[str, Any], train: Mapping[str, Any], store: Store
              ) -> dict[str, Any]:
    from features.packs import pack_fingerprint

    cfg, inputs = _intended(name, task_name, overrides)
    profile = train.get("vision_profile", "uniform")
    pack = pack_fingerprint(store, inputs, task_name, vision_profile=profile)
    key = fingerprint("compare-run", 1, {"model": name, "task": task_name, "config": cfg, "train": dict(train)},
                      [pack])
    return {"config": cfg, "inputs": inputs, "pack": pack, "run_id": f"compare-{name}-{task_name}-{key[:12]}"}


#: training settings left out of a request at their defaults (so older records, which lack them, still match)
_NO_REGULARISATION = {"weight_decay": 0.0, "hflip": 0.0}


def _find_run(store: Store, name: str, task_name: str, settings: Mapping[str, Any],
              train: Mapping[str, Any]) -> dict | None:
    """The newest recorded run trained exactly as requested (see module docstring) on inputs at this vidpipe's versions
    (:mod:`models.input_versions`; a record without them read every key at version 0) whose checkpoint is still there,
    as a dict, or None."""
    from models.input_versions import read_versions, recorded_versions

    versions = recorded_versions(settings["inputs"])
    # the pack fingerprint pins the profile; regularisation absent from a request or a record means none
    engine = {**_NO_REGULARISATION, **{k: v for k, v in train.items() if k != "vision_profile"}}
    for rec in reversed(store.run_records()):
        if (rec.model, rec.task, rec.pack) != (name, task_name, settings["pack"]) \
                or any(rec.train.get(k, _NO_REGULARISATION.get(k)) != v for k, v in engine.items()):
            continue
        recorded = _json(rec.config)
        if any(k not in recorded or recorded[k] != v for k, v in settings["config"].items()):
            continue
        if read_versions(rec.extra.get("input_versions"), versions) != versions:
            continue
        if store.checkpoint_file(rec.checkpoint) is not None:
            return rec.to_dict()
    return None


def _sized(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    from models.registry import create_model

    fields = {f.name for f in dataclasses.fields(create_model(name).cfg)}
    return {**{k: v for k, v in _SIZE.items() if k in fields}, **overrides}


@task(cache_policy=NONE, persist_result=False, name="compare-train")
def _train_one(root: Optional[str], dataset: str, name: str, task_name: str, overrides: dict, train: dict,
               device: str, retrain: bool) -> dict:
    store = store_for(root, dataset)
    settings = _settings(name, task_name, overrides, train, store)
    if not retrain:
        found = _find_run(store, name, task_name, settings, train)
        if found is not None:
            return {**found, "cached": True}
    run = run_training(store, name, task_name, overrides=overrides, device=device, run_id=settings["run_id"],
                       resume=not retrain, **train)
    return {**run, "cached": False}


def _train_model(root: Optional[str], dataset: str, name: str, task_name: str, overrides: dict, train: dict,
                 device: str, retrain: bool, separate_targets: bool, *, one: Callable[..., dict] = _train_one
                 ) -> dict:
    """``one`` (:func:`_train_one`; its plain function in a worker process, outside any flow), or with
    ``separate_targets`` one run per target of the task (each reused or trained on its own, each with its own best
    epoch) merged by :func:`pipelines.train.each_target`."""
    if not separate_targets:
        return one(root, dataset, name, task_name, overrides, train, device, retrain)
    cached: list[bool] = []

    def one_target(target: str) -> dict:
        run = one(root, dataset, name, task_name, {**overrides, "targets": (target,)}, train, device, retrain)
        cached.append(bool(run.get("cached")))
        return run

    return {**each_target(task_name, one_target), "cached": all(cached)}


@dataclasses.dataclass(frozen=True)
class _Request:
    """What every model of one comparison shares: where it trains and how."""

    root: Optional[str]  # the store root
    dataset: str  # the compared dataset (feature ablations train on variants of it)
    train: dict[str, Any]  # engine settings (see :func:`_train_settings`)
    overrides: dict[str, Any]  # config overrides for every model, over the CPU-sized defaults
    device: str
    retrain: bool  # never reuse a recorded run
    separate_targets: bool  # one model per target column
    done: dict[str, dict] = dataclasses.field(default_factory=dict)  # runs trained by worker processes, by _job_key

    def train_model(self, dataset: str, name: str, task_name: str, own: Mapping[str, Any], *,
                    varied: Mapping[str, Any] | None = None) -> dict:
        """Train (or reuse) ``name`` on ``dataset``: its own overrides ``own``, under the shared ones, under what an
        ablation varies (``varied``); a run the worker processes already trained is returned as they recorded it."""
        config = _sized(name, {**own, **self.overrides, **(varied or {})})
        done = self.done.get(_job_key(dataset, name, task_name, config))
        if done is not None:
            return done
        return _train_model(self.root, dataset, name, task_name, config, self.train,
                            self.device, self.retrain, self.separate_targets)


def _job_key(dataset: str, name: str, task_name: str, config: Mapping[str, Any]) -> str:
    return json.dumps([dataset, name, task_name, _json(config)], sort_keys=True)


def _train_in_worker(job: dict[str, Any]) -> dict:
    """Worker-process entry: :func:`_train_model` with the plain function of :func:`_train_one` (no flow here)."""
    return _train_model(**job, one=_train_one.fn)


def _train_parallel(req: _Request, jobs: list[tuple[str, str, Mapping[str, Any]]], workers: int
                    ) -> dict[str, float]:
    """Train the ``(model, task, own overrides)`` jobs in ``workers`` spawned processes (in the order given, so put
    the longest first), recording each run in ``req.done``. Runs already recorded are left to the sequential pass,
    which reuses them; the tensor packs are built here first, once each; a job that fails is left out, so the
    sequential pass meets (and reports) its error. Returns the processes, the runs they trained, and the wall and
    CPU seconds (the workers' and this process's) this took."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from features.packs import build_pack

    t0, c0 = time.perf_counter(), cpu_seconds()
    store = store_for(req.root, req.dataset)
    todo: dict[str, dict[str, Any]] = {}
    for name, task_name, own in jobs:
        config = _sized(name, {**own, **req.overrides})
        try:
            settings = _settings(name, task_name, config, req.train, store)
            if not req.retrain and not req.separate_targets and _find_run(store, name, task_name, settings,
                                                                          req.train) is not None:
                continue
            build_pack(store, settings["inputs"], task_name, vision_profile=req.train.get("vision_profile", "uniform"))
        except ValueError:
            continue
        todo[_job_key(req.dataset, name, task_name, config)] = {
            "root": req.root, "dataset": req.dataset, "name": name, "task_name": task_name, "overrides": config,
            "train": req.train, "device": req.device, "retrain": req.retrain,
            "separate_targets": req.separate_targets}
    if todo:
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), initializer=single_torch_thread,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {key: pool.submit(_train_in_worker, job) for key, job in todo.items()}
            for key, future in futures.items():
                if future.exception() is None:
                    req.done[key] = future.result()
    return {"workers": min(workers, len(todo)), "runs": len(req.done), "wall_s": time.perf_counter() - t0,
            "cpu_s": cpu_seconds() - c0}


def _train_settings(*, epochs: int, seed: int, lr: float, batch_size: int, weight_decay: float, hflip: float,
                    vision_profile: str) -> dict[str, Any]:
    """The engine settings every model shares, as recorded runs are matched against them: regularisation and the frame
    profile only when not at their defaults, so runs recorded without them still match a request without them."""
    train: dict[str, Any] = {"epochs": epochs, "seed": seed, "lr": lr, "batch_size": batch_size}
    train.update({k: v for k, v in (("weight_decay", weight_decay), ("hflip", hflip)) if v})
    if vision_profile != "uniform":
        train["vision_profile"] = vision_profile
    return train


def _row(task_name: str, name: str, variant: str, run: Mapping[str, Any]) -> dict[str, Any]:
    return {"task": task_name, "model": name, "variant": variant, "modalities": "+".join(run["modalities"]),
            "params": int(run["n_params"]), "sec_per_epoch": float(run["seconds_per_epoch"]),
            "total_sec": float(run["total_seconds"]), "efficiency": float(run["efficiency"]),
            "epochs": int(run["epochs_run"]), **{k: float(v) for k, v in run["metrics"].items()},
            "cached": bool(run.get("cached", False)), "run_id": run["run_id"]}


# -------------------------------------------------------------------------------------------- floor baselines


def _floor_rows(store: Store, task_name: str, headline: Mapping[str, Any], seed: int
                ) -> tuple[list[dict[str, Any]], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Constant predictor + classical regressors on pooled features of the headline's inputs (same test split).

    Returns the rows and, per row's model name, ``(video ids, test predictions (N, K))`` for the intervals."""
    from models.classical import POOLABLE_KEYS, fit_classical, pooled_features, predict_classical
    from models.data import split_sets
    from models.metrics import compute_metrics, constant_baseline

    arrays, _ = store.read_pack(headline["pack"])
    idx = split_sets(arrays["split"])
    keys = [k for k in headline["modalities"] if k in POOLABLE_KEYS]
    base = {"task": task_name, "variant": "floor", "params": None, "sec_per_epoch": None, "epochs": None,
            "cached": False, "run_id": None}
    rows = [{**base, "model": "constant", "modalities": "", "total_sec": 0.0, "efficiency": None,
             **{k: float(v) for k, v in headline["baseline"].items()}}]
    y = arrays["target"]
    ids = np.asarray(arrays["video_id"][...])[idx["test"]].astype(str)
    preds = {}
    if len(idx["train"]):
        preds["constant"] = (ids, constant_baseline(task_name, y[idx["train"]]).predict(len(ids)))
    if len(idx["train"]) < 2 or not keys:
        return rows, preds
    x = pooled_features(arrays, keys)
    for kind in _CLASSICAL:
        t0 = time.perf_counter()
        est = fit_classical(kind, x[idx["train"]], y[idx["train"]], seed=seed)
        seconds = time.perf_counter() - t0
        pred = predict_classical(est, x[idx["test"]])
        metrics = compute_metrics(task_name, y[idx["test"]], pred)
        rows.append({**base, "model": f"classical:{kind}", "modalities": "+".join(keys), "total_sec": seconds,
                     "efficiency": None, **{k: float(v) for k, v in metrics.items()}})
        preds[f"classical:{kind}"] = (ids, np.asarray(pred, dtype=np.float64))
    return rows, preds


# ---------------------------------------------------------------------------------------------------- intervals


def predict_test_split(store: Store, run: Mapping[str, Any], batch_size: int
                      ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(video ids (N,), predictions (N, K))`` of a run's best checkpoint on the test split, recomputed from the
    checkpoint (a reused run has no stored predictions); a run trained one model per target stacks its targets'
    checkpoints. None when a checkpoint or its tensor pack is gone."""
    from models.base import TASKS
    from models.engine import evaluate

    paths = run.get("checkpoints") or {None: run.get("checkpoint")}
    if any(store.checkpoint_file(p) is None for p in paths.values()):
        return None
    targets = TASKS[run["task"]].targets
    ids, cols = None, {}
    for target, path in paths.items():
        pack = run["pack"]
        try:
            model, arrays = load_run_model(store, path, pack)
        except KeyError:  # the pack was evicted since the run: no predictions, no interval
            return None
        idx, loader = split_loader(model, arrays, "test", batch_size=batch_size)
        _, pred = evaluate(model, loader)
        these = np.asarray(arrays["video_id"][...])[idx].astype(str)
        if ids is not None and not np.array_equal(ids, these):
            return None
        ids = these
        if target is None:
            return ids, np.asarray(pred, dtype=np.float64)
        cols[target] = np.asarray(pred, dtype=np.float64)[:, 0]
    return ids, np.stack([cols[t] for t in targets if t in cols], axis=1)


def _test_targets(store: Store, run: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(video ids (N,), targets (N, K))`` of the test split of the run's tensor pack."""
    from models.data import split_sets

    arrays, _ = store.read_pack(run["pack"])
    idx = split_sets(arrays["split"])["test"]
    return np.asarray(arrays["video_id"][...])[idx].astype(str), np.asarray(arrays["target"][...])[idx]


def _model_key(row: Mapping[str, Any]) -> str | None:
    """The predictions of a main-table row: its model's (``None`` for a variant, which a model name cannot name)."""
    return row["model"] if not row.get("variant") or row["variant"] == "floor" else None


def _add_intervals(task_name: str, rows: list[dict[str, Any]], preds: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   y_true: tuple[np.ndarray, np.ndarray], reference: str, seed: int, n_boot: int = 1000,
                   key: Callable[[Mapping[str, Any]], str | None] = _model_key) -> None:
    """Add 95 % bootstrap intervals over the test videos to the rows (in place, rows built here): the task's main
    metric as ``<metric>_ci_low`` / ``_ci_high`` and, paired with the ``reference`` model's predictions on the same
    resamples, the difference ``delta_<metric>_ci_low`` / ``_ci_high``; ``ci95`` and ``delta_ci95`` render them.
    ``key(row)`` names the row's entry in ``preds``; a row without predictions gets empty intervals."""
    from models.base import TASKS
    from models.metrics import bootstrap_intervals

    metric = TASKS[task_name].monitor
    ids, y = y_true
    order = {v: i for i, v in enumerate(ids)}

    def aligned(name: str) -> np.ndarray | None:
        got = preds.get(name)
        if got is None or set(got[0]) != set(order) or got[1].shape != y.shape:
            return None
        out = np.empty_like(got[1])
        out[[order[v] for v in got[0]]] = got[1]
        return out

    ref = aligned(reference)
    for row in rows:
        name = key(row)
        pred = aligned(name) if name is not None else None
        row.update({f"{metric}_ci_low": None, f"{metric}_ci_high": None, f"delta_{metric}_ci_low": None,
                    f"delta_{metric}_ci_high": None, "ci95": "", "delta_ci95": ""})
        if pred is None or len(y) < 2:
            continue
        paired = ref is not None and name != reference
        ci = bootstrap_intervals(task_name, y, pred, reference=ref if paired else None, n_boot=n_boot, seed=seed)
        lo, hi = ci[metric]
        row.update({f"{metric}_ci_low": lo, f"{metric}_ci_high": hi, "ci95": f"{lo:.3f}–{hi:.3f}"})
        if paired:
            dlo, dhi = ci[f"delta_{metric}"]
            row.update({f"delta_{metric}_ci_low": dlo, f"delta_{metric}_ci_high": dhi,
                        "delta_ci95": f"{dlo:+.3f}…{dhi:+.3f}"})


# ------------------------------------------------------------------------------------------- interpretability


def _open_run(store: Store, run: Mapping[str, Any], batch_size: int, split: str):
    """The run's model from its best checkpoint, a loader over ``split`` of its tensor pack, and the pack's arrays."""
    model, arrays = load_run_model(store, run["checkpoint"], run["pack"])
    _, loader = split_loader(model, arrays, split, batch_size=batch_size)
    return model, loader, arrays


def _ig_baselines(model: Any, arrays: dict[str, Any], baseline: str, batch_size: int) -> dict[str, Any] | None:
    """The Integrated-Gradients baselines ``baseline`` names: None for "zero" (a missing input), the training
    split's mean input per key of the pack ``arrays`` (:func:`models.interpret.mean_baselines`) for "mean"."""
    if baseline == "zero":
        return None
    if baseline != "mean":
        raise ValueError(f"ig_baseline={baseline!r}: expected 'zero' or 'mean'")
    from models.interpret import mean_baselines

    _, train = split_loader(model, arrays, "train", batch_size=batch_size)
    return mean_baselines(train, model.inputs)


def _profile_rows(profiles: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per source × alignment × position of :class:`models.interpret.SecondProfile` s."""
    rows = []
    for source, p in profiles.items():
        s = len(p.from_end)
        aligned = (("start", p.from_start, p.count_from_start), ("end", p.from_end, p.count_from_end))
        for align, values, counts in aligned:
            for i in range(s):
                rows.append({"source": source, "align": align, "position": i if align == "start" else i - s + 1,
                             "lift": float(values[i]), "videos": int(counts[i])})
    return rows


def _interpret_emotion(store: Store, run: Mapping[str, Any], *, batch_size: int, split: str, steps: int,
                       max_videos: int, baseline: str = "zero") -> tuple[str, dict]:
    from models.interpret import collect_segment_attention, collect_segment_attributions, second_profile
    from pipelines.plots import plot_seconds

    model, loader, arrays = _open_run(store, run, batch_size, split)
    att, mask = collect_segment_attention(model, loader)
    profiles = {"attention": second_profile(att, mask)}
    batches = list(loader)
    start = _ig_baselines(model, arrays, baseline, batch_size)
    for j, name in enumerate(model.spec.targets):  # the model's targets (a subset when trained on some of them)
        profiles[f"IG {name}"] = second_profile(*collect_segment_attributions(model, batches, target=j, steps=steps,
                                                                              max_videos=max_videos,
                                                                              baselines=start))
    store.write_table("interpret-emotion-seconds", pd.DataFrame(_profile_rows(profiles)))
    png = "compare-emotion-seconds.png"
    store.write_report(png, plot_seconds({k: p.from_end for k, p in profiles.items()},
                                         title=f"{run['model']}: normalised weight per second ({split} split)"))
    summary = {k: {"last_share": p.last_share, "uniform_last_share": p.uniform_last_share,
                   "last_lift": p.last_lift, "earlier_lift": p.earlier_lift} for k, p in profiles.items()}
    md = [f"**Seconds** ({run['model']}, run `{run['run_id']}`, {len(att)} {split} videos): the per-second attention "
          "softmax weights and per-second Integrated-Gradients magnitudes, each normalised per video so that 1 = "
          "uniform, aligned to the video's last second.\n",
          markdown_table([{"source": k, **v} for k, v in summary.items()]),
          f"![seconds]({png})\n"]
    return "\n".join(md), summary


def _region_table(targets: tuple[str, ...], regions: np.ndarray) -> pd.DataFrame:
    """Long table ``trait, row, col, value`` of region maps (K, size, size)."""
    size = regions.shape[-1]
    rr, cc = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return pd.DataFrame({"trait": np.repeat(np.array(targets, dtype=object), size * size),
                         "row": np.tile(rr.ravel(), len(targets)), "col": np.tile(cc.ravel(), len(targets)),
                         "value": regions.reshape(-1).astype(np.float64)})


def _interpret_personality(store: Store, run: Mapping[str, Any], *, batch_size: int, split: str, steps: int,
                           max_videos: int, baseline: str = "zero") -> tuple[str, dict]:
    from models.interpret import IG_CHUNK, summarise_attributions
    from pipelines.plots import plot_modality_shares

    model, loader, arrays = _open_run(store, run, batch_size, split)
    s = summarise_attributions(model, loader, steps=steps, max_videos=max_videos, size=64,
                               internal_batch_size=IG_CHUNK,
                               baselines=_ig_baselines(model, arrays, baseline, batch_size))
    mod_rows = [{"trait": t, "modality": m, "share": float(s.modality_share[i, j]),
                 "magnitude": float(s.modality[i, j]), "signed": float(s.modality_signed[i, j])}
                for i, t in enumerate(s.targets) for j, m in enumerate(s.modalities)]
    store.write_table("interpret-personality-modality", pd.DataFrame(mod_rows))
    start = "zero baseline = missing input" if baseline == "zero" else "baseline = the training split's mean input"
    md = [f"**Integrated Gradients** ({run['model']}, run `{run['run_id']}`, {s.n_videos} {split} videos, {start}).\n"]
    pngs = ["compare-personality-modality.png"]
    store.write_report(pngs[0], plot_modality_shares(s.modality_share, s.targets, s.modalities,
                                                     title="share of attribution per modality"))
    summary: dict[str, Any] = {"modality_share": {t: dict(zip(s.modalities, map(float, s.modality_share[i])))
                                                  for i, t in enumerate(s.targets)}}
    md.append(markdown_table([{"trait": t, **{m: float(s.modality_share[i, j]) for j, m in enumerate(s.modalities)}}
                              for i, t in enumerate(s.targets)]))
    if s.frames is not None and s.regions is not None:
        vision_md, vision_pngs, vision_summary = _personality_vision(store, s)
        md.append(vision_md)
        pngs += vision_pngs
        summary.update(vision_summary)
    md += [f"![{p.removesuffix('.png')}]({p})\n" for p in pngs]
    return "\n".join(md), summary


def _personality_vision(store: Store, s: Any) -> tuple[str, list[str], dict[str, Any]]:
    """Frame- and region-level attribution of an :class:`models.interpret.AttributionSummary` with vision: tables,
    plots (their report names are returned), the per-trait trend and top-left quadrant share."""
    from models.interpret import top_left_share
    from pipelines.plots import plot_frames, plot_regions

    frame_rows = [{"trait": t, "frame": k, "value": float(s.frames[i, k]), "slope": tr.slope,
                   "intercept": tr.intercept, "r": tr.r, "p": tr.p}
                  for i, (t, tr) in enumerate(zip(s.targets, s.trends)) for k in range(s.frames.shape[1])]
    store.write_table("interpret-personality-frames", pd.DataFrame(frame_rows))
    store.write_table("interpret-personality-regions", _region_table(s.targets, s.regions))
    pngs = ["compare-personality-frames.png", "compare-personality-regions.png"]
    store.write_report(pngs[0], plot_frames(s.frames, [(t.slope, t.intercept) for t in s.trends], s.targets,
                                            title="attribution per frame position (dashed: linear trend)"))
    store.write_report(pngs[1], plot_regions(s.regions, s.targets,
                                             title="where in the frame attribution falls (64×64)"))
    quadrant = dict(zip(s.targets, map(float, top_left_share(s.regions))))
    summary = {"top_left_share": quadrant,
               "frame_trend": {t: dataclasses.asdict(tr) for t, tr in zip(s.targets, s.trends)}}
    md = markdown_table([{"trait": t, "trend slope": tr.slope, "trend r": tr.r, "top-left quadrant share": quadrant[t]}
                         for t, tr in zip(s.targets, s.trends)])
    return md, pngs, summary


def _interpret_popularity(store: Store, run: Mapping[str, Any], *, batch_size: int, split: str,
                          **_: Any) -> tuple[str, dict]:
    from models.interpret import summarise_contributions
    from pipelines.plots import plot_contributions

    model, loader, _ = _open_run(store, run, batch_size, split)
    got = summarise_contributions(model, loader)
    c, ablation, n = got.contributions, got.ablation, got.n_videos
    mods = list(model.inputs)
    rows = [{"head": "overall", "modality": m, "contribution": float(c.overall[j]), "ablation": float(ablation[j])}
            for j, m in enumerate(mods)]
    rows += [{"head": str(h + 1), "modality": m, "contribution": float(c.per_head[h, j]), "ablation": None}
             for h in range(len(c.per_head)) for j, m in enumerate(mods)]
    store.write_table("interpret-popularity-contributions", pd.DataFrame(rows))
    png = "compare-popularity-contributions.png"
    store.write_report(png, plot_contributions(c.overall, c.per_head, mods,
                                               title=f"{run['model']}: modality contributions ({split} split)"))
    summary = {"overall": dict(zip(mods, map(float, c.overall))), "ablation": dict(zip(mods, map(float, ablation))),
               "per_head": [dict(zip(mods, map(float, h))) for h in c.per_head]}
    md = [f"**Modality contributions** ({run['model']}, run `{run['run_id']}`, {n} {split} videos): c_i = Σ_j R_ij per "
          "head with R = transposed co-attention (what modality i gives to every modality), softmax over modalities, "
          "mean over heads (eq. 4.15–4.17). *ablation* = mean |Δ prediction| when the modality is masked out.\n",
          markdown_table([{"modality": m, "contribution": float(c.overall[j]), "ablation": float(ablation[j])}
                          for j, m in enumerate(mods)]),
          f"![contributions]({png})\n"]
    return "\n".join(md), summary


_INTERPRETERS = {"emotion": ("sec2sec-attn", _interpret_emotion), "personality": ("mcat", _interpret_personality),
                 "popularity": ("van", _interpret_popularity)}


# ------------------------------------------------------------------------------------------------------- the flow


def _ablation_plan(ablations: list[dict] | None, tasks: list[str], registered: set[str]
                   ) -> dict[str, list[tuple[str, str, dict, dict]]]:
    """task → [(model, label, config overrides, extraction overrides)] from the ``ablations`` parameter; every model
    must be in ``registered``."""
    from pipelines.extract import EMBED_STAGES, STAGES, ExtractConfig

    # the extraction settings that shape some stage's output (ExtractConfig.stage_params is the one list of them; an
    # embedding stage records its encoder's digest, set by the encoder's path, and vision_faces only when set)
    embed = {f"{s.split('_', 1)[1]}_model" for s in EMBED_STAGES} | {"vision_faces"}
    feature_fields = sorted({k for stage in (*STAGES, *EMBED_STAGES) for k in ExtractConfig().stage_params(stage)
                             if k in ExtractConfig.model_fields} | embed)
    plan: dict[str, list[tuple[str, str, dict, dict]]] = {t: [] for t in tasks}
    for i, spec in enumerate(ablations or []):
        if not isinstance(spec, dict) or not spec:
            raise ValueError(f"ablations[{i}]={spec!r}: expected a non-empty dict of config overrides, optionally "
                             "with 'model', 'task', 'label' and 'features'")
        spec = dict(spec)
        name, only, label = spec.pop("model", None), spec.pop("task", None), spec.pop("label", None)
        features = spec.pop("features", None) or {}
        if not isinstance(features, dict):
            raise ValueError(f"ablations[{i}]['features']={features!r}; expected a dict of extraction settings")
        unknown = sorted(set(features) - set(feature_fields))
        if unknown:
            raise ValueError(f"ablations[{i}]['features']: {unknown} are not extraction settings; expected some of "
                             f"{feature_fields}")
        try:
            ExtractConfig(**features)
        except Exception as err:  # pydantic's message names the field and the allowed values
            raise ValueError(f"ablations[{i}]['features']={features!r}: {err}") from None
        if not spec and not features:
            raise ValueError(f"ablations[{i}]: no config overrides and no 'features': nothing to ablate")
        if only is not None and only not in tasks:
            raise ValueError(f"ablations[{i}]['task']={only!r}; expected one of the selected tasks {tasks}")
        described = [f"{k}={v}" for k, v in spec.items()] + [f"features.{k}={v}" for k, v in features.items()]
        for t in [only] if only else tasks:
            plan[t].append((name or HEADLINE_MODELS[t], label or ",".join(described), spec, features))
    for t, items in plan.items():
        for name, *_ in items:
            if name not in registered:
                raise ValueError(f"ablation model={name!r} for task {t!r} is not registered")
    return plan


@task(cache_policy=NONE, persist_result=False, name="compare-feature-variant")
def _feature_variant(root: Optional[str], dataset: str, features: dict) -> str:
    """Extract (or reuse) the variant of ``dataset`` whose extraction settings differ by ``features``; its name.

    The variant is a dataset of its own, ``<dataset>--f<8 hex>`` (the hex = fingerprint of the full settings), with the
    same manifest (so the same videos and the same split), seeded with the base dataset's outputs of every stage whose
    parameters the ablation leaves unchanged, and with its vocabulary and graph artifacts: only the changed stages are
    computed, and a seeded output is reused only if the extraction plan recomputes the same fingerprint from the
    source file. Graph embeddings are the base dataset's (pre-trained once; the ablation isolates the extraction).
    """
    from pipelines.extract import (EMBED_STAGES, STAGES, ExtractConfig, extract_features, recorded_config,
                                   usable_encoders)

    base = store_for(root, dataset)
    stages = (*STAGES, *EMBED_STAGES)
    entries = {s: base.entries(s) for s in stages}
    if not any(entries.values()):
        raise ValueError(f"dataset={dataset!r}: nothing extracted yet; run `vidpipe extract {dataset}` first")
    # the base's embedding stages come along (their encoders read back from its records) unless the encoder is gone
    base_cfg, _ = usable_encoders(recorded_config(entries), [s for s in EMBED_STAGES if entries[s]], "compare")
    cfg = ExtractConfig(**{**base_cfg.model_dump(), **features})
    if all(cfg.stage_params(s) == base_cfg.stage_params(s) for s in stages):
        return dataset  # the "ablation" is the base dataset's own settings
    # an embedding stage keys the variant only when its encoder is set: variants without encoders keep their names
    key = fingerprint("feature-variant", 1, {s: cfg.stage_params(s) for s in stages
                                             if s in STAGES or getattr(cfg, f"{s.split('_', 1)[1]}_model")})
    name = f"{dataset[:52]}--f{key[:8]}"
    variant = store_for(root, name, create=True)
    with variant.lock():
        manifest = base.manifest()
        if not variant.manifest().equals(manifest):
            variant.write_manifest(manifest, base.edges(), {**base.source_info(), "variant_of": dataset,
                                                            "features": dict(features)})
        for stage in stages:
            if cfg.stage_params(stage) != base_cfg.stage_params(stage):
                continue
            have = variant.fingerprints(stage)
            for vid, rec in entries[stage].items():
                if have.get(vid) != rec.fingerprint:
                    variant.copy_entry(base, stage, vid)
        for artifact in (VOCABULARY_ARTIFACT, GRAPH_ARTIFACT, GRAPH_SONGS_ARTIFACT):
            fp = base.artifact_fingerprint(artifact)
            if fp is not None and variant.artifact_fingerprint(artifact) != fp:
                variant.copy_artifact(base, artifact)
    extract_features(dataset=name, root=root, config=cfg)
    return name


def _check_models(models: Optional[Union[list[str], dict[str, list[str]]]], registered: set[str]) -> None:
    """Refuse unknown task keys in ``models`` and model names that are not registered."""
    if models is not None:
        if isinstance(models, dict):
            bad_tasks = sorted(set(models) - set(PAPER_TASKS))
            if bad_tasks:
                raise ValueError(f"models: unknown task key(s) {bad_tasks}; expected some of {list(PAPER_TASKS)}")
        names = {m for ms in models.values() for m in ms} if isinstance(models, dict) else set(models)
        unknown = sorted(names - registered)
        if unknown:
            raise ValueError(f"models={unknown}: not registered; expected some of {sorted(registered)}")


def _wanted(models: Optional[Union[list[str], dict[str, list[str]]]], task_name: str) -> dict[str, Mapping[str, Any]]:
    """Model → its own config overrides for ``task_name``: the ``models`` parameter (one list for every task, or one
    per task) or :data:`DEFAULT_MODELS`."""
    chosen = models.get(task_name) if isinstance(models, dict) else models
    if chosen is None:
        return dict(DEFAULT_MODELS[task_name])
    return {m: DEFAULT_MODELS[task_name].get(m, {}) for m in chosen}


def _train_task_models(req: _Request, task_name: str, wanted: Mapping[str, Mapping[str, Any]], registered: set[str]
                       ) -> tuple[dict[str, dict], list[str]]:
    """Train or reuse every wanted model on the task: the runs by model name, and the skipped models with why."""
    runs: dict[str, dict] = {}
    skipped: list[str] = []
    for name, own in wanted.items():
        if name not in registered:
            skipped.append(f"{name} (not registered)")
            continue
        try:
            runs[name] = req.train_model(req.dataset, name, task_name, own)
        except ValueError as err:  # e.g. the dataset has no graph embedding or no labels for this task
            skipped.append(f"{name} ({str(err).splitlines()[0]})")
            get_run_logger().warning("compare %s: skipping %s: %s", task_name, name, err)
    return runs, skipped


def _main_rows(store: Store, task_name: str, runs: Mapping[str, dict], *, classical: bool, batch_size: int, seed: int
               ) -> tuple[list[dict[str, Any]], dict[str, tuple[np.ndarray, np.ndarray]], dict | None]:
    """The task's table rows (one per run, then the floor baselines) with their bootstrap intervals; the test
    predictions by row name; and the headline run (the task's headline model, else the first run; None without
    runs)."""
    rows = [_row(task_name, name, "", run) for name, run in runs.items()]
    headline = runs.get(HEADLINE_MODELS[task_name]) or next(iter(runs.values()), None)
    preds = {name: got for name, run in runs.items()
             if (got := predict_test_split(store, run, batch_size)) is not None}
    if classical and headline is not None:
        floor, floor_preds = _floor_rows(store, task_name, headline, seed)
        rows += floor
        preds.update(floor_preds)
    if headline is not None and headline["model"] in preds:
        _add_intervals(task_name, rows, preds, _test_targets(store, headline), headline["model"], seed)
    return rows, preds, headline


def _table_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The Markdown table's columns: the fixed ones, the metrics (and ``ci95`` / ``delta_ci95``), then ``cached``."""
    return [*_TABLE_COLUMNS, *[k for k in (rows[0] if rows else {}) if k not in _TABLE_COLUMNS
                               and k not in ("cached", "run_id") and not k.endswith(("_ci_low", "_ci_high"))],
            "cached"]


def _publish_rows(store: Store, dataset: str, name: str, rows: list[dict[str, Any]], description: str) -> None:
    """Write ``rows`` as the store table ``name`` and publish them as a Prefect table artifact."""
    store.write_table(name, pd.DataFrame(rows))
    publish_table(f"{dataset}-{name}", rows, description)


def _ablation_rows(req: _Request, store: Store, task_name: str, plan: list[tuple[str, str, dict, dict]],
                   preds: Mapping[str, tuple[np.ndarray, np.ndarray]], headline: dict | None, skipped: list[str]
                   ) -> list[dict[str, Any]]:
    """Train or reuse each planned ablation of the task (on a feature variant when it sets ``features``); its table
    rows with intervals paired with the headline's predictions. Ablations that cannot train are added to
    ``skipped``."""
    rows = []
    ab_preds = {k: v for k, v in preds.items() if headline is not None and k == headline["model"]}
    for name, label, spec, features in plan:
        try:
            source = _feature_variant(req.root, req.dataset, features) if features else req.dataset
            run = req.train_model(source, name, task_name, DEFAULT_MODELS[task_name].get(name, {}), varied=spec)
            if features:
                run = {**run, "dataset": source}
        except ValueError as err:
            skipped.append(f"ablation {name} {label} ({str(err).splitlines()[0]})")
            continue
        rows.append({**_row(task_name, name, label, run), "dataset": run.get("dataset", req.dataset)})
        got = predict_test_split(store_for(req.root, source), run, req.train["batch_size"])
        if got is not None:
            ab_preds[f"ablation:{label}"] = got
    if rows and headline is not None:
        _add_intervals(task_name, rows, ab_preds, _test_targets(store, headline), headline["model"],
                       req.train["seed"], key=lambda row: f"ablation:{row['variant']}")
    return rows


def _interpret_note(req: _Request, task_name: str, runs: Mapping[str, dict], inputs: str) -> str | None:
    """The report's line saying why the task gets no interpretability analysis (one model per target, embedding
    inputs, or the interpreted model not compared), or None when it gets one."""
    target_model = _INTERPRETERS[task_name][0]
    if req.separate_targets:
        return f"_No interpretability for {task_name}: the models were trained one per target._\n"
    if inputs == "embeddings":
        return (f"_No interpretability for {task_name}: the models read cached embeddings; the analyses attribute "
                "to frames, seconds of MFCC and words._\n")
    if target_model not in runs:
        return f"_No interpretability for {task_name}: `{target_model}` is not among the compared models._\n"
    return None


@contextlib.contextmanager
def _interpretations(store: Store, req: _Request, runs: Mapping[str, Mapping[str, dict]], *, inputs: str,
                     workers: int, settings: Mapping[str, Any]
                     ) -> Iterator[Callable[[str], tuple[list[str], dict | None]]]:
    """Start the interpretability analyses of the tasks in ``runs`` (task → model → run) and yield
    ``section(task)``: the report's lines for the task and its summary (None when no analysis runs:
    :func:`_interpret_note`), once the analysis is done. ``settings``: the keyword arguments of
    :func:`_interpret_cached` after ``interpreter``.

    The analyses of different tasks read different runs and write their own tables, plots and artifact, so with
    ``workers`` > 1 the ones not stored yet run in up to that many spawned processes, on one torch thread each,
    while this process assembles the tables (each is the same computation as in this process). Otherwise ``section``
    runs the task's analysis here when asked."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    notes = {t: note for t, task_runs in runs.items() if (note := _interpret_note(req, t, task_runs, inputs))}
    todo = {t: task_runs[_INTERPRETERS[t][0]] for t, task_runs in runs.items() if t not in notes}
    # the analyses not stored yet, for the workers (one process: _interpret_cached reuses the stored ones itself)
    fresh = [t for t, run in todo.items() if _stored_interpretation(store, t, _interpret_key(t, run, **settings))
             is None] if workers > 1 else []
    with contextlib.ExitStack() as stack:
        futures = {}
        if fresh:
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=min(workers, len(fresh)),
                                                           initializer=single_torch_thread,
                                                           mp_context=multiprocessing.get_context("spawn")))
            stack.callback(pool.shutdown, cancel_futures=True)  # on an error here: drop the analyses not started
            futures = {t: pool.submit(_interpret_in_worker, req.root, req.dataset, t, todo[t], dict(settings))
                       for t in fresh}

        def section(task_name: str) -> tuple[list[str], dict | None]:
            if task_name in notes:
                return [notes[task_name]], None
            if task_name in futures:
                md, summary = futures[task_name].result()
            else:
                md, summary = _interpret_cached(store, task_name, todo[task_name], _INTERPRETERS[task_name][1],
                                                **settings)
            return [f"### Interpretability ({task_name})\n", md], summary

        yield section


def _interpret_in_worker(root: Optional[str], dataset: str, task_name: str, run: Mapping[str, Any],
                         settings: Mapping[str, Any]) -> tuple[str, dict]:
    """Worker-process entry: :func:`_interpret_cached` of the task's interpreter on the store of ``dataset``."""
    return _interpret_cached(store_for(root, dataset), task_name, run, _INTERPRETERS[task_name][1], **settings)


def _interpret_key(task_name: str, run: Mapping[str, Any], *, split: str, steps: int, max_videos: int,
                   batch_size: int, baseline: str = "zero") -> str:
    """The fingerprint an analysis is stored under: the interpreted run (its id pins its pack and weights) and the
    analysis settings."""
    return fingerprint("interpret", 1, {"task": task_name, "run": run["run_id"], "split": split, "steps": steps,
                                        "max_videos": max_videos, "batch": batch_size, "baseline": baseline})


def _stored_interpretation(store: Store, task_name: str, key: str) -> tuple[str, dict] | None:
    """The stored Markdown and summary of the task's analysis when it is stored under ``key`` and its plots are still
    among the store's reports, else None."""
    if store.artifact_fingerprint(f"interpret-{task_name}") != key:
        return None
    _, meta = store.read_artifact(f"interpret-{task_name}")
    if not set(meta.get("pngs", [])) <= set(store.report_names(f"compare-{task_name}-*.png")):
        return None
    return meta["md"], meta["summary"]


def _interpret_cached(store: Store, task_name: str, run: Mapping[str, Any], interpreter: Callable, *,
                      split: str, steps: int, max_videos: int, batch_size: int,
                      baseline: str = "zero") -> tuple[str, dict]:
    """``interpreter``'s Markdown and summary for ``run``, reused when stored (:func:`_stored_interpretation`):
    Integrated Gradients dominate a rerun's time. An analysis the run cannot support gives a one-line note and an
    empty summary."""
    key = _interpret_key(task_name, run, split=split, steps=steps, max_videos=max_videos, batch_size=batch_size,
                         baseline=baseline)
    stored = _stored_interpretation(store, task_name, key)
    if stored is not None:
        return stored
    before = set(store.report_names(f"compare-{task_name}-*.png"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # captum's "requires_grad" notices
            md, summary = interpreter(store, run, batch_size=batch_size, split=split, steps=steps,
                                      max_videos=max_videos, baseline=baseline)
        pngs = sorted(set(store.report_names(f"compare-{task_name}-*.png")) | before)
        store.write_artifact(f"interpret-{task_name}", key, meta={"md": md, "summary": _json(summary), "pngs": pngs})
    except ValueError as err:
        md, summary = f"_interpretation skipped: {err}_\n", {}
    return md, summary


def _report_intro(dataset: str, *, epochs: int, lr: float, batch_size: int, seed: int) -> str:
    """The report's title and the paragraph on how every row was trained and what its columns mean."""
    return (f"# Model comparison on `{dataset}`\n\n"
            f"Every model trained by the same engine (`vidpipe train`) for at most {epochs} epochs "
            f"(lr {lr}, batch {batch_size}, seed {seed}) and scored on the same test split. "
            "*efficiency* = trainable parameters / total training seconds (eq. 3.11, in seconds). "
            "*ci95* = 95 % bootstrap interval of the task's main metric over the test videos (1,000 resamples); "
            "*delta_ci95* = the paired-bootstrap interval of the difference to the headline model (same resamples): "
            "a difference whose interval contains 0 is within the noise of this test set.\n")


def _task_sections(req: _Request, store: Store, task_name: str, runs: Mapping[str, dict], skipped: list[str],
                   plan: list[tuple[str, str, dict, dict]], *, classical: bool,
                   interpretation_of: Callable[[str], tuple[list[str], dict | None]] | None
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str], dict | None]:
    """One task of the comparison: its table rows and ablation rows (each written as a store table and published
    when there are any), the task's report sections (the tables, the skipped models and, with ``interpretation_of``
    (:func:`_interpretations`), the interpretability section) and its interpretability summary (None without
    one). Ablations that cannot train are added to ``skipped``."""
    t0 = time.perf_counter()
    dataset, batch_size, seed = req.dataset, req.train["batch_size"], req.train["seed"]
    rows, preds, headline = _main_rows(store, task_name, runs, classical=classical, batch_size=batch_size, seed=seed)
    cols = _table_columns(rows)
    if rows:
        _publish_rows(store, dataset, f"compare-{task_name}", rows,
                      f"model comparison on {task_name} ({dataset}), test split")
    sections = [f"## {task_name}\n", markdown_table(rows, cols) if rows else "_no model could be trained_\n"]
    if skipped:
        sections.append("Skipped: " + "; ".join(skipped) + "\n")

    ab_rows = _ablation_rows(req, store, task_name, plan, preds, headline, skipped)
    if ab_rows:
        _publish_rows(store, dataset, f"compare-{task_name}-ablations", ab_rows,
                      f"ablations on {task_name} ({dataset}), test split")
        ab_cols = [*cols[:-1], "dataset", cols[-1]] if any(r["dataset"] != dataset for r in ab_rows) else cols
        sections += [f"### Ablations ({task_name})\n", markdown_table(ab_rows, ab_cols)]

    summary = None
    if interpretation_of is not None:
        md, summary = interpretation_of(task_name)
        sections += md
    get_run_logger().info("compare %s on %s: %d models, %d ablations in %.1fs", task_name, dataset, len(runs),
                          len(ab_rows), time.perf_counter() - t0)
    return rows, ab_rows, sections, summary


@flow(name="compare", validate_parameters=True)
def compare_models(
    dataset: DatasetName,
    root: Optional[str] = None,
    task: Literal[(*PAPER_TASKS, "all")] = "all",
    models: Optional[Union[list[str], dict[str, list[str]]]] = None,
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 15,
    seed: int = 0,
    ablations: Optional[list[dict[str, Any]]] = None,
    retrain: bool = False,
    overrides: Optional[dict[str, Any]] = None,
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3,
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 16,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    classical: bool = True,
    interpret: bool = True,
    ig_steps: Annotated[int, Field(ge=2, le=1024)] = 32,
    max_videos: Annotated[int, Field(ge=1)] = 64,
    interpret_split: Literal["train", "val", "test"] = "test",
    ig_baseline: Literal["zero", "mean"] = "zero",
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0,
    hflip: Annotated[float, Field(ge=0, le=1)] = 0.0,
    vision_profile: Literal["uniform", "uniform_224"] = "uniform",
    separate_targets: bool = False,
    inputs: Literal["raw", "embeddings"] = "raw",
    workers: Annotated[int, Field(ge=1, le=64)] = 1,
) -> dict:
    """Train or reuse each selected model per task, evaluate all on the same test split, write the comparison tables
    and the interpretability report.

    Args:
        dataset: the store (features extracted; popularity models reading ``graph`` need ``vidpipe pretrain-graph``).
        task: one task, or ``all`` (each task with its headline model and baselines).
        models: registered model names to compare — one list for every task, or ``{task: [names]}`` (default:
            :data:`DEFAULT_MODELS` of each task); names that are not
            registered, or whose inputs the dataset lacks, are skipped and listed in the report.
        epochs, seed, lr, batch_size, device: training settings shared by every model (the split is the dataset's own).
        ablations: config-override dicts, optionally with extraction settings under ``"features"``, reported in the
            same table format (see the module docstring).
        retrain: train every model again instead of reusing recorded runs with identical settings.
        overrides: config overrides for every model (replace the CPU-sized defaults ``dim=32, heads=2, …``).
        classical: add the constant and scikit-learn floor baselines.
        interpret: write the interpretability plots and tables.
        ig_steps, max_videos: Integrated-Gradients quadrature points and videos attributed per task.
        interpret_split: the split the interpretability analyses run on. The dissertation averaged Integrated
            Gradients over the training set (what the model learned) and attention over the test set; one split for
            all keeps the three analyses comparable — ``train`` shows what a model fitted, ``test`` what generalises.
        ig_baseline: where Integrated Gradients start: ``zero`` (all-zero inputs, what the models see for a missing
            modality: the paper's "absence of input") or ``mean`` (the training split's mean image, mean MFCC frame
            and mean word counts: attribution then measures the departure from the average video, which an input
            far from zero in every real clip, like MFCC c0, does not dominate by being present).
        weight_decay, hflip: L2 weight decay and the probability of mirroring a training video (engine settings).
        vision_profile: the frame profile feeding ``vision`` inputs (``uniform`` 64², ``uniform_224`` 224²).
        separate_targets: train one model per target column (e.g. valence and arousal apart, each with its own best
            epoch) and report their metrics in one row; interpretability is then skipped.
        inputs: ``embeddings`` trains every model on the cached pretrained-encoder vectors (``input_kind``;
            interpretability is then skipped); for "from pixels" and "from embeddings" rows side by side keep ``raw``
            and add the ablation ``{"input_kind": "embeddings", "label": "from embeddings"}``.
        workers: processes that train the main tables' models at once (one torch thread each) before the tables
            are assembled, and that then run the tasks' interpretability analyses beside the assembly; 1 does both
            one after another in this process. The runs and analyses are the same either way, up to floating-point
            summation order (identical when this process runs torch on one thread too, as the demo does).

    Returns:
        ``{"tables": {task: rows}, "ablations": {task: rows}, "interpretation": {task: summary}, "report": path,
        "skipped": {task: [...]}, "parallel_training": {...} or None}``.
    """
    from models.registry import list_models

    logger = get_run_logger()
    store = store_for(root, dataset)
    tasks = list(PAPER_TASKS) if task == "all" else [task]
    registered = set(list_models())
    _check_models(models, registered)
    plan = _ablation_plan(ablations, tasks, registered)
    if inputs == "embeddings":
        overrides = {**(overrides or {}), "input_kind": "embeddings"}
    req = _Request(root=root, dataset=dataset, overrides=dict(overrides or {}), device=device, retrain=retrain,
                   separate_targets=separate_targets,
                   train=_train_settings(epochs=epochs, seed=seed, lr=lr, batch_size=batch_size,
                                         weight_decay=weight_decay, hflip=hflip, vision_profile=vision_profile))
    parallel = None
    if workers > 1:
        parallel = _train_parallel(req, [(name, t, own) for t in tasks for name, own in _wanted(models, t).items()
                                         if name in registered], workers)
        logger.info("compare on %s: %d models trained in %d processes in %.1fs (%.1f CPU s)", dataset,
                    parallel["runs"], parallel["workers"], parallel["wall_s"], parallel["cpu_s"])
    stem = "compare" if task == "all" else f"compare-{task}"
    tables: dict[str, list[dict]] = {}
    ablation_tables: dict[str, list[dict]] = {}
    interpretation: dict[str, dict] = {}
    skipped: dict[str, list[str]] = {}
    sections = [_report_intro(dataset, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)]
    task_runs: dict[str, dict[str, dict]] = {}
    for t in tasks:
        task_runs[t], skipped[t] = _train_task_models(req, t, _wanted(models, t), registered)
    settings = {"split": interpret_split, "steps": ig_steps, "max_videos": max_videos, "batch_size": batch_size,
                "baseline": ig_baseline}
    # the interpretability analyses start here (in worker processes when workers > 1) and the tables are assembled
    # beside them
    with _interpretations(store, req, task_runs if interpret else {}, inputs=inputs, workers=workers,
                          settings=settings) as interpretation_of:
        for t, runs in task_runs.items():
            tables[t], ab_rows, md, summary = _task_sections(req, store, t, runs, skipped[t], plan[t],
                                                             classical=classical,
                                                             interpretation_of=interpretation_of if interpret else None)
            sections += md
            if ab_rows:
                ablation_tables[t] = ab_rows
            if summary is not None:
                interpretation[t] = summary

    text = "\n".join(sections)
    report = store.write_report(f"{stem}.md", text)
    publish_markdown(f"{dataset}-{stem}-report", text, f"model comparison and interpretability on {dataset}")
    return {"tables": tables, "ablations": ablation_tables, "interpretation": interpretation, "report": str(report),
            "skipped": skipped, "parallel_training": parallel}
