"""One-object outputs (features.objects): the record line, the payload layout, heads cut short, bad dtypes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from features import objects

ARRAYS = {"frames": np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
          "valid": np.array([True, False]),
          "scalar": np.array(1.5, np.float32),  # 0-d: stored as shape (1,), as the Zarr commit stores it
          "empty": np.zeros((0, 5), np.float64),
          "big": np.linspace(-1, 1, 40_000, dtype=np.float32)}
RECORD = {"video_id": "v\n1", "stage": "frames", "fingerprint": "f" * 32, "record": {"text": "a\nb", "n": 3}}


def test_object_is_its_record_line_then_the_arrays():
    blob = objects.encode(RECORD, ARRAYS)
    line, _, payload = blob.partition(b"\n")
    head = json.loads(line)  # newlines inside strings are escaped: the record is exactly the first line
    assert head["video_id"] == "v\n1" and head["record"] == {"text": "a\nb", "n": 3} and head["data"] == "inline"
    assert [a[:3] for a in head["arrays"]] == [["frames", "|u1", [2, 3, 4]], ["valid", "|b1", [2]],
                                               ["scalar", "<f4", [1]], ["empty", "<f8", [0, 5]],
                                               ["big", "<f4", [40000]]]
    assert sum(a[4] for a in head["arrays"]) == len(payload) < ARRAYS["big"].nbytes  # compressed, back to back
    assert objects.decode_head(blob) == head == objects.decode_head(blob[:len(line) + 1])
    record, arrays = objects.decode_arrays(blob)
    assert record == head and list(arrays) == list(ARRAYS)
    for name, arr in ARRAYS.items():
        assert arrays[name].dtype == arr.dtype and arrays[name].shape == (arr.shape or (1,))
        assert arrays[name].tobytes() == arr.tobytes(), name
    assert objects.signature(head) == (("big", "<f4", (40000,)), ("empty", "<f8", (0, 5)),
                                       ("frames", "|u1", (2, 3, 4)), ("scalar", "<f4", (1,)), ("valid", "|b1", (2,)))


def test_a_head_cut_inside_the_record_asks_for_more_and_plain_records_parse():
    blob = objects.encode({**RECORD, "record": {"text": "x" * 100}}, ARRAYS)
    assert objects.decode_head(blob[:50]) is None
    plain = json.dumps({"video_id": "v", "dropped": True}).encode()  # a tombstone: a plain JSON record
    assert objects.decode_head(plain) == {"video_id": "v", "dropped": True}
    with pytest.raises(ValueError, match="no record line"):
        objects.decode_arrays(plain)


def test_only_numeric_arrays_are_inlined():
    with pytest.raises(TypeError, match=r"arrays\['words'\]: dtype <U1 cannot be stored"):
        objects.encode(RECORD, {"words": np.array(["a", "b"])})
