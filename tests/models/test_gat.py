"""Tests for models/gat.py: shapes, split leakage, learning on a planted graph, determinism, checkpoints."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pandas as pd
import pytest
import torch
import torch_geometric.typing
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, cross_val_score

from torch_geometric.sampler import HeteroSamplerOutput, NeighborSampler

from features.graph import REV_USES, SONG, USES, VIDEO, build_graph
from models.gat import (
    GATConfig,
    GraphEncoder,
    LinkDecoder,
    _batches,
    _evaluate,
    _loss,
    _scores,
    _seeded,
    _split,
    embed,
    load_encoder,
    pretrain_link_prediction,
    save_encoder,
)

HAS_SAMPLER = torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE
SMALL = {"hidden": 32, "out": 16, "heads": 2, "epochs": 40}  # tiny but enough for the planted signal


def _planted(seed: int = 0, *, num_songs: int = 30, num_videos: int = 600, dim: int = 8, zipf: float = 0.6):
    """Power-law song assignment; a video's features = its song's latent vector + noise; one effect per song.

    Returns (edges, video_ids, features (|V_video|, dim), song effect of each video (|V_video|,)).
    """
    rng = np.random.default_rng(seed)
    weight = 1.0 / np.arange(1, num_songs + 1) ** zipf
    song_of = rng.choice(num_songs, size=num_videos, p=weight / weight.sum())
    latent = rng.normal(size=(num_songs, dim))
    effect = rng.normal(size=num_songs)  # e.g. the song's pull on popularity, unrelated to its latent vector
    feats = latent[song_of] + 0.7 * rng.normal(size=(num_videos, dim))
    video_ids = [f"v{i:04d}" for i in range(num_videos)]
    edges = pd.DataFrame({"video_id": video_ids, "song_id": [f"s{s:02d}" for s in song_of]})
    return edges, video_ids, feats, effect[song_of]


def _tiny_graph():
    edges = pd.DataFrame({"video_id": ["a", "b", "c", "d", "e"], "song_id": ["s1", "s1", "s2", "s3", "s3"]})
    feats = np.arange(18, dtype=np.float32).reshape(6, 3) / 10
    return build_graph(edges, ["a", "b", "c", "d", "e", "f"], video_features=feats)  # f has no song


@pytest.fixture(scope="module")
def planted():
    edges, video_ids, feats, effect = _planted()
    graph = build_graph(edges, video_ids, video_features=feats)
    return graph, feats, effect, pretrain_link_prediction(graph, GATConfig(**SMALL))


def _edge_set(ei: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, ei.t().tolist()))


# ---------------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("song_embedding", [True, False])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_encoder_shapes_on_tiny_graph(song_embedding, layers):
    g = _tiny_graph()
    cfg = GATConfig(hidden=8, out=4, heads=2, layers=layers, song_embedding=song_embedding)
    enc = GraphEncoder(cfg, video_dim=3, song_dim=3, num_songs=3)
    z = enc(g.data.x_dict, g.data.edge_index_dict)
    assert z[VIDEO].shape == (6, 4) and z[SONG].shape == (3, 4)
    out = embed(enc, g)
    assert out[VIDEO].shape == (6, 8) and out[SONG].shape == (3, 4) and out[VIDEO].dtype == np.float32
    assert np.isfinite(out[VIDEO]).all()
    # video = [own z_v ‖ its song's z_s]: a, b use s1; c uses s2; d, e use s3; f has no song
    z_np = {t: v.detach().numpy() for t, v in z.items()}
    np.testing.assert_allclose(out[VIDEO][:, :4], z_np[VIDEO], rtol=1e-6)
    np.testing.assert_allclose(out[VIDEO][:5, 4:], z_np[SONG][[0, 0, 1, 2, 2]], rtol=1e-6)
    np.testing.assert_array_equal(out[VIDEO][5, 4:], np.zeros(4, dtype=np.float32))


def test_every_encoder_weight_is_trained_by_link_prediction():
    """No dead weights: each parameter gets a gradient from the supervision loss (a song→video message layer
    would not: the supervised videos never receive one)."""
    edges, video_ids, feats, _ = _planted(num_videos=200)
    graph = build_graph(edges, video_ids, video_features=feats)
    cfg = GATConfig(hidden=8, out=4, heads=2)
    with _seeded(0):
        train, _, _ = _split(graph.data, cfg)
        enc = GraphEncoder(cfg, video_dim=8, song_dim=8, num_songs=30)
        dec = LinkDecoder(dim=4)
        batch = next(_batches(train, cfg, train=True))
        _loss(_scores(enc, dec, batch), batch.edge_label, "mse").backward()
    dead = [name for name, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_decoders_score_pairs():
    zv, zs = torch.randn(6, 4), torch.randn(3, 4)
    pairs = torch.tensor([[0, 5, 2], [1, 0, 2]])
    dot = LinkDecoder(dim=4)(zv, zs, pairs)
    assert dot.shape == (3,)
    assert torch.allclose(dot, (zv[[0, 5, 2]] * zs[[1, 0, 2]]).sum(-1))
    assert LinkDecoder(dim=4, kind="mlp")(zv, zs, pairs).shape == (3,)
    with pytest.raises(ValueError, match="kind"):
        LinkDecoder(dim=4, kind="cosine")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"hidden": 30, "heads": 4}, "hidden=30 must be divisible by heads=4"),
        ({"loss": "l1"}, "loss"),
        ({"negatives": "hard"}, "negatives"),
        ({"val_ratio": 0.6, "test_ratio": 0.5}, "sum to < 1"),
        ({"num_neighbors": 0}, "num_neighbors"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        GATConfig(**kw)


def test_too_few_links_or_not_a_graph_is_a_value_error():
    with pytest.raises(ValueError, match="too few"):
        pretrain_link_prediction(_tiny_graph(), GATConfig(epochs=1))
    with pytest.raises(ValueError, match="SongVideoGraph"):
        pretrain_link_prediction(_tiny_graph().data, GATConfig(epochs=1))


# ---------------------------------------------------------------------------------------------------- split


@pytest.mark.parametrize("negatives", ["song", "uniform"])
def test_split_does_not_leak(negatives):
    edges, video_ids, feats, _ = _planted(num_videos=400)
    graph = build_graph(edges, video_ids, video_features=feats)
    cfg = GATConfig(negatives=negatives)
    with _seeded(cfg.seed):
        train, val, test = _split(graph.data, cfg)
    all_links = _edge_set(graph.data[USES].edge_index)

    def positives(part):
        store = part[USES]
        return _edge_set(store.edge_label_index[:, store.edge_label == 1])

    def negatives_of(part):
        store = part[USES]
        return store.edge_label_index[:, store.edge_label == 0]

    train_mp, train_sup = _edge_set(train[USES].edge_index), positives(train)
    val_pos, test_pos = positives(val), positives(test)
    # 400 links: 40 val, 40 test, 320 train = 192 message passing + 128 supervision (60/40).
    assert (len(train_mp), len(train_sup), len(val_pos), len(test_pos)) == (192, 128, 40, 40)
    assert train_mp | train_sup | val_pos | test_pos == all_links
    assert not train_mp & (train_sup | val_pos | test_pos)
    assert _edge_set(val[USES].edge_index) == train_mp | train_sup
    assert _edge_set(test[USES].edge_index) == train_mp | train_sup | val_pos
    for part in (train, val, test):  # the reverse direction carries exactly the forward message edges
        assert _edge_set(part[REV_USES].edge_index.flip(0)) == _edge_set(part[USES].edge_index)
    for part, n_pos in ((val, 40), (test, 40)):
        neg = negatives_of(part)
        assert neg.size(1) == n_pos // 2  # 50% of the positives
        assert not _edge_set(neg) & all_links
        if negatives == "song":  # corrupted positives: same videos, another song
            assert set(neg[0].tolist()) <= {v for v, _ in positives(part)}
    # song inputs come from message-passing edges only: a held-out video's features never reach its song
    ei = train[USES].edge_index
    x = graph.data[VIDEO].x
    for s in range(graph.data[SONG].num_nodes):
        members = ei[0, ei[1] == s]
        expected = x[members].mean(0) if members.numel() else torch.zeros(x.size(1))
        assert torch.allclose(train[SONG].x[s], expected, atol=1e-6)
    assert not torch.allclose(train[SONG].x, graph.data[SONG].x)  # differs from the all-edge mean


# ------------------------------------------------------------------------------------------------- learning


def test_link_prediction_learns_planted_features(planted):
    graph, feats, _, result = planted
    m = result.metrics
    assert set(m) == {"val_auc", "test_auc", "val_mse", "test_mse"}
    # thresholds hold for planted seeds 0-5 × config seeds 0-1 (min test AUC 0.86, max MSE 0.17, min gap 0.22)
    assert m["test_auc"] > 0.8 and m["val_auc"] > 0.8
    assert 0.0 <= m["test_mse"] < 0.2
    assert result.epochs == 40 and len(result.history) == 40
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    # control: the same graph with the features shuffled across videos keeps only song popularity
    rng = np.random.default_rng(1)
    edges, video_ids, _, _ = _planted()
    shuffled = build_graph(edges, video_ids, video_features=rng.permutation(feats))
    control = pretrain_link_prediction(shuffled, GATConfig(**SMALL))
    assert m["test_auc"] > control.metrics["test_auc"] + 0.15, (m, control.metrics)


def _popular_songs_graph(seed: int, *, num_songs: int = 40, num_videos: int = 300, beta: float = 1.6):
    """Featureless videos, each using one song drawn with P(s) ∝ exp(beta · z_s), z_s ~ N(0, 1): the only signal a
    link carries is how popular its song is (the synthetic source's song catalogue)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=num_songs)
    p = np.exp(beta * (z - z.max()))
    song_of = rng.choice(num_songs, size=num_videos, p=p / p.sum())
    video_ids = [f"v{i:04d}" for i in range(num_videos)]
    return build_graph(pd.DataFrame({"video_id": video_ids, "song_id": [f"s{s:02d}" for s in song_of]}), video_ids)


@pytest.mark.parametrize("seed", [0, 1])
def test_featureless_link_prediction_learns_song_popularity(seed):
    """With every video alike, a test link is ranked by its song only; the GAT matches the preferential-attachment
    score deg(s) over the split's message-passing links (planted seeds 0-2 × config seeds 0-1: GAT 0.75-0.84,
    deg(s) 0.74-0.86, largest shortfall 0.03)."""
    from sklearn.metrics import roc_auc_score

    graph = _popular_songs_graph(0)
    cfg = GATConfig(**(SMALL | {"epochs": 60}), seed=seed)
    with _seeded(seed):
        _, _, test = _split(graph.data, cfg)
    deg = torch.bincount(test[USES].edge_index[1], minlength=graph.data[SONG].num_nodes).float()
    degree_auc = roc_auc_score(test[USES].edge_label.numpy(), deg[test[USES].edge_label_index[1]].numpy())
    gat_auc = pretrain_link_prediction(graph, cfg).metrics["test_auc"]
    assert gat_auc > 0.7 and gat_auc >= degree_auc - 0.05, (gat_auc, degree_auc)


def test_video_embeddings_carry_the_planted_song_effect(planted):
    graph, _, effect, result = planted
    z = embed(result.encoder, graph)
    assert z[VIDEO].shape == (600, 32) and z[SONG].shape == (30, 16)
    cv = KFold(5, shuffle=True, random_state=0)
    r2 = cross_val_score(Ridge(alpha=1.0), z[VIDEO], effect, cv=cv, scoring="r2").mean()
    noise = np.random.default_rng(0).normal(size=z[VIDEO].shape)
    r2_random = cross_val_score(Ridge(alpha=1.0), noise, effect, cv=cv, scoring="r2").mean()
    assert r2 > 0.2 and r2 > r2_random + 0.2, (r2, r2_random)  # seeds 0-5: r2 0.22-0.60, random < 0


def test_early_stopping_restores_the_best_state(planted):
    graph, *_ = planted
    result = pretrain_link_prediction(graph, GATConfig(**(SMALL | {"epochs": 60, "patience": 3})))
    assert result.epochs < 60 and len(result.history) == result.epochs
    best = max(h["val_auc"] for h in result.history)
    assert result.metrics["val_auc"] == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("kw", [{"loss": "bce", "decoder": "mlp"}, {"song_embedding": False, "negatives": "song"}])
def test_other_options_learn(planted, kw):
    graph, *_ = planted
    # 25 epochs: a larger step than the default 1e-3 (which the featureless graphs of the mechanism tests need)
    result = pretrain_link_prediction(graph, GATConfig(**(SMALL | {"epochs": 25, "lr": 1e-2} | kw)))
    assert result.metrics["test_auc"] > 0.8


# -------------------------------------------------------------------------------------- determinism, no mutation


def test_fixed_seed_is_deterministic_and_leaves_global_rng_alone(planted):
    graph, *_ = planted
    before = graph.data[SONG].x.clone(), graph.data[USES].edge_index.clone()
    torch_state, py_state = torch.random.get_rng_state(), random.getstate()
    cfg = GATConfig(**(SMALL | {"epochs": 5}))
    a, b = pretrain_link_prediction(graph, cfg), pretrain_link_prediction(graph, cfg)
    c = pretrain_link_prediction(graph, dataclasses.replace(cfg, seed=1))
    assert torch.equal(torch.random.get_rng_state(), torch_state) and random.getstate() == py_state
    assert a.metrics == b.metrics and [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    za, zb, zc = embed(a.encoder, graph), embed(b.encoder, graph), embed(c.encoder, graph)
    np.testing.assert_array_equal(za[VIDEO], zb[VIDEO])
    assert not np.allclose(za[VIDEO], zc[VIDEO])
    assert torch.equal(graph.data[SONG].x, before[0]) and torch.equal(graph.data[USES].edge_index, before[1])


def test_video_without_song_gets_a_finite_embedding_from_its_own_features(planted):
    _, _, _, result = planted
    edges, video_ids, feats, _ = _planted()
    lonely = np.full((1, feats.shape[1]), 0.5)
    graph = build_graph(edges, video_ids + ["lonely"], video_features=np.vstack([feats, lonely]))
    assert graph.isolated_videos == ["lonely"]
    z = embed(result.encoder, graph)[VIDEO]
    assert z.shape == (601, 32) and np.isfinite(z).all()
    np.testing.assert_array_equal(z[-1, 16:], np.zeros(16, dtype=np.float32))  # no song half
    # no messages reach it, so other videos' features cannot change its embedding
    other = build_graph(edges, video_ids + ["lonely"], video_features=np.vstack([feats * 2.0, lonely]))
    np.testing.assert_array_equal(embed(result.encoder, other)[VIDEO][-1], z[-1])
    assert not np.allclose(embed(result.encoder, other)[VIDEO][:-1], z[:-1])


def test_embed_restores_mode_and_checks_widths(planted):
    graph, _, _, result = planted
    result.encoder.train()
    embed(result.encoder, graph)
    assert result.encoder.training
    result.encoder.eval()
    edges, video_ids, feats, _ = _planted()
    narrow = build_graph(edges, video_ids, video_features=feats[:, :4])
    with pytest.raises(ValueError, match="feature widths"):
        embed(result.encoder, narrow)
    fewer_songs = build_graph(edges, video_ids, song_ids=sorted(set(edges["song_id"])) + ["extra"],
                              video_features=feats)
    with pytest.raises(ValueError, match="31 songs"):
        embed(result.encoder, fewer_songs)


# ---------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(planted, tmp_path):
    graph, _, _, result = planted
    path = tmp_path / "ckpt" / "gat.pt"
    save_encoder(path, result)
    assert [p.name for p in path.parent.iterdir()] == ["gat.pt"]  # no temp file left behind
    encoder, cfg = load_encoder(path)
    assert cfg == result.config and not encoder.training
    np.testing.assert_array_equal(embed(encoder, graph)[VIDEO], embed(result.encoder, graph)[VIDEO])
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a GAT checkpoint"):
        load_encoder(tmp_path / "other.pt")


# ---------------------------------------------------------------------------------------------- mini-batch


@pytest.mark.skipif(HAS_SAMPLER, reason="pyg-lib / torch-sparse installed: the mini-batch path runs instead")
def test_minibatch_without_sampler_says_what_to_install(planted):
    graph, *_ = planted
    with pytest.raises(ImportError, match="pyg-lib"):
        pretrain_link_prediction(graph, GATConfig(**SMALL, minibatch=True))


def _stand_in_sample(self, seed, seed_time=None, **kwargs):
    """Pure-Python stand-in for pyg-lib's one-hop hetero sampling: the first ``num_neighbors`` videos of each seed
    song (CSC order), no song→video edges. Same output contract as ``NeighborSampler._sample``."""
    key = next(k for k in self.colptr_dict if self.to_edge_type[k] == USES)
    colptr, row = self.colptr_dict[key], self.row_dict[key]
    limit = self.num_neighbors.get_mapped_values(self.edge_types)
    limit = limit[key][0] if isinstance(limit, dict) else limit[0]
    videos = seed[VIDEO].tolist()
    local = {v: i for i, v in enumerate(videos)}
    rows, cols, pos = [], [], []
    for j, song in enumerate(seed[SONG].tolist()):
        for p in range(int(colptr[song]), min(int(colptr[song + 1]), int(colptr[song]) + limit)):
            v = int(row[p])
            if v not in local:
                local[v] = len(videos)
                videos.append(v)
            rows.append(local[v])
            cols.append(j)
            pos.append(p)
    perm = self.perm.get(key) if isinstance(self.perm, dict) else None
    edge = torch.tensor(pos, dtype=torch.long)
    empty = torch.empty(0, dtype=torch.long)
    return HeteroSamplerOutput(
        node={VIDEO: torch.tensor(videos, dtype=torch.long), SONG: seed[SONG]},
        row={USES: torch.tensor(rows, dtype=torch.long), REV_USES: empty},
        col={USES: torch.tensor(cols, dtype=torch.long), REV_USES: empty},
        edge={USES: edge if perm is None else perm[edge], REV_USES: empty},
        batch=None, num_sampled_nodes=None, num_sampled_edges=None,
    )


@pytest.mark.skipif(HAS_SAMPLER, reason="a real sampler is installed: test_minibatch_path_learns runs instead")
def test_minibatch_path_with_stand_in_sampler(planted, monkeypatch):
    """The LinkNeighborLoader path (batching, label remapping, song ids for the embedding) is exact: with every
    neighbour sampled it reproduces full-batch evaluation, because video states never depend on edges."""
    monkeypatch.setattr(NeighborSampler, "_sample", _stand_in_sample)
    monkeypatch.setattr(torch_geometric.typing, "WITH_PYG_LIB", True)
    graph, _, _, result = planted
    cfg = result.config
    with _seeded(cfg.seed):
        _, val, _ = _split(graph.data, cfg)
    full = _evaluate(result.encoder, result.decoder, val, cfg)
    mini = _evaluate(result.encoder, result.decoder, val,
                     dataclasses.replace(cfg, minibatch=True, batch_size=16, num_neighbors=10_000))
    assert mini["auc"] == pytest.approx(full["auc"], abs=1e-9)
    assert mini["mse"] == pytest.approx(full["mse"], abs=1e-6)
    trained = pretrain_link_prediction(graph, dataclasses.replace(cfg, epochs=10, minibatch=True, batch_size=64,
                                                                  num_neighbors=7))
    assert trained.metrics["test_auc"] > 0.75


@pytest.mark.skipif(not HAS_SAMPLER, reason="LinkNeighborLoader needs pyg-lib or torch-sparse")
def test_minibatch_path_learns(planted):
    graph, *_ = planted
    cfg = GATConfig(**(SMALL | {"epochs": 15}), minibatch=True, batch_size=64)
    result = pretrain_link_prediction(graph, cfg)
    assert result.metrics["test_auc"] > 0.8
    assert embed(result.encoder, graph)[VIDEO].shape == (600, 32)
