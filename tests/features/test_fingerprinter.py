"""``fingerprinter``: the same keys as ``fingerprint``, with the parameters hashed once."""

from __future__ import annotations

import pytest

from features.fingerprint import fingerprint, fingerprinter


@pytest.mark.parametrize("params", [None, {}, {"b": [1, 2.5], "a": "x"}, {"profiles": ("per_second", "uniform")}])
def test_keys_equal_fingerprint_for_every_input_list(params):
    key = fingerprinter("frames", 3, params)
    for inputs in ([], ["abc"], ["abc", "def"]):
        assert key(inputs) == fingerprint("frames", 3, params, inputs)
    assert key(["abc"]) != key(["abd"]) and key(["abc"]) == key(iter(["abc"]))  # no state leaks between calls


def test_bad_stage_and_inputs_are_refused_like_fingerprint():
    with pytest.raises(ValueError, match="stage=''"):
        fingerprinter("", 1)
    with pytest.raises(TypeError, match="non-empty strings"):
        fingerprinter("probe", 1)([""])
    with pytest.raises(TypeError, match="cannot fingerprint"):
        fingerprinter("probe", 1, {"f": object()})
