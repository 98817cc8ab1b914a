"""Fingerprints: the cache keys of every stage output.

A stage output is reused when, and only when, its fingerprint is unchanged (Hugging Face ``datasets`` style)::

    fingerprint = blake2b-128( "stage@version" ‖ canonical-json(params) ‖ input₁ ‖ input₂ ‖ … )

where each input is either the content digest of a source file or the fingerprint of an upstream output. Canonical
JSON sorts keys and renders floats with ``repr`` so equal parameters always hash equally; anything that cannot be
rendered (an open file, a model object) raises ``TypeError`` instead of hashing its ``id`` — a cache keyed on something
unverifiable must never be reused.

Content digests of large media files are memoised on ``(path, size, mtime_ns, inode)`` (see :class:`DigestCache`): the
same stat → the same content is the assumption ``make`` and ``rsync`` make; ``DigestCache.digest(path, refresh=True)`` re-hashes regardless.
"""

from __future__ import annotations

import array
import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

__all__ = ["fingerprint", "fingerprinter", "canonical_json", "file_digest", "frame_digest", "given_stats", "path_stats",
           "stat_digest", "DigestCache"]

_CHUNK = 1 << 20


def _canon(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__dataclass__": type(obj).__name__, **{f.name: _canon(getattr(obj, f.name))
                                                        for f in dataclasses.fields(obj)}}
    if isinstance(obj, Mapping):
        return {str(k): _canon(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canon(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(_canon(v) for v in obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return {"__float__": repr(obj)} if not math.isfinite(obj) else float(repr(obj))
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():  # numpy scalar
        return _canon(obj.item())
    raise TypeError(f"cannot fingerprint a {type(obj).__name__}: pass plain data (numbers, strings, lists, dicts, "
                    "dataclasses) so the cache key is verifiable")


_PLAIN = (str, int, bool, type(None))


def _flat(obj: Any) -> bool:
    """``obj`` is a dict of str keys and plain scalar values (str, int, bool, None, finite float), which
    :func:`_canon` would return unchanged: the common case of a manifest row or stage parameters."""
    if type(obj) is not dict:
        return False
    for k, v in obj.items():
        if type(k) is not str:
            return False
        t = type(v)
        if t not in _PLAIN and not (t is float and math.isfinite(v)):
            return False
    return True


def canonical_json(obj: Any) -> str:
    """JSON text that is identical for equal parameter sets (sorted keys, stable floats, no whitespace)."""
    return json.dumps(obj if _flat(obj) else _canon(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def fingerprint(stage: str, version: int | str, params: Any = None, inputs: Iterable[str] = ()) -> str:
    """The cache key of one stage output (32 hex chars).

    Args:
        stage: the stage name, e.g. ``"frames"``.
        version: the stage's code version; bump it whenever the stage's output changes for the same inputs.
        params: the parameters that change the output (plain data or dataclasses).
        inputs: content digests and/or upstream fingerprints, in a fixed order.
    """
    return fingerprinter(stage, version, params)(inputs)


def fingerprinter(stage: str, version: int | str, params: Any = None) -> Callable[[Iterable[str]], str]:
    """``inputs -> fingerprint(stage, version, params, inputs)`` with the stage and parameters hashed once.

    Planning computes the same stage's key for thousands of videos with the same parameters; rendering the
    parameters' canonical JSON once instead of per video made that several times faster. The keys are
    identical to :func:`fingerprint`'s (it is built on this).
    """
    if not stage:
        raise ValueError(f"stage={stage!r}: expected a non-empty stage name")
    head = hashlib.blake2b(digest_size=16)
    head.update(f"{stage}@{version}".encode())
    head.update(b"\x00" + canonical_json(params).encode())

    def key(inputs: Iterable[str] = ()) -> str:
        h = head.copy()
        for item in inputs:
            if not isinstance(item, str) or not item:
                raise TypeError(f"inputs must be non-empty strings (digests or fingerprints), got {item!r}")
            h.update(b"\x00" + item.encode())
        return h.hexdigest()

    return key


def file_digest(path: str | os.PathLike[str]) -> str:
    """blake2b-128 of a file's bytes (streamed in 1 MiB chunks, so memory does not grow with file size)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def frame_digest(df: Any) -> str | None:
    """blake2b-128 of a pandas DataFrame's columns, dtypes and values (its rows in order, the index left out), from
    its Arrow IPC stream: one pass in C over the columns instead of a canonical JSON per row. ``None`` when Arrow
    cannot convert a column (an object column of mixed types): such a frame gets no memo keyed on it."""
    import pyarrow as pa

    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.blake2b(sink.getvalue(), digest_size=16).hexdigest()


def path_stats(paths: Iterable[Any]) -> list[os.stat_result | None]:
    """``os.stat`` of each path in order (symlinks followed), ``None`` where it fails (missing, not a path).

    One pass that :func:`stat_digest` and a caller's own checks (is it a regular file?) can share, so a plan stats
    each source file once."""
    out: list[os.stat_result | None] = []
    for path in paths:
        try:
            out.append(os.stat(path))
        except (OSError, TypeError, ValueError):
            out.append(None)
    return out


def given_stats(paths: Sequence[Any], stats: Sequence[os.stat_result | None] | None, *,
                expected: str = "path_stats(paths)") -> Sequence[os.stat_result | None]:
    """``stats`` when it holds one entry per path, :func:`path_stats` of ``paths`` when it is ``None``.

    Raises:
        ValueError: ``stats`` does not hold one entry per path (the message names ``expected``).
    """
    if stats is None:
        return path_stats(paths)
    if len(stats) != len(paths):
        raise ValueError(f"stats: {len(stats)} entries for {len(paths)} paths; expected {expected}")
    return stats


def stat_digest(paths: Iterable[Any], stats: Sequence[os.stat_result | None] | None = None) -> str:
    """blake2b-128 of each path's ``(size, mtime_ns, inode)`` in order (what :class:`DigestCache` keys a file's
    content on), with the working directory when a path is relative. A path that cannot be stat-ed (missing, not a
    string) counts as ``(-1, -1, -1)``.

    ``stats``: :func:`path_stats` of the same ``paths``, already taken; then no path is stat-ed again.

    Raises:
        ValueError: ``stats`` does not hold one entry per path.
    """
    paths = list(paths)
    stats = given_stats(paths, stats)
    stamps = array.array("q")
    relative = False
    for path, st in zip(paths, stats):
        if st is None:
            stamps.extend((-1, -1, -1))
            continue
        stamps.extend((st.st_size, st.st_mtime_ns, st.st_ino))
        if isinstance(path, (str, bytes, os.PathLike)) and not os.path.isabs(path):
            relative = True
    h = hashlib.blake2b(stamps.tobytes(), digest_size=16)
    if relative:
        h.update(b"\x00" + os.getcwd().encode())
    return h.hexdigest()


class DigestCache:
    """Memoises :func:`file_digest` on ``(path, size, mtime_ns, inode)``.

    The cache is a plain dict so the store can persist it as a table; :meth:`to_records` / :meth:`from_records`
    convert. A file whose stat changed is re-hashed; a file whose stat is unchanged is assumed unchanged.
    """

    def __init__(self, records: Iterable[Mapping[str, Any]] = ()) -> None:
        self._memo: dict[str, tuple[int, int, int, str]] = {
            r["path"]: (int(r["size"]), int(r["mtime_ns"]), int(r["inode"]), str(r["digest"])) for r in records
        }
        self.hashed = 0  # how many files were actually read (for reports and tests)

    def digest(self, path: str | os.PathLike[str], *, refresh: bool = False) -> str:
        """Content digest of ``path``, re-hashing only when its stat changed (or ``refresh``)."""
        key = os.path.abspath(path)
        st = os.stat(key)
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        hit = self._memo.get(key)
        if hit is not None and hit[:3] == stamp and not refresh:
            return hit[3]
        value = file_digest(key)
        self.hashed += 1
        self._memo[key] = (*stamp, value)
        return value

    def to_records(self) -> list[dict[str, Any]]:
        """Rows ``path, size, mtime_ns, inode, digest`` for persisting."""
        return [{"path": p, "size": s, "mtime_ns": m, "inode": i, "digest": d}
                for p, (s, m, i, d) in sorted(self._memo.items())]
