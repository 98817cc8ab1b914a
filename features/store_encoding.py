"""How the store's parts encode what they write: JSON for numpy values, Zarr chunking and compression, timestamps.

Shared by :mod:`features.store` (the index) and its parts (:mod:`features.store_artifacts`,
:mod:`features.store_packs`, :mod:`features.store_runs`), so each writes the same bytes for the same values.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zarr

__all__ = ["CHUNK_BYTES", "NAME_EXPECTED", "ZARR_COMPRESSOR", "check_name", "is_name", "json_default",
           "remove_children", "utc_now", "zarr_chunks"]

#: lossless compression of every Zarr array the store writes
ZARR_COMPRESSOR = zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle=zarr.codecs.BloscShuffle.bitshuffle)
#: an array up to this size is one chunk; a larger one is chunked along its first axis
CHUNK_BYTES = 8 << 20


#: what :func:`check_name` accepts, in the words of its error
NAME_EXPECTED = "one path component of letters, digits, '_', '.', '-' (not '.' or '..')"
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")


def is_name(value: Any) -> bool:
    """Whether ``value`` is one safe path component: letters, digits, '_', '.', '-', and not '.' or '..'."""
    return isinstance(value, str) and _NAME_RE.fullmatch(value) is not None and value not in (".", "..")


def check_name(arg: str, value: Any, *, pattern: re.Pattern[str] | None = None, expected: str = NAME_EXPECTED) -> str:
    """``value`` if it is a name the store may turn into a path component, else ``ValueError`` naming ``arg``.

    The store's one check of the names it builds paths from, made where it builds the path, so reads and writes
    refuse a name alike: dataset names, stage names (``Store._stage_path``), artifact names, fingerprints and file
    names (``ArtifactsPart._artifact_path``), table, memo and report names, run ids, pack fingerprints and
    :meth:`~features.store.Store.local_dir` parts. Accepted: :func:`is_name`, or the whole string matching
    ``pattern`` (then ``expected`` says what that pattern accepts).
    """
    ok = is_name(value) if pattern is None else isinstance(value, str) and pattern.fullmatch(value) is not None
    if not ok:
        raise ValueError(f"{arg}={value!r}: expected {expected}")
    return value


def utc_now() -> str:
    """The current time as ISO 8601 in UTC, to the millisecond."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def zarr_chunks(arr: np.ndarray) -> tuple[int, ...]:
    """The chunk shape for ``arr``: whole up to :data:`CHUNK_BYTES`, else rows of the first axis."""
    if arr.ndim == 0:
        return ()
    if arr.nbytes <= CHUNK_BYTES or arr.shape[0] <= 1:
        return tuple(max(1, s) for s in arr.shape)
    per_row = max(1, arr.nbytes // max(1, arr.shape[0]))
    return (max(1, CHUNK_BYTES // per_row), *(max(1, s) for s in arr.shape[1:]))


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays, paths and dataclasses."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        return {k: getattr(obj, k) for k in obj.__dataclass_fields__}
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def remove_children(fs: Any, folder: str, drop: Callable[[str], bool]) -> None:
    """Remove (recursively) every entry of ``folder`` whose name ``drop`` selects; a missing folder or an entry that
    vanished meanwhile (a concurrent cleaner) is not an error."""
    try:
        entries = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return
    for p in entries:
        if drop(p.rstrip("/").rsplit("/", 1)[-1]):
            with contextlib.suppress(FileNotFoundError):
                fs.rm(p, recursive=True)
