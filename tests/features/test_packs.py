"""features.packs helpers: the one z-scoring used by the pack's meta / eGeMAPS inputs and the graph's node features."""

from __future__ import annotations

import numpy as np

from features.packs import _NOT_STAGES, _STAGE_OF, standardize
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
