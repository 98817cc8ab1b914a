"""The song–video bipartite graph (VAN, thesis Ch. 4.3.1 "Network Embedding"), built as a PyG ``HeteroData``.

Pure: tables and arrays in, a graph out; no disk I/O. The pipeline reads the song–video edge list the adapters
record (and, optionally, cached per-video features) from the store and hands them here.

Graph: ``G = {(s, v) | s ∈ S, v ∈ V}``, an edge ``e_{s,v} = 1`` when video ``v`` uses song ``s`` as its background
music. Two node types, ``"song"`` and ``"video"``, and the edge in both directions, ``("video", "uses", "song")`` and
``("song", "rev_uses", "video")``, so that messages flow both ways in a heterogeneous GNN.

Node input features (the papers leave the choice open; these are the documented choices):

* videos: the caller's ``video_features`` (|V_video|, D) — e.g. pooled audio/visual features or metadata, aligned
  with ``video_ids`` — or, when None, a constant 1-vector (|V_video|, 1). The constant keeps every video
  distinguishable only through its edges, which is exactly the paper's setting (its "raw video features" are not
  specified).
* songs: the mean of their videos' features, ``x_s = (1/|N_s|) Σ_{v ∈ N_s} x_v`` (zeros for a song without
  videos). A mean rather than a sum keeps the scale independent of song popularity and of how many edges a split
  keeps. Learned per-song embeddings are the encoder's business (``models.gat.GATConfig.song_embedding``), not
  the graph's. Note that the mean here uses *all* edges; link-prediction pre-training recomputes it from the
  message-passing edges of each split so held-out videos do not leak into song inputs.

Isolated nodes (a video without a song, a song without videos) stay in the graph — every video needs an embedding —
and are listed in ``SongVideoGraph.isolated_videos`` / ``isolated_songs`` so the flow can report them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData
from torch_geometric.utils import scatter

from names import REV_USES, SONG, USES, VIDEO

__all__ = ["SONG", "VIDEO", "USES", "REV_USES", "SongVideoGraph", "build_graph", "graph_digest"]


_DIGEST_VERSION = "song-video-graph@1"


@dataclass(kw_only=True)
class SongVideoGraph:
    """A song–video graph with the node ids that index it.

    Shapes:
        - ``data["video"].x``: (|V_video|, D) float32
        - ``data["song"].x``: (|V_song|, D) float32
        - ``data["video", "uses", "song"].edge_index``: (2, |E|) int64, rows (video index, song index)
        - ``data["song", "rev_uses", "video"].edge_index``: (2, |E|) int64, rows (song index, video index)
    """

    data: HeteroData  # the PyG graph; node i of a type is ids[i] of that type
    video_ids: list[str]  # video id of each video node, in node order (= the caller's video_ids order)
    song_ids: list[str]  # song id of each song node, in node order
    isolated_videos: list[str]  # videos without any song (still nodes; embedded from their own features)
    isolated_songs: list[str]  # songs without any video (only possible when song_ids is given)


def _as_ids(values: Sequence[str], *, name: str) -> list[str]:
    """Ids as a list of str; ValueError on duplicates or missing values."""
    if isinstance(values, str):
        raise ValueError(f"{name} must be a sequence of ids, got the single string {values!r}")
    ids = [str(v) for v in values]
    if any(pd.isna(v) for v in values):
        raise ValueError(f"{name} contains missing values; expected one id per node")
    seen: set[str] = set()
    dupes = sorted({i for i in ids if i in seen or seen.add(i)})
    if dupes:
        raise ValueError(f"{name} has duplicate ids {dupes[:10]}; expected unique ids")
    return ids


def _unknown(ids: pd.Series, known: dict[str, int], *, name: str) -> None:
    """Raise ValueError listing ids of ``ids`` that are not keys of ``known``."""
    unknown = sorted(set(ids) - known.keys())
    if unknown:
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise ValueError(f"edges.{name} has ids not in {name}s: {unknown[:10]}{more}")


def build_graph(
    edges: pd.DataFrame,
    video_ids: Sequence[str],
    song_ids: Sequence[str] | None = None,
    video_features: np.ndarray | None = None,
) -> SongVideoGraph:
    """Build the bipartite song–video ``HeteroData`` from an edge table.

    Args:
        edges: one row per (video, song) use, columns ``video_id`` and ``song_id``; duplicate rows are dropped.
            Ids are compared as strings. A video may use several songs (the paper's data has exactly one).
        video_ids: every video node, in the order of ``video_features``; videos absent from ``edges`` become
            isolated nodes.
        song_ids: every song node, in node order; None → the sorted distinct songs of ``edges``.
        video_features: (|V_video|, D) finite features aligned with ``video_ids``; None → a constant 1-vector.

    Returns:
        The graph, with song features = mean of their videos' features (zeros for songs without videos).

    Shapes:
        - video_features: (|V_video|, D)
        - result.data["video"].x: (|V_video|, D), or (|V_video|, 1) when video_features is None
        - result.data["song"].x: (|V_song|, D)
        - result.data[USES].edge_index, result.data[REV_USES].edge_index: (2, |E|), sorted by (video, song)

    Raises:
        ValueError: missing columns, missing values, duplicate ids, edge ids that are not nodes, or features of the
            wrong shape or with non-finite values.
    """
    if not isinstance(edges, pd.DataFrame) or not {"video_id", "song_id"} <= set(edges.columns):
        cols = list(edges.columns) if isinstance(edges, pd.DataFrame) else type(edges).__name__
        raise ValueError(f"edges must be a DataFrame with columns 'video_id' and 'song_id', got {cols}")
    if edges[["video_id", "song_id"]].isna().to_numpy().any():
        raise ValueError("edges has missing video_id or song_id values; expected one id per cell")
    table = edges[["video_id", "song_id"]].astype(str).drop_duplicates()

    videos = _as_ids(video_ids, name="video_ids")
    songs = _as_ids(song_ids, name="song_ids") if song_ids is not None else sorted(set(table["song_id"]))
    video_index = {v: i for i, v in enumerate(videos)}
    song_index = {s: i for i, s in enumerate(songs)}
    _unknown(table["video_id"], video_index, name="video_id")
    _unknown(table["song_id"], song_index, name="song_id")

    if video_features is None:
        x_video = torch.ones(len(videos), 1)
    else:
        feats = np.asarray(video_features)
        if feats.ndim != 2 or feats.shape[0] != len(videos):
            raise ValueError(
                f"video_features must have shape (len(video_ids)={len(videos)}, D), got {feats.shape}"
            )
        if not np.issubdtype(feats.dtype, np.number) or not np.isfinite(feats).all():
            raise ValueError("video_features must be finite numbers (no NaN/inf); impute before building the graph")
        x_video = torch.tensor(feats, dtype=torch.float32)  # a copy: the caller's array is never aliased

    v_idx = torch.tensor(table["video_id"].map(video_index).to_numpy(dtype=np.int64), dtype=torch.long)
    s_idx = torch.tensor(table["song_id"].map(song_index).to_numpy(dtype=np.int64), dtype=torch.long)
    order = torch.argsort(v_idx * max(len(songs), 1) + s_idx)  # canonical edge order: by (video, song)
    edge_index = torch.stack([v_idx[order], s_idx[order]])

    # x_s = mean_{v ∈ N(s)} x_v; scatter-mean leaves songs without edges at 0.
    x_song = scatter(x_video[edge_index[0]], edge_index[1], dim=0, dim_size=len(songs), reduce="mean")

    data = HeteroData()
    data[VIDEO].x = x_video
    data[VIDEO].num_nodes = len(videos)
    data[SONG].x = x_song
    data[SONG].num_nodes = len(songs)
    data[USES].edge_index = edge_index
    data[REV_USES].edge_index = edge_index.flip(0)

    linked_videos = set(table["video_id"])
    linked_songs = set(table["song_id"])
    return SongVideoGraph(
        data=data,
        video_ids=videos,
        song_ids=songs,
        isolated_videos=[v for v in videos if v not in linked_videos],
        isolated_songs=[s for s in songs if s not in linked_songs],
    )


def graph_digest(graph: SongVideoGraph) -> str:
    """Content hash of a graph, independent of node and edge order (for the stage fingerprint).

    Hashes ``stage@version``, the sorted song ids, the sorted (video id, song id) edge set, and each video's id with
    its feature row (float32 bytes) in sorted-id order, plus the feature shape. Song features are derived from
    those, so they are not hashed separately. Two graphs built from the same tables in any row order hash equal;
    changing an edge, an id, or one feature value changes the digest.

    Shapes:
        - graph.data["video"].x: (|V_video|, D)
    """
    h = hashlib.blake2b(digest_size=16)

    def _put(part: bytes) -> None:
        h.update(len(part).to_bytes(8, "little"))  # length-prefixed, so concatenations can't collide
        h.update(part)

    _put(_DIGEST_VERSION.encode())
    x_video = graph.data[VIDEO].x.detach().to(torch.float32).contiguous()
    _put(repr(tuple(x_video.shape)).encode())
    for sid in sorted(graph.song_ids):
        _put(sid.encode())
    src, dst = graph.data[USES].edge_index.tolist()
    for vid, sid in sorted((graph.video_ids[v], graph.song_ids[s]) for v, s in zip(src, dst, strict=True)):
        _put(f"{vid}\x00{sid}".encode())
    rows = x_video.numpy().astype("<f4", copy=False)
    for i in sorted(range(len(graph.video_ids)), key=graph.video_ids.__getitem__):
        _put(graph.video_ids[i].encode())
        _put(rows[i].tobytes())
    return h.hexdigest()
