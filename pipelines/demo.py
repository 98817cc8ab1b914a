"""The end-to-end demo: every stage on a generated dataset, through Prefect flows, on the embedded defaults.

``vidpipe demo`` (and ``make demo``) = ingest a synthetic dataset with planted mechanisms → extract features →
pre-train the song–video GAT → compare the three headline models with a few baselines on their tasks (training each
with the one engine; every row with a 95 % bootstrap interval over the test videos) → interpretability report → one
line per task saying which planted mechanism its headline model recovered. Every stage is cached by fingerprint and
every training run is reused when its settings and inputs are unchanged, so a second run decodes nothing and
retrains only the extra GAT link splits behind the GAT's interval (``graph_seeds - 1`` small GATs, not stored).

Both cores work: ``compare`` trains its nine models, then runs its three interpretability analyses (Integrated
Gradients for emotion and personality) beside the tables' assembly, in ``workers`` processes at once; the extra GAT
link splits run in one more process beside ``pretrain-graph`` and ``compare``, and torch runs on one thread in each
(on these small tensors a second intra-op thread mostly spin-waits: see BENCHMARKS.md, "Demo"). The result carries
the wall and CPU seconds of every stage, which ``vidpipe demo`` prints as a table.

The mechanism lines read the generator's ground truth (``ground_truth.parquet`` beside the generated videos, see
:mod:`features.sources.synthetic`) and each headline model's test predictions, recomputed from its checkpoint:

* emotion — **synchrony** (``arousal_sync_part``: audio and vision paired within the same second): Spearman's ρ of
  the predicted arousal with the planted synchrony on the test videos that have audio, with the valence label held
  fixed (partial ρ), for ``sec2sec`` and for the late-fusion ``avm`` beside it. The models predict valence and
  arousal together and their arousal output follows valence; on a test split of ~20 videos the valence label can
  correlate with the synchrony by chance (0.49 on the default demo's), which a plain ρ would credit to the model; **recency**: the attention lift of the last 3 seconds vs the earlier ones
  (``sec2sec-attn``, from the interpretability report);
* personality — **modality importance**: for how many traits MCAT's largest Integrated-Gradients share falls on the
  planted modality;
* popularity — **network effect** (``popularity_network_part``, carried by the song) and **content**
  (``popularity_content_part``): ρ of VAN's predicted popularity with each;
* graph — GAT link-prediction test AUC over ``graph_seeds`` link splits (pre-training is seconds at this size, so
  the interval is over seeds: one split has only about a tenth of the edges as test links).

"Recovered" = the 95 % interval of ρ (Fisher z) lies above 0; the figures are printed either way.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger
from pydantic import Field

from pipelines.flow_io import cpu_seconds, one_torch_thread, single_torch_thread, store_for
from pipelines.compare import compare_models, predict_test_split
from pipelines.extract import extract_features
from pipelines.graph import pretrain_graph
from pipelines.ingest import default_source_path, ingest

__all__ = ["demo", "DEMO_MODELS"]

#: per task: the headline model first, then the baselines the demo compares it with (a CPU-sized selection of
#: pipelines.compare.DEFAULT_MODELS; ``sec2sec-attn`` is the variant whose attention the report plots; ``avm`` is the
#: late fusion whose synchrony figure sits beside sec2sec's)
DEMO_MODELS = {
    "emotion": ["sec2sec", "sec2sec-attn", "avm"],
    "personality": ["mcat", "late-fusion", "vatt"],
    "popularity": ["van", "late-fusion", "mtaf"],
}

#: the modality each personality trait is planted in (features.sources.synthetic)
_PLANTED_MODALITY = {"extraversion": {"vision"}, "neuroticism": {"audio"}, "agreeableness": {"text"},
                     "conscientiousness": {"text"}, "openness": {"vision", "audio"}}


def _fisher_interval(r: float, n: int, controls: int = 0) -> tuple[float, float, float]:
    """``r`` and its 95 % Fisher-z interval over ``n`` pairs with ``controls`` variables held fixed (``nan`` bounds
    below ``4 + controls`` pairs)."""
    if n < 4 + controls:
        return r, float("nan"), float("nan")
    z, half = math.atanh(max(min(r, 0.999999), -0.999999)), 1.96 / math.sqrt(n - 3 - controls)
    return r, math.tanh(z - half), math.tanh(z + half)


def _rho(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Spearman's ρ and its 95 % Fisher-z interval (``nan`` bounds below 4 pairs)."""
    from scipy.stats import spearmanr

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0, float("nan"), float("nan")
    return _fisher_interval(float(spearmanr(a, b).statistic), len(a))


def _partial_rho(a: np.ndarray, b: np.ndarray, control: np.ndarray) -> tuple[float, float, float]:
    """Spearman's ρ of ``a`` and ``b`` with ``control`` held fixed (the Pearson correlation of their ranks' residuals
    after a least-squares fit on the control's ranks) and its 95 % Fisher-z interval (one degree of freedom fewer
    than :func:`_rho`'s; ``nan`` bounds below 5 pairs)."""
    from scipy.stats import rankdata

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0, float("nan"), float("nan")
    design = np.column_stack([np.ones(len(a)), rankdata(control)])
    resid = [y - design @ np.linalg.lstsq(design, y, rcond=None)[0] for y in (rankdata(a), rankdata(b))]
    if min(np.ptp(resid[0]), np.ptp(resid[1])) < 1e-9:
        return 0.0, float("nan"), float("nan")
    return _fisher_interval(float(np.corrcoef(resid[0], resid[1])[0, 1]), len(a), controls=1)


def _fmt(r: tuple[float, float, float]) -> str:
    return f"ρ {r[0]:.2f} [{r[1]:.2f}, {r[2]:.2f}]"


def _verdict(r: tuple[float, float, float]) -> str:
    return "recovered" if r[1] > 0 else "not recovered"


def _gat_seeds(root: Optional[str], dataset: str, seeds: list[int], epochs: int) -> tuple[list[float], float, float]:
    """GAT link-prediction test AUC for each seed (each seed draws its own link split; nothing is stored), the wall
    and the CPU seconds they took. Runs in a worker process beside ``pretrain-graph`` and ``compare``, on one torch
    thread."""
    from features.graph import build_graph
    from models.gat import GATConfig, pretrain_link_prediction

    single_torch_thread()
    t, c = time.perf_counter(), cpu_seconds()
    store = store_for(root, dataset)
    video_ids = sorted(store.manifest()["video_id"])
    edges = store.edges()
    graph = build_graph(edges[edges["video_id"].isin(set(video_ids))], video_ids)
    aucs = [float(pretrain_link_prediction(graph, GATConfig(epochs=epochs, seed=s)).metrics["test_auc"])
            for s in seeds]
    return aucs, time.perf_counter() - t, cpu_seconds() - c


def _predictions(store: Any, rows: list[dict], model: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(test video ids, predictions) of ``model``'s row in a comparison table, from its recorded run."""
    run_id = next((r["run_id"] for r in rows if r["model"] == model and r.get("run_id")), None)
    rec = next((r for r in reversed(store.run_records()) if r.run_id == run_id), None) if run_id else None
    return predict_test_split(store, rec.to_dict(), batch_size=32) if rec is not None else None


def mechanism_lines(store: Any, truth: pd.DataFrame, comparison: Mapping[str, Any],
                    gat_aucs: list[float], n_edges: int) -> dict[str, str]:
    """One line per task: which planted mechanism the headline model recovered, with the figures (module docstring).

    ``truth``: the generator's ground truth indexed by ``video_id``.
    """
    from models.metrics import seed_interval

    tables, interp = comparison["tables"], comparison.get("interpretation", {})
    lines: dict[str, str] = {}
    if "emotion" in tables:
        parts = []
        for model in ("sec2sec", "avm"):
            got = _predictions(store, tables["emotion"], model)
            if got is None:
                continue
            heard = truth.loc[got[0], "has_audio"].to_numpy(dtype=bool)
            rows = truth.loc[got[0][heard]]
            r = _partial_rho(got[1][heard, 1], rows["sync_cue"].to_numpy(), rows["valence"].to_numpy())
            parts.append(f"{model} synchrony {_fmt(r)} with valence held fixed → {_verdict(r)}")
        att = interp.get("emotion", {}).get("attention")
        if att:
            found = "recovered" if att["last_lift"] > att["earlier_lift"] else "not recovered"
            parts.append(f"sec2sec-attn recency: last-3-s lift {att['last_lift']:.2f} vs earlier "
                         f"{att['earlier_lift']:.2f} → {found}")
        lines["emotion"] = "; ".join(parts) or "no sec2sec run to read"
    shares = interp.get("personality", {}).get("modality_share")
    if shares:
        hits = [t for t, s in shares.items() if t in _PLANTED_MODALITY and max(s, key=s.get) in _PLANTED_MODALITY[t]]
        lines["personality"] = (f"mcat modality importance: largest attribution share on the planted modality for "
                                f"{len(hits)}/{len(shares)} traits ({', '.join(hits) or 'none'})")
    if "popularity" in tables:
        got = _predictions(store, tables["popularity"], "van")
        if got is not None:
            r_net = _rho(got[1][:, 0], truth.loc[got[0], "popularity_network_part"].to_numpy())
            r_con = _rho(got[1][:, 0], truth.loc[got[0], "popularity_content_part"].to_numpy())
            graph_share = interp.get("popularity", {}).get("overall", {}).get("graph")
            lines["popularity"] = (f"van network effect {_fmt(r_net)} → {_verdict(r_net)}; content {_fmt(r_con)} → "
                                   f"{_verdict(r_con)}" + ("" if graph_share is None else
                                                          f"; graph's contribution share {graph_share:.2f}"))
    if gat_aucs:
        mean, lo, hi = seed_interval(gat_aucs)
        if math.isnan(lo):  # one link split: no interval to compare with chance
            lines["graph"] = f"GAT link prediction test AUC {mean:.3f} on one link split (no interval)"
        elif lo > 0.5:
            lines["graph"] = (f"GAT link prediction test AUC {mean:.3f} [{lo:.3f}, {hi:.3f}] over {len(gat_aucs)} "
                              "link splits → above chance (song popularity is learned from the graph)")
        else:
            lines["graph"] = (f"GAT link prediction test AUC {mean:.3f} [{lo:.3f}, {hi:.3f}] over {len(gat_aucs)} "
                              f"link splits → not distinguishable from chance at this size: {n_edges} song links, "
                              f"about {max(1, n_edges // 10)} test links per split, and with featureless videos "
                              "a link is ranked only by its song's popularity (its relative degree), which a few "
                              "dozen links measure too coarsely")
    return lines


def _ground_truth(store: Any) -> pd.DataFrame | None:
    path = Path(store.source_info().get("path") or default_source_path(store)) / "ground_truth.parquet"
    return pd.read_parquet(path).set_index("video_id") if path.is_file() else None


def _cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@flow(name="demo", validate_parameters=True)
def demo(
    root: Optional[str] = None,
    dataset: str = "demo",
    videos: Annotated[int, Field(ge=40, le=2000)] = 120,
    seed: int = 0,
    epochs: Annotated[int, Field(ge=1, le=1000)] = 12,
    graph_epochs: Annotated[int, Field(ge=1, le=10_000)] = 100,
    graph_seeds: Annotated[int, Field(ge=1, le=50)] = 8,
    workers: Optional[Annotated[int, Field(ge=1, le=64)]] = None,
) -> dict:
    """Run every stage on a synthetic dataset; return the comparison tables, the mechanism lines, the per-stage
    wall and CPU seconds and the report's path.

    Args:
        videos: synthetic videos to generate (at least 40: the graph needs a few dozen song links to split).
        epochs: training epochs per model; graph_epochs: GAT pre-training epochs.
        graph_seeds: link splits the GAT's test AUC is measured on (seed ``seed`` is the stored embedding's, the
            others are trained and discarded, in one worker process beside ``pretrain-graph`` and ``compare``); the
            AUC interval is over them.
        workers: processes ``compare`` trains its models and runs its interpretability analyses in at once
            (default: the cores this process may use).
    """
    from models.metrics import seed_interval

    logger = get_run_logger()
    t0, c0 = time.perf_counter(), cpu_seconds()
    stages: list[dict[str, Any]] = []  # wall and CPU seconds per stage (CPU: whatever else shares the machine)

    def timed(name: str, fn, **kw):
        t, c = time.perf_counter(), cpu_seconds()
        out = fn(**kw)
        stages.append({"stage": name, "wall_s": round(time.perf_counter() - t, 2),
                       "cpu_s": round(cpu_seconds() - c, 2)})
        return out

    timed("ingest", ingest, dataset=dataset, source="synthetic", root=root, videos=videos, seed=seed)
    extraction = timed("extract", extract_features, dataset=dataset, root=root)
    others = [seed + k for k in range(1, graph_seeds)]
    # the demo's parallelism is its worker processes: one torch thread here too (BENCHMARKS.md, demo)
    with one_torch_thread(), ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) \
            as pool:
        pending = pool.submit(_gat_seeds, root, dataset, others, graph_epochs) if others else None
        graph = timed("pretrain-graph", pretrain_graph, dataset=dataset, root=root, epochs=graph_epochs, seed=seed)
        comparison = timed("compare", compare_models, dataset=dataset, root=root, task="all", models=DEMO_MODELS,
                           epochs=epochs, seed=seed, ig_steps=16, max_videos=32, workers=workers or _cores())
        seed_aucs, wall, cpu = pending.result() if pending is not None else ([], 0.0, 0.0)
    par = comparison.get("parallel_training")
    if par:
        stages.append({"stage": f"  of which training ({par['runs']} models, {par['workers']} processes)",
                       "wall_s": round(par["wall_s"], 2), "cpu_s": round(par["cpu_s"], 2)})
    stages.append({"stage": f"graph-seeds ({len(others)} GATs, beside pretrain-graph + compare)", "wall_s": round(wall, 2),
                   "cpu_s": round(cpu, 2)})
    aucs = [float(graph["test_auc"]), *seed_aucs]

    def mechanisms() -> dict[str, str]:
        store = store_for(root, dataset)
        truth = _ground_truth(store)
        return {} if truth is None else mechanism_lines(store, truth, comparison, aucs, len(store.edges()))

    lines = timed("mechanism lines", mechanisms)
    stages.append({"stage": "total", "wall_s": round(time.perf_counter() - t0, 2),
                   "cpu_s": round(cpu_seconds() - c0, 2)})
    for name, line in lines.items():
        logger.info("mechanism %s: %s", name, line)
    logger.info("demo finished in %.1fs; report: %s", time.perf_counter() - t0, comparison["report"])
    mean, lo, hi = seed_interval(aucs)
    return {"dataset": dataset, "tables": comparison["tables"], "mechanisms": lines,
            "graph": {"val_auc": graph["val_auc"], "test_auc": graph["test_auc"], "cached": graph["cached"],
                      "test_auc_seeds": aucs, "test_auc_mean": mean, "test_auc_ci95": [lo, hi]},
            "failed_videos": extraction["failed_videos"], "report": comparison["report"],
            "stages": stages, "seconds": stages[-1]["wall_s"]}
