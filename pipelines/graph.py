"""Stage ``graph``: pre-train a GAT on the song–video bipartite graph by link prediction, store one embedding per video.

Flow :func:`pretrain_graph`: build the graph from the store's edge list (and optional cached node features), pre-train
(:func:`models.gat.pretrain_link_prediction`), freeze, embed every video and song, and commit the embeddings as the
dataset-level ``graph`` artifact (read per video with ``store.read("graph", video_id)["embedding"]``, like any other
modality) together with the encoder checkpoint.

Fingerprint = hash(graph content digest, node-feature choice and its inputs, GAT hyper-parameters, seed). A rerun with
the same inputs does nothing and returns the stored metrics; a data refresh that changes the graph (new videos, new
songs, changed edges) retrains and says what changed.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Annotated, Literal, Optional

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from pydantic import Field

from features.fingerprint import fingerprint
from features.packs import node_features
from features.schema import GRAPH_ARTIFACT, GRAPH_SONGS_ARTIFACT
from features.store import Store
from pipelines.flow_io import DatasetName, publish_table, store_for

__all__ = ["pretrain_graph", "GRAPH_VERSION", "graph_embeddings"]

GRAPH_VERSION = 1
NodeFeatures = Literal["none", "metadata", "audio"]


@task(cache_policy=NONE, persist_result=False, name="pretrain-gat")
def _pretrain(root: Optional[str], dataset: str, features: str, gat: dict, refresh: bool) -> dict:
    from features.graph import build_graph, graph_digest
    from models.gat import GATConfig, embed, pretrain_link_prediction, save_encoder

    logger = get_run_logger()
    store = store_for(root, dataset)
    manifest = store.manifest()
    video_ids = sorted(manifest["video_id"])
    edges = store.edges()
    edges = edges[edges["video_id"].isin(set(video_ids))]
    x, feat_fps = node_features(store, video_ids, features)
    graph = build_graph(edges, video_ids, video_features=x)
    cfg = GATConfig(**gat)
    fp = fingerprint(GRAPH_ARTIFACT, GRAPH_VERSION, {"features": features, "gat": dataclasses.asdict(cfg)},
                     [graph_digest(graph), *feat_fps])
    previous = store.artifact_fingerprint(GRAPH_ARTIFACT)
    if previous == fp and not refresh:
        _, meta = store.read_artifact(GRAPH_ARTIFACT)
        logger.info("graph %s: inputs unchanged (%s), nothing to do", dataset, fp[:12])
        return {**meta["metrics"], "epochs": meta["epochs"], "seconds": meta["seconds"], "cached": True,
                "fingerprint": fp, "changes": "none"}
    changes = "first run"
    if previous is not None:
        _, old = store.read_artifact(GRAPH_ARTIFACT)
        old_ids, old_edges = set(old.get("video_ids", [])), old.get("n_edges")
        added, removed = len(set(video_ids) - old_ids), len(old_ids - set(video_ids))
        changes = (f"+{added} / -{removed} videos, edges {old_edges} -> {len(edges)}" if (added or removed
                   or old_edges != len(edges)) else "same graph, other features or hyper-parameters")
    logger.info("graph %s: training (%s); %d videos, %d songs, %d edges, %d videos without a song", dataset,
                changes, len(graph.video_ids), len(graph.song_ids), len(edges), len(graph.isolated_videos))
    result = pretrain_link_prediction(graph, cfg)
    emb = embed(result.encoder, graph)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "encoder.pt"
        save_encoder(ckpt, result)
        blob = ckpt.read_bytes()
    meta = {"video_ids": graph.video_ids, "song_ids": graph.song_ids, "metrics": result.metrics,
            "epochs": result.epochs, "seconds": result.seconds, "config": dataclasses.asdict(cfg),
            "features": features, "n_edges": int(len(edges)), "isolated_videos": graph.isolated_videos,
            "isolated_songs": graph.isolated_songs, "history": result.history}
    store.write_artifact(GRAPH_SONGS_ARTIFACT, fp, arrays={"embedding": emb["song"]}, meta={"song_ids": graph.song_ids})
    store.write_artifact(GRAPH_ARTIFACT, fp, arrays={"embedding": emb["video"]}, meta=meta, files={"encoder.pt": blob})
    return {**result.metrics, "epochs": result.epochs, "seconds": result.seconds, "cached": False,
            "fingerprint": fp, "changes": changes}


@flow(name="pretrain-graph", validate_parameters=True)
def pretrain_graph(
    dataset: DatasetName,
    root: Optional[str] = None,
    features: NodeFeatures = "none",
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 100,
    hidden: Annotated[int, Field(ge=1, le=4096)] = 64,
    out: Annotated[int, Field(ge=1, le=4096)] = 32,
    heads: Annotated[int, Field(ge=1, le=64)] = 4,
    layers: Annotated[int, Field(ge=1, le=8)] = 2,
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3,
    loss: Literal["mse", "bce"] = "mse",
    minibatch: bool = False,
    seed: int = 0,
    refresh: bool = False,
) -> dict:
    """Pre-train the song–video GAT by link prediction and store frozen video/song embeddings (stage ``graph``).

    Args:
        dataset: the store's name (its manifest and edge list come from ``vidpipe ingest``).
        features: video node inputs: ``none`` (structure only), ``metadata`` or ``audio`` (cached stages).
        epochs, hidden, out, heads, layers, lr, loss, seed: GAT / training hyper-parameters (paper defaults: MSE loss,
            heads concatenated, 80/10/10 link split, 60/40 message/supervision, negatives at 50%).
        minibatch: train with ``LinkNeighborLoader`` for graphs that do not fit full-batch.
        refresh: retrain even when nothing changed.

    Returns:
        ``{"val_auc", "test_auc", "val_mse", "test_mse", "epochs", "seconds", "cached", "fingerprint", "changes"}``.
    """
    t0 = time.perf_counter()
    store = store_for(root, dataset)
    if store.manifest().empty:
        raise ValueError(f"dataset={dataset!r}: the manifest is empty: run `vidpipe ingest {dataset} ...` first")
    if store.edges().empty:
        raise ValueError(f"dataset={dataset!r} has no song–video edges (only TikTok-style sources record songs)")
    gat = {"epochs": epochs, "hidden": hidden, "out": out, "heads": heads, "layers": layers, "lr": lr,
           "loss": loss, "minibatch": minibatch, "seed": seed}
    with store.lock():
        result = _pretrain(root, dataset, features, gat, refresh)
    result["wall_seconds"] = round(time.perf_counter() - t0, 3)
    publish_table(f"{dataset}-graph", [{k: v for k, v in result.items() if k != "fingerprint"}],
                  f"GAT link-prediction pre-training on {dataset}")
    return result


def graph_embeddings(store: Store) -> pd.DataFrame:
    """The stored video embeddings as a DataFrame indexed by video id (for notebooks)."""
    arrays, meta = store.read_artifact(GRAPH_ARTIFACT)
    return pd.DataFrame(arrays["embedding"], index=pd.Index(meta["video_ids"], name="video_id"))
