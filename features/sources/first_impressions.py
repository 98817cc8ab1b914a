"""ChaLearn First Impressions V2 adapter (personality, Big-Five + interview).

On-disk layout (as distributed by ChaLearn, LAP 2016/2017):

- ``annotation_{training,validation,test}.pkl``: a pickled ``dict`` trait → {video file name → score in [0, 1]} with
  traits ``extraversion, neuroticism, agreeableness, conscientiousness, openness, interview``;
- ``transcription_{training,validation,test}.pkl``: a pickled ``dict`` video file name → transcript;
- the videos (``*.mp4``), beside the pickles or in per-split sub-folders (searched recursively, matched by file name).

The pickles were written by Python 2 (protocol 2). Their strings are py2 ``str``, i.e. bytes: they are read as bytes
and decoded as UTF-8 (what the real files hold, e.g. ``…``, ``’``, ``é``), falling back to Latin-1 for byte strings
that are not valid UTF-8. The five trait scores are Python floats; the ``interview`` scores are ``numpy.float64``
scalars, pickled as ``numpy.core.multiarray.scalar(numpy.dtype('f8', 0, 1) + BUILD state, <8 raw bytes>)``.

The pickles are **untrusted input**. :func:`safe_load_pickle` uses a restricted unpickler that builds dicts, lists,
tuples, strings and numbers, and resolves exactly three globals — ``numpy.core.multiarray.scalar``, its NumPy 2
spelling ``numpy._core.multiarray.scalar`` and ``numpy.dtype`` — to vidpipe's own stand-ins, which rebuild a plain
``float`` (or ``int``) from the dtype description and the raw bytes with :mod:`struct`. Nothing the pickle names is
imported or called, and every other global is refused before anything runs.

Transcripts are kept exactly as the dataset has them: an empty string stays ``""`` (a known-empty official
transcript, which the ``transcripts`` stage keeps: speech recognition runs only for videos the dataset has no
transcript for), and markers such as ``[inaudible 00:00:16]`` stay in the text (the tokenizer of
:mod:`features.text` drops them).
"""

from __future__ import annotations

import io
import math
import pickle
import reprlib
import struct
import sys
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from features.sources._common import SourceError, find_media, label_error

__all__ = ["TRAITS", "SPLIT_FILES", "safe_load_pickle", "decode_py2_str", "dump_py2_pickle", "read_first_impressions"]

#: Trait columns in the order every personality model predicts them (``interview`` is kept as an extra label).
TRAITS = ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness")
_ALL_TRAITS = TRAITS + ("interview",)
#: file-name split tag → vidpipe split name
SPLIT_FILES = {"training": "train", "validation": "val", "test": "test"}


#: struct format per NumPy type code (kind + item size) of the scalars an annotation pickle may hold
_SCALAR_FORMATS = {
    "f2": "e", "f4": "f", "f8": "d",
    "i1": "b", "i2": "h", "i4": "i", "i8": "q",
    "u1": "B", "u2": "H", "u4": "I", "u8": "Q",
}
_BYTE_ORDERS = {"<": "<", ">": ">", "|": "<", "=": "<" if sys.byteorder == "little" else ">"}


def _as_str(value: Any) -> Any:
    """A py2 ``str`` (bytes, ASCII here) as text; anything else unchanged."""
    return value.decode("latin-1") if isinstance(value, bytes) else value


class _DTypeSpec:
    """What ``numpy.dtype(typestr, align, copy)`` + ``BUILD state`` describes, for a plain numeric type only.

    Not a NumPy object: it records the type code and byte order so :class:`_ScalarFactory` can decode raw bytes.
    """

    __slots__ = ("code", "order")

    def __init__(self, code: str) -> None:
        self.code = code
        self.order: str | None = None  # set by BUILD (NumPy always pickles the byte order in the state)

    def __setstate__(self, state: Any) -> None:
        # NumPy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata]);
        # a plain scalar type has no subarray / names / fields and elsize = alignment = -1 (taken from the type code).
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise pickle.UnpicklingError(f"numpy dtype {self.code!r}: unsupported dtype state {reprlib.repr(state)}")
        order = _as_str(state[1])
        if order not in _BYTE_ORDERS or (order == "|" and self.code[1:] != "1"):
            raise pickle.UnpicklingError(f"numpy dtype {self.code!r}: unsupported byte order {order!r}")
        if state[2:5] != (None, None, None) or state[5:7] != (-1, -1) or (len(state) == 9 and state[8] is not None):
            raise pickle.UnpicklingError(f"numpy dtype {self.code!r}: only plain numeric types are accepted, got "
                                         f"state {reprlib.repr(state)}")
        self.order = _BYTE_ORDERS[order]


class _DTypeFactory:
    """Stands in for ``numpy.dtype`` when a pickle REDUCEs it: accepts ``(typestr, align=0, copy=1)`` of a float or
    integer type and returns a :class:`_DTypeSpec`."""

    __slots__ = ()  # no instance state a pickle's BUILD could set

    def __call__(self, typestr: Any, align: Any = 0, copy: Any = 1, *rest: Any) -> _DTypeSpec:
        code = _as_str(typestr)
        if rest or align not in (0, False) or copy not in (0, 1, False, True):
            raise pickle.UnpicklingError(
                f"numpy dtype: unsupported arguments {reprlib.repr((typestr, align, copy, *rest))}")
        if code not in _SCALAR_FORMATS:
            raise pickle.UnpicklingError(f"numpy dtype {reprlib.repr(code)}: only float and integer scalars are "
                                         f"accepted (one of {sorted(_SCALAR_FORMATS)})")
        return _DTypeSpec(code)


class _ScalarFactory:
    """Stands in for ``numpy.core.multiarray.scalar(dtype, raw)``: decodes ``raw`` (the scalar's bytes; a py2 byte
    string) with :mod:`struct` and returns a plain ``float`` or ``int``."""

    __slots__ = ()  # no instance state a pickle's BUILD could set

    def __call__(self, dtype: Any, raw: Any = None, *rest: Any) -> float | int:
        if not isinstance(dtype, _DTypeSpec) or rest:
            raise pickle.UnpicklingError("numpy scalar: expected (dtype, bytes) arguments from numpy.dtype")
        if dtype.order is None:
            raise pickle.UnpicklingError(
                f"numpy scalar of dtype {dtype.code!r}: the dtype has no byte order (no BUILD)")
        if isinstance(raw, str):  # a py2 byte string read with encoding="latin1"
            raw = raw.encode("latin-1")
        fmt = dtype.order + _SCALAR_FORMATS[dtype.code]
        if not isinstance(raw, bytes) or len(raw) != struct.calcsize(fmt):
            raise pickle.UnpicklingError(f"numpy scalar of dtype {dtype.code!r}: expected {struct.calcsize(fmt)} raw "
                                         f"bytes, got {reprlib.repr(raw)}")
        value = struct.unpack(fmt, raw)[0]
        return float(value) if dtype.code[0] == "f" else int(value)


#: the only globals an annotation pickle may name, mapped to vidpipe's stand-ins (never to what they name)
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "scalar"): _ScalarFactory(),
    ("numpy._core.multiarray", "scalar"): _ScalarFactory(),
    ("numpy", "dtype"): _DTypeFactory(),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only containers, strings and numbers, plus NumPy float / integer scalars rebuilt by
    :data:`_ALLOWED_GLOBALS`; every other global is refused without being imported."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        stand_in = _ALLOWED_GLOBALS.get((module, name))
        if stand_in is None:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: annotation pickles may only contain dicts, strings, numbers and "
                "NumPy float/integer scalars"
            )
        return stand_in

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids in an annotation pickle")


def safe_load_pickle(path: str | Path) -> Any:
    """Load an untrusted (possibly Python-2) pickle, allowing only plain data.

    Python-2 ``str`` values come back as ``bytes`` (decode them with :func:`decode_py2_str`); ``unicode`` values as
    ``str``; NumPy float / integer scalars as plain ``float`` / ``int``.

    Raises:
        SourceError: the file is not a pickle, is truncated, or references any class or function other than the
            NumPy scalar reconstruction (nothing in it is executed: the unpickler never imports).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return _RestrictedUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            struct.error, MemoryError, OverflowError, RecursionError) as exc:  # OverflowError: absurd length fields
        raise SourceError(f"{path}: cannot read annotation pickle safely: {exc}") from exc


def decode_py2_str(raw: bytes) -> str:
    """A Python-2 byte string as text: UTF-8 when it is valid UTF-8 (what the ChaLearn files hold), else Latin-1
    (every byte string decodes; nothing is dropped)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def dump_py2_pickle(obj: Any, fh: BinaryIO) -> None:
    """Write ``obj`` (nested dicts / lists of str, int, float, NumPy float64) the way Python 2's
    ``pickle.dump(obj, f, 2)`` did.

    Strings are written as py2 ``str`` (``SHORT_BINSTRING``/``BINSTRING``) holding their UTF-8 bytes, as in the real
    ChaLearn files; ``numpy.float64`` values as NumPy 1.x under Python 2 wrote them (``GLOBAL numpy.core.multiarray
    scalar``, ``GLOBAL numpy dtype`` + ``REDUCE ('f8', 0, 1)`` + ``BUILD``, then the 8 raw bytes as a py2 ``str``).
    A Python-3 reader needs ``encoding="latin1"`` or ``"bytes"`` exactly as with the real files. Used by the synthetic
    generator and the tests.
    """
    out = io.BytesIO()
    out.write(b"\x80\x02")  # PROTO 2
    _py2_write(obj, out)
    out.write(b".")  # STOP
    fh.write(out.getvalue())


def _py2_bytes(raw: bytes, out: io.BytesIO) -> None:
    if len(raw) < 256:
        out.write(b"U" + bytes([len(raw)]) + raw)  # SHORT_BINSTRING
    else:
        out.write(b"T" + struct.pack("<i", len(raw)) + raw)  # BINSTRING


def _py2_write(obj: Any, out: io.BytesIO) -> None:
    if isinstance(obj, dict):
        out.write(b"}")  # EMPTY_DICT
        if obj:
            out.write(b"(")  # MARK
            for key, value in obj.items():
                _py2_write(key, out)
                _py2_write(value, out)
            out.write(b"u")  # SETITEMS
    elif isinstance(obj, (list, tuple)):
        out.write(b"]")  # EMPTY_LIST
        if obj:
            out.write(b"(")
            for value in obj:
                _py2_write(value, out)
            out.write(b"e")  # APPENDS
    elif isinstance(obj, np.float64):
        out.write(b"cnumpy.core.multiarray\nscalar\n")  # GLOBAL
        out.write(b"cnumpy\ndtype\n" + b"U\x02f8" + b"K\x00K\x01\x87R")  # GLOBAL, ('f8', 0, 1) TUPLE3, REDUCE
        out.write(b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")  # state tuple, BUILD
        _py2_bytes(struct.pack("<d", float(obj)), out)
        out.write(b"\x86R")  # TUPLE2, REDUCE
    elif isinstance(obj, bool):
        out.write(b"\x88" if obj else b"\x89")
    elif isinstance(obj, int):
        out.write(b"J" + struct.pack("<i", obj))  # BININT
    elif isinstance(obj, float):
        out.write(b"G" + struct.pack(">d", obj))  # BINFLOAT
    elif isinstance(obj, str):
        _py2_bytes(obj.encode("utf-8"), out)
    else:
        raise TypeError(f"dump_py2_pickle: cannot write {type(obj).__name__}; expected dict/list/str/int/float")


def _text(value: Any, where: Path) -> str:
    """A key or transcript as text. Only strings and numbers: ``str()`` of an arbitrary unpickled object could be huge
    (a pickle can nest one tuple in itself 10 times per level by reference: 10^30 characters at depth 30) or recurse
    without end."""
    if isinstance(value, bytes):
        return decode_py2_str(value)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise SourceError(f"{where}: expected a string (a video name or a transcript), got a {type(value).__name__}")


def _is_score(value: Any) -> bool:
    """``value`` is a real number (not a bool) in [0, 1]; an int too large for a float is not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and 0.0 <= float(value) <= 1.0
    except OverflowError:
        return False


def read_first_impressions(path: str | Path) -> pd.DataFrame:
    """Parse a First Impressions V2 folder into manifest rows.

    Returns:
        DataFrame with columns ``video_id`` (file stem), ``source_path``, ``split``, one float column per trait and
        ``interview``, and ``transcript`` (the dataset's text, ``""`` where it is empty, ``None`` where the dataset
        has no transcript for the video).

    Raises:
        SourceError: no annotation pickle under ``path``; a pickle with the wrong structure, a missing trait, a
            non-numeric / NaN / out-of-[0,1] score, or a video listed in two splits (file and row named).
    """
    root = Path(path)
    if not root.is_dir():
        raise SourceError(f"path={str(root)!r}: expected a folder holding annotation_*.pkl files and the videos")
    media = find_media(root)
    rows = _read_annotations(root)
    transcripts = _read_transcripts(root)
    records = []
    for name, row in sorted(rows.items()):
        incomplete = [t for t in _ALL_TRAITS if t not in row]
        if incomplete:
            raise SourceError(f"{row['_file']}: video {name!r} has no score for trait(s) {incomplete}")
        records.append({
            "video_id": Path(name).stem,
            "source_path": str(media[name]) if name in media else None,
            "split": row["split"],
            **{t: row[t] for t in _ALL_TRAITS},
            "transcript": transcripts.get(name),
        })
    return pd.DataFrame.from_records(records)


def _read_annotations(root: Path) -> dict[str, dict[str, Any]]:
    """video file name → ``{"split", "_file" (the pickle that listed it first), trait: score, ...}`` from every
    ``annotation_*.pkl`` under ``root``."""
    rows: dict[str, dict[str, Any]] = {}
    found = False
    for tag, split in SPLIT_FILES.items():
        for ann_path in sorted(root.rglob(f"annotation_{tag}.pkl")):
            found = True
            _add_annotation(ann_path, split, rows)
    if not found:
        zips = sum(1 for z in root.rglob("*") if z.suffix.lower() == ".zip")
        hint = (f"; it holds {zips} .zip archive(s): unpack them first with `vidpipe unpack {root} DEST` and ingest DEST"
                if zips else "")
        raise SourceError(f"path={str(root)!r}: no annotation_{{training,validation,test}}.pkl found (searched "
                          f"recursively){hint}")
    return rows


def _add_annotation(ann_path: Path, split: str, rows: dict[str, dict[str, Any]]) -> None:
    """Add the scores of one annotation pickle (of ``split``) to ``rows``, checking its structure and scores."""
    ann = safe_load_pickle(ann_path)
    if not isinstance(ann, dict):
        raise SourceError(f"{ann_path}: expected a dict trait -> {{video: score}}, got {type(ann).__name__}")
    ann = {_text(k, ann_path): v for k, v in ann.items()}
    missing = [t for t in _ALL_TRAITS if t not in ann]
    if missing:
        raise SourceError(f"{ann_path}: missing trait(s) {missing}; expected all of {list(_ALL_TRAITS)}")
    for trait in _ALL_TRAITS:
        scores = ann[trait]
        if not isinstance(scores, dict):
            raise SourceError(f"{ann_path}: trait {trait!r} must map video -> score, got {type(scores).__name__}")
        for raw_name, score in scores.items():
            name = _text(raw_name, ann_path)
            if not _is_score(score):
                raise label_error(ann_path, name, trait, score, "a finite number in [0, 1]")
            row = rows.setdefault(name, {"split": split, "_file": ann_path})
            if row["split"] != split:
                raise SourceError(
                    f"{ann_path}: video {name!r} is also listed in {row['_file']} (split {row['split']!r}); "
                    "each video must belong to one split"
                )
            row[trait] = float(score)


def _read_transcripts(root: Path) -> dict[str, str]:
    """video file name → transcript, from every ``transcription_*.pkl`` under ``root``."""
    transcripts: dict[str, str] = {}
    for tag in SPLIT_FILES:
        for tr_path in sorted(root.rglob(f"transcription_{tag}.pkl")):
            tr = safe_load_pickle(tr_path)
            if not isinstance(tr, dict):
                raise SourceError(f"{tr_path}: expected a dict video -> transcript, got {type(tr).__name__}")
            for k, v in tr.items():
                name = _text(k, tr_path)
                if not isinstance(v, (str, bytes)):  # a transcript is text, never str() of an arbitrary object
                    raise label_error(tr_path, name, "transcript", type(v).__name__, "a string")
                transcripts[name] = _text(v, tr_path)
    return transcripts
