"""The feature store: the only code in vidpipe that reads or writes Zarr, Parquet, HDF5 (and builds their paths).

One store per dataset, at ``<root>/<dataset>/`` where ``root`` is a local path or an fsspec URL (``s3://bucket/x``)::

    store.json                          format version, dataset name
    manifest.parquet                    one row per video: ids, source paths, splits, labels, song, transcript
    edges.parquet                       the song–video edge list (video_id, song_id)
    index/<stage>/<key>.json            commit record of one stage output for one video (fingerprint, params, record),
                                        or a tombstone hiding the video's compacted output (see :meth:`Store.drop`);
                                        on object stores followed by the output's arrays (:mod:`features.objects`)
    features.zarr/<stage>/<key>/<ver>/  local stores: the arrays of that output (a Zarr v3 group, one per name)
    failures/<stage>/<key>.json         the last error of a stage on a video (removed when it later succeeds)
    compact/                            the compacted layer: the three above folded into Parquet index partitions, a
                                        failure table and Zarr shards with a video axis (see :mod:`features.compaction`)
    tables/<stage>.parquet              consolidated per-stage table (index + record columns) for pandas / duckdb
    tables/scrape_history.parquet       every scrape's counts per post (TikTok; MTAF's early trend, features.trend)
    artifacts/<name>/<fingerprint>/     dataset-level outputs: vocabulary, graph embeddings (features.store_artifacts)
    packs/<fingerprint>.h5              HDF5 tensor packs for training (features.store_packs)
    runs/<run_id>.json, runs/<run_id>/  one record per training run and its checkpoints (features.store_runs)
    reports/                            Markdown + PNG reports (:meth:`Store.write_report`)
    cache/index/<stage>.json            local stores: every index record of a stage, parsed, with its file's stat —
                                        a cache that lets ``entries()`` read only changed records (safe to delete)
    cache/<name>.json                   memos keyed on what they were computed from (:meth:`Store.read_memo`): the
                                        entries digests of index views, the extraction's last no-op plans (a cache)

``<key>`` is :func:`video_key` of the video id: path-safe, collision-free, never a traversal.

**Commit protocol.** An output is written under a fresh version directory (``<fingerprint[:16]>-<random>``) and only
then its ``index`` record is written, atomically (temporary name + rename; a single PUT on object stores). Readers
follow index records only, so a crash at any moment leaves either the previous output or the new one — never a half-
written one; orphaned version directories are invisible and removed by the next write of that video or by
:meth:`Store.gc`. On object stores the arrays and the record are one object, written by one PUT (see
:mod:`features.objects`). Writers of one dataset serialise through :meth:`Store.lock`.

**Two layers.** Those per-video files are the *fresh layer*. :meth:`Store.compact` (run at the end of every extraction,
and by ``vidpipe compact DATASET``) folds them into the *compacted layer*, whose file count grows with the number of
shards, not of videos. Every read sees the compacted outputs overlaid by the fresh ones (a fresh record or tombstone
wins), so the public calls answer the same before and after a compaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import json
import os
import re
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from features import compaction as _compaction
from features import objects as _objects
from features.atomic import atomic_write, is_local
from features.errors import StoreError
from features.schema import DATASET_RE, SOURCE_STAGE
from features.store_artifacts import ArtifactsPart
from features.store_encoding import ZARR_COMPRESSOR as _ZARR_COMPRESSOR
from features.store_encoding import check_name, is_name
from features.store_encoding import json_default as _json_default
from features.store_encoding import remove_children
from features.store_encoding import utc_now as _now
from features.store_encoding import zarr_chunks as _chunks
from features.store_packs import PacksPart
from features.store_runs import ReportsPart, RunRecord, RunsPart

__all__ = ["FORMAT_VERSION", "Store", "StoreError", "IndexRecord", "RunRecord", "open_store", "video_key",
           "check_dataset_name", "resolve_root"]

#: on-disk format of a store; bump with a migration in :func:`_migrate` when the layout changes. Version 1 (no
#: compacted layer) is version 2's fresh layer unchanged: such a store is read and written as it is, and its first
#: compaction records version 2.
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_REMOTE_FS_OPTIONS = {"use_listings_cache": False}  # fsspec options for object-store roots (see Store.__init__)


def check_dataset_name(dataset: str) -> str:
    """Return ``dataset`` if it is a safe single path component, else raise ``ValueError``."""
    return check_name("dataset", dataset, pattern=DATASET_RE, expected="1-64 characters of letters, digits, '.', '_' "
                      "or '-', starting with a letter or digit")


def video_key(video_id: str) -> str:
    """A path-safe, collision-free key for a video id.

    Characters outside ``[A-Za-z0-9._-]`` become ``_``, a leading ``.``/``-`` becomes ``_`` (no hidden files, no
    option-like names, no ``..``), the result is cut to 80 characters and suffixed with 8 hex chars of the id's hash so
    two ids that sanitise alike stay distinct.
    """
    if not isinstance(video_id, str) or video_id == "":
        raise ValueError(f"video_id={video_id!r}: expected a non-empty string")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", video_id)[:80]
    safe = re.sub(r"^[.-]", "_", safe)
    return f"{safe}-{hashlib.blake2b(video_id.encode(), digest_size=4).hexdigest()}"


def resolve_root(root: str | os.PathLike[str] | None = None) -> str:
    """The data root: ``root`` if given, else ``$VIDPIPE_ROOT``, else ``./data``."""
    value = root if root not in (None, "") else os.environ.get("VIDPIPE_ROOT") or "data"
    value = str(value)
    return value if "://" in value else str(Path(value).expanduser().resolve())


@dataclass(frozen=True)
class IndexRecord:
    """The commit record of one stage output for one video (what ``index/<stage>/<key>.json`` holds)."""

    video_id: str  # the dataset's id
    stage: str  # stage name
    version: int  # stage code version that wrote it
    fingerprint: str  # cache key (see features.fingerprint)
    params: dict  # the parameters it was computed with
    data: str | None  # where its arrays are: a version directory under features.zarr/<stage>/<key>/, or (once
    # compacted) "shard:<shard>:<row>" in compact/shards.zarr/<stage>/; None when it has no arrays
    record: dict  # small scalar outputs (probe facts, transcript text, ...)
    created: str  # ISO time (UTC)
    seconds: float  # compute time

    @classmethod
    def from_json(cls, text: str | bytes) -> "IndexRecord":
        d = json.loads(text)
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    @classmethod
    def _from_dict(cls, d: Mapping[str, Any]) -> "IndexRecord":
        """From a parsed index record that may be shared (the snapshot memo): the dict fields are copied."""
        return cls(**{k: (dict(d[k]) if k in ("params", "record") else d[k]) for k in cls.__dataclass_fields__})


class Store(ArtifactsPart, PacksPart, RunsPart, ReportsPart):
    """A dataset's feature store. Construct with :func:`open_store`.

    This module holds the layout, the per-video index (commit, read, compaction) and the tables; the other parts
    are :class:`~features.store_artifacts.ArtifactsPart` (dataset-level artifacts),
    :class:`~features.store_packs.PacksPart` (tensor packs), :class:`~features.store_runs.RunsPart` (training runs)
    and :class:`~features.store_runs.ReportsPart` (reports), all over the same layout.

    A store opened with ``read_only=True`` (or :meth:`as_read_only`) refuses every method in :data:`_WRITERS` with
    a :class:`StoreError` naming it: what ``vidpipe refresh --dry-run`` plans with.
    """

    def __init__(self, root: str, dataset: str, *, create: bool = True, read_only: bool = False) -> None:
        if create and read_only:
            raise ValueError("create=True, read_only=True: a read-only store cannot be created; open an existing one")
        self.root = resolve_root(root)
        self.dataset = check_dataset_name(dataset)
        self.read_only = bool(read_only)  # True: every writer raises StoreError (see _WRITERS)
        # Object stores: no listings cache. fsspec caches directory listings per filesystem instance forever, and
        # treats a path missing from a cached listing as missing, so outputs written by another process (Dask
        # workers, another machine) would stay invisible to this one: stale entries(), even KeyError from read().
        self.fs, base = fsspec.core.url_to_fs(self.root, **_REMOTE_FS_OPTIONS) if "://" in self.root \
            else fsspec.core.url_to_fs(self.root)
        self.local = is_local(self.fs)
        self.path = f"{base.rstrip('/')}/{self.dataset}"
        self.url = self.path if self.local else f"{self.root.rstrip('/')}/{self.dataset}"
        self._zarr_store: Any = None
        self._shard_store: Any = None
        # Object stores commit an output with arrays as one object (its record followed by its arrays, see
        # features.objects): one PUT instead of a Zarr group's ~25 requests. Local stores write Zarr groups.
        self._inline_arrays = not self.local
        self._open(create)

    # ------------------------------------------------------------------ layout and metadata
    def _p(self, *parts: str) -> str:
        return "/".join([self.path, *parts])

    def _stage_path(self, folder: str, stage: str, *parts: str) -> str:
        """The path ``<folder>/<stage>/<parts...>`` in the store (``folder``: ``index``, ``failures`` or
        ``features.zarr``): every path of a stage's outputs, records and failures is built here, so a stage name
        that is not one safe path component (:func:`~features.store_encoding.check_name`) raises ``ValueError``
        naming ``stage`` before the store reads or writes anything of it."""
        return self._p(folder, check_name("stage", stage), *parts)

    def _open(self, create: bool) -> None:
        meta_path = self._p("store.json")
        try:  # one GET (start=0: s3fs asks for the size first without a range), no existence check before it
            blob = self.fs.cat_file(meta_path, start=0)
        except FileNotFoundError:
            blob = None
        if blob is not None:
            try:  # written atomically, so unreadable means edited or damaged by hand: say what to do, no traceback
                meta = json.loads(blob)
                version = meta.get("format_version")
            except (ValueError, AttributeError) as exc:
                raise StoreError(f"{meta_path} is not a vidpipe store record ({exc}); restore it from a backup, or "
                                 f"re-ingest into a fresh root (vidpipe ingest {self.dataset} --root NEW ...)") from None
            if version not in _READABLE_VERSIONS:
                _migrate(self, version)
            return
        if not create:
            raise StoreError(f"no vidpipe store for dataset {self.dataset!r} under {self.root}: "
                             f"run `vidpipe ingest {self.dataset} --source ...` first")
        self.fs.makedirs(self.path, exist_ok=True)
        self._write_bytes(meta_path, json.dumps({"format_version": FORMAT_VERSION, "dataset": self.dataset,
                                                 "created": _now()}, indent=2).encode())

    def as_read_only(self) -> "Store":
        """This dataset's store opened again, read-only: reads see the same data, every writer raises."""
        return Store(self.root, self.dataset, create=False, read_only=True)

    @property
    def format_version(self) -> int:
        return int(json.loads(self.fs.cat_file(self._p("store.json")))["format_version"])

    def _write_bytes(self, path: str, data: bytes) -> None:
        """Atomic write: temporary sibling, then rename (local) / one PUT (object stores)."""
        atomic_write(path, data, fs=self.fs)

    def _ensure_format_version(self) -> None:
        """Record :data:`FORMAT_VERSION` in ``store.json`` (before the first compacted generation is committed)."""
        meta_path = self._p("store.json")
        meta = json.loads(self.fs.cat_file(meta_path))
        if meta.get("format_version") != FORMAT_VERSION:
            meta = {**meta, "format_version": FORMAT_VERSION, "upgraded": _now()}
            self._write_bytes(meta_path, json.dumps(meta, indent=2).encode())

    def _shard_zarr(self) -> Any:
        """The Zarr store of the compacted shards (``compact/shards.zarr``)."""
        if self._shard_store is None:
            if self.local:
                self._shard_store = zarr.storage.LocalStore(self._p("compact", "shards.zarr"))
            else:
                self._shard_store = zarr.storage.FsspecStore.from_url(f"{self.url}/compact/shards.zarr",
                                                                      storage_options=dict(_REMOTE_FS_OPTIONS))
        return self._shard_store

    def _rm(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(path, recursive=True)

    def _zarr(self) -> Any:
        if self._zarr_store is None:
            if self.local:
                self._zarr_store = zarr.storage.LocalStore(self._p("features.zarr"))
            else:
                self._zarr_store = zarr.storage.FsspecStore.from_url(f"{self.url}/features.zarr",
                                                                     storage_options=dict(_REMOTE_FS_OPTIONS))
        return self._zarr_store

    # ------------------------------------------------------------------ manifest
    def write_manifest(self, videos: pd.DataFrame, edges: pd.DataFrame | None = None,
                       source: Mapping[str, Any] | None = None) -> None:
        """Replace the manifest (and edge list) atomically."""
        if "video_id" not in videos.columns:
            raise ValueError("videos: expected a DataFrame with a 'video_id' column")
        self.write_table("manifest", videos)
        self.write_table("edges", edges if edges is not None else pd.DataFrame({"video_id": [], "song_id": []}))
        if source is not None:
            self._write_bytes(self._p("ingest.json"), json.dumps(dict(source), indent=2, default=str).encode())

    def manifest(self) -> pd.DataFrame:
        """The manifest as ingested (no stage columns). Empty frame before the first ingest."""
        return self.read_table("manifest", missing_ok=True)

    def edges(self) -> pd.DataFrame:
        """The song–video edge list (``video_id``, ``song_id``)."""
        df = self.read_table("edges", missing_ok=True)
        return df if len(df.columns) else pd.DataFrame({"video_id": [], "song_id": []})

    def source_info(self) -> dict:
        """How the dataset was ingested (kind, path, options), or ``{}``."""
        try:
            return json.loads(self.fs.cat_file(self._p("ingest.json")))
        except FileNotFoundError:
            return {}

    def videos(self) -> pd.DataFrame:
        """One row per video: the manifest joined with the probe facts (``duration``, ``fps``, ``width``, ...)."""
        m = self.manifest()
        probe = self.table("probe")
        if len(m) and len(probe):
            cols = [c for c in probe.columns if c not in m.columns or c == "video_id"]
            cols = [c for c in cols if c not in {"stage", "version", "fingerprint", "created", "seconds"}]
            m = m.merge(probe[cols], on="video_id", how="left")
        return m

    # ------------------------------------------------------------------ tables (Parquet)
    def write_table(self, name: str, df: pd.DataFrame, *, metadata: Mapping[str, str] | None = None) -> None:
        """Write ``tables``-level Parquet ``name`` atomically (``manifest``/``edges`` live at the store's top).

        ``metadata``: extra key → value strings for the Parquet schema metadata (next to pandas' own).
        """
        buf = io.BytesIO()
        table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                   **{k.encode(): v.encode() for k, v in metadata.items()}})
        pq.write_table(table, buf)
        self._write_bytes(self._table_path(name), buf.getvalue())

    def read_table(self, name: str, *, missing_ok: bool = False) -> pd.DataFrame:
        """Read a Parquet table written by :meth:`write_table` (empty frame if missing and ``missing_ok``)."""
        path = self._table_path(name)
        try:  # one GET (an existence check and a file handle would add two HEAD requests on object stores)
            blob = self.fs.cat_file(path, start=0)
        except FileNotFoundError:
            if missing_ok:
                return pd.DataFrame()
            raise StoreError(f"table {name!r} does not exist in store {self.url}") from None
        return pq.read_table(pa.BufferReader(blob)).to_pandas()

    def append_scrape_history(self, snapshots: pd.DataFrame) -> int:
        """Add scrape snapshots (:data:`features.trend.SNAPSHOT_COLUMNS`) to ``tables/scrape_history.parquet``.

        One row per (``video_id``, ``scrape_time``): a row for a pair already recorded replaces it (re-ingesting the
        same scrape adds nothing), other rows are appended in the order given. Callers hold :meth:`lock`. Returns how
        many (video, scrape time) pairs are new.
        """
        if snapshots.empty:
            return 0
        old = self.read_table("scrape_history", missing_ok=True)
        key = ["video_id", "scrape_time"]
        known = set(map(tuple, old[key].itertuples(index=False))) if len(old) else set()
        new = len(set(map(tuple, snapshots[key].itertuples(index=False))) - known)
        table = pd.concat([old, snapshots], ignore_index=True) if len(old) else snapshots
        self.write_table("scrape_history", table.drop_duplicates(key, keep="last").reset_index(drop=True))
        return new

    def scrape_history(self) -> pd.DataFrame:
        """Every recorded scrape snapshot in the order recorded (empty frame before the first TikTok ingest)."""
        return self.read_table("scrape_history", missing_ok=True)

    def _table_path(self, name: str) -> str:
        check_name("name", name)
        return self._p(f"{name}.parquet") if name in {"manifest", "edges"} else self._p("tables", f"{name}.parquet")

    # ------------------------------------------------------------------ per-video stage outputs
    def entry(self, stage: str, video_id: str) -> IndexRecord | None:
        """The committed output of ``stage`` for ``video_id``, or ``None``."""
        path = self._stage_path("index", stage, f"{video_key(video_id)}.json")
        try:
            raw = self._read_head(path)
        except FileNotFoundError:
            row = _compaction.read_view(self).row(stage, video_id)  # read after the fresh layer (see compaction)
            return None if row is None else IndexRecord(**_compaction.row_to_record(stage, row))
        return None if raw.get("dropped") else IndexRecord._from_dict(raw)

    def entries(self, stage: str) -> dict[str, IndexRecord]:
        """All committed outputs of ``stage``: video id → record (compacted outputs overlaid by fresh ones)."""
        return self._over_fresh(stage, lambda view: {
            vid: IndexRecord(**_compaction.row_to_record(stage, row)) for vid, row in view.rows(stage).items()},
            IndexRecord._from_dict)

    def _commit_keys(self, stage: str) -> dict[str, tuple]:
        """video id → (fingerprint, data, created, version) of what :meth:`entries` would return, from the index
        columns and fresh records only (no compacted record is parsed)."""
        return self._over_fresh(stage, lambda view: view.commit_keys(stage), lambda raw: (
            raw["fingerprint"], raw.get("data"), raw["created"], int(raw["version"])))

    def _over_fresh(self, stage: str, compacted: Callable[[Any], dict[str, Any]],
                    value: Callable[[dict], Any]) -> dict[str, Any]:
        """video id → ``value`` of its fresh record where it has one, else what ``compacted`` reads from the
        compacted view's columns; a dropped fresh record removes the video (fresh records are listed first)."""
        fresh = self._fresh_raw(stage)
        out = compacted(_compaction.read_view(self))
        for vid, raw in fresh.items():
            if raw.get("dropped"):
                out.pop(vid, None)
            else:
                out[vid] = value(raw)
        return out

    def commit_digest(self, stage: str, video_ids: Iterable[str] | None = None) -> str:
        """A digest of the committed outputs of ``stage`` (of ``video_ids`` only, when given; ids without an output
        are left out): each video's fingerprint, commit time and version, read from the index columns (no record is
        parsed). Equal digests mean the same committed records: a memo of anything computed from the records can be
        keyed on it. Compaction moves outputs without recommitting them, so it leaves the digest as it is."""
        ids = None if video_ids is None else list(video_ids)
        subset = "all" if ids is None else hashlib.blake2b("\n".join(ids).encode(), digest_size=16).hexdigest()

        def compute() -> str:
            keys = self._commit_keys(stage)
            wanted = keys if ids is None else [v for v in ids if v in keys]
            return _entries_digest({v: (keys[v][0], keys[v][2], keys[v][3]) for v in wanted})

        return self._memo_digest(f"commit:{self.view_key(stage)}:{subset}", compute)

    def _committed_ids(self, stage: str) -> set[str]:
        """The video ids :meth:`entries` would return, without building their records."""
        fresh = self._fresh_raw(stage)
        ids = set(_compaction.read_view(self).ids(stage))
        for vid, raw in fresh.items():
            (ids.discard if raw.get("dropped") else ids.add)(vid)
        return ids

    def _fresh_stages(self) -> list[str]:
        """The stage folders under ``index/`` (anything else there — a ``.DS_Store``, a folder whose name is no stage
        name — is not the store's, and ignored)."""
        names = (d["name"].rstrip("/").rsplit("/", 1)[-1] for d in self._ls(self._p("index"))
                 if d.get("type") == "directory")
        return sorted(n for n in names if is_name(n))

    def _ls(self, folder: str, *, detail: bool = True) -> list:
        """The entries of ``folder`` with details (their paths only unless ``detail``); [] when it does not exist
        (one LIST on object stores, no existence check first)."""
        try:
            return self.fs.ls(folder, detail=detail)
        except FileNotFoundError:
            return []

    def _read_head(self, path: str) -> dict:
        """The index record in the file at ``path``, without the arrays that may follow it (see features.objects).

        Raises:
            FileNotFoundError: no such file.
        """
        raw = _objects.decode_head(self.fs.cat_file(path, start=0, end=_objects.HEAD_BYTES))
        return raw if raw is not None else _objects.decode_head(self.fs.cat_file(path, start=0))

    def _fresh_raw(self, stage: str, *, etags: dict[str, str] | None = None) -> dict[str, dict]:
        """The fresh layer of ``stage``: video id → parsed index file (a record, or a tombstone with ``dropped``).

        Local stores read through an index snapshot (see :meth:`_fresh_raw_local`); object stores read the head of
        every file (one ranged GET each). ``etags`` (object stores): filled with path → ETag from the same listing.
        """
        if self.local:
            return self._fresh_raw_local(stage)
        listing = [d for d in self._ls(self._stage_path("index", stage))
                   if d["name"].endswith(".json") and "/.tmp-" not in d["name"]]
        if etags is not None:
            etags.update({d["name"]: d.get("ETag") for d in listing})
        paths = [d["name"] for d in listing]
        if not paths:
            return {}
        out = {}
        heads = self.fs.cat_ranges(paths, [0] * len(paths), [_objects.HEAD_BYTES] * len(paths), on_error="return")
        for path, head in zip(paths, heads):
            if isinstance(head, FileNotFoundError):  # dropped while we listed
                continue
            if isinstance(head, BaseException):
                raise head
            try:
                raw = _objects.decode_head(head) or self._read_head(path)
            except FileNotFoundError:
                continue
            out[raw["video_id"]] = raw
        return out

    def _fresh_raw_local(self, stage: str) -> dict[str, dict]:
        """:meth:`_fresh_raw` on a local store without reading every index file each time.

        Reading one JSON per video per stage dominated a rerun with nothing to do (19,000 reads for 1,000 videos).
        ``cache/index/<stage>.json`` keeps every record parsed, keyed by its file's ``(inode, size, mtime_ns)``; a
        call lists ``index/<stage>/`` and stats each file, and reads only files whose stamp differs (new or rewritten
        records: every write is a rename, so a new inode) — the same records as reading them all. The snapshot is
        a cache: rewritten whenever a call saw a change, ignored when unreadable, safe to delete, never the source
        of truth (a record whose file is gone is dropped). The parsed snapshot is memoised per process.
        """
        folder = self._stage_path("index", stage)
        try:
            listing = os.scandir(folder)
        except FileNotFoundError:
            return {}
        snap_path = self._p("cache", "index", f"{stage}.json")
        known = _load_snapshot(snap_path)
        fresh: dict[str, tuple[list[int], dict]] = {}
        changed = False
        with listing:
            for item in listing:
                name = item.name
                if not name.endswith(".json") or name.startswith(".tmp-"):
                    continue
                try:
                    st = item.stat()
                except FileNotFoundError:  # dropped while we listed
                    continue
                hit = known.get(name)
                if hit is not None and hit[0] == [st.st_ino, st.st_size, st.st_mtime_ns]:
                    fresh[name] = hit
                    continue
                try:
                    with open(item.path, "rb") as fh:  # stamp and content from the same open file
                        st = os.fstat(fh.fileno())
                        raw = _objects.decode_head(fh.read(_objects.HEAD_BYTES))
                        if raw is None:  # a record longer than the head
                            fh.seek(0)
                            raw = _objects.decode_head(fh.read())
                except FileNotFoundError:
                    continue
                fresh[name] = ([st.st_ino, st.st_size, st.st_mtime_ns], raw)
                changed = True
        if changed or len(fresh) != len(known):
            _save_snapshot(snap_path, fresh)
        return {d["video_id"]: d for _, d in fresh.values()}

    def fingerprints(self, stage: str) -> dict[str, str]:
        """video id → committed fingerprint for ``stage`` (read from the index columns: no record is parsed)."""
        return self._over_fresh(stage, lambda view: view.fingerprints(stage), lambda raw: raw["fingerprint"])

    def write(self, stage: str, video_id: str, fingerprint: str, *, version: int,
              arrays: Mapping[str, np.ndarray] | None = None, record: Mapping[str, Any] | None = None,
              params: Any = None, seconds: float = 0.0) -> IndexRecord:
        """Commit one stage output for one video (arrays to Zarr, then the index record; see module docstring).

        Args:
            arrays: name → numpy array (stored uncompressed-lossless with zstd; chunked whole up to 8 MiB, else by
                first axis).
            record: small JSON-able scalars (probe facts, transcript text...).
        """
        key = video_key(video_id)
        path = self._stage_path("index", stage, f"{key}.json")  # checks the stage name before anything is written
        data_dir = None
        inline = self._inline_arrays and bool(arrays) and all(np.asarray(a).dtype.kind in "biuf"
                                                              for a in arrays.values())
        if arrays and not inline:
            data_dir = f"{fingerprint[:16]}-{uuid.uuid4().hex[:8]}"
            # attributes given with the group: one metadata write (attrs.update afterwards rewrites the group's
            # metadata once per key: 3 extra round trips through zarr's I/O thread, about 40 % of a frames write)
            group = zarr.open_group(self._zarr(), path=f"{stage}/{key}/{data_dir}", mode="w",
                                    attributes={"video_id": video_id, "stage": stage, "fingerprint": fingerprint})
            for name, arr in arrays.items():
                arr = np.ascontiguousarray(arr)
                group.create_array(name, data=arr, chunks=_chunks(arr), compressors=_ZARR_COMPRESSOR)
        rec = IndexRecord(video_id=video_id, stage=stage, version=int(version), fingerprint=fingerprint,
                          params=_jsonable(params) if params is not None else {},
                          data=_objects.INLINE if inline else data_dir, record=_jsonable(dict(record or {})),
                          created=_now(), seconds=float(seconds))
        self._write_bytes(path, _objects.encode(rec.__dict__, arrays) if inline
                          else json.dumps(rec.__dict__, default=_json_default).encode())
        self._clear_failure(stage, key)
        if not self._inline_arrays or data_dir is not None:  # inline stores: an older group is left to gc()
            self._remove_stale_versions(stage, key, keep=data_dir)
        return rec

    def read(self, stage: str, video_id: str) -> dict[str, Any]:
        """The cached output of ``stage`` for ``video_id``: its arrays (name → numpy) and record fields merged.

        Dataset-level stages (``graph``) return that video's row of the stage's arrays.

        Raises:
            KeyError: no committed output (check :meth:`failures` for why).
        """
        for attempt in range(3):
            rec = self.entry(stage, video_id)
            if rec is None:
                art = self._dataset_stage_rows(stage, [video_id]).get(video_id)
                if art is not None:
                    return art
                raise KeyError(f"no {stage!r} output for video {video_id!r} in {self.url} "
                               "(not extracted yet, or failed: see store.failures())")
            try:
                arrays = self._arrays(rec)
            except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.ArrayNotFoundError):
                if attempt == 2:
                    raise
                continue
            # A fresh output's folder is removed right after its index record (by a rewrite of the video or by a
            # compaction that folded it), and Zarr reads a chunk that vanished as fill values: the arrays are the
            # record's only if the record is still there. Compacted shards stay for a grace period after retiring.
            if rec.data and not rec.data.startswith("shard:") and rec.data != _objects.INLINE \
                    and self.entry(stage, video_id) != rec:
                continue
            return {**rec.record, **arrays}
        raise StoreError(f"the {stage!r} output of video {video_id!r} in {self.url} kept changing while it was read "
                         "(three tries): another process is rewriting it")

    def read_many(self, stage: str, video_ids: Iterable[str], *,
                  arrays: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """:meth:`read` of many videos: video id → its output (arrays and record fields), in ``video_ids`` order.

        Compacted outputs are read shard by shard, whole rows per array for many videos at once
        (:meth:`features.compaction.CompactView.shard_rows`); fresh outputs one by one through :meth:`read`.
        ``arrays``: the array names to read from compacted outputs (default all; fresh outputs return all).

        Raises:
            KeyError: a video without a committed output (as :meth:`read`).
        """
        ids = list(dict.fromkeys(video_ids))
        fresh = self._fresh_raw(stage)  # the fresh layer first, the compacted view second (see compaction)
        view = _compaction.read_view(self)
        rows = view.rows(stage)
        out: dict[str, dict[str, Any]] = {}
        by_shard: dict[str, list[tuple[str, int, dict]]] = {}
        # videos with neither output: a dataset-level stage's rows, read once for all of them (else read() says why)
        dataset_rows = self._dataset_stage_rows(stage, [v for v in ids if v not in fresh and v not in rows])
        for vid in ids:
            row = rows.get(vid) if vid not in fresh else None
            if row is None:
                out[vid] = dataset_rows[vid] if vid in dataset_rows else self.read(stage, vid)
                continue
            record = _compaction.row_to_record(stage, row)["record"]
            if row["shard"]:
                by_shard.setdefault(row["shard"], []).append((vid, int(row["row"]), record))
            out[vid] = record
        for shard, members in by_shard.items():
            got = view.shard_rows(stage, shard, [r for _, r, _ in members], arrays)
            for vid, r, record in members:
                out[vid] = {**record, **got[r]}
        return out

    def _arrays(self, rec: IndexRecord) -> dict[str, np.ndarray]:
        """The committed arrays of one index record (none when it has no data)."""
        if not rec.data:
            return {}
        if rec.data.startswith("shard:"):
            _, shard, row = rec.data.split(":")
            return _compaction.read_view(self).shard_arrays(rec.stage, shard, int(row))
        if rec.data == _objects.INLINE:
            return self._inline_output(rec.stage, rec.video_id, lambda head: IndexRecord._from_dict(head) == rec)
        return {name: arr[...] for name, arr in self._output_group(rec.stage, rec.video_id, rec.data).arrays()}

    def _output_group(self, stage: str, video_id: str, data: str) -> Any:
        """The Zarr group (opened read-only) of a fresh output's version directory ``data``."""
        return zarr.open_group(self._zarr(), path=f"{stage}/{video_key(video_id)}/{data}", mode="r")

    def _fresh_arrays(self, stage: str, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The arrays of a fresh index record (parsed)."""
        if raw.get("data") == _objects.INLINE:
            return self._inline_output(stage, raw["video_id"], lambda head: head == raw)
        return {name: arr[...] for name, arr in self._output_group(stage, raw["video_id"], raw["data"]).arrays()}

    def _fresh_signature(self, stage: str, raw: Mapping[str, Any]) -> tuple | None:
        """``((name, dtype, shape), ...)`` of a fresh record's arrays, sorted by name, from their metadata only."""
        if raw.get("data") == _objects.INLINE:
            return _objects.signature(raw)
        try:
            group = self._output_group(stage, raw["video_id"], raw["data"])
            return tuple(sorted((name, np.dtype(arr.dtype).str, tuple(arr.shape)) for name, arr in group.arrays()))
        except (TypeError, ValueError):  # a dtype numpy cannot name (zarr's own string types): not foldable
            return None

    def _inline_output(self, stage: str, video_id: str, expected: Any) -> dict[str, np.ndarray]:
        """The arrays of a one-object output (see features.objects), read whole with its record (one GET).

        Raises:
            FileNotFoundError: the object is gone or its record fails ``expected(record)`` (rewritten since the
                caller read it: the caller retries).
        """
        # start=0: one ranged GET (without a range, s3fs first asks for the size: a HEAD request)
        blob = self.fs.cat_file(self._stage_path("index", stage, f"{video_key(video_id)}.json"), start=0)
        head = _objects.decode_head(blob)
        if head.get("data") != _objects.INLINE or not expected(head):
            raise FileNotFoundError(f"the {stage!r} output of {video_id!r} in {self.url} was rewritten while read")
        return _objects.decode_arrays(blob)[1]

    def copy_entry(self, source: "Store", stage: str, video_id: str) -> IndexRecord:
        """Commit ``source``'s output of ``stage`` for ``video_id`` here, unchanged (fingerprint, version, params,
        record and arrays), with the same commit protocol as :meth:`write`. Used to seed a variant dataset with the
        stages a feature ablation does not change; its fingerprints are re-verified by the next extraction plan.

        Raises:
            KeyError: ``source`` has no committed output for that video.
        """
        rec = source.entry(stage, video_id)
        if rec is None:
            raise KeyError(f"no {stage!r} output for video {video_id!r} in {source.url}")
        return self.write(stage, video_id, rec.fingerprint, version=rec.version, arrays=source._arrays(rec) or None,
                          record=rec.record, params=rec.params, seconds=rec.seconds)

    def drop(self, stage: str, video_id: str) -> None:
        """Remove a video's output of ``stage`` and its failure record (index record first, then data).

        A video with a compacted output or failure gets a tombstone in the fresh layer (one small file, written
        atomically) that hides both until the next compaction removes its rows.
        """
        key = video_key(video_id)
        path = self._stage_path("index", stage, f"{key}.json")
        view = _compaction.read_view(self)
        if view.row(stage, video_id) is not None or (stage, video_id) in view.failure_index():
            self._write_bytes(path, json.dumps({"video_id": video_id, "stage": stage, "dropped": True,
                                                "created": _now()}).encode())
        else:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(path)
        self._clear_failure(stage, key)
        self._remove_stale_versions(stage, key, keep=None)

    def _remove_fresh(self, stage: str, video_id: str, raw: Mapping[str, Any]) -> None:
        """Remove a folded fresh index file (only while it still holds ``raw``) and its data."""
        key = video_key(video_id)
        path = self._stage_path("index", stage, f"{key}.json")
        try:
            same = self._read_head(path) == raw
        except FileNotFoundError:
            same = True
        if same:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(path)
            # the video's whole folder: the folded version and any orphan beside it (writers hold the lock)
            self._rm(self._stage_path("features.zarr", stage, key))
        elif raw.get("data"):
            self._rm(self._stage_path("features.zarr", stage, key, raw["data"]))

    def _remove_fresh_many(self, stage: str, items: list[tuple[str, dict]], etags: Mapping[str, str] | None) -> None:
        """:meth:`_remove_fresh` for many folded items of ``stage``.

        Object stores (``etags``: path → ETag from the listing the items were read from): one listing, then the index
        files whose ETag is unchanged are deleted in batches (1,000 keys per request), not read back one by one.
        """
        if self.local or etags is None:
            for vid, raw in items:
                self._remove_fresh(stage, vid, raw)
            return
        now = {d["name"]: d.get("ETag") for d in self._ls(self._stage_path("index", stage))}
        gone = []
        for vid, raw in items:
            key = video_key(vid)
            path = self._stage_path("index", stage, f"{key}.json")
            same = path not in now or (now[path] is not None and now[path] == etags.get(path))
            if same and path in now:
                gone.append(path)
            if raw.get("data") and raw["data"] != _objects.INLINE:  # a Zarr group: its folder, or the folded version
                self._rm(self._stage_path("features.zarr", stage, key) if same else
                         self._stage_path("features.zarr", stage, key, raw["data"]))
        for i in range(0, len(gone), 1000):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(gone[i:i + 1000])

    def _remove_stale_versions(self, stage: str, key: str, keep: str | None) -> None:
        remove_children(self.fs, self._stage_path("features.zarr", stage, key),
                        lambda name: name not in (keep, "zarr.json"))

    def table(self, stage: str) -> pd.DataFrame:
        """Every committed output of ``stage`` as one row per video (index columns + record fields)."""
        return _table_of(self.entries(stage))

    def consolidate(self, stages: list[str] | None = None) -> None:
        """Write ``tables/<stage>.parquet`` for each stage (for pandas / duckdb users who skip vidpipe).

        A table whose Parquet metadata says it was written from exactly the current index records (same videos,
        fingerprints, data directories and commit times) is left as it is: a rerun with nothing to do rewrites
        nothing (for speed).
        """
        for stage in stages if stages is not None else self.stages():
            current = self._memo_digest(f"entries:{self.view_key(stage)}",
                                        lambda: _entries_digest(self._commit_keys(stage)))
            if self._table_digest(stage) == current:
                continue  # checked from the index columns (or their memo): no record is parsed
            entries = self.entries(stage)
            # the table is labelled with the digest of the records it is written from, not ``current``: the two are
            # equal unless a writer committed in between, and then a label ``current`` would let the table pass for
            # that earlier state once it came back (a video committed and dropped again)
            digest = _entries_digest({v: (r.fingerprint, r.data, r.created, r.version) for v, r in entries.items()})
            df = _table_of(entries)
            if len(df):
                self.write_table(stage, _parquet_safe(df), metadata={_TABLE_DIGEST_KEY: digest})

    # ------------------------------------------------------------------ memos
    def view_key(self, stage: str) -> str:
        """A key of what :meth:`entries` of ``stage`` returns: the live generation's index partitions of the stage
        and the stage's fresh records. Partitions are immutable files with unique names, so equal keys mean equal
        entries (a compaction that moves outputs changes the key, as it changes their ``data``)."""
        fresh = self._fresh_raw(stage)  # the fresh layer first, the generation second (see features.compaction)
        info = _compaction.read_current(self)["stages"].get(stage) or {}
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([_MEMO_FORMAT, stage, info.get("parts")]).encode())
        for vid in sorted(fresh):
            h.update(b"\n" + json.dumps(fresh[vid], sort_keys=True, default=_json_default).encode())
        return h.hexdigest()

    def failures_key(self) -> str:
        """A key of what :meth:`failures` and :meth:`failure` return, given the index (:meth:`view_key`): the live
        generation's failure table and the fresh failure records."""
        fresh = sorted(json.dumps(f, sort_keys=True) for f in self._fresh_failures())
        rel = _compaction.read_current(self).get("failures")
        return hashlib.blake2b(json.dumps([_MEMO_FORMAT, rel, fresh]).encode(), digest_size=16).hexdigest()

    def read_memo(self, name: str) -> dict | None:
        """The memo ``cache/<name>.json`` (a JSON object written by :meth:`write_memo`), or ``None`` when it is
        missing or unreadable: a memo is a cache, never the source of truth. A ``name`` that is not one safe path
        component raises ``ValueError``."""
        path = self._memo_path(name)
        try:
            doc = json.loads(self.fs.cat_file(path, start=0))
        except (FileNotFoundError, OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("format") == _MEMO_FORMAT else None

    def write_memo(self, name: str, doc: Mapping[str, Any]) -> None:
        """Replace the memo ``cache/<name>.json`` atomically (no fsync: losing a memo costs only time). A read-only
        store keeps its memos as they are."""
        if self.read_only:
            return
        atomic_write(self._memo_path(name), json.dumps({**doc, "format": _MEMO_FORMAT}, default=_json_default),
                     fs=self.fs, fsync=False)

    def _memo_path(self, name: str) -> str:
        check_name("name", name)
        return self._p("cache", f"{name}.json")

    def _memo_digest(self, key: str, compute: Callable[[], str]) -> str:
        """``compute()`` memoised under ``key`` in ``cache/digests.json`` (the last :data:`_MEMO_DIGESTS` keys)."""
        memo = self.read_memo("digests") or {}
        known = memo.get("digests") if isinstance(memo.get("digests"), dict) else {}
        hit = known.get(key)
        if isinstance(hit, str):
            return hit
        value = compute()
        kept = list(known.items())[-(_MEMO_DIGESTS - 1):]
        self.write_memo("digests", {"digests": {**dict(kept), key: value}})
        return value

    def _table_digest(self, name: str) -> str | None:
        """The entries digest a consolidated table was written from (None: missing, unreadable or not recorded)."""
        path = self._table_path(name)
        try:
            with self.fs.open(path, "rb") as fh:
                meta = pq.read_schema(fh).metadata or {}
        except (FileNotFoundError, OSError, pa.ArrowInvalid):
            return None
        value = meta.get(_TABLE_DIGEST_KEY.encode())
        return value.decode() if value is not None else None

    def stages(self) -> list[str]:
        """Stages with at least one committed output (fresh or compacted)."""
        fresh = {s for s in self._fresh_stages() if any(not r.get("dropped") for r in self._fresh_raw(s).values())}
        return sorted(fresh | set(_compaction.read_view(self).stages()))

    def compact(self, *, locked: bool = False, grace_seconds: float = 600.0, **sizes: int) -> dict:
        """Fold the fresh layer into a new compacted generation (see :mod:`features.compaction`).

        Args:
            locked: the caller already holds :meth:`lock` (the extraction flow); otherwise it is taken here.
            grace_seconds: files an earlier generation retired are deleted this long after it (a concurrent reader
                may still be reading them).
            sizes: ``shard_videos``, ``shard_bytes``, ``part_rows`` (defaults in :mod:`features.compaction`).

        Returns:
            ``{"generation", "folded", "dropped", "failures", "shards_written", "shards_retired", "removed",
            "seconds"}``.
        """
        unknown = sorted(set(sizes) - {"shard_videos", "shard_bytes", "part_rows"})
        if unknown:
            raise TypeError(f"compact() got unexpected keyword argument(s) {unknown}; expected shard_videos, "
                            "shard_bytes or part_rows")
        with contextlib.nullcontext() if locked else self.lock():
            return _compaction.compact(self, grace_seconds=grace_seconds, **sizes)

    def write_many(self, stage: str, outputs: Iterable[Mapping[str, Any]], *, locked: bool = False,
                   **sizes: int) -> dict:
        """Commit many outputs of ``stage`` at once, straight into the compacted layer: one new generation (new
        shards, the changed index partitions, one ``CURRENT.json`` write) that also folds the fresh layer.

        A batch commit for bulk loads and for a worker's batch on object stores (a few large writes instead of one
        object per output). Each output reads as if :meth:`write` had committed it: it replaces the video's fresh
        output and clears its failure. The batch's arrays are held in memory until the commit.

        Args:
            outputs: one mapping per video with :meth:`write`'s arguments: ``video_id``, ``fingerprint``,
                ``version``, and optionally ``arrays`` (numeric or boolean), ``record``, ``params``, ``seconds``.
            locked, sizes: as for :meth:`compact`.

        Returns:
            :meth:`compact`'s statistics.

        Raises:
            ValueError: ``stage`` is not one safe path component, an output without ``video_id`` / ``fingerprint`` /
                ``version``, a video twice, or an array of another dtype (strings: commit those with :meth:`write`).
        """
        check_name("stage", stage)
        batch: dict[str, dict] = {}
        created = _now()
        for i, out in enumerate(outputs):
            missing = [k for k in ("video_id", "fingerprint", "version") if k not in out]
            if missing:
                raise ValueError(f"outputs[{i}]: missing {missing}; expected video_id, fingerprint and version")
            vid = out["video_id"]
            video_key(vid)  # validates the id
            if vid in batch:
                raise ValueError(f"outputs[{i}]: video_id={vid!r} appears twice in one batch")
            arrays = {k: np.ascontiguousarray(v) for k, v in (out.get("arrays") or {}).items()}
            bad = {k: str(v.dtype) for k, v in arrays.items() if v.dtype.kind not in "biuf"}
            if bad:
                raise ValueError(f"outputs[{i}] ({vid!r}): arrays {bad} cannot be batch-committed; expected numeric "
                                 "or boolean arrays (commit this output with Store.write)")
            params = out.get("params")
            batch[vid] = {"video_id": vid, "stage": stage, "version": int(out["version"]),
                          "fingerprint": out["fingerprint"], "params": _jsonable(params) if params is not None else {},
                          "record": _jsonable(dict(out.get("record") or {})),
                          "created": created, "seconds": float(out.get("seconds") or 0.0),
                          "data": "batch" if arrays else None, "_batch": True, "_arrays": arrays}
        with contextlib.nullcontext() if locked else self.lock():
            return _compaction.compact(self, batch={stage: batch}, **sizes)

    # ------------------------------------------------------------------ failures
    def record_failure(self, stage: str, video_id: str, error: str, *, fingerprint: str | None = None) -> None:
        """Record why ``stage`` failed on ``video_id`` (kept until the stage succeeds on it)."""
        self._write_bytes(self._stage_path("failures", stage, f"{video_key(video_id)}.json"), json.dumps({
            "video_id": video_id, "stage": stage, "error": str(error)[:2000], "fingerprint": fingerprint,
            "time": _now()}).encode())

    def failure(self, stage: str, video_id: str) -> dict | None:
        """The recorded failure of ``stage`` on ``video_id``, or ``None``."""
        key = video_key(video_id)
        try:
            return json.loads(self.fs.cat_file(self._stage_path("failures", stage, f"{key}.json")))
        except FileNotFoundError:
            pass
        if self.fs.exists(self._stage_path("index", stage, f"{key}.json")):  # committed (or dropped) since: no failure
            return None
        table = _compaction.read_view(self).failure_index()
        row = table.get((stage, video_id))
        return dict(row) if row is not None else None

    def _clear_failure(self, stage: str, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._stage_path("failures", stage, f"{key}.json"))

    def failures(self) -> pd.DataFrame:
        """Every recorded failure: ``video_id``, ``stage``, ``error``, ``time``."""
        cols = ["video_id", "stage", "error", "time"]
        fresh = self._fresh_failures()
        view = _compaction.read_view(self)
        compacted = view.failures()
        merged = {}
        if compacted:
            hidden = {stage: set(self._fresh_raw(stage)) for stage in {f["stage"] for f in compacted}}
            merged = {(f["stage"], f["video_id"]): f for f in compacted if f["video_id"] not in hidden[f["stage"]]}
        for f in fresh:
            merged[(f["stage"], f["video_id"])] = f
        rows = list(merged.values())
        df = pd.DataFrame(rows, columns=cols + ["fingerprint"]) if rows else pd.DataFrame(columns=cols)
        return df[cols].sort_values(["stage", "video_id"]).reset_index(drop=True)

    def _fresh_failures(self) -> list[dict]:
        """The fresh layer's failure records (parsed)."""
        folder = self._p("failures")
        # exists() before find(), unlike the listings before ls(): on s3fs it is a HEAD and a LIST, where find() of
        # a missing prefix is a LIST, a HEAD and a LIST (the fresh failures are usually folded away)
        if not self.fs.exists(folder):
            return []
        paths = [p for p in self.fs.find(folder) if p.endswith(".json") and "/.tmp-" not in p]
        return [json.loads(b) for b in self.fs.cat(paths, on_error="omit").values()] if paths else []

    def _remove_fresh_failure(self, item: Mapping[str, Any]) -> None:
        """Remove a folded fresh failure record (only while it still holds ``item``)."""
        path = self._p("failures", item["stage"], f"{video_key(item['video_id'])}.json")
        with contextlib.suppress(FileNotFoundError):
            if json.loads(self.fs.cat_file(path)) == dict(item):
                self.fs.rm(path)

    # ------------------------------------------------------------------ local files
    def local_dir(self, *parts: str) -> Path:
        """A local directory for files that need a real path (HDF5 packs, checkpoints, reports).

        For local stores it lies inside the store; for object-store roots it is a local cache
        (``$VIDPIPE_CACHE`` or ``~/.cache/vidpipe``) mirroring the store's name.

        Raises:
            ValueError: a part is not one safe path component (``run_id="../../x"`` must not leave the store).
        """
        for i, part in enumerate(parts):
            check_name(f"parts[{i}]", part)
        path = self._local_root().joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _local_root(self) -> Path:
        """The folder :meth:`local_dir` paths lie under (not created here)."""
        if self.local:
            return Path(self.path)
        cache = Path(os.environ.get("VIDPIPE_CACHE", Path.home() / ".cache" / "vidpipe"))
        return cache / hashlib.blake2b(self.url.encode(), digest_size=6).hexdigest()

    def summary(self, stages: list[str] | None = None) -> dict:
        """What ``vidpipe inspect --json`` prints: per stage how many manifest videos are done, failed, pending.

        Only committed outputs count as done (a crash mid-write is never reported as done); outputs of videos no longer
        in the manifest are not counted. A video whose source file is missing (a failure of the pseudo-stage
        :data:`features.schema.SOURCE_STAGE`) is counted once, in ``missing`` (``missing_videos``
        names up to 20), and is pending in no stage.
        """
        ids = set(self.manifest().get("video_id", pd.Series(dtype=str)))
        failures = self.failures()
        failures = failures[failures["video_id"].isin(ids)] if len(failures) else failures
        missing = set(failures.loc[failures["stage"] == SOURCE_STAGE, "video_id"]) if len(failures) else set()
        failures = failures[failures["stage"] != SOURCE_STAGE] if len(failures) else failures
        names = list(dict.fromkeys([*(stages or []), *self.stages(), *sorted(set(failures.get("stage", [])))]))
        out: dict[str, dict[str, int]] = {}
        for stage in names:
            done = self._committed_ids(stage) & ids
            fp = None if done else self.artifact_fingerprint(stage)
            if fp is not None:  # dataset-level stage (graph): its meta names the videos (no array is read)
                done = set(self._artifact_meta(stage, fp).get("video_ids", [])) & ids
            failed = set(failures.loc[failures["stage"] == stage, "video_id"]) - done if len(failures) else set()
            out[stage] = {"done": len(done), "failed": len(failed), "pending": len(ids - done - failed - missing)}
        return {
            "dataset": self.dataset,
            "videos": len(ids),
            "missing": len(missing),
            "missing_videos": sorted(missing)[:20],
            "stages": out,
            "failures": [{"video_id": r.video_id, "stage": r.stage, "error": r.error}
                         for r in failures.itertuples()] if len(failures) else [],
        }

    # ------------------------------------------------------------------ housekeeping
    @contextlib.contextmanager
    def lock(self, name: str = "write", *, wait: bool = True, timeout: float | None = None) -> Iterator[None]:
        """Serialise writers of this dataset (an OS file lock on local stores).

        With ``wait=False`` (or after ``timeout`` seconds) a held lock raises :class:`StoreError` saying who holds it.
        Object stores have no cross-machine lock: there, run one writer per dataset (e.g. a Prefect concurrency
        limit); a warning says so.
        """
        if not self.local:
            warnings.warn("object-store roots have no cross-machine lock: run one writer per dataset", stacklevel=3)
            yield
            return
        path = Path(self.path, f".{name}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as fh:
            deadline = None if timeout is None else time.monotonic() + timeout
            waited = False
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    if not wait or (deadline is not None and time.monotonic() > deadline):
                        raise StoreError(f"dataset {self.dataset!r} is being written by {holder}; wait for it to "
                                         "finish (or pass wait=True)") from None
                    if not waited:  # a second run must not look hung: say once who it waits for
                        warnings.warn(f"dataset {self.dataset!r} is being written by {holder}; waiting for it to "
                                      "finish", stacklevel=3)
                        waited = True
                    time.sleep(0.2)
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} since {_now()}")
            fh.flush()
            try:
                yield
            finally:
                fh.seek(0)
                fh.truncate()
                fcntl.flock(fh, fcntl.LOCK_UN)

    def gc(self, *, tmp_grace_seconds: float = 600.0) -> int:
        """Remove orphaned version directories and temporary files left by crashes; returns how many.

        Takes the write lock (an extraction that is writing a version directory it has not committed yet must not lose
        it), so do not call it inside ``with store.lock()``. Packs, run records and tables are written without that
        lock (training and comparisons run beside extraction), each through a temporary file renamed into place, so a
        temporary is removed only once it has not been modified for ``tmp_grace_seconds`` — a live writer keeps
        touching its file; a crashed one's is collected by a later gc.
        """
        if not tmp_grace_seconds >= 0:
            raise ValueError(f"tmp_grace_seconds={tmp_grace_seconds!r}: expected a number of seconds >= 0")
        with self.lock():
            return self._gc(tmp_grace_seconds)

    def _gc(self, tmp_grace_seconds: float) -> int:
        removed = 0
        zroot = self._p("features.zarr")
        written = [d["name"].rstrip("/").rsplit("/", 1)[-1] for d in self._ls(zroot)
                   if d.get("type") == "directory"]  # files there: zarr's own
        written = [w for w in written if is_name(w)]  # a folder with another name is not the store's
        # stages with data but no index yet too: a crash during a stage's very first write leaves only data
        for stage in sorted(set(self._fresh_stages()) | {w for w in written if w not in {"zarr.json", "_artifacts"}}):
            live = {video_key(v): r.get("data") for v, r in self._fresh_raw(stage).items()}
            for key_dir in self._ls(self._stage_path("features.zarr", stage), detail=False):
                key = key_dir.rstrip("/").rsplit("/", 1)[-1]
                if key == "zarr.json":
                    continue
                for p in self.fs.ls(key_dir, detail=False):
                    name = p.rstrip("/").rsplit("/", 1)[-1]
                    if name != "zarr.json" and name != live.get(key):
                        self.fs.rm(p, recursive=True)
                        removed += 1
        art = self._p("features.zarr", "_artifacts")
        for name_dir in self._ls(art, detail=False):
            name = name_dir.rstrip("/").rsplit("/", 1)[-1]
            if name == "zarr.json":
                continue
            live = set()
            for meta_path in self.fs.glob(self._p("artifacts", name, "*", "meta.json")):
                meta = json.loads(self.fs.cat_file(meta_path))
                live.add(meta.get("_data", meta_path.rstrip("/").rsplit("/", 2)[-2]))
            for p in self.fs.ls(name_dir, detail=False):
                if p.rstrip("/").rsplit("/", 1)[-1] not in live | {"zarr.json"}:
                    self.fs.rm(p, recursive=True)
                    removed += 1
        # compacted files no generation references (a crashed compaction) or retired longer than the grace period
        removed += _compaction.collect(self, _compaction.read_current(self), tmp_grace_seconds)
        if self.local:
            # our own temporaries, and zarr's (LocalStore writes <name>.<uuid>.partial, then renames)
            now = time.time()
            for tmp in [*Path(self.path).rglob(".tmp-*"), *Path(self.path).rglob("*.partial")]:
                try:
                    if now - tmp.stat().st_mtime < tmp_grace_seconds:
                        continue  # maybe a live writer's (see gc)
                    tmp.unlink()
                except FileNotFoundError:  # renamed into place meanwhile
                    continue
                removed += 1
        return removed


def open_store(root: str | os.PathLike[str] | None, dataset: str, *, create: bool = False,
               read_only: bool = False) -> Store:
    """Open the store of ``dataset`` under ``root`` (``None`` → ``$VIDPIPE_ROOT`` or ``./data``).

    ``read_only=True``: every method that would change the store raises :class:`StoreError` (see :data:`_WRITERS`).

    Raises:
        StoreError: the store does not exist (unless ``create``) or was written by a newer vidpipe.
        ValueError: ``dataset`` is not a safe name, or both ``create`` and ``read_only`` were asked for.
    """
    return Store(resolve_root(root), dataset, create=create, read_only=read_only)


#: the public methods of :class:`Store` that change the store (or take its write lock, or create its folders); a
#: read-only store refuses them. tests/features/test_store_read_only.py calls every other public method on a
#: read-only store and checks that nothing on disk changed, so a new writer missing here fails that test.
_WRITERS = ("write_manifest", "write_table", "append_scrape_history", "write", "copy_entry", "drop", "consolidate",
            "compact", "write_many", "record_failure", "write_artifact", "copy_artifact", "update_artifact_meta",
            "local_dir", "write_pack", "checkpoint_dir", "save_run", "write_report", "lock", "gc")


def _refuse_when_read_only(method: Any) -> Any:
    """``method`` raising :class:`StoreError` on a read-only store."""
    @functools.wraps(method)
    def guarded(self: Store, *args: Any, **kwargs: Any) -> Any:
        if self.read_only:
            raise StoreError(f"Store.{method.__name__}: store {self.url} is open read-only (a dry run, or "
                             "open_store(..., read_only=True)) and is not changed; open it writable to change it")
        return method(self, *args, **kwargs)
    return guarded


for _name in _WRITERS:
    setattr(Store, _name, _refuse_when_read_only(getattr(Store, _name)))
del _name


def _migrate(store: Store, version: Any) -> None:
    """Bring an older store up to :data:`FORMAT_VERSION` or say exactly what to do."""
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise StoreError(f"store {store.url} has format version {version}, newer than this vidpipe "
                         f"({FORMAT_VERSION}): upgrade vidpipe (pip install -U vidpipe)")
    raise StoreError(f"store {store.url} has unknown format version {version!r}; this vidpipe reads version "
                     f"{FORMAT_VERSION}. Re-ingest into a fresh root (vidpipe ingest --root NEW ...)")


def _jsonable(value: Any) -> Any:
    """``value`` after a JSON round trip (numpy scalars and arrays, paths, dataclasses become plain values)."""
    return json.loads(json.dumps(value, default=_json_default))


_TABLE_DIGEST_KEY = "vidpipe.entries_digest"
_MEMO_FORMAT = 1  # of cache/<name>.json and of the keys in them: bump when either changes meaning
_MEMO_DIGESTS = 256  # entries digests kept in cache/digests.json (a few per stage and generation)
#: process-wide memo of parsed index snapshots: path → ((inode, size, mtime_ns) of the snapshot file, records)
_SNAPSHOTS: dict[str, tuple[tuple[int, int, int], dict[str, tuple[list[int], dict]]]] = {}
_SNAPSHOTS_LOCK = threading.Lock()


def _load_snapshot(path: str) -> dict[str, tuple[list[int], dict]]:
    """An index snapshot's records: file name → ([inode, size, mtime_ns], parsed record); {} if none/unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return {}
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _SNAPSHOTS_LOCK:
        hit = _SNAPSHOTS.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            raw = json.loads(fh.read())
        files = {str(k): (list(v[0]), v[1]) for k, v in raw["files"].items()} if raw.get("format") == 1 else {}
    except (OSError, ValueError, KeyError, TypeError, IndexError):  # a damaged cache is no cache
        return {}
    with _SNAPSHOTS_LOCK:
        _SNAPSHOTS[path] = ((st.st_ino, st.st_size, st.st_mtime_ns), files)
    return files


def _save_snapshot(path: str, files: dict[str, tuple[list[int], dict]]) -> None:
    """Write an index snapshot atomically (temporary name + rename; no fsync: losing a cache is harmless)."""
    parent = os.path.dirname(path)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
    try:
        os.makedirs(parent, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(json.dumps({"format": 1, "files": {k: [v[0], v[1]] for k, v in files.items()}},
                                separators=(",", ":"), default=_json_default).encode())
            st = os.fstat(fh.fileno())
        os.replace(tmp, path)
    except OSError:  # a read-only store still reads correctly, only slower
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return
    with _SNAPSHOTS_LOCK:
        _SNAPSHOTS[path] = ((st.st_ino, st.st_size, st.st_mtime_ns), files)


def _entries_digest(keys: Mapping[str, tuple]) -> str:
    """What a consolidated table depends on: every video's (fingerprint, data, commit time, version)."""
    h = hashlib.blake2b(digest_size=16)
    for vid in sorted(keys):
        h.update(json.dumps([vid, *keys[vid]]).encode() + b"\n")
    return h.hexdigest()


def _table_of(entries: Mapping[str, IndexRecord]) -> pd.DataFrame:
    """One row per video: index columns + record fields, sorted by video id."""
    rows = [{"video_id": rec.video_id, "fingerprint": rec.fingerprint, "version": rec.version,
             "created": rec.created, "seconds": rec.seconds, **rec.record} for rec in entries.values()]
    return pd.DataFrame(rows).sort_values("video_id").reset_index(drop=True) if rows else pd.DataFrame()


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and out[col].map(lambda v: isinstance(v, (dict, list))).any():
            out[col] = out[col].map(lambda v: json.dumps(v, default=_json_default) if isinstance(v, (dict, list)) else v)
    return out
