import os
from dataclasses import dataclass

import pytest

from features.fingerprint import DigestCache, canonical_json, file_digest, fingerprint


def test_same_inputs_same_key_and_order_independent_params():
    a = fingerprint("frames", 1, {"n": 15, "size": 64}, ["abc"])
    b = fingerprint("frames", 1, {"size": 64, "n": 15}, ["abc"])
    assert a == b and len(a) == 32


@pytest.mark.parametrize("change", [
    dict(stage="audio"), dict(version=2), dict(params={"n": 16, "size": 64}), dict(inputs=["abd"]),
])
def test_any_change_gives_a_new_key(change):
    base = dict(stage="frames", version=1, params={"n": 15, "size": 64}, inputs=["abc"])
    assert fingerprint(**{**base, **change}) != fingerprint(**base)


def test_dataclass_params_and_floats_are_canonical():
    @dataclass(frozen=True)
    class P:
        a: float
        b: tuple

    assert canonical_json(P(0.1, (1, 2))) == canonical_json(P(0.1, [1, 2]))
    assert fingerprint("s", 1, P(0.1, (1,))) != fingerprint("s", 1, P(0.2, (1,)))


def test_unhashable_params_are_refused():
    with pytest.raises(TypeError, match="cannot fingerprint"):
        fingerprint("s", 1, {"f": object()})
    with pytest.raises(ValueError, match="stage"):
        fingerprint("", 1)


def test_digest_cache_rehashes_only_on_change(tmp_path):
    f = tmp_path / "v.bin"
    f.write_bytes(b"hello")
    cache = DigestCache()
    d1 = cache.digest(f)
    assert d1 == file_digest(f)
    assert cache.digest(f) == d1 and cache.hashed == 1
    f.write_bytes(b"hello world")
    os.utime(f, ns=(1, 1))
    d2 = cache.digest(f)
    assert d2 != d1 and cache.hashed == 2
    restored = DigestCache(cache.to_records())
    assert restored.digest(f) == d2 and restored.hashed == 0


def test_flat_dicts_render_as_the_generic_canonicaliser_does():
    import json

    from features.fingerprint import _canon

    rows = [{"b": 1, "a": "é\"x", "c": None, "d": True, "e": 0.1 + 0.2, "f": -0.0, "g": 1e300},
            {"x": float("nan")}, {"x": float("inf")}, {1: "int key"}, {"n": [1, 2]}, {}]
    for row in rows:
        assert canonical_json(row) == json.dumps(_canon(row), sort_keys=True, separators=(",", ":"),
                                                 ensure_ascii=True), row
    assert canonical_json({"x": float("nan")}) == '{"x":{"__float__":"nan"}}'
