"""Stage ``analyze-outcomes``: do a trained model's predicted traits explain a real-world binary outcome?

Flow :func:`analyze_outcomes` (dissertation §3.9, the MBA-admission case study):

1. Load the recorded run ``run_id`` (store ``runs/``), rebuild its model from the best checkpoint
   (:func:`models.engine.load_checkpoint`, no training arguments needed) and predict every video of its tensor pack —
   all splits: the outcome question is about the people, not about the model's held-out score.
2. Join the predictions (one column per predicted target, named after it: ``extraversion``, …) with a user-supplied
   outcome table (CSV or Parquet) on ``video_id``: a 0/1 outcome column and control columns.
3. Run :func:`models.econometrics.outcome_analysis`: logit and probit per trait with the controls, VIF, KMO, parallel
   analysis and the regression on a one-factor solution.
4. Write the tables (Parquet ``tables/outcomes-<run>-*.parquet``), a scree-plot PNG and a Markdown report (the
   store's reports, :meth:`features.store.Store.write_report`), and publish the coefficient table and the report as
   Prefect artifacts.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from pydantic import Field

from features.store import Store
from pipelines.flow_io import DatasetName, markdown_table, publish_markdown, publish_table, store_for
from pipelines.train import model_targets, split_loader

__all__ = ["analyze_outcomes", "predict_run", "read_outcomes"]

_MIN_ROWS = 10


def read_outcomes(path: str | Path) -> pd.DataFrame:
    """Read a user's outcome table (``.csv`` or ``.parquet``) with a ``video_id`` column (kept as strings)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"outcomes={str(path)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        df = pd.read_csv(p, dtype={"video_id": str})
    elif suffix in (".parquet", ".pq"):
        df = pd.read_parquet(p)
    else:
        raise ValueError(f"outcomes={str(path)!r}: expected a .csv or .parquet file")
    if "video_id" not in df.columns:
        raise ValueError(f"outcomes={str(path)!r} has columns {list(df.columns)}; expected a 'video_id' column")
    return df.assign(video_id=df["video_id"].astype(str))


def predict_run(store: Store, run_id: str, *, batch_size: int = 32) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predictions of recorded run ``run_id`` on every video of its pack: ``video_id``, ``split`` and one column per
    predicted target; and the run record."""
    from features.packs import build_pack
    from models.engine import evaluate, load_checkpoint

    try:
        rec = store.run(run_id)
    except KeyError as err:
        raise ValueError(err.args[0]) from None
    checkpoint = store.checkpoint_file(rec.checkpoint)
    if checkpoint is None:
        raise ValueError(f"run={run_id!r} has no checkpoint on disk ({rec.checkpoint!r}); retrain it")
    run = rec.to_dict()
    model, extra = load_checkpoint(checkpoint)
    pack = extra.get("pack", run["pack"])
    try:
        arrays, _ = store.read_pack(pack)
    except KeyError:  # packs are a cache: rebuild; a different fingerprint means the features changed since training
        pack, _ = build_pack(store, list(model.inputs), run["task"], vision_profile=rec.vision_profile or "uniform")
        if pack != extra.get("pack", run["pack"]):
            warnings.warn(f"run {run_id!r} was trained on features that have changed since; predicting from the "
                          "current ones", stacklevel=2)
        arrays, _ = store.read_pack(pack)
    _, loader = split_loader(model, model_targets(model, arrays), None, batch_size=batch_size)
    _, pred = evaluate(model, loader)
    names = model.spec.targets
    out = pd.DataFrame(pred, columns=list(names))
    out.insert(0, "split", np.asarray(arrays["split"], dtype=str))
    out.insert(0, "video_id", np.asarray(arrays["video_id"], dtype=str))
    return out, run


@task(cache_policy=NONE, persist_result=False, name="predict-traits")
def _predict(root: Optional[str], dataset: str, run_id: str) -> tuple[pd.DataFrame, dict]:
    return predict_run(store_for(root, dataset), run_id)


def _fmt_coef(row: pd.Series) -> str:
    return f"{row['coef']:.3f}{row['stars']} ({row['se']:.3f})" if np.isfinite(row["coef"]) else "—"


def _join_outcomes(preds: pd.DataFrame, table: pd.DataFrame, run_id: str) -> tuple[pd.DataFrame, list[str]]:
    """The predictions joined with the outcome table on ``video_id`` (inner join) and the predicted trait columns.

    Raises:
        ValueError: an outcome column is named like a trait, or fewer than ``_MIN_ROWS`` rows match.
    """
    traits = [c for c in preds.columns if c not in ("video_id", "split")]
    clash = [c for c in traits if c in table.columns]
    if clash:
        raise ValueError(f"outcomes table has column(s) {clash} named like the predicted traits; rename them")
    data = preds.merge(table, on="video_id", how="inner")
    unmatched = len(table) - len(data)
    if unmatched > 0:
        warnings.warn(f"{unmatched} of {len(table)} outcome rows have no prediction (video_id not in run "
                      f"{run_id!r}'s data); they are left out", stacklevel=3)
    if len(data) < _MIN_ROWS:
        raise ValueError(f"only {len(data)} outcome rows match the run's videos; expected at least {_MIN_ROWS}")
    return data, traits


def _write_tables(store: Store, prefix: str, res: Any, traits: list[str], *, title: str
                  ) -> tuple[pd.DataFrame, str]:
    """Write the regression, factor and scree tables (``<prefix>-regressions`` / ``-factor`` / ``-scree``) and the
    scree plot; the factor table and the plot's report name."""
    from pipelines.plots import plot_scree

    store.write_table(f"{prefix}-regressions", res.regressions)
    factor = pd.DataFrame({"trait": traits, "vif": res.vif.to_numpy(), "msa": res.msa.to_numpy(),
                           "loading": res.factor.loadings.to_numpy(),
                           "communality": res.factor.communalities.to_numpy()})
    store.write_table(f"{prefix}-factor", factor)
    pa = res.parallel
    scree = pd.DataFrame({"factor": np.arange(1, len(pa.observed) + 1), "observed": pa.observed,
                          "random_mean": pa.random_mean, "random_quantile": pa.random_quantile})
    store.write_table(f"{prefix}-scree", scree)
    png = f"{prefix}-scree.png"
    store.write_report(png, plot_scree(pa.observed, pa.random_mean, pa.random_quantile, title=title,
                                       quantile=pa.quantile))
    return factor, png


def _wide_regressions(regs: pd.DataFrame, traits: list[str]) -> list[dict[str, Any]]:
    """One report row per predictor (controls only, each trait, the factor): coefficient (se) and pseudo-R² per link."""
    from models.econometrics import CONTROLS_ONLY

    wide = []
    for predictor in [CONTROLS_ONLY, *traits, "factor"]:
        sub = regs[regs["predictor"] == predictor].set_index("link")
        if not len(sub):
            continue
        wide.append({"predictor": predictor,
                     **{f"{link} coef (se)": _fmt_coef(sub.loc[link]) for link in sub.index},
                     **{f"{link} pseudo-R²": float(sub.loc[link, "pseudo_r2"]) for link in sub.index}})
    return wide


@flow(name="analyze-outcomes", validate_parameters=True)
def analyze_outcomes(
    dataset: DatasetName,
    run_id: str,
    outcomes: str,
    outcome: str,
    controls: Optional[list[str]] = None,
    root: Optional[str] = None,
    n_iter: Annotated[int, Field(ge=1, le=100_000)] = 200,
    seed: int = 0,
) -> dict:
    """Join a run's predicted traits with an outcome table and fit the decision-support models.

    Args:
        dataset: the store holding the run.
        run_id: a recorded training run (``vidpipe train`` / ``compare`` print it; ``store.runs()`` lists them).
        outcomes: path of a CSV / Parquet table with ``video_id``, the outcome and the controls.
        outcome: the binary (0/1) outcome column.
        controls: control columns (numeric, or categorical — one-hot encoded, first level dropped).
        n_iter, seed: random data sets and seed of the parallel analysis.

    Returns:
        ``{"run_id", "n", "traits", "regressions": rows, "vif", "msa", "kmo", "n_factors", "loadings", "report",
        "tables"}``.
    """
    from models.econometrics import outcome_analysis

    t0 = time.perf_counter()
    store = store_for(root, dataset)
    table = read_outcomes(outcomes)
    controls = list(controls or [])
    missing = [c for c in [outcome, *controls] if c not in table.columns]
    if missing:
        raise ValueError(f"outcomes table {outcomes!r} lacks column(s) {missing}; it has {list(table.columns)}")
    preds, run = _predict(root, dataset, run_id)
    data, traits = _join_outcomes(preds, table, run_id)
    res = outcome_analysis(data, outcome, traits, controls, n_iter=n_iter, seed=seed)

    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in run_id)
    prefix = f"outcomes-{safe}"
    factor, png = _write_tables(store, prefix, res, traits, title=f"parallel analysis ({run['model']} traits)")
    md = "\n".join([
        f"# Predicted traits and `{outcome}` — run `{run_id}` ({run['model']}, {run['task']}) on `{dataset}`\n",
        f"{len(data)} rows; controls: {', '.join(controls) or 'none'}. Each trait enters alone with the controls "
        "(the traits are correlated); * p < 0.1, ** p < 0.05, *** p < 0.01; standard errors in parentheses; "
        "McFadden pseudo-R².\n",
        markdown_table(_wide_regressions(res.regressions, traits)),
        f"\n**Factor analysis**: overall KMO = {res.kmo:.3f}; parallel analysis suggests {res.parallel.n_factors} "
        f"factor(s); the one-factor principal-axis solution explains {res.factor.variance_explained:.1%} of the "
        "traits' variance.\n",
        markdown_table(factor.to_dict("records")),
        f"![scree]({png})\n",
    ])
    report = store.write_report(f"{prefix}.md", md)
    publish_table(f"{dataset}-{prefix}", res.regressions.to_dict("records"),
                  f"logit / probit of {outcome} on predicted traits")
    publish_markdown(f"{dataset}-{prefix}-report", md, f"decision support: {outcome} ~ traits of run {run_id}")
    get_run_logger().info("analyze-outcomes %s on %s: %d rows, KMO %.3f, %d factor(s) in %.1fs", run_id, dataset,
                          len(data), res.kmo, res.parallel.n_factors, time.perf_counter() - t0)
    return {
        "run_id": run_id, "n": int(len(data)), "traits": traits,
        "regressions": json.loads(res.regressions.to_json(orient="records")),  # plain types, NaN → null
        "vif": {k: float(v) for k, v in res.vif.items()}, "msa": {k: float(v) for k, v in res.msa.items()},
        "kmo": res.kmo, "n_factors": res.parallel.n_factors,
        "loadings": {k: float(v) for k, v in res.factor.loadings.items()},
        "report": str(report), "tables": [f"{prefix}-regressions", f"{prefix}-factor", f"{prefix}-scree"],
    }
