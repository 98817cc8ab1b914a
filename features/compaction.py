"""The compacted layer of the feature store: committed per-video outputs folded into shards and index partitions.

:mod:`features.store` commits every (stage, video) output on its own (the *fresh layer*: one index record, one Zarr
group, one failure record per file). That is what makes a commit atomic and an invalidation cheap, and what makes a
store of 100,000 videos hold millions of files. Compaction folds the fresh layer into a few large immutable files::

    compact/CURRENT.json                                the live generation: which files make up the compacted view
    compact/index/<stage>/<gen>-b<bucket>-<rand>.parquet   index partition: one row per video whose id hashes to bucket
    compact/failures/<gen>-<rand>.parquet               one row per recorded failure (stage, video, error, ...)
    compact/shards.zarr/<stage>/<shard>/<array>         one Zarr v3 array per output array with a leading video axis,
                                                        stored with the sharding codec (inner chunk = one video's row)

**Reading.** The view of a stage is the compacted rows overlaid by the fresh layer: a fresh index record replaces the
compacted row of its video, a fresh *tombstone* (``{"video_id", "stage", "dropped": true}`` at the index record's
path, written by :meth:`Store.drop`) hides it. A compacted failure is hidden by any fresh index file of its (stage,
video) (a later commit cleared it, or a drop) and replaced by a fresh failure record. Readers list the fresh layer
first and read ``CURRENT.json`` second, so a compaction that lands in between only moves outputs from the first into
the second.

**Compacting** (under the store's write lock): read the fresh layer and the current generation, merge them, write the
arrays of the fresh outputs into new shards (and re-pack shards that became mostly dead or are small), write the index
partitions whose rows changed and the failure table, then commit by replacing ``CURRENT.json`` (one atomic write).
Only then are the folded fresh files removed (on object stores: those whose ETag is unchanged since the listing the
compaction read, 1,000 keys per delete request). :meth:`Store.write_many` commits a batch of outputs the same way, as
if they were fresh. A crash before the commit leaves unreferenced files (removed by the next compaction or
:meth:`Store.gc`); a crash after it leaves fresh files equal to their compacted rows (recognised and removed by the
next compaction). Files a generation no longer references are *retired*: listed in ``CURRENT.json``
with the time and deleted by a compaction ``grace_seconds`` later, so a reader still holding the previous generation
never loses a file under it.

Memory: compaction holds the merged index of one stage (one row dict per video) and, per array being written, at most
one Zarr shard of rows (``shard_bytes``, 64 MiB by default).
"""

from __future__ import annotations

import collections
import datetime as _dt
import hashlib
import io
import json
import math
import os
import threading
import time
import uuid
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from features.errors import StoreError

__all__ = ["CompactView", "compact", "collect", "read_current", "read_view", "referenced", "row_to_record",
           "SHARD_VIDEOS", "SHARD_BYTES", "PART_ROWS"]

#: videos per shard (one Zarr group of arrays with a leading video axis)
SHARD_VIDEOS = 4096
#: uncompressed bytes per Zarr shard file (the rows of one array written at once; bounds compaction memory)
SHARD_BYTES = 64 << 20
#: target rows per index partition (the number of partitions is a power of two, re-chosen as the stage grows)
PART_ROWS = 16384
#: a shard is re-packed when fewer than this fraction of its rows are still live
_MIN_LIVE = 0.5
_CURRENT_FORMAT = 1
_INDEX_COLUMNS = ("video_id", "fingerprint", "version", "params", "record", "created", "seconds", "origin", "shard",
                  "row")
_FAILURE_COLUMNS = ("video_id", "stage", "error", "fingerprint", "time")
_CODEC = zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle=zarr.codecs.BloscShuffle.bitshuffle)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _bucket(video_id: str, buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(video_id.encode(), digest_size=4).digest(), "big") % buckets


def _age_seconds(iso: str) -> float:
    try:
        return time.time() - _dt.datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return math.inf


# ---------------------------------------------------------------------------------------------------- reading
#: process-wide memo of parsed index partitions and opened shard arrays: their files are immutable (unique names)
_PARTS: "collections.OrderedDict[str, dict]" = collections.OrderedDict()
_ARRAYS: "collections.OrderedDict[str, Any]" = collections.OrderedDict()
_CURRENTS: dict[str, tuple[tuple[int, int, int], dict]] = {}
_MEMO_LOCK = threading.Lock()
_MAX_PARTS, _MAX_ARRAYS = 512, 1024
_PARAMS: dict[str, dict] = {}  # parameter JSON → parsed (most outputs of a stage share their parameters)


def _memo_get(memo: "collections.OrderedDict[str, Any]", key: str) -> Any:
    with _MEMO_LOCK:
        hit = memo.get(key)
        if hit is not None:
            memo.move_to_end(key)
        return hit


def _memo_put(memo: "collections.OrderedDict[str, Any]", key: str, value: Any, limit: int) -> None:
    with _MEMO_LOCK:
        memo[key] = value
        while len(memo) > limit:
            memo.popitem(last=False)


def read_current(store: Any) -> dict:
    """The live generation's record (``CURRENT.json``), or an empty generation when the store was never compacted."""
    path = store._p("compact", "CURRENT.json")
    if store.local:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return _empty_current()
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        hit = _CURRENTS.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            cur = _parse_current(fh.read(), path)
        _CURRENTS[path] = ((st.st_ino, st.st_size, st.st_mtime_ns), cur)
        return cur
    try:  # start=0: one ranged GET (without a range, s3fs first asks for the size: a HEAD request)
        return _parse_current(store.fs.cat_file(path, start=0), path)
    except FileNotFoundError:
        return _empty_current()


def _parse_current(blob: bytes, path: str) -> dict:

    try:
        cur = json.loads(blob)
        if cur.get("format") != _CURRENT_FORMAT:
            raise ValueError(f"format {cur.get('format')!r}")
        return cur
    except (ValueError, AttributeError) as exc:
        raise StoreError(f"{path} is not a compaction record this vidpipe reads ({exc}); it is written atomically, so "
                         "it was edited or damaged by hand: restore it from a backup") from None


def _empty_current() -> dict:
    return {"format": _CURRENT_FORMAT, "generation": 0, "created": None, "stages": {}, "shards": {},
            "failures": None, "retired": []}


class CompactView:
    """Read access to one generation of the compacted layer (immutable files, memoised per process)."""

    def __init__(self, store: Any, current: dict) -> None:
        self.store = store
        self.current = current

    def stages(self) -> list[str]:
        return sorted(self.current["stages"])

    def _part(self, rel: str) -> dict:
        path = self.store._p("compact", rel)
        hit = _memo_get(_PARTS, path)
        if hit is not None:
            return hit
        if self.store.local:
            table = pq.read_table(path)
        else:  # one GET of the whole file (a file handle would add a HEAD and ranged reads)
            table = pq.read_table(pa.BufferReader(self.store.fs.cat_file(path, start=0)))
        cols = table.to_pydict()
        part = {"cols": cols, "pos": {v: i for i, v in enumerate(cols["video_id"])}}
        _memo_put(_PARTS, path, part, _MAX_PARTS)
        return part

    def _parts(self, stage: str) -> list[dict]:
        info = self.current["stages"].get(stage)
        return [self._part(rel) for rel in info["parts"] if rel] if info else []

    def ids(self, stage: str) -> list[str]:
        return [v for part in self._parts(stage) for v in part["cols"]["video_id"]]

    def fingerprints(self, stage: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in self._parts(stage):
            out.update(zip(part["cols"]["video_id"], part["cols"]["fingerprint"]))
        return out

    def commit_keys(self, stage: str) -> dict[str, tuple]:
        """video id → (fingerprint, data, created, version) of its row, from those columns only."""
        out: dict[str, tuple] = {}
        for part in self._parts(stage):
            cols = part["cols"]
            out.update(zip(cols["video_id"], ((fp, f"shard:{shard}:{int(row)}" if shard else None, created, int(ver))
                                              for fp, shard, row, created, ver in zip(
                                                  cols["fingerprint"], cols["shard"], cols["row"], cols["created"],
                                                  cols["version"]))))
        return out

    def rows(self, stage: str) -> dict[str, dict]:
        """video id → its index row (a new dict per call)."""
        out = {}
        for part in self._parts(stage):
            cols = part["cols"]
            for i, vid in enumerate(cols["video_id"]):
                out[vid] = {c: cols[c][i] for c in _INDEX_COLUMNS}
        return out

    def row(self, stage: str, video_id: str) -> dict | None:
        info = self.current["stages"].get(stage)
        if not info:
            return None
        rel = info["parts"][_bucket(video_id, info["buckets"])]
        if not rel:
            return None
        part = self._part(rel)
        i = part["pos"].get(video_id)
        return None if i is None else {c: part["cols"][c][i] for c in _INDEX_COLUMNS}

    def failures(self) -> list[dict]:
        rel = self.current.get("failures")
        if not rel:
            return []
        cols = self._part(rel)["cols"]
        return [{c: cols[c][i] for c in _FAILURE_COLUMNS} for i in range(len(cols["video_id"]))]

    def failure_index(self) -> dict[tuple[str, str], dict]:
        """(stage, video id) → failure row of this generation."""
        rel = self.current.get("failures")
        if not rel:
            return {}
        part = self._part(rel)
        if "by_key" not in part:
            cols = part["cols"]
            part["by_key"] = {(cols["stage"][i], cols["video_id"][i]): {c: cols[c][i] for c in _FAILURE_COLUMNS}
                              for i in range(len(cols["video_id"]))}
        return part["by_key"]

    def shard_arrays(self, stage: str, shard: str, row: int) -> dict[str, np.ndarray]:
        """One video's arrays from a shard."""
        info = self.current["shards"].get(f"{stage}/{shard}")
        if info is None:
            raise FileNotFoundError(f"shard {stage}/{shard} is not part of compacted generation "
                                    f"{self.current['generation']}")
        arrays = [self._array(stage, shard, name) for name in info["arrays"]]
        return dict(zip(info["arrays"], _sync(_rows_of(arrays, row))))

    def shard_rows(self, stage: str, shard: str, rows: Iterable[int], names: Iterable[str] | None = None, *,
                   block_bytes: int = SHARD_BYTES) -> dict[int, dict[str, np.ndarray]]:
        """Many videos' arrays from a shard: row → {name: array}, read array by array in blocks of whole rows.

        A block spans consecutive wanted rows up to ``block_bytes`` of one array (one slice through Zarr: one shard
        index read and the inner chunks, instead of one getitem per video); rows of a block are views of it when
        the block holds only wanted rows, else copies (no unwanted row stays alive). ``names``: the arrays to read
        (default all).
        """
        info = self.current["shards"].get(f"{stage}/{shard}")
        if info is None:
            raise FileNotFoundError(f"shard {stage}/{shard} is not part of compacted generation "
                                    f"{self.current['generation']}")
        wanted = sorted(set(rows))
        out: dict[int, dict[str, np.ndarray]] = {r: {} for r in wanted}
        for name in info["arrays"] if names is None else [n for n in info["arrays"] if n in set(names)]:
            arr = self._array(stage, shard, name)
            per_block = max(1, block_bytes // max(1, np.dtype(arr.dtype).itemsize * math.prod(arr.shape[1:])))
            i = 0
            while i < len(wanted):
                lo, j = wanted[i], i
                while j + 1 < len(wanted) and wanted[j + 1] - lo < per_block:
                    j += 1
                hi = wanted[j] + 1
                block = arr[lo:hi]
                dense = j - i + 1 == hi - lo
                for r in wanted[i:j + 1]:
                    out[r][name] = block[r - lo, ...] if dense else block[r - lo, ...].copy()
                i = j + 1
        return out

    def _array(self, stage: str, shard: str, name: str) -> Any:
        key = f"{self.store.url}|{stage}/{shard}/{name}"
        arr = _memo_get(_ARRAYS, key)
        if arr is None:
            arr = zarr.open_array(self.store._shard_zarr(), path=f"{stage}/{shard}/{name}", mode="r")
            _memo_put(_ARRAYS, key, arr, _MAX_ARRAYS)
        return arr


async def _rows_of(arrays: list, row: int) -> list[np.ndarray]:
    """Row ``row`` of each array, read concurrently (one trip through Zarr's event loop, not one per array)."""
    import asyncio

    return list(await asyncio.gather(*(a._async_array.getitem(row) for a in arrays)))


def _sync(coro: Any) -> Any:
    from zarr.core.sync import sync

    return sync(coro)


def read_view(store: Any) -> CompactView:
    """The compacted view of ``store``'s live generation."""
    return CompactView(store, read_current(store))


def row_to_record(stage: str, row: Mapping[str, Any]) -> dict:
    """An index row as the fields of an ``IndexRecord`` (parameters parsed once per distinct JSON)."""
    params = _PARAMS.get(row["params"])
    if params is None:
        params = json.loads(row["params"])
        if len(_PARAMS) < 4096:
            _PARAMS[row["params"]] = params
    return {"video_id": row["video_id"], "stage": stage, "version": int(row["version"]),
            "fingerprint": row["fingerprint"], "params": dict(params), "record": json.loads(row["record"]),
            "data": f"shard:{row['shard']}:{int(row['row'])}" if row["shard"] else None,
            "created": row["created"], "seconds": float(row["seconds"])}


# ---------------------------------------------------------------------------------------------------- writing
def _write_parquet(store: Any, rel: str, columns: Mapping[str, list], schema: pa.Schema) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.table({k: columns[k] for k in schema.names}, schema=schema), buf, row_group_size=PART_ROWS,
                   compression="zstd")
    store._write_bytes(store._p("compact", rel), buf.getvalue())


_INDEX_SCHEMA = pa.schema([("video_id", pa.string()), ("fingerprint", pa.string()), ("version", pa.int64()),
                           ("params", pa.string()), ("record", pa.string()), ("created", pa.string()),
                           ("seconds", pa.float64()), ("origin", pa.string()), ("shard", pa.string()),
                           ("row", pa.int64())])
_FAILURE_SCHEMA = pa.schema([("video_id", pa.string()), ("stage", pa.string()), ("error", pa.string()),
                             ("fingerprint", pa.string()), ("time", pa.string())])


class _ShardWriter:
    """Rows of one signature (array names, dtypes, shapes) written into a new shard, one Zarr shard file at a time."""

    def __init__(self, store: Any, stage: str, shard: str, signature: tuple, capacity: int, shard_bytes: int) -> None:
        self.store, self.stage, self.shard, self.capacity = store, stage, shard, capacity
        self.n = 0
        self.arrays: dict[str, Any] = {}
        self.buffers: dict[str, list[np.ndarray]] = {}
        self.rows_per_file: dict[str, int] = {}
        self.flushed: dict[str, int] = {}
        for name, dtype, shape in signature:
            row_bytes = max(1, int(np.dtype(dtype).itemsize * math.prod(shape)))
            per_file = max(1, min(capacity, shard_bytes // row_bytes))
            inner = tuple(max(1, s) for s in shape)
            self.arrays[name] = zarr.create_array(
                store._shard_zarr(), name=f"{stage}/{shard}/{name}", shape=(capacity, *shape), dtype=dtype,
                chunks=(1, *inner), shards=(per_file, *inner), compressors=_CODEC, fill_value=0,
                zarr_format=3)
            self.rows_per_file[name], self.buffers[name], self.flushed[name] = per_file, [], 0

    @property
    def full(self) -> bool:
        return self.n >= self.capacity

    def add(self, arrays: Mapping[str, np.ndarray]) -> int:
        row = self.n
        for name in self.arrays:
            self.buffers[name].append(np.asarray(arrays[name]))
            if len(self.buffers[name]) == self.rows_per_file[name]:
                self._flush(name)
        self.n += 1
        return row

    def _flush(self, name: str) -> None:
        buf = self.buffers[name]
        if buf:
            start = self.flushed[name]
            self.arrays[name][start:start + len(buf)] = np.stack(buf)
            self.flushed[name] = start + len(buf)
            self.buffers[name] = []

    def close(self) -> dict:
        for name in self.arrays:
            self._flush(name)
            if self.n < self.capacity:
                self.arrays[name].resize((self.n, *self.arrays[name].shape[1:]))
        return {"rows": self.n, "arrays": list(self.arrays)}


def compact(store: Any, *, shard_videos: int = SHARD_VIDEOS, shard_bytes: int = SHARD_BYTES,
            part_rows: int = PART_ROWS, grace_seconds: float = 600.0,
            batch: Mapping[str, Mapping[str, dict]] | None = None) -> dict:
    """Fold ``store``'s fresh layer into a new compacted generation (see the module docstring).

    ``batch``: stage → video id → an output committed straight into this generation (an index record dict marked
    ``"_batch"``, its arrays under ``"_arrays"``, see :meth:`features.store.Store.write_many`). It replaces the
    video's fresh record (removed after the commit, like a folded one) and clears its failure, as a commit through
    the fresh layer does.

    The caller holds the store's write lock. Returns ``{"generation", "folded", "dropped", "failures", "shards_written",
    "shards_retired", "removed", "seconds"}``; ``folded`` counts fresh and batch outputs moved into the compacted layer.
    """
    _check_sizes(shard_videos=shard_videos, shard_bytes=shard_bytes, part_rows=part_rows, grace_seconds=grace_seconds)
    t0 = time.perf_counter()
    cur = read_current(store)
    view = CompactView(store, cur)
    fresh, superseded, etags = _read_fresh(store, batch)
    fresh_failures = store._fresh_failures()
    stats = {"generation": cur["generation"], "folded": 0, "dropped": 0, "failures": 0, "shards_written": 0,
             "shards_retired": 0, "removed": 0}
    if not fresh and not fresh_failures:
        stats["removed"] = collect(store, cur, grace_seconds)
        stats["seconds"] = round(time.perf_counter() - t0, 3)
        return stats

    gen = int(cur["generation"]) + 1
    new = {"format": _CURRENT_FORMAT, "generation": gen, "created": _now(), "stages": dict(cur["stages"]),
           "shards": dict(cur["shards"]), "failures": cur.get("failures"), "retired": list(cur.get("retired", []))}
    retire: list[str] = []
    folded: dict[str, list[tuple[str, dict]]] = {}  # stage → fresh items now in the compacted layer (to remove)
    for stage in sorted(fresh):
        folded[stage] = _compact_stage(store, view, stage, fresh[stage], new, retire, stats, gen,
                                       shard_videos=shard_videos, shard_bytes=shard_bytes, part_rows=part_rows)
    _fold_failures(store, view, fresh, fresh_failures, batch or {}, new, retire, stats, gen)
    _commit_generation(store, new, retire)
    stats["generation"] = gen

    # the folded fresh files: removed only while they still hold what was folded
    for stage, items in folded.items():
        items = [(vid, raw) for vid, raw in items if not raw.get("_batch")] + superseded.get(stage, [])
        store._remove_fresh_many(stage, items, etags.get(stage) if not store.local else None)
    for item in fresh_failures:
        store._remove_fresh_failure(item)
    stats["removed"] = collect(store, new, grace_seconds)
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return stats


def _check_sizes(*, grace_seconds: float, **sizes: int) -> None:
    """Refuse a size that is not an int >= 1 and a grace period that is not a number >= 0, naming the argument."""
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an int >= 1")
    if not grace_seconds >= 0:
        raise ValueError(f"grace_seconds={grace_seconds!r}: expected a number of seconds >= 0")


def _read_fresh(store: Any, batch: Mapping[str, Mapping[str, dict]] | None
                ) -> tuple[dict[str, dict[str, dict]], dict[str, list[tuple[str, dict]]], dict[str, dict[str, str]]]:
    """``(fresh, superseded, etags)``: stage → video id → fresh record, with ``batch``'s outputs over them; the fresh
    records a batch output replaces (removed after the commit); object stores: stage → path → ETag of the listing
    (a folded object is deleted only while its ETag is unchanged)."""
    etags: dict[str, dict[str, str]] = {stage: {} for stage in store._fresh_stages()}
    fresh = {stage: store._fresh_raw(stage, etags=etags[stage]) for stage in etags}
    superseded: dict[str, list[tuple[str, dict]]] = {}
    for stage, items in (batch or {}).items():
        old = fresh.setdefault(stage, {})
        superseded[stage] = [(vid, old[vid]) for vid in items if vid in old]
        old.update(items)
    return {s: items for s, items in fresh.items() if items}, superseded, etags


def _fold_failures(store: Any, view: CompactView, fresh: Mapping[str, Mapping[str, dict]], fresh_failures: list[dict],
                   batch: Mapping[str, Mapping[str, dict]], new: dict, retire: list[str], stats: dict,
                   gen: int) -> None:
    """The failure table of generation ``gen``: compacted rows hidden by any fresh index file of their (stage,
    video), replaced by fresh records (except where a batch output clears them); rewritten only when it changed."""
    compacted_failures = view.failures()
    merged = {(f["stage"], f["video_id"]): f for f in compacted_failures
              if f["video_id"] not in fresh.get(f["stage"], {})}
    for item in fresh_failures:
        if item["video_id"] not in batch.get(item["stage"], {}):
            merged[(item["stage"], item["video_id"])] = {c: item.get(c) for c in _FAILURE_COLUMNS}
    if fresh_failures or len(merged) != len(compacted_failures):
        if view.current.get("failures"):
            retire.append(view.current["failures"])
        if merged:
            rel = f"failures/{gen:06d}-{uuid.uuid4().hex[:8]}.parquet"
            rows = [merged[k] for k in sorted(merged)]
            _write_parquet(store, rel, {c: [None if r.get(c) is None else str(r[c]) for r in rows]
                                        for c in _FAILURE_COLUMNS}, _FAILURE_SCHEMA)
            new["failures"] = rel
        else:
            new["failures"] = None
    stats["failures"] = len(merged)


def _commit_generation(store: Any, new: dict, retire: list[str]) -> None:
    """Replace ``CURRENT.json`` by ``new`` (the commit: one atomic write), with ``retire`` listed as retired now."""
    store._ensure_format_version()
    stamp = _now()
    new["retired"] += [[rel, stamp] for rel in retire]
    store._write_bytes(store._p("compact", "CURRENT.json"), json.dumps(new, indent=1).encode())
    with _MEMO_LOCK:  # this process's memo of retired partitions: a bulk load commits many generations in one process
        for rel in retire:
            _PARTS.pop(store._p("compact", rel), None)


def _compact_stage(store: Any, view: CompactView, stage: str, fresh: Mapping[str, dict], new: dict,
                   retire: list[str], stats: dict, gen: int, *, shard_videos: int, shard_bytes: int,
                   part_rows: int) -> list[tuple[str, dict]]:
    """Merge one stage's fresh items into its rows, write shards and changed partitions; returns the folded items."""
    rows = view.rows(stage)
    changed, done, newly, pending = _merge_fresh(rows, fresh, stats)
    _retire_shards(stage, rows, pending, changed, new, retire, stats, shard_videos=shard_videos)
    kept_fresh = _write_shards(store, view, stage, rows, pending, new, stats, gen, shard_videos=shard_videos,
                               shard_bytes=shard_bytes)
    stats["folded"] += len(newly - kept_fresh)
    for vid in kept_fresh:  # back to the previous compacted row (or none): the fresh record keeps overriding it
        changed.discard(vid)
        prev = view.row(stage, vid)
        if prev is None:
            rows.pop(vid, None)
        else:
            rows[vid] = prev
    _write_partitions(store, stage, rows, changed, new, retire, gen, part_rows=part_rows)
    return [(vid, raw) for vid, raw in done if vid not in kept_fresh]


def _merge_fresh(rows: dict[str, dict], fresh: Mapping[str, dict], stats: dict
                 ) -> tuple[set[str], list[tuple[str, dict]], set[str], list[tuple[str, Any]]]:
    """Overlay a stage's fresh items on its compacted ``rows`` (in place): tombstones remove rows, records replace
    them. Returns ``(changed ids, folded items, ids folded for the first time, pending arrays)``: each pending entry
    is ``(video id, ("fresh", record))``, an output whose arrays go into a new shard."""
    changed: set[str] = set()
    done: list[tuple[str, dict]] = []
    newly: set[str] = set()  # fresh records not folded before
    pending: list[tuple[str, Any]] = []  # (video id, where its arrays are now)
    for vid in sorted(fresh):
        raw = fresh[vid]
        if raw.get("dropped"):
            if rows.pop(vid, None) is not None:
                changed.add(vid)
            stats["dropped"] += 1
            done.append((vid, raw))
            continue
        old = rows.get(vid)
        if old is not None and (old["origin"], old["created"], old["fingerprint"]) == \
                (raw.get("data"), raw["created"], raw["fingerprint"]):
            done.append((vid, raw))  # folded by an earlier compaction that stopped before removing it
            continue
        rows[vid] = {"video_id": vid, "fingerprint": raw["fingerprint"], "version": int(raw["version"]),
                     "params": json.dumps(raw.get("params") or {}, sort_keys=True), "record": json.dumps(raw["record"]),
                     "created": raw["created"], "seconds": float(raw.get("seconds") or 0.0), "origin": raw.get("data"),
                     "shard": None, "row": -1}
        if raw.get("data"):
            pending.append((vid, ("fresh", raw)))
        changed.add(vid)
        newly.add(vid)
        done.append((vid, raw))
    return changed, done, newly, pending


def _retire_shards(stage: str, rows: Mapping[str, dict], pending: list[tuple[str, Any]], changed: set[str],
                   new: dict, retire: list[str], stats: dict, *, shard_videos: int) -> None:
    """Retire the stage's dead shards and re-pack (append their live rows to ``pending``) the mostly dead ones and,
    when there is other work, the small ones."""
    live: collections.Counter[str] = collections.Counter(r["shard"] for r in rows.values() if r["shard"])
    small = max(1, shard_videos // 16)
    for key in [k for k in new["shards"] if k.split("/", 1)[0] == stage]:
        shard, total = key.split("/", 1)[1], new["shards"][key]["rows"]
        n_live = live.get(shard, 0)
        if n_live and n_live >= _MIN_LIVE * total and (n_live >= small or not pending):
            continue
        for vid in sorted(v for v, r in rows.items() if r["shard"] == shard):
            pending.append((vid, ("shard", shard, int(rows[vid]["row"]))))
            changed.add(vid)
        del new["shards"][key]
        retire.append(f"shards.zarr/{stage}/{shard}")
        stats["shards_retired"] += 1


def _signatures(store: Any, view: CompactView, stage: str, pending: list[tuple[str, Any]]
                ) -> tuple[dict[str, tuple], set[str]]:
    """``(video id → ((name, dtype, shape), ...) of its pending arrays, ids not foldable)`` from array metadata only
    (so shards are sized to what they will hold); an output with arrays that are not numeric (strings) stays fresh."""
    sigs: dict[str, tuple] = {}
    kept_fresh: set[str] = set()
    for vid, source in pending:
        if source[0] == "fresh" and "_arrays" in source[1]:
            meta = tuple(sorted((k, v.dtype.str, v.shape) for k, v in source[1]["_arrays"].items()))
        else:
            meta = store._fresh_signature(stage, source[1]) if source[0] == "fresh" else \
                _shard_signature(view, stage, source[1])
        if meta is None or not all(np.dtype(d).kind in "biuf" for _, d, _ in meta):
            kept_fresh.add(vid)
            continue
        sigs[vid] = meta
    return sigs, kept_fresh


def _write_shards(store: Any, view: CompactView, stage: str, rows: dict[str, dict], pending: list[tuple[str, Any]],
                  new: dict, stats: dict, gen: int, *, shard_videos: int, shard_bytes: int) -> set[str]:
    """Write the pending arrays into new shards of generation ``gen``, one writer per signature, and point their rows
    at them; returns the ids left fresh (not foldable)."""
    sigs, kept_fresh = _signatures(store, view, stage, pending)
    remaining = collections.Counter(sigs.values())
    writers: dict[tuple, _ShardWriter] = {}
    n_shard = 0
    for vid, source in pending:
        if vid in kept_fresh:
            continue
        sig = sigs[vid]
        writer = writers.get(sig)
        if writer is None or writer.full:
            if writer is not None:
                _close(writer, new, stage, stats)
            shard = f"{gen:06d}-{n_shard:04d}-{uuid.uuid4().hex[:8]}"
            n_shard += 1
            writer = writers[sig] = _ShardWriter(store, stage, shard, sig, min(shard_videos, remaining[sig]),
                                                 shard_bytes)
        if source[0] == "fresh":
            arrays = source[1]["_arrays"] if "_arrays" in source[1] else store._fresh_arrays(stage, source[1])
        else:
            arrays = view.shard_arrays(stage, source[1], source[2])
        rows[vid]["row"] = writer.add(arrays)
        rows[vid]["shard"] = writer.shard
        remaining[sig] -= 1
    for writer in writers.values():
        _close(writer, new, stage, stats)
    return kept_fresh


def _write_partitions(store: Any, stage: str, rows: Mapping[str, dict], changed: set[str], new: dict,
                      retire: list[str], gen: int, *, part_rows: int) -> None:
    """Rewrite the stage's index partitions that hold a changed row (all of them when the partition count changes:
    a power of two near ``len(rows) / part_rows``) and record them in ``new``."""
    info = new["stages"].get(stage)
    n = len(rows)
    want = 1 << max(0, math.ceil(math.log2(max(1, math.ceil(n / part_rows)))))
    if info is None or not (info["buckets"] <= want * 2 and info["buckets"] * 2 >= want):
        buckets, dirty = want, set(range(want))
        retire.extend(p for p in (info["parts"] if info else []) if p)
        parts: list[str | None] = [None] * buckets
    else:
        buckets, parts = info["buckets"], list(info["parts"])
        dirty = {_bucket(v, buckets) for v in changed}
    if not n:
        retire.extend(p for p in parts if p)
        new["stages"].pop(stage, None)
        return
    by_bucket: dict[int, list[dict]] = collections.defaultdict(list)
    for vid in sorted(rows):
        b = _bucket(vid, buckets)
        if b in dirty:
            by_bucket[b].append(rows[vid])
    for b in sorted(dirty):
        if info is not None and info["buckets"] == buckets and parts[b]:
            retire.append(parts[b])
        members = by_bucket.get(b, [])
        if not members:
            parts[b] = None
            continue
        rel = f"index/{stage}/{gen:06d}-b{b:04d}-{uuid.uuid4().hex[:8]}.parquet"
        _write_parquet(store, rel, {c: [r[c] for r in members] for c in _INDEX_COLUMNS}, _INDEX_SCHEMA)
        parts[b] = rel
    new["stages"][stage] = {"buckets": buckets, "parts": parts, "rows": n}


def _close(writer: _ShardWriter, new: dict, stage: str, stats: dict) -> None:
    if writer.n == 0:
        return
    new["shards"][f"{stage}/{writer.shard}"] = writer.close()
    stats["shards_written"] += 1


def _shard_signature(view: CompactView, stage: str, shard: str) -> tuple:
    info = view.current["shards"][f"{stage}/{shard}"]
    out = []
    for name in sorted(info["arrays"]):
        arr = view._array(stage, shard, name)
        out.append((name, arr.dtype.str if hasattr(arr.dtype, "str") else np.dtype(arr.dtype).str,
                    tuple(arr.shape[1:])))
    return tuple(out)


def referenced(current: Mapping[str, Any]) -> set[str]:
    """Paths under ``compact/`` that a generation reads (index partitions, failure table, shard groups)."""
    refs = {p for info in current["stages"].values() for p in info["parts"] if p}
    refs |= {f"shards.zarr/{key}" for key in current["shards"]}
    if current.get("failures"):
        refs.add(current["failures"])
    return refs


def collect(store: Any, current: dict, grace_seconds: float) -> int:
    """Delete retired files past their grace period and files no generation references (crashed compactions).

    The caller holds the write lock, so no compaction is writing files it has not committed yet.
    """
    removed = 0
    retired = {rel: when for rel, when in current.get("retired", [])}
    keep = referenced(current)
    expired = {rel for rel, when in retired.items() if _age_seconds(when) >= grace_seconds}
    for rel in _listing(store):
        if rel in keep or (rel in retired and rel not in expired):
            continue
        store._rm(store._p("compact", rel))
        removed += 1
    if expired and retired:
        current = dict(current)
        current["retired"] = [[rel, when] for rel, when in retired.items() if rel not in expired]
        store._write_bytes(store._p("compact", "CURRENT.json"), json.dumps(current, indent=1).encode())
    return removed


def _listing(store: Any) -> Iterable[str]:
    """Every file or shard group under ``compact/`` that a generation may reference (relative paths)."""
    base = store._p("compact")
    for sub in ("index", "failures"):
        folder = f"{base}/{sub}"
        if not store.fs.exists(folder):  # cheaper than find() of a missing prefix (see Store._fresh_failures)
            continue
        for path in store.fs.find(folder):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if name.endswith(".parquet") and not name.startswith(".tmp-"):
                yield _relative(path, base)
    for stage_dir in store._ls(f"{base}/shards.zarr"):
        if stage_dir.get("type") != "directory":
            continue
        for shard_dir in store._ls(stage_dir["name"]):
            if shard_dir.get("type") == "directory":
                yield _relative(shard_dir["name"], base)


def _relative(path: str, base: str) -> str:
    path, base = path.rstrip("/"), base.rstrip("/")
    if not path.startswith(base + "/"):
        raise AssertionError(f"{path} is not under {base}")
    return path[len(base) + 1:]
