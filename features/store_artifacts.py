"""The store's dataset-level artifacts: outputs computed over a whole dataset (vocabulary, graph embeddings, the
interpretation cache), each under a fingerprint with one of them current.

Layout (under the store, see :mod:`features.store`)::

    artifacts/<name>/current.json              {"fingerprint", "created"}: the artifact readers get
    artifacts/<name>/<fingerprint>/meta.json   its JSON meta; ``_data`` names its arrays' directory
    artifacts/<name>/<fingerprint>/<file>      raw files stored with it
    features.zarr/_artifacts/<name>/<fp>-<random>/   its arrays (one Zarr group)

:class:`ArtifactsPart` is a part of :class:`features.store.Store`: it uses the store's layout (``_p``, ``fs``,
``_zarr``, ``_write_bytes``) and is not constructed on its own.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any, Iterable, Mapping

import numpy as np
import zarr

from features.store_encoding import ZARR_COMPRESSOR, check_name, json_default, remove_children, utc_now, zarr_chunks

__all__ = ["ArtifactsPart"]

_RESERVED_META = frozenset({"_data"})  # meta.json keys the store writes itself; no caller may set them


class ArtifactsPart:
    """Dataset-level artifacts of a :class:`features.store.Store` (see the module docstring)."""

    def write_artifact(self, name: str, fingerprint: str, *, arrays: Mapping[str, np.ndarray] | None = None,
                       meta: Mapping[str, Any] | None = None, files: Mapping[str, bytes] | None = None) -> str:
        """Commit a dataset-level artifact (arrays in Zarr, JSON meta, raw files) and point ``current`` at it.

        Same protocol as :meth:`write`: the arrays go to a fresh directory ``_artifacts/<name>/<fp>-<random>``, then
        ``meta.json`` (which names that directory under the reserved key ``_data``) and ``current.json`` are written
        atomically. Rewriting the same fingerprint (a refresh) therefore never touches the arrays a reader follows.

        Raises:
            ValueError: ``name``, ``fingerprint`` or a key of ``files`` is not one safe path component.
        """
        base = self._artifact_path(name, fingerprint=fingerprint)
        file_paths = {self._artifact_path(name, fingerprint=fingerprint, fname=fname, fname_arg="files key"): blob
                      for fname, blob in (files or {}).items()}  # every name checked before anything is written
        data = None
        if arrays:
            data = f"{fingerprint}-{uuid.uuid4().hex[:8]}"
            group = zarr.open_group(self._zarr(), path=f"_artifacts/{name}/{data}", mode="w")
            for k, arr in arrays.items():
                arr = np.ascontiguousarray(arr)
                group.create_array(k, data=arr, chunks=zarr_chunks(arr), compressors=ZARR_COMPRESSOR)
        for path, blob in file_paths.items():
            self._write_bytes(path, blob)
        self._write_bytes(f"{base}/meta.json",
                          json.dumps({**dict(meta or {}), "_data": data}, default=json_default).encode())
        self._write_bytes(self._artifact_path(name, fname="current.json"),
                          json.dumps({"fingerprint": fingerprint, "created": utc_now()}).encode())
        self._remove_stale_artifact_data(name, fingerprint, keep=data)
        return base

    def _artifact_path(self, name: str, *, fingerprint: str | None = None, fname: str | None = None,
                       fname_arg: str = "fname") -> str:
        """The path ``artifacts/<name>[/<fingerprint>][/<fname>]`` in the store: every artifact path built from a
        caller's names is built here, each part checked with :func:`~features.store_encoding.check_name`.

        Raises:
            ValueError: a part is not one safe path component (naming ``name``, ``fingerprint`` or ``fname_arg``).
        """
        parts = [check_name("name", name)]
        if fingerprint is not None:
            parts.append(check_name("fingerprint", fingerprint))
        if fname is not None:
            parts.append(check_name(fname_arg, fname))
        return self._p("artifacts", *parts)

    def update_artifact_meta(self, name: str, fingerprint: str, updates: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``updates`` into the meta of artifact ``name@fingerprint``; returns the meta as
        :meth:`read_artifact` gives it.

        Only ``meta.json`` is rewritten (atomically); the arrays, the files and ``current.json`` are left as they are,
        so a reader following the artifact sees the same data before and after.

        Raises:
            TypeError: ``updates`` is not a mapping.
            ValueError: ``updates`` sets a reserved key (``_data``: the store's name for the arrays' directory), or
                ``name`` or ``fingerprint`` is not one safe path component.
            KeyError: there is no artifact ``name@fingerprint``.
        """
        if not isinstance(updates, Mapping):
            raise TypeError(f"updates: expected a mapping of meta keys to values, got {type(updates).__name__}")
        reserved = sorted(_RESERVED_META.intersection(updates))
        if reserved:
            raise ValueError(f"updates: keys {reserved} are reserved by the store (the arrays' directory); "
                             "expected meta keys other than " + ", ".join(sorted(_RESERVED_META)))
        path = self._artifact_path(name, fingerprint=fingerprint, fname="meta.json")
        try:
            meta = json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            raise KeyError(f"no artifact {name!r} @{fingerprint} in {self.url}") from None
        blob = json.dumps({**meta, **updates}, default=json_default)
        self._write_bytes(path, blob.encode())
        return {k: v for k, v in json.loads(blob).items() if k not in _RESERVED_META}

    def _remove_stale_artifact_data(self, name: str, fingerprint: str, keep: str | None) -> None:
        """Drop earlier array directories of ``name@fingerprint`` (no meta.json names them any more)."""
        remove_children(self.fs, self._p("features.zarr", "_artifacts", name),
                        lambda entry: entry != keep and (entry == fingerprint or entry.startswith(f"{fingerprint}-")))

    def artifact_fingerprint(self, name: str) -> str | None:
        """Fingerprint of the current artifact ``name`` or ``None``."""
        try:
            return json.loads(self.fs.cat_file(self._artifact_path(name, fname="current.json")))["fingerprint"]
        except FileNotFoundError:
            return None

    def read_artifact(self, name: str, fingerprint: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
        """``(arrays, meta)`` of artifact ``name`` (the current one unless ``fingerprint``), the arrays in name order.

        Raises:
            KeyError: no such artifact.
            ValueError: ``name`` or ``fingerprint`` is not one safe path component.
        """
        fp = self.artifact_fingerprint(name) if fingerprint is None else fingerprint
        meta = self._artifact_meta(name, fp)
        group = self._artifact_group(name, fp, meta)
        arrays = {k: a[...] for k, a in sorted(group.arrays())} if group is not None else {}  # zarr lists unordered
        meta.pop("_data", None)
        return arrays, meta

    def _artifact_meta(self, name: str, fp: str | None) -> dict[str, Any]:
        """The stored meta of artifact ``name@fp``, ``_data`` included (one read, no existence check before it).

        Raises:
            KeyError: ``fp`` is ``None`` or there is no artifact ``name@fp``.
        """
        if fp is not None:
            with contextlib.suppress(FileNotFoundError):
                return json.loads(self.fs.cat_file(self._artifact_path(name, fingerprint=fp, fname="meta.json")))
        raise KeyError(f"no artifact {name!r}{' @' + fp if fp else ''} in {self.url}")

    def _artifact_group(self, name: str, fp: str, meta: Mapping[str, Any]) -> Any:
        """The Zarr group (read-only) of the arrays of artifact ``name@fp`` with meta ``meta``; ``None``: no arrays."""
        if "_data" not in meta:  # written before artifacts had their own data directories: arrays under <fp>
            with contextlib.suppress(FileNotFoundError, zarr.errors.GroupNotFoundError):
                return zarr.open_group(self._zarr(), path=f"_artifacts/{name}/{fp}", mode="r")
            return None
        if meta["_data"] is None:
            return None
        # committed arrays must exist: a missing group is an error, not "no arrays"
        return zarr.open_group(self._zarr(), path=f"_artifacts/{name}/{meta['_data']}", mode="r")

    def artifact_file(self, name: str, fname: str, fingerprint: str | None = None) -> bytes:
        """Raw bytes of a file stored with :meth:`write_artifact`.

        Raises:
            KeyError: no artifact ``name``.
            ValueError: ``name``, ``fname`` or ``fingerprint`` is not one safe path component.
        """
        fp = self.artifact_fingerprint(name) if fingerprint is None else fingerprint
        if fp is None:
            raise KeyError(f"no artifact {name!r} in {self.url}")
        return self.fs.cat_file(self._artifact_path(name, fingerprint=fp, fname=fname))

    def copy_artifact(self, source: "ArtifactsPart", name: str) -> str:
        """Commit ``source``'s current artifact ``name`` here under the same fingerprint (arrays, meta and files).

        Raises:
            KeyError: ``source`` has no artifact ``name``.
        """
        fp = source.artifact_fingerprint(name)
        arrays, meta = source.read_artifact(name, fp)
        folder = source._artifact_path(name, fingerprint=fp)
        files = {}
        for p in source.fs.ls(folder, detail=False):
            fname = p.rstrip("/").rsplit("/", 1)[-1]
            if fname != "meta.json":
                files[fname] = source.fs.cat_file(p)
        return self.write_artifact(name, fp, arrays=arrays or None, meta=meta, files=files)

    def _dataset_stage_rows(self, stage: str, video_ids: Iterable[str]) -> dict[str, dict[str, np.ndarray]]:
        """video id → its row of every per-video array (first axis: the meta's ``video_ids``) of the current
        artifact named ``stage`` (a dataset-level stage: ``graph``), for each of ``video_ids`` the artifact has.

        One read of the artifact's meta for all of them; one video reads only the chunks that hold its rows, more
        videos read each array once. No video asked for: nothing is read.
        """
        video_ids = list(video_ids)
        fp = self.artifact_fingerprint(stage) if video_ids else None
        if fp is None:
            return {}
        meta = self._artifact_meta(stage, fp)
        ids = meta.get("video_ids") or []
        first: dict[str, int] = {}
        for i, vid in enumerate(ids):
            first.setdefault(vid, i)
        wanted = {vid: first[vid] for vid in video_ids if vid in first}
        out: dict[str, dict[str, np.ndarray]] = {vid: {} for vid in wanted}
        group = self._artifact_group(stage, fp, meta) if wanted else None
        if group is None:
            return out
        for name, arr in sorted(group.arrays()):  # by name, as read_artifact (zarr lists in no fixed order)
            if arr.shape[:1] != (len(ids),):
                continue
            whole = arr[...] if len(wanted) > 1 else None
            for vid, i in wanted.items():
                out[vid][name] = whole[i] if whole is not None else arr[i:i + 1][0]
        return out
