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
