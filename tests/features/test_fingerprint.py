import os
from dataclasses import dataclass

import pytest

from features.fingerprint import DigestCache, canonical_json, file_digest, fingerprint, fingerprinter


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


def test_frame_digest_follows_every_cell_dtype_and_row_order_and_refuses_mixed_columns():
    import pandas as pd

    from features.fingerprint import frame_digest

    df = pd.DataFrame({"video_id": ["a", "b"], "n": [1, 2], "x": [0.5, float("nan")], "t": ["hi", None]})
    base = frame_digest(df)
    assert base == frame_digest(df.copy()) == frame_digest(df.set_index(pd.Index([7, 9])))  # the index is left out
    changed = [df.assign(n=[1, 3]), df.assign(n=[1.0, 2.0]), df.assign(t=["hi", "yo"]), df.iloc[::-1],
               df.assign(x=[0.5, 0.25]), df.drop(columns="t")]
    digests = {frame_digest(d) for d in changed}
    assert len(digests) == len(changed) and base not in digests
    assert frame_digest(pd.DataFrame({"v": [1, "a"]})) is None  # Arrow cannot convert it: no digest, no memo


def test_stat_digest_follows_size_mtime_and_missing_files_and_the_working_directory(tmp_path, monkeypatch):
    import os

    from features.fingerprint import stat_digest

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"12")
    b.write_bytes(b"34")
    paths = [str(a), str(b), None, str(tmp_path / "gone")]
    base = stat_digest(paths)
    assert base == stat_digest(paths) != stat_digest(paths[::-1])
    os.utime(a, ns=(1, 1))
    touched = stat_digest(paths)
    a.write_bytes(b"123")
    os.utime(a, ns=(1, 1))
    assert len({base, touched, stat_digest(paths)}) == 3  # mtime, then size
    (tmp_path / "gone").write_bytes(b"")
    assert stat_digest(paths) != stat_digest(paths[:3] + [None])
    monkeypatch.chdir(tmp_path)
    here = stat_digest(["a.bin"])
    (tmp_path / "sub").mkdir()
    os.link(a, tmp_path / "sub" / "a.bin")  # the same stat under another folder
    monkeypatch.chdir(tmp_path / "sub")
    assert stat_digest(["a.bin"]) != here and stat_digest([str(a)]) == stat_digest([str(tmp_path / "sub" / "a.bin")])


def test_stat_digest_of_stats_taken_once_is_the_digest_of_its_own_stats(tmp_path, monkeypatch):
    import os

    from features.fingerprint import path_stats, stat_digest

    (tmp_path / "a.bin").write_bytes(b"12")
    monkeypatch.chdir(tmp_path)
    paths = [str(tmp_path / "a.bin"), "a.bin", None, "", float("nan"), str(tmp_path / "gone")]
    stats = path_stats(paths)
    assert [s is not None for s in stats] == [True, True, False, False, False, False]
    assert stats[0].st_size == 2 and stats[0].st_ino == os.stat(tmp_path / "a.bin").st_ino
    assert stat_digest(paths, stats) == stat_digest(paths)  # relative path: the working directory counts either way
    assert stat_digest(paths, stats) != stat_digest(paths, [None] * len(paths))  # the stats given are the ones hashed
    with pytest.raises(ValueError, match=r"stats: 5 entries for 6 paths"):
        stat_digest(paths, stats[:5])


# ``fingerprinter``: the same keys as ``fingerprint``, with the parameters hashed once

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
