"""GAT encoder for the song–video graph and its link-prediction pre-training (VAN, thesis Ch. 4.3.1 and 4.4.5).

Read top-down: helpers → blocks (encoder, decoder) → config → pre-training → embedding → checkpoints.

The graph is the bipartite ``HeteroData`` of ``features.graph.build_graph`` (node types ``"song"``, ``"video"``;
edges ``("video", "uses", "song")`` and ``("song", "rev_uses", "video")``). This module only relies on that layout,
not on the ``features`` package (``models`` does not import ``features``; see docs/ARCHITECTURE.md).

Paper → code, and the choices where the paper is silent or inconsistent:

* Attention (eq. 4.4): ``α_{s,v} = softmax_{v ∈ N(s)} σ(aᵀ [W^S h_s ‖ W^V h_v])`` is PyG's bipartite ``GATConv``
  (``lin_dst`` = W^S, ``lin_src`` = W^V, σ = LeakyReLU(0.2)), video → song; ``add_self_loops=False``
  because a song is not its own neighbour in a bipartite graph.
* Aggregation and heads (eqs. 4.5–4.6): ``z_s = ‖_{k=1}^{K} σ(Σ_{v ∈ N(s)} α^k_{s,v} W^V_k h_v)`` — heads are
  concatenated (``concat=True``); σ = ELU between layers, none after the last so the embedding can take any sign.
  A per-type root (self) term ``R h`` is added, so a song without videos still has an embedding.
* Videos: the paper says a video's embedding "is equal to its corresponding song" (each video has one song). The
  encoder gives each video an embedding of its own features, ``z_v`` (no messages reach videos: see
  ``GraphEncoder`` for why), trained so that ``⟨z_v, z_s⟩`` is high for its song. ``embed`` stores
  ``[z_v ‖ mean_{s ∈ songs(v)} z_s]`` (width 2·out): the second half is the paper's embedding, the first half is
  what a video without a song still has (its second half is 0).
* Input projections: separate linear maps for song and video inputs to ``hidden`` ("two separate linear
  transformations"); with ``song_embedding`` a learned per-song vector (``nn.Embedding``) is added to the song's
  projected input, which lets link prediction learn song identity/popularity even when video features are "none".
  The price: the encoder is tied to the song set it was trained on (``embed`` checks the count).
* Song degree (``song_degree``, default on): the paper's "raw song features" ``h^S`` are not specified (4.3.1); we
  append each song's degree over the message-passing links, relative to the mean degree
  (``log(1 + deg(s)·|V_song|/|E|)``), to its input. Why: eq. 4.4's softmax makes ``Σ_v α_{s,v} = 1``, so a song's
  aggregate is a weighted *mean* of its videos and cannot count them; with featureless videos (every ``z_v`` equal)
  a held-out link can only be ranked by its song, i.e. by how often the song is used (preferential attachment, the
  heuristic GNNs are known to miss, Li et al. 2023, the thesis' ref. [50]). Without the degree only the per-song
  vector, trained on the 40 % supervision links, can learn it. Measured on the 160-video synthetic graph (152 links,
  5 link splits, tests/pipelines/test_mechanisms.py): test AUC 0.79 [0.65, 0.93] with the degree, 0.73 [0.55, 0.90]
  without, the degree score deg(s) itself 0.79 [0.64, 0.95]. The degree also puts the song's usage, which carries
  its popularity, into the stored embedding.
* Decoder: the paper only writes ``p(s, v) = GAT(s, v | G, h^S, h^V, Φ)`` (eq. 4.14). Default is the inner product
  ``p = sigmoid(⟨z_v, z_s⟩)`` (graph auto-encoder decoder); ``decoder="mlp"`` scores ``[z_v ‖ z_s ‖ z_v ⊙ z_s]``.
* Split (Ch. 4.4.5): links 80/10/10 train/val/test; of the training links 60% carry messages and 40% are
  supervision labels (``disjoint_train_ratio=0.4``); negatives at 50% of the positives; MSE loss on sigmoid scores.
  The paper's counts do not match its own ratios: 47,670 + 31,780 = 79,450 ≈ 0.9 × 88,279 (60/40 of 90%, not of
  80%), and its 23,835 negatives are 50% of the *message-passing* links (= 75% of the supervision links). We follow
  the stated ratios: 80/10/10, 60/40, negatives = 50% of the supervision (or val/test) positives.
* Negatives: ``negatives="uniform"`` (default) is the paper's / PyG's scheme — random (video, song) pairs that are
  not links; ``RandomLinkSplit`` draws the fixed val/test ones, training ones are redrawn every epoch (the paper
  does not say; a fixed set is easier to overfit). ``negatives="song"`` corrupts positives instead (keep the video,
  draw another song). Why offer it: each video has one song, so uniform negatives almost always pick a video whose
  own link is in the message graph, while every positive's video has none. An encoder that lets songs message
  videos can read that off; we measured a model *without any video features* at test AUC 0.86–1.0 that way on a
  planted graph. This encoder sends no messages to videos, so both schemes measure song matching here (feature-less
  ≈ 0.5–0.7, i.e. song popularity; planted features ≈ 0.9); "song" keeps the metric honest if that changes.
* Leakage: ``RandomLinkSplit`` is given ``rev_edge_types`` so reverse edges follow their forward edge. Song input
  features (mean of their videos' features) are recomputed per split from that split's message-passing edges, so a
  held-out video's features never reach a song's input.
* Learning rate: the paper's 5e-6 (Table 4.1) is for the end-to-end VAN with batch 256; full-batch GAT pre-training
  for 100 epochs needs a larger step, so the default is 1e-3 (Adam). At 1e-2 the MSE loss on sigmoid scores drove
  featureless graphs into saturation (every score near 0, training loss rising to 0.65 ≈ the positives' share,
  where the sigmoid's gradient vanishes; test AUC 0.49 [0.36, 0.63] over 5 splits of that graph); at 1e-3 the loss
  fell on each of the 6 splits we traced.
"""

from __future__ import annotations

import copy
import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import torch_geometric.typing
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATConv
from torch_geometric.transforms import RandomLinkSplit
from torch_geometric.utils import negative_sampling, scatter

from names import REV_USES, SONG, USES, VIDEO

__all__ = [
    "GATConfig",
    "GraphEncoder",
    "LinkDecoder",
    "PretrainResult",
    "pretrain_link_prediction",
    "embed",
    "save_encoder",
    "load_encoder",
]

_CHECKPOINT_FORMAT = "vidpipe.gat@1"


# ----------------------------------------------------------------------------------------------------- helpers


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch and Python ``random`` (PyG's negative sampling uses it) inside the block; restore both after.

    PyG's ``negative_sampling`` draws from the process-wide ``random`` module, which other threads share: under a
    Prefect flow the client's event-loop thread calls ``random.getrandbits`` at an arbitrary moment, and a draw that
    lands inside training shifts every later negative sample (found by tests/reliability: the same seed gave two
    different GATs in about one run in four). Inside the block PyG's sampler therefore gets a private
    ``random.Random(seed)`` (same sequence as the seeded module when nobody else draws), so no thread can shift it.
    """
    from torch_geometric.utils import _negative_sampling as pyg_neg

    py_state = random.getstate()
    shared = pyg_neg.random
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        pyg_neg.random = random.Random(seed)
        try:
            yield
        finally:
            pyg_neg.random = shared
            random.setstate(py_state)


def _song_means(data: HeteroData) -> HeteroData:
    """A shallow copy of ``data`` whose song inputs are the mean of their videos' inputs over ``data``'s edges.

    ``x_s = (1/|N(s)|) Σ_{v ∈ N(s)} x_v``, 0 for a song without edges — the same rule as
    ``features.graph.build_graph``, applied to the message-passing edges of one split; ``result["song"].degree``
    holds each song's relative degree over those edges (see ``_relative_degree``).

    Shapes:
        - data["video"].x: (|V_video|, D) → result["song"].x: (|V_song|, D), result["song"].degree: (|V_song|, 1)
    """
    out = copy.copy(data)
    ei = data[USES].edge_index
    out[SONG].x = scatter(data[VIDEO].x[ei[0]], ei[1], dim=0, dim_size=data[SONG].num_nodes, reduce="mean")
    out[SONG].degree = _relative_degree(ei, data[SONG].num_nodes)  # mini-batches sample part of the edges
    return out


def _relative_degree(edge_index: Tensor, num_songs: int) -> Tensor:
    """``log(1 + deg(s) · |V_song| / |E|)``: each song's degree over the given edges relative to the mean degree.

    Relative, so the message graphs of training (48 % of the links), evaluation (90 %) and embedding (all links)
    put a song of the same usage share at the same value.

    Shapes:
        - edge_index: (2, |E|) rows (video, song) → (|V_song|, 1)
    """
    deg = torch.bincount(edge_index[1], minlength=num_songs).to(torch.float32)
    return torch.log1p(deg * num_songs / max(edge_index.size(1), 1)).unsqueeze(1)


def _loss(logits: Tensor, labels: Tensor, kind: str) -> Tensor:
    """``mse``: mean (sigmoid(logit) − y)² (paper); ``bce``: binary cross-entropy on the logits.

    Shapes:
        - logits, labels: (|E|,) → scalar
    """
    if kind == "mse":
        return F.mse_loss(torch.sigmoid(logits), labels)
    return F.binary_cross_entropy_with_logits(logits, labels)


def _check_graph(data: HeteroData, *, name: str = "graph") -> None:
    """ValueError unless ``data`` has the song/video layout this module expects."""
    missing = [t for t in (VIDEO, SONG) if t not in data.node_types or "x" not in data[t]]
    missing += [str(e) for e in (USES, REV_USES) if e not in data.edge_types]
    if missing:
        raise ValueError(f"{name} lacks {missing}; expected the HeteroData of features.graph.build_graph")


# ------------------------------------------------------------------------------------------------------ blocks


class GraphEncoder(nn.Module):
    """Bipartite GAT: songs attend over the videos that use them; videos embed their own features.

    Inputs: ``h⁰_v = W_V x_v`` and ``h⁰_s = W_S [x_s ‖ d_s] (+ E[s] with song_embedding)``, ``d_s`` the relative
    degree (with song_degree). Per layer ℓ (eqs. 4.4–4.6)::

        α^k_{s,v} = softmax_{v ∈ N(s)} LeakyReLU(a_kᵀ [W^S_k h^ℓ_s ‖ W^V_k h^ℓ_v])
        h^{ℓ+1}_s = σ( ‖_{k=1}^{K} Σ_{v ∈ N(s)} α^k_{s,v} W^V_k h^ℓ_v  +  R^ℓ_S h^ℓ_s )
        h^{ℓ+1}_v = σ( R^ℓ_V h^ℓ_v )

    σ = ELU between layers, identity after the last. Messages flow video → song only (the paper defines only the
    song aggregation). A song→video message would pass through weights that disjoint link-prediction never trains:
    the supervised videos are exactly those whose one edge is held out, so they never receive a message (we
    measured zero gradient on that last-layer GATConv). Video embeddings therefore never depend on the edges, and a
    video's link to its song enters the stored embedding in ``embed`` (``[z_v ‖ z_song(v)]``). With a single
    relation, the bipartite ``GATConv`` (separate ``lin_src``/``lin_dst``) already is the heterogeneous layer;
    ``HeteroConv``/``to_hetero`` would only add a wrapper (and a warning that videos receive no messages). Add
    ``HeteroConv`` when a second relation (e.g. creators) arrives.

    Shapes:
        - x_dict["video"]: (|V_video|, D_video), x_dict["song"]: (|V_song|, D_song)
        - edge_index_dict[("video","uses","song")]: (2, |E|) rows (video, song); other relations are ignored
        - song_ids (optional): (|V_song|,) global song index of each song node (mini-batches)
        - song_degree (optional): (|V_song|, 1) relative degree of each song node over the split's message-passing
          links (mini-batches, whose sampled subgraph holds only part of them); None → from ``edge_index_dict``
        - returns {"video": (|V_video|, out), "song": (|V_song|, out)}
    """

    def __init__(self, cfg: GATConfig, *, video_dim: int, song_dim: int, num_songs: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.video_dim = video_dim
        self.song_dim = song_dim
        self.num_songs = num_songs
        extra = 1 if cfg.song_degree else 0  # the song's relative degree, appended to its input
        self.proj = nn.ModuleDict({VIDEO: nn.Linear(video_dim, cfg.hidden),
                                   SONG: nn.Linear(song_dim + extra, cfg.hidden)})
        self.song_emb = nn.Embedding(num_songs, cfg.hidden) if cfg.song_embedding else None
        if self.song_emb is not None:
            nn.init.normal_(self.song_emb.weight, std=0.1)
        widths = [cfg.hidden] * cfg.layers + [cfg.out]
        self.convs = nn.ModuleList()
        self.roots = nn.ModuleList()
        for d_in, d_out in zip(widths[:-1], widths[1:], strict=True):
            gat = GATConv((d_in, d_in), d_out // cfg.heads, heads=cfg.heads, concat=True,
                          dropout=cfg.dropout, add_self_loops=False)
            self.convs.append(gat)
            self.roots.append(nn.ModuleDict({t: nn.Linear(d_in, d_out, bias=False) for t in (VIDEO, SONG)}))

    def forward(
        self,
        x_dict: dict[str, Tensor],
        edge_index_dict: dict[Any, Tensor],
        song_ids: Tensor | None = None,
        song_degree: Tensor | None = None,
    ) -> dict[str, Tensor]:
        edge_index = edge_index_dict[USES]
        x_song = x_dict[SONG]
        if self.cfg.song_degree:
            deg = song_degree if song_degree is not None else _relative_degree(edge_index, x_song.size(0))
            x_song = torch.cat([x_song, deg], dim=1)
        h = {VIDEO: self.proj[VIDEO](x_dict[VIDEO]), SONG: self.proj[SONG](x_song)}
        if self.song_emb is not None:
            ids = song_ids if song_ids is not None else torch.arange(h[SONG].size(0), device=h[SONG].device)
            h[SONG] = h[SONG] + self.song_emb(ids)
        last = len(self.convs) - 1
        for i, (conv, root) in enumerate(zip(self.convs, self.roots, strict=True)):
            msg = conv((h[VIDEO], h[SONG]), edge_index)  # (|V_song|, d_out): messages into songs only
            h = {VIDEO: root[VIDEO](h[VIDEO]), SONG: msg + root[SONG](h[SONG])}
            if i < last:
                h = {t: F.dropout(F.elu(v), p=self.cfg.dropout, training=self.training) for t, v in h.items()}
        return h


class LinkDecoder(nn.Module):
    """Scores song–video pairs from their embeddings; returns logits (p = sigmoid(logit)).

    ``dot``: ``logit(v, s) = ⟨z_v, z_s⟩`` (default; the paper does not specify its decoder).
    ``mlp``: ``logit(v, s) = MLP([z_v ‖ z_s ‖ z_v ⊙ z_s])``.

    Shapes:
        - z_video: (|V_video|, D), z_song: (|V_song|, D), edge_label_index: (2, |E|) rows (video, song)
        - returns (|E|,)
    """

    def __init__(self, *, dim: int, kind: Literal["dot", "mlp"] = "dot") -> None:
        super().__init__()
        if kind not in ("dot", "mlp"):
            raise ValueError(f"kind must be 'dot' or 'mlp', got {kind!r}")
        self.kind = kind
        self.mlp = (
            nn.Sequential(nn.Linear(3 * dim, dim), nn.ReLU(), nn.Linear(dim, 1)) if kind == "mlp" else None
        )

    def forward(self, z_video: Tensor, z_song: Tensor, edge_label_index: Tensor) -> Tensor:
        zv, zs = z_video[edge_label_index[0]], z_song[edge_label_index[1]]
        if self.mlp is None:
            return (zv * zs).sum(dim=-1)
        return self.mlp(torch.cat([zv, zs, zv * zs], dim=-1)).squeeze(-1)


# ------------------------------------------------------------------------------------------------------ config


@dataclass(kw_only=True)
class GATConfig:
    """Hyper-parameters of the GAT encoder and of link-prediction pre-training (defaults: paper where it says)."""

    hidden: int = 64  # width of the input projections and hidden GAT layers (heads concatenated)
    out: int = 32  # embedding width D written to the store (heads concatenated: out // heads per head)
    heads: int = 4  # attention heads per GAT layer, concatenated (paper: multi-head, concatenated; K = 4 in Tab. 4.1)
    layers: int = 2  # GAT layers; each lets songs re-attend over their videos' (deeper) states
    dropout: float = 0.0  # dropout on attention coefficients and between layers
    song_embedding: bool = True  # add a learned nn.Embedding per song to the song input (ties encoder to song set)
    song_degree: bool = True  # append the song's relative degree over the message-passing links to its input
    decoder: Literal["dot", "mlp"] = "dot"  # link decoder: inner product (default) or MLP
    lr: float = 1e-3  # Adam learning rate (paper's 5e-6 is for end-to-end VAN, too small for full-batch GAT)
    weight_decay: float = 0.0  # Adam weight decay
    epochs: int = 100  # maximum training epochs (paper: 100)
    patience: int | None = None  # stop after this many epochs without a better val AUC; None = run all epochs
    loss: Literal["mse", "bce"] = "mse"  # "mse" on sigmoid scores vs 0/1 labels (paper) or "bce"
    val_ratio: float = 0.1  # share of links held out for validation (paper: 10%)
    test_ratio: float = 0.1  # share of links held out for testing (paper: 10%)
    disjoint_train_ratio: float = 0.4  # share of training links used as supervision, not messages (paper: 40%)
    neg_sampling_ratio: float = 0.5  # negatives per positive supervision link (paper: 50%)
    negatives: Literal["uniform", "song"] = "uniform"  # "uniform": random non-link pairs (paper); "song": swap song
    seed: int = 0  # seeds the split, the initialisation and the negative sampling
    minibatch: bool = False  # train/evaluate with LinkNeighborLoader (needs pyg-lib or torch-sparse) not full-batch
    batch_size: int = 1024  # supervision links per mini-batch (minibatch=True only)
    num_neighbors: int = 20  # videos sampled per song in a mini-batch (one hop suffices: videos get no messages)

    def __post_init__(self) -> None:
        for name in ("hidden", "out", "heads", "layers", "epochs", "batch_size", "num_neighbors"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("hidden", "out"):
            if getattr(self, name) % self.heads:
                raise ValueError(f"{name}={getattr(self, name)} must be divisible by heads={self.heads}")
        if self.loss not in ("mse", "bce"):
            raise ValueError(f"loss must be 'mse' or 'bce', got {self.loss!r}")
        if self.negatives not in ("song", "uniform"):
            raise ValueError(f"negatives must be 'song' or 'uniform', got {self.negatives!r}")
        if self.decoder not in ("dot", "mlp"):
            raise ValueError(f"decoder must be 'dot' or 'mlp', got {self.decoder!r}")
        for name in ("val_ratio", "test_ratio", "disjoint_train_ratio", "dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if not 0.0 < self.val_ratio + self.test_ratio < 1.0 or min(self.val_ratio, self.test_ratio) <= 0.0:
            raise ValueError(
                f"val_ratio={self.val_ratio} and test_ratio={self.test_ratio} must be > 0 and sum to < 1"
            )
        if self.neg_sampling_ratio <= 0.0:
            raise ValueError(f"neg_sampling_ratio must be > 0, got {self.neg_sampling_ratio!r}")
        if self.lr <= 0.0 or self.weight_decay < 0.0:
            raise ValueError(
                f"lr must be > 0 and weight_decay >= 0, got lr={self.lr}, weight_decay={self.weight_decay}"
            )
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be None or >= 1, got {self.patience!r}")


# ------------------------------------------------------------------------------------------------- pre-training


@dataclass(kw_only=True)
class PretrainResult:
    """What link-prediction pre-training returns."""

    encoder: GraphEncoder  # trained encoder (best val-AUC state), in eval mode
    decoder: LinkDecoder  # trained link decoder, in eval mode
    metrics: dict[str, float]  # val_auc, test_auc, val_mse, test_mse (MSE of sigmoid scores vs 0/1 labels)
    epochs: int  # epochs actually run (< cfg.epochs after early stopping)
    seconds: float  # wall-clock training + evaluation time
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: epoch, loss, val_auc, val_mse, seconds
    config: GATConfig = field(default_factory=GATConfig)  # the configuration used (saved with the checkpoint)


@dataclass
class _Batch:
    """One step's inputs: a (sub)graph and the labelled pairs to score on it."""

    x_dict: dict[str, Tensor]  # node inputs of the (sub)graph
    edge_index_dict: dict[Any, Tensor]  # message-passing edges of the (sub)graph
    song_ids: Tensor | None  # global index of each song node (None: nodes are the whole graph, in order)
    song_degree: Tensor | None  # (|V_song|, 1) relative degree over the split's links (None: from the edges)
    edge_label_index: Tensor  # (2, |E|) pairs (video, song) in (sub)graph indices
    edge_label: Tensor  # (|E|,) 0/1 labels


def _negatives(pos: Tensor, known: Tensor, *, num_videos: int, num_songs: int, count: int, mode: str) -> Tensor:
    """Sample ``count`` negative (video, song) pairs for the positive pairs ``pos``.

    ``song``: keep a positive's video and swap in a song drawn uniformly from the *other* songs,
    ``s' = (s + U{1, …, |V_song|−1}) mod |V_song|``; pairs that are real links (``known``) are dropped.
    ``uniform``: uniform (video, song) pairs that are not in ``known`` (PyG ``negative_sampling``).

    Shapes:
        - pos: (2, |E_pos|), known: (2, |E_known|) → (2, ≤ count), rows (video, song)
    """
    if mode == "uniform":
        return negative_sampling(known, num_nodes=(num_videos, num_songs), num_neg_samples=count)
    n = pos.size(1)
    if n == 0 or count == 0:
        return pos.new_empty((2, 0))
    pick = torch.randperm(n)[:count] if count <= n else torch.randint(n, (count,))
    video = pos[0, pick]
    song = (pos[1, pick] + torch.randint(1, num_songs, (pick.numel(),))) % num_songs
    keep = ~torch.isin(video * num_songs + song, known[0] * num_songs + known[1])
    return torch.stack([video[keep], song[keep]])


def _with_negatives(data: HeteroData, pos: Tensor, known: Tensor, cfg: GATConfig) -> tuple[Tensor, Tensor]:
    """Positives plus ``round(neg_sampling_ratio · |E_pos|)`` negatives, with their 0/1 labels.

    Shapes:
        - pos: (2, |E_pos|), known: (2, |E_known|) → ((2, |E|), (|E|,))
    """
    count = max(1, round(cfg.neg_sampling_ratio * pos.size(1))) if pos.size(1) else 0
    neg = _negatives(pos, known, num_videos=data[VIDEO].num_nodes, num_songs=data[SONG].num_nodes,
                     count=count, mode=cfg.negatives)
    labels = torch.cat([torch.ones(pos.size(1)), torch.zeros(neg.size(1))])
    return torch.cat([pos, neg], dim=1), labels


def _labelled(data: HeteroData, cfg: GATConfig, *, train: bool) -> tuple[Tensor, Tensor]:
    """The pairs to score on a split: training draws fresh negatives each call; val/test use the split's fixed ones.

    Shapes:
        - returns ((2, |E|), (|E|,))
    """
    store = data[USES]
    if not train:
        return store.edge_label_index, store.edge_label
    known = torch.cat([store.edge_index, store.edge_label_index], dim=1)  # never call a training link negative
    return _with_negatives(data, store.edge_label_index, known, cfg)


def _batches(data: HeteroData, cfg: GATConfig, *, train: bool) -> Iterator[_Batch]:
    """One full-batch step, or ``LinkNeighborLoader`` mini-batches of the labelled pairs with their neighbourhoods."""
    edge_label_index, edge_label = _labelled(data, cfg, train=train)
    if not cfg.minibatch:
        yield _Batch(data.x_dict, data.edge_index_dict, None, None, edge_label_index, edge_label)
        return
    from torch_geometric.loader import LinkNeighborLoader  # only this path needs pyg-lib / torch-sparse

    loader = LinkNeighborLoader(
        data,
        # songs need their videos (1 hop); video states never depend on edges, so nothing else is sampled
        num_neighbors={USES: [cfg.num_neighbors], REV_USES: [0]},
        edge_label_index=(USES, edge_label_index),
        edge_label=edge_label,
        batch_size=cfg.batch_size,
        shuffle=train,
    )
    for batch in loader:
        yield _Batch(batch.x_dict, batch.edge_index_dict, batch[SONG].n_id, batch[SONG].degree,
                     batch[USES].edge_label_index, batch[USES].edge_label)


def _scores(encoder: GraphEncoder, decoder: LinkDecoder, batch: _Batch) -> Tensor:
    """Logits of the batch's labelled pairs. Shapes: returns (|E|,)."""
    z = encoder(batch.x_dict, batch.edge_index_dict, batch.song_ids, batch.song_degree)
    return decoder(z[VIDEO], z[SONG], batch.edge_label_index)


@torch.no_grad()
def _evaluate(encoder: GraphEncoder, decoder: LinkDecoder, data: HeteroData, cfg: GATConfig) -> dict[str, float]:
    """ROC-AUC and MSE of sigmoid scores on a split's labelled links (positives and fixed negatives)."""
    encoder.eval()
    decoder.eval()
    probs, labels = [], []
    for batch in _batches(data, cfg, train=False):
        probs.append(torch.sigmoid(_scores(encoder, decoder, batch)))
        labels.append(batch.edge_label)
    p, y = torch.cat(probs).numpy(), torch.cat(labels).numpy()
    return {"auc": float(roc_auc_score(y, p)), "mse": float(np.mean((p - y) ** 2))}


def _split(data: HeteroData, cfg: GATConfig) -> tuple[HeteroData, HeteroData, HeteroData]:
    """Train/val/test link split without reverse-edge leakage (call under ``_seeded``).

    ``train[USES].edge_index`` carries messages and ``edge_label_index`` holds the supervision positives; val/test
    carry all earlier splits' links as messages and their own positives plus fixed negatives as labels. Song inputs
    are recomputed from each split's message-passing links.
    """
    splitter = RandomLinkSplit(
        num_val=cfg.val_ratio,
        num_test=cfg.test_ratio,
        is_undirected=False,
        disjoint_train_ratio=cfg.disjoint_train_ratio,
        neg_sampling_ratio=cfg.neg_sampling_ratio if cfg.negatives == "uniform" else 0.0,
        add_negative_train_samples=False,  # training negatives are redrawn every epoch
        edge_types=USES,
        rev_edge_types=REV_USES,
    )
    train, val, test = (_song_means(part) for part in splitter(data))
    if cfg.negatives == "song":
        for part in (val, test):
            store = part[USES]
            store.edge_label_index, store.edge_label = _with_negatives(
                part, store.edge_label_index, data[USES].edge_index, cfg
            )
    for name, part in (("train", train), ("val", val), ("test", test)):
        label = part[USES].edge_label
        if label.numel() == 0 or (name != "train" and bool(label.min() == label.max())):
            raise ValueError(
                f"graph has {data[USES].edge_index.size(1)} links, too few for a {name} split with "
                f"val_ratio={cfg.val_ratio}, test_ratio={cfg.test_ratio}, "
                f"disjoint_train_ratio={cfg.disjoint_train_ratio}; expected enough links that every split gets "
                f"positives and negatives (a few dozen)"
            )
    return train, val, test


def pretrain_link_prediction(graph: Any, cfg: GATConfig | None = None) -> PretrainResult:
    """Pre-train the GAT encoder by predicting song–video links (thesis Ch. 4.4.5).

    Args:
        graph: a ``features.graph.SongVideoGraph`` (anything with ``.data``, the song–video ``HeteroData``).
        cfg: hyper-parameters; None → ``GATConfig()``.

    Returns:
        Encoder and decoder at the epoch with the best validation AUC, val/test AUC and MSE of that state, the
        number of epochs run, wall-clock seconds and a per-epoch history. Deterministic for a fixed ``cfg.seed``
        (the caller's global RNG states are left untouched).

    Shapes:
        - graph.data["video"].x: (|V_video|, D_video); graph.data[("video","uses","song")].edge_index: (2, |E|)
        - result.encoder(...)["video"]: (|V_video|, cfg.out)

    Raises:
        ValueError: the graph lacks the expected node/edge types or has too few links for the split.
        ImportError: ``cfg.minibatch`` without pyg-lib or torch-sparse (``LinkNeighborLoader``'s samplers).
    """
    cfg = cfg if cfg is not None else GATConfig()
    data = getattr(graph, "data", None)
    if not isinstance(data, HeteroData):
        raise ValueError(f"graph must be a SongVideoGraph (with a HeteroData .data), got {type(graph).__name__}")
    _check_graph(data)
    if cfg.negatives == "song" and data[SONG].num_nodes < 2:
        raise ValueError(f"negatives='song' needs at least 2 songs, the graph has {data[SONG].num_nodes}")
    if cfg.minibatch and not (torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE):
        raise ImportError("cfg.minibatch=True needs 'pyg-lib' or 'torch-sparse' for LinkNeighborLoader; "
                          "install one of them or use the full-batch path (minibatch=False)")
    start = time.perf_counter()
    with _seeded(cfg.seed):
        train, val, test = _split(data, cfg)
        encoder = GraphEncoder(cfg, video_dim=data[VIDEO].x.size(1), song_dim=data[SONG].x.size(1),
                               num_songs=data[SONG].num_nodes)
        decoder = LinkDecoder(dim=cfg.out, kind=cfg.decoder)
        params = list(encoder.parameters()) + list(decoder.parameters())
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        best: tuple[float, dict[str, Any]] | None = None
        history: list[dict[str, float]] = []
        stale = 0
        for epoch in range(1, cfg.epochs + 1):
            epoch_start = time.perf_counter()
            encoder.train()
            decoder.train()
            total, count = 0.0, 0
            for batch in _batches(train, cfg, train=True):
                optimizer.zero_grad()
                loss = _loss(_scores(encoder, decoder, batch), batch.edge_label, cfg.loss)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * batch.edge_label.numel()
                count += batch.edge_label.numel()
            val_metrics = _evaluate(encoder, decoder, val, cfg)
            history.append({"epoch": epoch, "loss": total / count, "val_auc": val_metrics["auc"],
                            "val_mse": val_metrics["mse"], "seconds": time.perf_counter() - epoch_start})
            if best is None or val_metrics["auc"] > best[0]:
                best = (val_metrics["auc"], {"encoder": copy.deepcopy(encoder.state_dict()),
                                             "decoder": copy.deepcopy(decoder.state_dict())})
                stale = 0
            else:
                stale += 1
                if cfg.patience is not None and stale >= cfg.patience:
                    break
        assert best is not None  # epochs >= 1
        encoder.load_state_dict(best[1]["encoder"])
        decoder.load_state_dict(best[1]["decoder"])
        val_metrics = _evaluate(encoder, decoder, val, cfg)
        test_metrics = _evaluate(encoder, decoder, test, cfg)
    metrics = {"val_auc": val_metrics["auc"], "test_auc": test_metrics["auc"],
               "val_mse": val_metrics["mse"], "test_mse": test_metrics["mse"]}
    return PretrainResult(encoder=encoder, decoder=decoder, metrics=metrics, epochs=len(history),
                          seconds=time.perf_counter() - start, history=history, config=cfg)


# -------------------------------------------------------------------------------------------------- embedding


def embed(encoder: GraphEncoder, graph: Any) -> dict[str, np.ndarray]:
    """Frozen-encoder embeddings of every node over the FULL graph (all links carry messages).

    ``video[v] = [z_v ‖ mean_{s ∈ songs(v)} z_s]``: the video's own-feature embedding (the side the link decoder
    was trained on) and its song's embedding (the paper's video embedding; the mean if it uses several songs).
    A video without a song gets ``[z_v ‖ 0]`` — finite, and informative when video features are given.
    ``song[s] = z_s``. The encoder's train/eval mode is restored afterwards.

    Shapes:
        - graph.data["video"].x: (|V_video|, D_video), graph.data["song"].x: (|V_song|, D_song)
        - returns {"video": (|V_video|, 2·out), "song": (|V_song|, out)} float32, out = encoder.cfg.out

    Raises:
        ValueError: the graph's feature widths (or, with song embeddings, song count) differ from the encoder's.
    """
    data = getattr(graph, "data", None)
    if not isinstance(data, HeteroData):
        raise ValueError(f"graph must be a SongVideoGraph (with a HeteroData .data), got {type(graph).__name__}")
    _check_graph(data)
    got = (data[VIDEO].x.size(1), data[SONG].x.size(1))
    if got != (encoder.video_dim, encoder.song_dim):
        raise ValueError(f"graph feature widths (video, song)={got} differ from the encoder's "
                         f"{(encoder.video_dim, encoder.song_dim)}; build the graph with the same features")
    if encoder.song_emb is not None and data[SONG].num_nodes != encoder.num_songs:
        raise ValueError(f"graph has {data[SONG].num_nodes} songs but the encoder learned embeddings for "
                         f"{encoder.num_songs}; retrain on this graph (song_embedding=True ties it to its songs)")
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            z = encoder(data.x_dict, data.edge_index_dict)
            ei = data[USES].edge_index
            # z_song(v) = mean_{s ∈ songs(v)} z_s; 0 for a video without a song
            z_song_of_video = scatter(z[SONG][ei[1]], ei[0], dim=0, dim_size=data[VIDEO].num_nodes, reduce="mean")
            video = torch.cat([z[VIDEO], z_song_of_video], dim=1)
    finally:
        encoder.train(was_training)
    return {VIDEO: video.numpy().astype(np.float32, copy=False), SONG: z[SONG].numpy().astype(np.float32, copy=False)}


# ------------------------------------------------------------------------------------------------ checkpoints


def save_encoder(path: str | os.PathLike[str], result: PretrainResult) -> None:
    """Write encoder + decoder weights, their config, dims and metrics atomically (temp file, then rename).

    The file reloads with ``load_encoder`` alone (no training arguments needed); ``torch.load(weights_only=True)``
    can read it (only tensors and plain Python values inside).
    """
    path = Path(path)
    enc = result.encoder
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "config": asdict(enc.cfg),
        "dims": {"video_dim": enc.video_dim, "song_dim": enc.song_dim, "num_songs": enc.num_songs},
        "encoder": enc.state_dict(),
        "decoder": result.decoder.state_dict(),
        "metrics": dict(result.metrics),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_encoder(path: str | os.PathLike[str]) -> tuple[GraphEncoder, GATConfig]:
    """Rebuild the encoder saved by ``save_encoder`` (in eval mode) and its config.

    Raises:
        ValueError: the file is not a vidpipe GAT checkpoint.
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a GAT checkpoint (expected format {_CHECKPOINT_FORMAT!r})")
    # a checkpoint whose config has no song_degree key was trained without the degree input
    cfg = GATConfig(**{"song_degree": False, **payload["config"]})
    encoder = GraphEncoder(cfg, **payload["dims"])
    encoder.load_state_dict(payload["encoder"])
    encoder.eval()
    return encoder, cfg
