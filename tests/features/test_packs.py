"""features.packs helpers: the one z-scoring used by the pack's meta / eGeMAPS inputs and the graph's node features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.packs import _NOT_STAGES, _STAGE_OF, assign_splits, labelled_videos, standardize
from features.sources import training_ids
from features.sources.first_impressions import TRAITS, dump_py2_pickle, read_first_impressions
from names import MODALITIES


def test_standardize_uses_the_reference_rows_and_turns_nan_and_constant_columns_into_zeros():
    x = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, np.nan], [11.0, 5.0, np.nan], [np.nan, 5.0, np.nan]])
    z = standardize(x, np.array([True, True, False, False]))  # μ = 2, σ = 1 from the first two rows
    assert z.dtype == np.float32 and z.shape == (4, 3)
    assert np.allclose(z[:, 0], [-1.0, 1.0, 9.0, 0.0])  # a missing value becomes the reference mean
    assert not z[:, 1:].any()  # constant column: centred; all-nan column: zeros, no warning
    everyone = standardize(x[:3, :1])
    assert np.allclose(everyone.ravel(), (np.array([1, 3, 11]) - 5) / np.std([1, 3, 11]))


def test_every_modality_has_a_source_in_the_pack_builder():
    assert sorted([*_STAGE_OF, *_NOT_STAGES]) == sorted(MODALITIES)


def _first_impressions_without_test(root, n=20):
    """A First Impressions V2 folder whose test annotations are absent (training and validation pickles only)."""
    names = [f"v{i:02d}.{i:03d}.mp4" for i in range(n)]
    for tag, part in (("training", names[: n * 3 // 4]), ("validation", names[n * 3 // 4:])):
        with open(root / f"annotation_{tag}.pkl", "wb") as fh:
            dump_py2_pickle({t: {v: 0.5 for v in part} for t in (*TRAITS, "interview")}, fh)
        with open(root / f"transcription_{tag}.pkl", "wb") as fh:
            dump_py2_pickle({v: f"words of {v}" for v in part}, fh)
    return read_first_impressions(root)


def test_a_pack_never_validates_or_tests_on_a_video_the_vocabulary_was_built_on(tmp_path):
    """Two official sets: the pack's split is re-drawn, and the vocabulary's training videos are the pack's."""
    manifest = _first_impressions_without_test(tmp_path)
    assert set(manifest["split"]) == {"train", "val"}
    labelled = labelled_videos(manifest, "personality")
    split = assign_splits(manifest, labelled)
    assert split.value_counts().to_dict() == {"train": 14, "test": 4, "val": 2}
    assert set(labelled.loc[split == "train", "video_id"]) == training_ids(manifest)
    assert set(manifest.loc[manifest["split"] == "train", "video_id"]) != training_ids(manifest)  # re-drawn
    # one split per video, whatever the row order and whichever subset a task labels
    shuffled = manifest.sample(frac=1.0, random_state=3)
    assert training_ids(shuffled) == training_ids(manifest)
    subset = labelled.iloc[::2]
    assert assign_splits(shuffled, subset).tolist() == split.iloc[::2].tolist()


def test_a_dataset_with_all_three_splits_keeps_them_in_every_labelled_subset():
    manifest = pd.DataFrame({"video_id": ["a", "b", "c", "d"], "split": ["train", "val", "test", "train"],
                             "valence": [1.0, 0.0, np.nan, 1.0], "arousal": [0.0, 1.0, np.nan, 0.0]})
    labelled = labelled_videos(manifest, "emotion")  # c (the only test video) has no labels
    assert labelled["video_id"].tolist() == ["a", "b", "d"]
    assert assign_splits(manifest, labelled).tolist() == ["train", "val", "train"]
    assert training_ids(manifest) == {"a", "d"}
