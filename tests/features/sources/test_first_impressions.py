"""First Impressions V2 pickles as they exist in the wild: Python-2 protocol-2 opcodes, assembled by hand
(:mod:`tests.features.sources.fi_fixtures`), read by the restricted unpickler."""

from __future__ import annotations

import io
import pickle
import pickletools
import struct

import numpy as np
import pytest

from features.sources import SourceError
from features.sources.first_impressions import (
    TRAITS, decode_py2_str, dump_py2_pickle, read_first_impressions, safe_load_pickle,
)
from tests.features.sources.fi_fixtures import Py2Pickle, annotation_bytes, transcription_bytes

ALL = TRAITS + ("interview",)


NAMES = ["-6otZ7M-Mro.003.mp4", "J4GQm9j0JZ0.003.mp4", "zz_BjRfemTo.001.mp4"]
LONG = "so " * 120 + "\u2026 that\u2019s it"
TEXTS = {NAMES[0]: "", NAMES[1]: "[inaudible 00:00:16] I think caf\u00e9 culture\u2026 isn\u2019t it", NAMES[2]: LONG}


def _scores(offset: float = 0.0) -> dict[str, dict[str, float]]:
    return {t: {n: round(0.1 + 0.1 * i + 0.01 * j + offset, 6) for j, n in enumerate(NAMES)} for i, t in enumerate(ALL)}


def test_fixture_has_the_official_opcode_structure():
    raw = annotation_bytes(_scores())
    pickletools.dis(raw, out=io.StringIO())  # a well-formed pickle
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(raw)]
    names = [o for o, _ in ops]
    assert ops[0] == ("PROTO", 2) and "BINUNICODE" not in names
    assert ("GLOBAL", "numpy.core.multiarray scalar") in ops and ("GLOBAL", "numpy dtype") in ops
    assert names.count("GLOBAL") == 2  # memoised: later scalars reuse both globals and the dtype via BINGET
    assert names.count("BUILD") == 1 and names.count("REDUCE") == 1 + len(NAMES)
    # Python's own unpickler with numpy, as documented for these files, reads it as numpy.float64
    ref = pickle.loads(raw, encoding="latin1")
    assert isinstance(ref["interview"][NAMES[0]], np.float64) and type(ref["openness"][NAMES[0]]) is float
    assert ref == {t: {n: v for n, v in d.items()} for t, d in _scores().items()}


@pytest.mark.parametrize("module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_official_annotations_and_transcripts_are_read(tmp_path, module):
    scores = _scores()
    (tmp_path / "annotation_training.pkl").write_bytes(annotation_bytes(scores, interview_module=module))
    (tmp_path / "transcription_training.pkl").write_bytes(transcription_bytes(TEXTS))
    for n in NAMES:
        (tmp_path / n).write_bytes(b"\x00")
    df = read_first_impressions(tmp_path).set_index("video_id")
    assert list(df.index) == sorted(n[:-4] for n in NAMES)
    for trait in ALL:
        for n in NAMES:
            got = df.loc[n[:-4], trait]
            assert got == scores[trait][n] and type(got) in (float, np.float64)
    assert df.loc["-6otZ7M-Mro.003", "transcript"] == ""  # empty stays empty: not None, not NaN
    assert df.loc["J4GQm9j0JZ0.003", "transcript"] == TEXTS[NAMES[1]]  # UTF-8 bytes, marker kept in the raw text
    assert df.loc["zz_BjRfemTo.001", "transcript"] == LONG  # > 255 bytes: BINSTRING
    assert df.loc["-6otZ7M-Mro.003", "source_path"].endswith("/-6otZ7M-Mro.003.mp4")


def test_interview_values_are_plain_numbers_not_numpy_objects(tmp_path):
    path = tmp_path / "annotation_training.pkl"
    path.write_bytes(annotation_bytes(_scores()))
    ann = safe_load_pickle(path)
    values = list(ann[b"interview"].values())
    assert all(type(v) is float for v in values)
    assert values == [_scores()["interview"][n] for n in NAMES]


def test_py2_strings_decode_as_utf8_with_latin1_fallback(tmp_path):
    texts = {"a.mp4": "na\u00efve \u2026 \u2019", "b.mp4": b"caf\xe9 latin-1 only", "c.mp4": "\u00e9 as unicode"}
    path = tmp_path / "transcription_training.pkl"
    path.write_bytes(transcription_bytes(texts, unicode_names=("c.mp4",)))
    names = [op.name for op, _, _ in pickletools.genops(path.read_bytes())]
    assert "SHORT_BINSTRING" in names and "BINUNICODE" in names
    raw = safe_load_pickle(path)
    assert raw[b"a.mp4"] == "na\u00efve \u2026 \u2019".encode() and raw[b"c.mp4"] == "\u00e9 as unicode"
    assert decode_py2_str(raw[b"a.mp4"]) == "na\u00efve \u2026 \u2019"
    assert decode_py2_str(raw[b"b.mp4"]) == "caf\u00e9 latin-1 only"


def _scalar_pickle(raw: bytes, code: str, order: str, state: bytes | None = None) -> bytes:
    p = Py2Pickle()
    p.global_("numpy.core.multiarray", "scalar")
    p.dtype(code, order, state)
    p.str_(raw)
    p.out += b"\x86R"
    return p.bytes()


@pytest.mark.parametrize("raw,code,order,expected", [
    (struct.pack("<d", 0.625), "f8", "<", 0.625),
    (struct.pack(">d", 0.625), "f8", ">", 0.625),  # big-endian data is decoded as big-endian, deliberately
    (struct.pack("<f", 0.25), "f4", "<", 0.25),
    (struct.pack("<e", 0.5), "f2", "<", 0.5),
    (struct.pack("<q", -3), "i8", "<", -3),
    (struct.pack(">I", 7), "u4", ">", 7),
    (b"\x05", "u1", "|", 5),
])
def test_numpy_scalars_rebuilt_from_dtype_and_bytes(tmp_path, raw, code, order, expected):
    path = tmp_path / "x.pkl"
    path.write_bytes(_scalar_pickle(raw, code, order))
    value = safe_load_pickle(path)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("raw,code,order,state,match", [
    (b"\x00" * 16, "c16", "<", None, "only float and integer"),
    (b"\x00" * 8, "O8", "|", None, "only float and integer"),
    (b"\x00" * 7, "f8", "<", None, "expected 8 raw bytes"),
    (b"\x00" * 8, "f8", "|", None, "byte order"),
    (b"\x00" * 8, "f8", "<", b"(K\x03U\x01<NNNJ\x08\x00\x00\x00J\xff\xff\xff\xffK\x00t", "plain numeric"),
    (b"\x00" * 8, "f8", "<", b"(K\x03U\x01<N(U\x01at}NJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t", "plain numeric"),
    (b"\x00" * 8, "f8", "<", b"K\x03", "dtype state"),
])
def test_other_numpy_dtypes_are_refused(tmp_path, raw, code, order, state, match):
    path = tmp_path / "x.pkl"
    path.write_bytes(_scalar_pickle(raw, code, order, state))
    with pytest.raises(SourceError, match=match):
        safe_load_pickle(path)


def test_scalar_needs_a_built_dtype(tmp_path):
    # scalar(<a string>, bytes) and scalar(dtype without BUILD, bytes) are both refused
    path = tmp_path / "x.pkl"
    path.write_bytes(b"\x80\x02cnumpy.core.multiarray\nscalar\nU\x02f8U\x08" + b"\x00" * 8 + b"\x86R.")
    with pytest.raises(SourceError, match=r"\(dtype, bytes\)"):
        safe_load_pickle(path)
    path.write_bytes(b"\x80\x02cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\nU\x02f8K\x00K\x01\x87RU\x08"
                     + b"\x00" * 8 + b"\x86R.")
    with pytest.raises(SourceError, match="no byte order"):
        safe_load_pickle(path)


def test_the_names_are_never_resolved_to_numpy(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(b"\x80\x02cnumpy\ndtype\n.")
    assert not isinstance(safe_load_pickle(path), type) and safe_load_pickle(path) is not np.dtype
    path.write_bytes(b"\x80\x02cnumpy\ndtype\nU\x02f8K\x00K\x01\x87R.")
    assert not isinstance(safe_load_pickle(path), np.dtype)


@pytest.mark.parametrize("module,name", [
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("__builtin__", "eval"), ("subprocess", "call"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "frombuffer"), ("_codecs", "encode"),
])
def test_any_other_global_is_refused_and_nothing_runs(tmp_path, module, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "annotation_training.pkl"
    cmd = f"touch {marker}".encode()
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"U" + bytes([len(cmd)]) + cmd + b"\x85R.")
    with pytest.raises(SourceError, match="refusing to load|cannot read"):
        safe_load_pickle(path)
    with pytest.raises(SourceError):
        read_first_impressions(tmp_path)
    assert not marker.exists()


def test_evil_global_after_valid_numpy_scalars_is_refused(tmp_path):
    p = Py2Pickle()
    p.out += b"]"
    p.put()
    p.out += b"("
    p.np_float64(0.5)
    p.global_("os", "system")
    p.str_(f"touch {tmp_path / 'pwned'}".encode())
    p.out += b"\x85Re"
    path = tmp_path / "x.pkl"
    path.write_bytes(p.bytes())
    with pytest.raises(SourceError, match="refusing to load os.system"):
        safe_load_pickle(path)
    assert not (tmp_path / "pwned").exists()


def test_python3_numpy_pickles_of_scalars(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"s": np.float64(0.75)}, protocol=4))  # BINBYTES payload: read
    assert safe_load_pickle(path) == {"s": 0.75}
    path.write_bytes(pickle.dumps({"s": np.float64(0.75)}, protocol=2))  # Python 3's _codecs.encode: refused
    with pytest.raises(SourceError, match="_codecs.encode"):
        safe_load_pickle(path)


def test_dump_py2_pickle_writes_numpy_scalars_like_python2(tmp_path):
    buf = io.BytesIO()
    dump_py2_pickle({"interview": {"a.mp4": np.float64(0.375)}, "openness": {"a.mp4": 0.5}}, buf)
    raw = buf.getvalue()
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(raw)]
    assert ("GLOBAL", "numpy.core.multiarray scalar") in ops and ("SHORT_BINSTRING", "f8") in ops
    ref = pickle.loads(raw, encoding="latin1")
    assert isinstance(ref["interview"]["a.mp4"], np.float64) and ref["interview"]["a.mp4"] == 0.375
    (tmp_path / "x.pkl").write_bytes(raw)
    assert safe_load_pickle(tmp_path / "x.pkl") == {b"interview": {b"a.mp4": 0.375}, b"openness": {b"a.mp4": 0.5}}


def test_scores_out_of_range_from_numpy_scalars_name_the_video(tmp_path):
    scores = _scores()
    scores["interview"][NAMES[1]] = 1.5
    (tmp_path / "annotation_training.pkl").write_bytes(annotation_bytes(scores))
    with pytest.raises(SourceError, match=r"J4GQm9j0JZ0\.003\.mp4.*interview.*\[0, 1\]"):
        read_first_impressions(tmp_path)


def test_stand_ins_carry_no_state_a_pickle_could_set(tmp_path):
    path = tmp_path / "x.pkl"
    for module in (b"numpy\ndtype\n", b"numpy.core.multiarray\nscalar\n"):
        path.write_bytes(b"\x80\x02c" + module + b"}U\x08__call__K\x01sb.")  # BUILD {'__call__': 1} on the stand-in
        with pytest.raises(SourceError, match="cannot read"):
            safe_load_pickle(path)
    path.write_bytes(_scalar_pickle(struct.pack("<d", 0.5), "f8", "<"))
    assert safe_load_pickle(path) == 0.5
