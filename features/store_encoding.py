"""How the store's parts encode what they write: JSON for numpy values, Zarr chunking and compression, timestamps.

Shared by :mod:`features.store` (the index) and its parts (:mod:`features.store_artifacts`,
:mod:`features.store_packs`, :mod:`features.store_runs`), so each writes the same bytes for the same values.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zarr

__all__ = ["CHUNK_BYTES", "ZARR_COMPRESSOR", "json_default", "remove_children", "utc_now", "zarr_chunks"]

#: lossless compression of every Zarr array the store writes
ZARR_COMPRESSOR = zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle=zarr.codecs.BloscShuffle.bitshuffle)
#: an array up to this size is one chunk; a larger one is chunked along its first axis
CHUNK_BYTES = 8 << 20


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
