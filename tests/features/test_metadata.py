"""features.metadata: the metadata stage's record from a manifest row and a probe record."""

from __future__ import annotations

import numpy as np
import pytest

from features.metadata import META_COLUMNS, metadata_record
from features.schema import schema


def test_metadata_has_mtaf_content_agnostic_features_from_whichever_columns_exist():
    probe = {"duration": 9.5, "display_width": 720, "display_height": 1280, "fps": 30.0, "has_audio": True}
    row = {"create_time": 1_700_000_000, "desc": "new lipstick #beauty #sale", "author_followers": 999,
           "author_following": 0, "author_hearts": None, "author_videos": 41, "author_verified": True,
           "hashtag_count": 3, "caption_length": 26}
    rec = metadata_record(row, probe)
    assert rec["log_author_followers"] == pytest.approx(np.log(1000)) and rec["log_author_following"] == 0.0
    assert np.isnan(rec["log_author_hearts"]) and rec["log_author_videos"] == pytest.approx(np.log(42))
    assert (rec["verified"], rec["hashtags"], rec["caption_chars"], rec["upload_hour"]) == (1.0, 3, 26, 22)
    bare = metadata_record({"desc": "a #b"}, probe)  # a dataset without uploader columns
    assert np.isnan(bare["log_author_followers"]) and np.isnan(bare["verified"])
    assert (bare["hashtags"], bare["caption_chars"]) == (1, 4)


def test_record_fields_are_the_declared_ones_and_the_meta_modality_reads_only_declared_fields():
    declared = [f.name for f in schema("metadata").record]
    assert list(metadata_record({}, {})) == declared
    assert set(META_COLUMNS) <= set(declared) and "has_song" not in META_COLUMNS
