"""Tests for features/graph.py: the song–video HeteroData and its content digest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from features.graph import REV_USES, SONG, USES, VIDEO, SongVideoGraph, build_graph, graph_digest

VIDEOS = ["a", "b", "c", "d", "e", "f"]
SONGS = ["s1", "s2", "s3"]
# a, b use s1; c, d use s2; e uses s1 and s2; f uses nothing; s3 has no video.
EDGES = pd.DataFrame({"video_id": ["a", "b", "c", "d", "e", "e"], "song_id": ["s1", "s1", "s2", "s2", "s1", "s2"]})
FEATS = np.arange(12, dtype=np.float64).reshape(6, 2)  # row i = [2i, 2i + 1]


def _tiny(**kw) -> SongVideoGraph:
    args = {"edges": EDGES, "video_ids": VIDEOS, "song_ids": SONGS, "video_features": FEATS} | kw
    return build_graph(**args)


def test_tiny_graph_exact_layout():
    g = _tiny()
    d = g.data
    assert g.video_ids == VIDEOS and g.song_ids == SONGS
    assert d.node_types == [VIDEO, SONG] and d.edge_types == [USES, REV_USES]
    assert d[VIDEO].num_nodes == 6 and d[SONG].num_nodes == 3
    assert d[VIDEO].x.dtype == torch.float32 and d[VIDEO].x.shape == (6, 2)
    assert torch.equal(d[VIDEO].x, torch.tensor(FEATS, dtype=torch.float32))
    expected = torch.tensor([[0, 1, 2, 3, 4, 4], [0, 0, 1, 1, 0, 1]])  # sorted by (video, song)
    assert torch.equal(d[USES].edge_index, expected)
    assert torch.equal(d[REV_USES].edge_index, expected.flip(0))
    # songs: mean of their videos' features; s1 ← a, b, e = rows 0, 1, 4; s2 ← c, d, e = rows 2, 3, 4; s3 → 0.
    x_song = torch.tensor([[(0 + 2 + 8) / 3, (1 + 3 + 9) / 3], [(4 + 6 + 8) / 3, (5 + 7 + 9) / 3], [0.0, 0.0]])
    assert torch.allclose(d[SONG].x, x_song)
    assert g.isolated_videos == ["f"] and g.isolated_songs == ["s3"]


def test_no_features_gives_constant_video_inputs_and_default_song_order():
    g = build_graph(EDGES.iloc[::-1], VIDEOS)  # song_ids None → sorted distinct songs of the edges
    assert g.song_ids == ["s1", "s2"] and g.isolated_songs == []
    assert torch.equal(g.data[VIDEO].x, torch.ones(6, 1))
    assert torch.equal(g.data[SONG].x, torch.ones(2, 1))
    assert torch.equal(g.data[USES].edge_index, torch.tensor([[0, 1, 2, 3, 4, 4], [0, 0, 1, 1, 0, 1]]))


def test_duplicate_edges_are_dropped_and_ids_compared_as_strings():
    edges = pd.DataFrame({"video_id": [1, 1, 2], "song_id": ["x", "x", "x"]})
    g = build_graph(edges, ["1", "2"])
    assert g.data[USES].edge_index.shape == (2, 2)


def test_inputs_are_not_mutated_or_aliased():
    edges, feats = EDGES.copy(), FEATS.copy()
    g = build_graph(edges, VIDEOS, SONGS, feats)
    pd.testing.assert_frame_equal(edges, EDGES)
    np.testing.assert_array_equal(feats, FEATS)
    feats[0, 0] = 99.0
    assert g.data[VIDEO].x[0, 0] == 0.0


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"edges": pd.DataFrame({"video_id": ["zz"], "song_id": ["s1"]})}, "zz"),
        ({"edges": pd.DataFrame({"video_id": ["a"], "song_id": ["nope"]})}, "nope"),
        ({"edges": pd.DataFrame({"video": ["a"], "song_id": ["s1"]})}, "video_id"),
        ({"edges": pd.DataFrame({"video_id": ["a", None], "song_id": ["s1", "s1"]})}, "missing"),
        ({"video_ids": ["a", "a", "b", "c", "d", "e"]}, "duplicate ids \\['a'\\]"),
        ({"video_ids": "abcdef"}, "single string"),
        ({"video_features": np.zeros((5, 2))}, "shape"),
        ({"video_features": np.full((6, 2), np.nan)}, "finite"),
    ],
)
def test_bad_input_raises_value_error_naming_it(kw, match):
    with pytest.raises(ValueError, match=match):
        _tiny(**kw)


def test_digest_is_order_independent_and_content_sensitive():
    base = graph_digest(_tiny())
    perm = [5, 3, 0, 4, 1, 2]
    shuffled = build_graph(
        EDGES.sample(frac=1.0, random_state=1), [VIDEOS[i] for i in perm], SONGS[::-1], FEATS[perm]
    )
    assert graph_digest(shuffled) == base
    assert len(base) == 32 and graph_digest(_tiny()) == base

    feats = FEATS.copy()
    feats[3, 1] += 1e-3
    changed = {
        "feature": _tiny(video_features=feats),
        "edge": _tiny(edges=EDGES.replace({"song_id": {"s2": "s3"}})),
        "isolated video": _tiny(video_ids=VIDEOS + ["g"], video_features=np.vstack([FEATS, [[0.0, 0.0]]])),
        "isolated song": _tiny(song_ids=SONGS + ["s4"]),
        "no features": _tiny(video_features=None),
    }
    digests = {name: graph_digest(g) for name, g in changed.items()}
    assert all(d != base for d in digests.values()), digests
    assert len(set(digests.values())) == len(digests)
