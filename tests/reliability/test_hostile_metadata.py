"""Hostile metadata: malformed annotation files are refused or reported with the file and the row; nothing in them runs.

Complements tests/features/sources/test_adapters.py (one malicious pickle, a few bad rows, the popularity formula's
basic properties): here every pickle opcode that can reach code, pickle bombs, arbitrary bytes and arbitrary values
(hypothesis), and the invariants of the popularity normalisation.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.sources import SourceError, load_source
from features.sources.first_impressions import TRAITS, dump_py2_pickle, read_first_impressions, safe_load_pickle
from features.sources.liris import read_liris_accede
from features.sources.tiktok import MIN_AGE_DAYS, normalise_popularity, popularity_score, read_tiktok

ALL = TRAITS + ("interview",)
_FS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------------------------------- pickles
class _Pwn:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _code_pickles(marker: Path) -> dict[str, bytes]:
    """Pickles that would run ``touch marker`` with a normal unpickler, through every opcode that imports."""
    cmd = f"touch {marker}"
    out = {f"reduce-protocol-{p}": pickle.dumps({"extraversion": _Pwn(str(marker))}, protocol=p) for p in range(6)}
    out["GLOBAL+REDUCE"] = f"cos\nsystem\n(V{cmd}\ntR.".encode()
    out["INST"] = f"(V{cmd}\nios\nsystem\n.".encode()
    out["OBJ"] = f"(cos\nsystem\nV{cmd}\no.".encode()
    out["STACK_GLOBAL"] = (b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c" + bytes([len(cmd)]) + cmd.encode()
                           + b"\x85R.")
    out["builtins.eval"] = f"cbuiltins\neval\n(V__import__('os').system('{cmd}')\ntR.".encode()
    out["nested-in-dict"] = b"\x80\x02}q\x00U\x0cextraversionq\x01" + f"cos\nsystem\n(V{cmd}\ntR".encode() + b"s."
    out["persistent-id"] = b"\x80\x02U\x01xQ."
    return out


def test_no_pickle_opcode_can_run_code(tmp_path):
    marker = tmp_path / "pwned"
    for name, blob in _code_pickles(marker).items():
        # the threat is real: the standard unpickler would run it (except the persistent id, which needs a loader)
        if name != "persistent-id" and name.startswith(("reduce-protocol-0", "GLOBAL")):
            pickle.loads(blob)
            assert marker.exists(), name
            marker.unlink()
        path = tmp_path / "annotation_training.pkl"
        path.write_bytes(blob)
        with pytest.raises(SourceError, match="annotation_training.pkl") as err:
            read_first_impressions(tmp_path)
        assert "refusing" in str(err.value) or "cannot read" in str(err.value), (name, str(err.value))
        assert not marker.exists(), f"{name}: code ran"


def _laughs_body(depth: int) -> bytes:
    """Pickle opcodes leaving one list on the stack whose naive str() is 10^depth items long: level k is a list of 10
    references to level k-1 (``billion laughs``), so it is ~depth*25 bytes on disk and as small in memory."""
    buf = io.BytesIO()
    buf.write(b"]q\x00U\x01xa0")  # level 0 = ["x"], memo 0, popped
    for level in range(1, depth + 1):
        buf.write(b"](" + (b"h" + bytes([level - 1])) * 10 + b"eq" + bytes([level]))  # list, mark, 10 refs, appends
        if level < depth:
            buf.write(b"0")  # pop: only the top level stays on the stack
    return buf.getvalue()


def _billion_laughs(depth: int) -> bytes:
    return b"\x80\x02" + _laughs_body(depth) + b"."


def test_pickle_bombs_are_refused_quickly(tmp_path):
    bomb = pickle.loads(_billion_laughs(30))  # small in memory: every level shares the one below
    assert len(bomb) == 10 and bomb[0] is bomb[1]
    def with_bomb(obj) -> bytes:  # obj holds the string "BOMB" where the bomb goes
        buf = io.BytesIO()
        dump_py2_pickle(obj, buf)
        return buf.getvalue().replace(b"U\x04BOMB", _laughs_body(30))

    cases = {  # file -> pickle: each would hang or exhaust memory if anything called str() / repr() on it
        "transcription_training.pkl": with_bomb({"a.mp4": "BOMB"}),  # a transcript
        "annotation_training.pkl": with_bomb({t: {"a.mp4": "BOMB" if t == "extraversion" else 0.5} for t in ALL}),
    }
    for i, (name, blob) in enumerate(cases.items()):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        with open(folder / "annotation_training.pkl", "wb") as fh:
            dump_py2_pickle({t: {"a.mp4": 0.5} for t in ALL}, fh)
        (folder / name).write_bytes(blob)
        start = time.monotonic()
        with pytest.raises(SourceError, match=name):
            read_first_impressions(folder)
        assert time.monotonic() - start < 5, name
    folder = tmp_path / "tuple-key"
    folder.mkdir()
    (folder / "transcription_training.pkl").write_bytes(pickle.dumps({("a", "b"): "text"}, protocol=2))
    with open(folder / "annotation_training.pkl", "wb") as fh:
        dump_py2_pickle({t: {"a.mp4": 0.5} for t in ALL}, fh)
    with pytest.raises(SourceError, match="expected a string"):  # a tuple key is not a video name
        read_first_impressions(folder)


def test_deeply_nested_pickle_is_refused(tmp_path):
    deep = b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b"."
    (tmp_path / "annotation_training.pkl").write_bytes(deep)
    with pytest.raises(SourceError, match="annotation_training.pkl"):
        read_first_impressions(tmp_path)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_another_error(data):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "annotation_training.pkl"
        path.write_bytes(b"\x80\x02" + data)
        try:
            safe_load_pickle(path)
        except SourceError as exc:
            assert str(path) in str(exc)


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=5))
_scores = st.dictionaries(st.sampled_from(["a.mp4", "b.mp4", "c.mp4"]), _scalar, max_size=3)


@_FS
@given(st.dictionaries(st.sampled_from([*ALL, "junk"]), st.one_of(_scores, _scalar, st.lists(_scalar, max_size=2)),
                       max_size=8))
def test_first_impressions_any_structure_is_valid_or_refused(tmp_path_factory, ann):
    folder = tmp_path_factory.mktemp("fi")
    with open(folder / "annotation_training.pkl", "wb") as fh:
        fh.write(pickle.dumps(ann, protocol=2))
    try:
        df = read_first_impressions(folder)
    except SourceError as exc:
        assert "annotation_training.pkl" in str(exc)
        return
    for trait in ALL:
        assert ((df[trait] >= 0) & (df[trait] <= 1)).all() and np.isfinite(df[trait]).all()


# ---------------------------------------------------------------------------------------------------- LIRIS
_HEADER = "id\tname\tvalenceRank\tarousalRank\tvalenceValue\tarousalValue\tvalenceVariance\tarousalVariance"


def _liris(folder: Path, rows: list[str], sets: list[str], header: str = _HEADER) -> Path:
    (folder / "ACCEDEranking.txt").write_text("\n".join([header, *rows]) + "\n")
    (folder / "ACCEDEsets.txt").write_text("\n".join(["id\tname\tset", *sets]) + "\n")
    return folder


@pytest.mark.parametrize("rows,sets,header,match", [
    (["0\ta.mp4\t0\t0\tinf\t2\t0\t0"], ["0\ta.mp4\t1"], _HEADER, r"ACCEDEranking.txt: row 2, column 'valenceValue'"),
    (["0\ta.mp4\t0\t0\t2\t-1e309\t0\t0"], ["0\ta.mp4\t1"], _HEADER, "arousalValue"),
    (["0\ta.mp4\t0\t0\t2\t2\t0\t0", "1\ta.mp4\t0\t0\t2\t2\t0\t0"], ["0\ta.mp4\t1"], _HEADER, "duplicate"),
    (["0\ta.mp4\t0\t0\t2\t2\t0\t0"], ["0\ta.mp4\tx"], _HEADER, r"ACCEDEsets.txt: row 2, column 'set'"),
    (["0\ta.mp4\t0\t0\t2\t2\t0\t0"], ["0\tb.mp4\t1"], _HEADER, "has no entry in"),
    (["0\ta.mp4\t0\t0\t2\t2"], ["0\ta.mp4\t1"], "id\tname\tvalenceRank\tarousalRank\tvalenceValue\tarousalValue",
     "missing column"),
])
def test_liris_bad_files_name_file_and_row(tmp_path, rows, sets, header, match):
    with pytest.raises(SourceError, match=match):
        read_liris_accede(_liris(tmp_path, rows, sets, header))


def test_liris_binary_garbage_is_refused(tmp_path):
    (tmp_path / "ACCEDEranking.txt").write_bytes(b"\xff\xfe\x00garbage\x00\n\x9c")
    (tmp_path / "ACCEDEsets.txt").write_text("id\tname\tset\n")
    with pytest.raises(SourceError, match="ACCEDEranking.txt"):
        read_liris_accede(tmp_path)


@_FS
@given(st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6), st.text(max_size=3)), min_size=1, max_size=4))
def test_liris_any_cells_are_valid_or_refused(tmp_path_factory, cells):
    folder = tmp_path_factory.mktemp("liris")
    clean = [tuple(c.replace("\t", " ").replace("\n", " ").replace("\r", " ") for c in row) for row in cells]
    rows = [f"{i}\tv{i}.mp4\t0\t0\t{v}\t{a}\t0\t0" for i, (v, a, _) in enumerate(clean)]
    sets = [f"{i}\tv{i}.mp4\t{s}" for i, (_, _, s) in enumerate(clean)]
    try:
        df = read_liris_accede(_liris(folder, rows, sets))
    except SourceError as exc:
        assert "ACCEDE" in str(exc) and "row" in str(exc)
        return
    assert df["valence_value"].between(1, 5).all() and df["arousal_value"].between(1, 5).all()
    assert set(df["split"]) <= {"train", "val", "test"}


# ---------------------------------------------------------------------------------------------------- TikTok
_SCRAPE = 1_700_000_000 + 30 * 86400


def _write_posts(folder: Path, lines: list[str]) -> Path:
    path = folder / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    (folder / "tiktok_scrape.json").write_text(json.dumps({"scrape_time": _SCRAPE}))
    return path


def _post(**over) -> dict:
    rec = {"id": "v1", "createTime": 1_700_000_000, "music": {"id": "s1", "title": "t"}, "desc": "d",
           "stats": {"playCount": 10, "shareCount": 1, "commentCount": 1, "diggCount": 3}, "video": {"duration": 5}}
    rec.update(over)
    return rec


@pytest.mark.parametrize("record,match", [
    (_post(stats={"playCount": 1e300, "shareCount": 1e300, "commentCount": 0}), "stats.playCount"),
    (_post(stats={"shareCount": 1, "commentCount": 1}), "stats.playCount"),
    (_post(stats=None), "'stats'"),
    (_post(scrapeTime="tomorrow"), "scrapeTime"),
    (_post(scrapeTime=[1]), "scrapeTime"),
    (_post(createTime=True), "createTime"),
    (_post(music={"id": {"nested": 1}}), "music.id"),
    (_post(id=None), "'id'"),
])
def test_tiktok_bad_records_name_file_and_line(tmp_path, record, match):
    path = _write_posts(tmp_path, [json.dumps(_post(id="v0")), json.dumps(record)])
    with pytest.raises(SourceError, match=match) as err:
        read_tiktok(path)
    assert "posts.jsonl" in str(err.value) and ("row 2" in str(err.value) or "line 2" in str(err.value))


def test_tiktok_nan_literals_are_refused(tmp_path):
    path = _write_posts(tmp_path, ['{"id": "a", "createTime": NaN, "stats": {"playCount": 1, "shareCount": 0, '
                                   '"commentCount": 0}}'])
    with pytest.raises(SourceError, match="line 1|createTime"):
        read_tiktok(path)
    (tmp_path / "tiktok_scrape.json").write_text('{"scrape_time": NaN}')
    with pytest.raises(SourceError, match="tiktok_scrape.json"):
        read_tiktok(path)


def test_tiktok_odd_optional_fields_do_not_reach_the_manifest(tmp_path):
    path = _write_posts(tmp_path, [json.dumps(_post(music={"id": 7, "title": ["a", {"b": 1}]}, video={"duration": True},
                                                    desc={"x": 1}))])
    videos, edges = read_tiktok(path)
    row = videos.iloc[0]
    assert row["song_id"] == "7" and row["song_title"] is None and row["duration_meta"] is None and row["desc"] is None
    import pyarrow as pa

    pa.Table.from_pandas(videos)  # storable as Parquet


_json_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3),
                                                                                                 inner, max_size=2),
                           max_leaves=4)


@_FS
@given(st.lists(st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.text(max_size=4), st.integers(-3, 3), _json_value),
    "createTime": st.one_of(st.floats(1.6e9, 1.8e9), _json_value),
    "scrapeTime": st.one_of(st.floats(1.6e9, 1.8e9), _json_value),
    "stats": st.one_of(st.fixed_dictionaries({}, optional={
        k: st.one_of(st.integers(-1, 10**16), st.floats(allow_nan=True), _json_value)
        for k in ("playCount", "shareCount", "commentCount", "diggCount")}), _json_value),
    "music": st.one_of(st.fixed_dictionaries({}, optional={"id": _json_value, "title": _json_value}), _json_value),
    "desc": _json_value, "video": _json_value,
}), min_size=1, max_size=4))
def test_tiktok_any_records_are_valid_or_refused(tmp_path_factory, records):
    folder = tmp_path_factory.mktemp("tiktok")
    path = _write_posts(folder, [json.dumps(r) for r in records])
    try:
        videos, edges = read_tiktok(path)
    except SourceError as exc:
        assert "posts.jsonl" in str(exc) or "tiktok_scrape.json" in str(exc)
        return
    assert np.isfinite(videos["popularity_raw"]).all()
    assert videos["popularity"].between(0, 1).all() and videos["video_id"].is_unique
    assert set(edges["video_id"]) <= set(videos["video_id"])
    import pyarrow as pa

    pa.Table.from_pandas(videos)


# ---------------------------------------------------------------------------------------------------- popularity
@settings(max_examples=80, deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 10**6), st.integers(0, 10**6), st.floats(MIN_AGE_DAYS, 1e4),
       st.floats(1.0, 100.0))
def test_popularity_scales_with_age_as_a_log_rate(plays, shares, comments, days, k):
    """p is a log rate per day: an age k times longer lowers it by exactly log k (above the age floor)."""
    a = popularity_score(plays, shares, comments, days)
    b = popularity_score(plays, shares, comments, days * k)
    assert b == pytest.approx(a - math.log(k), abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.floats(0, MIN_AGE_DAYS), st.integers(0, 10**6))
def test_popularity_age_floor(days, plays):
    assert popularity_score(plays, 0, 0, days) == popularity_score(plays, 0, 0, MIN_AGE_DAYS)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-10**6, 10**6).map(lambda i: i / 100), min_size=2, max_size=30), st.floats(1e-3, 1e3),
       st.floats(-1e3, 1e3))
def test_normalisation_is_invariant_to_affine_changes(values, scale, shift):
    # values on a 0.01 grid: differences far above float rounding, so the property is about the formula, not eps
    a = normalise_popularity(np.array(values))
    b = normalise_popularity(np.array(values) * scale + shift)
    assert np.allclose(a, b, atol=1e-6)
    if max(values) > min(values):
        assert a.min() == 0 and a.max() == 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_popularity_refuses_impossible_inputs(bad):
    with pytest.raises(ValueError, match="expected a finite non-negative number"):
        popularity_score(1, 1, 1, bad)
    with pytest.raises(ValueError, match="plays"):
        popularity_score(bad, 1, 1, 1.0)


# ---------------------------------------------------------------------------------------------------- manifest level
def test_two_files_with_one_id_are_refused(tmp_path):
    names = {"a.mp4": 0.5, "a.avi": 0.5}  # the ids are file stems: both are "a"
    with open(tmp_path / "annotation_training.pkl", "wb") as fh:
        dump_py2_pickle({t: dict(names) for t in ALL}, fh)
    with pytest.raises(SourceError, match="duplicate video_id"):
        load_source("first-impressions", tmp_path)


def test_cli_ingest_reports_the_file_and_line(prefect_harness, tmp_path, capsys):
    from pipelines.cli import main

    path = _write_posts(tmp_path, [json.dumps(_post(id="v0")), json.dumps(_post(id="v0"))])
    with pytest.raises(SystemExit) as exit_:
        main(["ingest", "bad", "--source", "tiktok", str(path), "--root", str(tmp_path / "root")])
    assert exit_.value.code == 2
    err = "".join(capsys.readouterr().err.split())  # the console may wrap the long path
    assert "posts.jsonl" in err and "line2" in err and "duplicateid" in err
    assert not (tmp_path / "root" / "bad" / "manifest.parquet").exists()
