"""The end-to-end demo: every stage on a generated dataset, through Prefect flows, on the embedded defaults.

``vidpipe demo`` (and ``make demo``) = ingest a synthetic dataset with planted signals → extract features → pre-train
the song–video GAT → compare the three headline models with a few baselines on their tasks (training each with the
one engine) → interpretability report. Every stage is cached by fingerprint and every training run is reused when its
settings and inputs are unchanged, so a second run does no decoding and no training.
"""

from __future__ import annotations

import time
from typing import Annotated, Optional

from prefect import flow, get_run_logger
from pydantic import Field

from pipelines.compare import compare_models
from pipelines.extract import extract_features
from pipelines.graph import pretrain_graph
from pipelines.ingest import ingest

__all__ = ["demo", "DEMO_MODELS"]

#: per task: the headline model first, then the baselines the demo compares it with (a CPU-sized selection of
#: pipelines.compare.DEFAULT_MODELS; ``sec2sec-attn`` is the variant whose attention the report plots)
DEMO_MODELS = {
    "emotion": ["sec2sec", "sec2sec-attn", "avm"],
    "personality": ["mcat", "late-fusion", "vatt"],
    "popularity": ["van", "late-fusion", "mtaf"],
}


@flow(name="demo", validate_parameters=True)
def demo(
    root: Optional[str] = None,
    dataset: str = "demo",
    videos: Annotated[int, Field(ge=40, le=2000)] = 120,
    seed: int = 0,
    epochs: Annotated[int, Field(ge=1, le=1000)] = 12,
    graph_epochs: Annotated[int, Field(ge=1, le=10_000)] = 100,
) -> dict:
    """Run every stage on a synthetic dataset; return the comparison tables, timings and the report's path.

    Args:
        videos: synthetic videos to generate (at least 40: the graph needs a few dozen song links to split).
        epochs: training epochs per model; graph_epochs: GAT pre-training epochs.
    """
    logger = get_run_logger()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(name: str, fn, **kw):
        t = time.perf_counter()
        out = fn(**kw)
        timings[name] = round(time.perf_counter() - t, 2)
        return out

    timed("ingest", ingest, dataset=dataset, source="synthetic", root=root, videos=videos, seed=seed)
    extraction = timed("extract", extract_features, dataset=dataset, root=root)
    graph = timed("pretrain-graph", pretrain_graph, dataset=dataset, root=root, epochs=graph_epochs, seed=seed)
    comparison = timed("compare", compare_models, dataset=dataset, root=root, task="all", models=DEMO_MODELS,
                       epochs=epochs, seed=seed, ig_steps=16, max_videos=32)
    logger.info("demo finished in %.1fs; report: %s", time.perf_counter() - t0, comparison["report"])
    return {"dataset": dataset, "tables": comparison["tables"],
            "graph": {k: graph[k] for k in ("val_auc", "test_auc", "cached")},
            "failed_videos": extraction["failed_videos"], "report": comparison["report"],
            "timings": timings, "seconds": round(time.perf_counter() - t0, 2)}
