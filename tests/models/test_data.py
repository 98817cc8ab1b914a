import numpy as np
import pytest
import torch

from models.data import PackLoader, split_indices


def _arrays(n=10):
    return {
        "vision": np.arange(n * 2 * 3 * 2 * 2, dtype=np.uint8).reshape(n, 2, 3, 2, 2),
        "vision_mask": np.ones((n, 2), bool),
        "target": np.arange(n, dtype=np.float64).reshape(n, 1),
        "split": np.array(["train"] * 6 + ["val"] * 2 + ["test"] * 2, dtype=object),
    }


def test_batches_cover_split_once_and_convert_dtypes():
    a = _arrays()
    loader = PackLoader(a, ["vision", "vision_mask", "audio_mask", "target"], split_indices(a["split"], "train"),
                        batch_size=4, shuffle=True, seed=1)
    batches = list(loader)
    assert len(loader) == 2 and [b["target"].shape[0] for b in batches] == [4, 2]
    seen = torch.cat([b["target"][:, 0] for b in batches]).tolist()
    assert sorted(seen) == [0, 1, 2, 3, 4, 5]
    b = batches[0]
    assert b["vision"].dtype == torch.float32 and b["vision"].max() <= 1.0 and b["target"].dtype == torch.float32
    assert "audio_mask" not in b  # masks of absent modalities are skipped, not invented


def test_shuffle_is_epoch_seeded_and_resumable():
    a = _arrays()
    idx = split_indices(a["split"], "train")
    def order(loader):
        return [b["target"][:, 0].tolist() for b in loader]

    one = PackLoader(a, ["target"], idx, batch_size=2, shuffle=True, seed=5)
    first, second = order(one), order(one)
    assert first != second
    resumed = PackLoader(a, ["target"], idx, batch_size=2, shuffle=True, seed=5)
    resumed.set_epoch(1)
    assert order(resumed) == second


def test_bad_arguments():
    a = _arrays()
    with pytest.raises(ValueError, match="batch_size"):
        PackLoader(a, ["target"], np.arange(3), batch_size=0)
    with pytest.raises(ValueError, match="not in the pack"):
        PackLoader(a, ["audio"], np.arange(3))


def test_split_sets_fall_back_to_train_then_val():
    from models.data import split_sets

    full = split_sets(["train", "val", "test", "train"])
    assert [full[s].tolist() for s in ("train", "val", "test")] == [[0, 3], [1], [2]]
    no_val = split_sets(["train", "test", "train"])
    assert no_val["val"].tolist() == [0, 2] and no_val["test"].tolist() == [1]
    only_train = split_sets(["train", "train"])
    assert only_train["val"].tolist() == only_train["test"].tolist() == [0, 1]


def _frames(n=5, t=6):
    """uint8 frames whose every position holds its own values, a per-frame mask and a float copy with NaN frames."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (n, t, 3, 4, 4), dtype=np.uint8)
    return {"vision": frames, "vision_mask": rng.random((n, t)) > 0.3,
            "vision_emb": rng.standard_normal((n, t, 8)).astype(np.float32), "target": np.zeros((n, 1), np.float32)}


def test_positions_cut_a_key_and_its_mask_before_the_float_conversion():
    a = _frames()
    a["vision_emb"][:, [1, 3, 4, 5]] = np.nan  # positions nobody reads: the loader must never touch them
    keys = ["vision", "vision_mask", "vision_emb", "vision_emb_mask", "target"]
    rows = np.array([0, 2, 3])
    cut = PackLoader(a, keys, rows, batch_size=8, positions={"vision": (0, 2), "vision_emb": [2, 0]})
    (b,) = list(cut)
    assert b["vision"].shape == (3, 2, 3, 4, 4) and b["vision"].dtype == torch.float32
    assert torch.equal(b["vision"], torch.from_numpy(a["vision"][rows][:, [0, 2]]).float() / 255.0)
    assert torch.equal(b["vision_mask"], torch.from_numpy(a["vision_mask"][rows][:, [0, 2]]))
    assert b["vision_emb"].shape == (3, 2, 8) and torch.isfinite(b["vision_emb"]).all()
    assert torch.equal(b["vision_emb"], torch.from_numpy(a["vision_emb"][rows][:, [2, 0]]))
    (whole,) = list(PackLoader(a, keys, rows, batch_size=8))
    assert whole["vision"].shape == (3, 6, 3, 4, 4) and torch.equal(whole["vision"][:, [0, 2]], b["vision"])


def test_positions_read_from_a_lazy_hdf5_pack_equal_the_in_memory_ones(tmp_path):
    h5py = pytest.importorskip("h5py")
    a = _frames(n=7)
    keys, pos = ["vision", "vision_mask", "target"], {"vision": [4, 1, 1]}  # unsorted and repeated positions
    rows = np.array([0, 1, 2, 5, 6])  # two runs of consecutive rows
    with h5py.File(tmp_path / "p.h5", "w") as h5:
        for k in keys:
            h5[k] = a[k]
    with h5py.File(tmp_path / "p.h5", "r") as h5:
        lazy = list(PackLoader(h5, keys, rows, batch_size=8, positions=pos))
    mem = list(PackLoader(a, keys, rows, batch_size=8, positions=pos))
    assert lazy[0]["vision"].shape == (5, 3, 3, 4, 4)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(lazy, mem) for k in keys)


def test_bad_positions_name_the_key_and_the_expected_range():
    a = _frames()
    with pytest.raises(ValueError, match="does not yield"):
        PackLoader(a, ["target"], np.arange(3), positions={"vision": [0]})
    with pytest.raises(ValueError, match=r"positions\['vision'\]=\[6\]"):
        PackLoader(a, ["vision", "target"], np.arange(3), positions={"vision": [6]})
    with pytest.raises(ValueError, match="at least one index"):
        PackLoader(a, ["vision", "target"], np.arange(3), positions={"vision": []})
    a["graph"], a["graph_mask"] = np.zeros((5, 4), np.float32), np.ones(5, bool)
    with pytest.raises(ValueError, match="'graph_mask', whose shape is \\(5,\\)"):  # one flag per clip: no axis to cut
        PackLoader(a, ["graph", "graph_mask"], np.arange(3), positions={"graph": [0]})
