"""One-object outputs: a committed stage output as a single object, its index record followed by its arrays.

On object-store roots a Zarr group costs a request per metadata document, per chunk and per existence check (about
25 requests for one frames output). :meth:`features.store.Store.write` there commits an output with arrays as one
object at the index record's own path (``index/<stage>/<key>.json``), written by one PUT — atomic, like the record
alone::

    {"video_id": ..., "data": "inline", "arrays": [[name, dtype, shape, offset, nbytes], ...], ...}\\n
    <payload: each array's bytes, Blosc-zstd compressed, at its offset>

The first line is the JSON index record (``json.dumps`` escapes newlines inside strings, so the line ends at the
first ``\\n``); ``arrays`` lays out the payload that follows. A reader that needs only the record reads the head of the
object (:data:`HEAD_BYTES`, range request), a reader of the arrays reads the whole object once — record and arrays
from the same bytes, so no reader pairs a record with another commit's arrays. An object without a newline is a plain
JSON record (no arrays, or a tombstone), written the same way as on local stores.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numcodecs
import numpy as np

__all__ = ["INLINE", "HEAD_BYTES", "encode", "decode_head", "decode_arrays", "signature"]

#: the ``data`` value of an index record whose arrays follow it in the same object
INLINE = "inline"
#: bytes read for a record without its arrays (a longer head is read whole)
HEAD_BYTES = 1 << 16
_CODEC = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)


def encode(record: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """The object of an output: ``record`` (with ``data`` set to :data:`INLINE` and the payload layout) + arrays.

    ``record`` must be JSON-able (the caller's index record fields); arrays of a numeric or boolean dtype only, stored
    C-contiguous and at least 1-d (a 0-d array comes back with shape (1,), as from a Zarr group commit).
    """
    layout, chunks, offset = [], [], 0
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"arrays[{name!r}]: dtype {arr.dtype} cannot be stored in an inline output; expected a "
                            "boolean, integer or float array")
        blob = _CODEC.encode(arr) if arr.nbytes else b""
        layout.append([name, arr.dtype.str, list(arr.shape), offset, len(blob)])
        chunks.append(blob)
        offset += len(blob)
    head = json.dumps({**record, "data": INLINE, "arrays": layout}, separators=(",", ":")).encode()
    return b"".join([head, b"\n", *chunks])


def decode_head(blob: bytes) -> dict | None:
    """The index record at the start of an object (``None``: ``blob`` is a head cut before the record ends)."""
    end = blob.find(b"\n")
    if end < 0:
        try:
            return json.loads(blob)  # a plain JSON record
        except ValueError:
            return None
    return json.loads(blob[:end])


def decode_arrays(blob: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """``(record, arrays)`` of a whole object written by :func:`encode`."""
    end = blob.find(b"\n")
    if end < 0:
        raise ValueError("not an inline output object: no record line before the arrays")
    record = json.loads(blob[:end])
    payload = memoryview(blob)[end + 1:]
    arrays = {}
    for name, dtype, shape, offset, nbytes in record["arrays"]:
        out = np.empty(shape, dtype=np.dtype(dtype))
        if out.nbytes:
            _CODEC.decode(payload[offset:offset + nbytes], out=out)
        arrays[name] = out
    return record, arrays


def signature(record: Mapping[str, Any]) -> tuple:
    """``((name, dtype, shape), ...)`` of an inline record's arrays, sorted by name (no payload read)."""
    return tuple(sorted((name, np.dtype(dtype).str, tuple(shape)) for name, dtype, shape, _, _ in record["arrays"]))
