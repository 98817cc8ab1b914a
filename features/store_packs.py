"""The store's tensor packs: HDF5 files of model-ready arrays, one per pack fingerprint.

Packs need a real file (HDF5 reads by offset), so they live in the store's local files (``Store._local_root``):
``packs/<fingerprint>.h5`` inside a local store, or in the local cache mirroring an object-store root. They are a
cache: :func:`features.packs.build_pack` rebuilds a missing one.

:class:`PacksPart` is a part of :class:`features.store.Store`: it uses the store's ``_local_root`` and ``url`` and is
not constructed on its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from features.atomic import atomic_file
from features.store_encoding import check_name, json_default

__all__ = ["PacksPart"]


class PacksPart:
    """Tensor packs of a :class:`features.store.Store` (see the module docstring)."""

    def _pack_file(self, fingerprint: str) -> Path:
        """Where the pack with ``fingerprint`` lives (it may not exist yet)."""
        return self._local_root() / "packs" / f"{check_name('fingerprint', fingerprint)}.h5"

    def has_pack(self, fingerprint: str) -> bool:
        """Whether the pack with ``fingerprint`` has been written."""
        return self._pack_file(fingerprint).is_file()

    def write_pack(self, fingerprint: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> Path:
        """Write an HDF5 tensor pack atomically: contiguous rows, LZF-compressed, chunked by sample."""
        import h5py

        final = self._pack_file(fingerprint)
        with atomic_file(final) as tmp, h5py.File(tmp, "w") as h5:
            for name, arr in arrays.items():
                arr = np.asarray(arr)
                if arr.dtype.kind in "OUS":
                    h5.create_dataset(name, data=np.asarray(arr, dtype=h5py.string_dtype()))
                    continue
                chunks = (1, *arr.shape[1:]) if arr.ndim > 1 and arr.shape[0] > 0 else None
                h5.create_dataset(name, data=arr, chunks=chunks, compression="lzf" if chunks else None)
            h5.attrs["meta"] = json.dumps(dict(attrs), default=json_default)
            h5.attrs["fingerprint"] = fingerprint
        return final

    def read_pack(self, fingerprint: str) -> tuple[dict[str, np.ndarray], dict]:
        """Load a whole pack into memory: ``(arrays, meta)``."""
        with self.open_pack(fingerprint) as h5:
            arrays = {k: (h5[k].asstr()[...] if h5[k].dtype.kind == "O" else h5[k][...]) for k in h5.keys()}
            meta = json.loads(h5.attrs["meta"])
        return arrays, meta

    def open_pack(self, fingerprint: str) -> Any:
        """The pack as an open, read-only ``h5py.File`` (for lazy reads; close it, e.g. ``with store.open_pack(fp)``).

        Raises:
            KeyError: no pack with that fingerprint.
        """
        import h5py

        path = self._pack_file(fingerprint)
        if not path.is_file():
            raise KeyError(f"no tensor pack {fingerprint} in {self.url}; build it with features.packs.build_pack "
                           "(packs are a cache: rebuilt from the store's outputs)")
        return h5py.File(path, "r")
