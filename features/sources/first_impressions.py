"""ChaLearn First Impressions V2 adapter (personality, Big-Five + interview).

On-disk layout (as distributed by ChaLearn, LAP 2016/2017):

- ``annotation_{training,validation,test}.pkl``: a pickled ``dict`` trait → {video file name → score in [0, 1]} with
  traits ``extraversion, neuroticism, agreeableness, conscientiousness, openness, interview``;
- ``transcription_{training,validation,test}.pkl``: a pickled ``dict`` video file name → transcript;
- the videos (``*.mp4``), beside the pickles or in per-split sub-folders (searched recursively, matched by file name).

The pickles were written by Python 2, so their strings are py2 ``str`` (bytes) and must be decoded with
``encoding="latin1"``. They are **untrusted input**: :func:`safe_load_pickle` uses a restricted unpickler that can
only build dicts, lists, tuples, strings and numbers (no ``find_class`` at all), so a pickle carrying code is refused
before anything runs.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from features.sources._common import SourceError, find_media, label_error

__all__ = ["TRAITS", "SPLIT_FILES", "safe_load_pickle", "dump_py2_pickle", "read_first_impressions"]

#: Trait columns in the order every personality model predicts them (``interview`` is kept as an extra label).
TRAITS = ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness")
_ALL_TRAITS = TRAITS + ("interview",)
#: file-name split tag → vidpipe split name
SPLIT_FILES = {"training": "train", "validation": "val", "test": "test"}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global: only built-in containers, strings and numbers can be built."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: annotation pickles may only contain dicts, strings and numbers"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids in an annotation pickle")


def safe_load_pickle(path: str | Path) -> Any:
    """Load an untrusted (possibly Python-2) pickle, allowing only plain data.

    Raises:
        SourceError: the file is not a pickle, is truncated, or references any class or function (nothing in it is
            executed: the unpickler has no way to import).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return _RestrictedUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            struct.error, MemoryError, OverflowError, RecursionError) as exc:  # OverflowError: absurd length fields
        raise SourceError(f"{path}: cannot read annotation pickle safely: {exc}") from exc


def dump_py2_pickle(obj: Any, fh: BinaryIO) -> None:
    """Write ``obj`` (nested dicts / lists of str, int, float) the way Python 2's ``pickle.dump(obj, f, 2)`` did.

    Strings are written as py2 ``str`` (``SHORT_BINSTRING``/``BINSTRING``, latin-1 bytes), so a Python-3 reader needs
    ``encoding="latin1"`` exactly as with the real ChaLearn files. Used by the synthetic generator and the tests.
    """
    out = io.BytesIO()
    out.write(b"\x80\x02")  # PROTO 2
    _py2_write(obj, out)
    out.write(b".")  # STOP
    fh.write(out.getvalue())


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
    elif isinstance(obj, bool):
        out.write(b"\x88" if obj else b"\x89")
    elif isinstance(obj, int):
        out.write(b"J" + struct.pack("<i", obj))  # BININT
    elif isinstance(obj, float):
        out.write(b"G" + struct.pack(">d", obj))  # BINFLOAT
    elif isinstance(obj, str):
        raw = obj.encode("latin-1")
        if len(raw) < 256:
            out.write(b"U" + bytes([len(raw)]) + raw)  # SHORT_BINSTRING
        else:
            out.write(b"T" + struct.pack("<i", len(raw)) + raw)  # BINSTRING
    else:
        raise TypeError(f"dump_py2_pickle: cannot write {type(obj).__name__}; expected dict/list/str/int/float")


def _text(value: Any, where: Path) -> str:
    """A key or transcript as text. Only strings and numbers: ``str()`` of an arbitrary unpickled object could be huge
    (a pickle can nest one tuple in itself 10 times per level by reference: 10^30 characters at depth 30) or recurse
    without end."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise SourceError(f"{where}: expected a string (a video name or a transcript), got a {type(value).__name__}")


def read_first_impressions(path: str | Path) -> pd.DataFrame:
    """Parse a First Impressions V2 folder into manifest rows.

    Returns:
        DataFrame with columns ``video_id`` (file stem), ``source_path``, ``split``, one float column per trait and
        ``interview``, and ``transcript`` (``None`` where the dataset has none).

    Raises:
        SourceError: no annotation pickle under ``path``; a pickle with the wrong structure, a missing trait, a
            non-numeric / NaN / out-of-[0,1] score, or a video listed in two splits (file and row named).
    """
    root = Path(path)
    if not root.is_dir():
        raise SourceError(f"path={str(root)!r}: expected a folder holding annotation_*.pkl files and the videos")
    media = find_media(root)
    rows: dict[str, dict[str, Any]] = {}
    found = False
    for tag, split in SPLIT_FILES.items():
        for ann_path in sorted(root.rglob(f"annotation_{tag}.pkl")):
            found = True
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
                    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score) \
                            or not 0.0 <= float(score) <= 1.0:
                        raise label_error(ann_path, name, trait, score, "a finite number in [0, 1]")
                    row = rows.setdefault(name, {"split": split, "_file": ann_path})
                    if row["split"] != split:
                        raise SourceError(
                            f"{ann_path}: video {name!r} is also listed in {row['_file']} (split {row['split']!r}); "
                            "each video must belong to one split"
                        )
                    row[trait] = float(score)
    if not found:
        raise SourceError(f"path={str(root)!r}: no annotation_{{training,validation,test}}.pkl found (searched recursively)")
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
