"""Batches from tensor packs: a small, fast loader that slices whole batches out of numpy / HDF5 arrays.

A pack (see :mod:`features.packs`) holds every modality as one array with the video axis first, so a batch is one
fancy-index per key — no per-sample Python, no collate. Indices inside a batch are sorted, which turns HDF5 reads into
(near-)contiguous slices when the pack is read lazily. ``uint8`` frames become ``float32`` in [0, 1] here, on the fly,
so packs stay 4× smaller than float frames. A key the model reads only in part (``VidModel.input_positions``, e.g.
VAN's 2 of 30 frames) is cut to those positions before that conversion.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

__all__ = ["PackLoader", "split_indices", "split_sets"]


def _check_shard(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank}, world_size={world_size}: expected world_size >= 1 and 0 <= rank < world_size")


def split_indices(splits: Sequence[str], name: str) -> np.ndarray:
    """Row indices whose split is ``name`` (sorted)."""
    return np.flatnonzero(np.asarray(splits, dtype=object) == name)


def split_sets(splits: Sequence[str]) -> dict[str, np.ndarray]:
    """``{"train", "val", "test"}`` → row indices, with the fallbacks every trainer and evaluator shares: no
    validation rows → validate on the training rows; no test rows → test on the validation rows."""
    idx = {s: split_indices(splits, s) for s in ("train", "val", "test")}
    if len(idx["val"]) == 0:
        idx["val"] = idx["train"]
    if len(idx["test"]) == 0:
        idx["test"] = idx["val"]
    return idx


class PackLoader:
    """Iterate over dict batches of a pack's rows.

    Args:
        arrays: key → array with the video axis first (numpy in RAM, or h5py datasets for lazy reads).
        keys: which keys to yield (model inputs, their masks, ``target``); missing ``*_mask`` keys are skipped.
        indices: the rows of this split.
        batch_size: rows per batch.
        shuffle: reshuffle every epoch with a generator seeded by ``seed`` + epoch (deterministic).
        pin_memory: pin batches (for asynchronous host→GPU copies).
        rank, world_size: data-parallel sharding (DDP): every rank draws the same epoch order, pads it to a multiple
            of ``world_size`` by repeating its first rows (as ``DistributedSampler`` does, so every rank runs the
            same number of batches and no all-reduce waits forever), and keeps rows ``rank::world_size``.
            ``world_size=1`` (default) = all rows.
        positions: key → the positions along its axis after the video axis to keep (a model's
            ``input_positions()``), applied to the key and to its ``<key>_mask`` before any dtype conversion; keys not
            listed are yielded whole.

    Shapes:
        yields {key: (B, ...)} float32 / bool tensors; uint8 frames are scaled to [0, 1] float32; a key in
        ``positions`` and its mask have len(positions[key]) on axis 1 (e.g. vision (B, n, 3, H, W), mask (B, n)).
    """

    def __init__(self, arrays: Mapping[str, Any], keys: Sequence[str], indices: np.ndarray, *, batch_size: int = 32,
                 shuffle: bool = False, seed: int = 0, pin_memory: bool = False, rank: int = 0,
                 world_size: int = 1, positions: Mapping[str, Sequence[int]] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: expected >= 1")
        _check_shard(rank, world_size)
        missing = [k for k in keys if k not in arrays and not k.endswith("_mask")]
        if missing:
            raise ValueError(f"keys {missing} are not in the pack (it has {sorted(arrays)})")
        self.arrays = arrays
        self.keys = [k for k in keys if k in arrays]
        self.positions = _check_positions(positions or {}, self.keys, arrays)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.rank, self.world_size = rank, world_size
        self._epoch = 0

    def shard(self, rank: int, world_size: int) -> "PackLoader":
        """A copy of this loader that yields only ``rank``'s share of the rows (see ``rank``/``world_size``)."""
        _check_shard(rank, world_size)
        out = copy.copy(self)
        out.rank, out.world_size = rank, world_size
        return out

    def set_epoch(self, epoch: int) -> None:
        """Shuffle for ``epoch`` next (the engine calls this, so a resumed run shuffles like an unbroken one)."""
        self._epoch = int(epoch)

    def __len__(self) -> int:
        rows = -(-len(self.indices) // self.world_size)  # ceil: the padded share of one rank
        return (rows + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = self.indices
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self._epoch])
            order = order[rng.permutation(len(order))]
            self._epoch += 1
        if self.world_size > 1 and len(order):
            order = np.resize(order, -(-len(order) // self.world_size) * self.world_size)[self.rank::self.world_size]
        for start in range(0, len(order), self.batch_size):
            rows = np.sort(order[start:start + self.batch_size])
            yield {k: self._tensor(self.arrays[k], rows, self.positions.get(k.removesuffix("_mask")))
                   for k in self.keys}

    def _tensor(self, array: Any, rows: np.ndarray, cols: np.ndarray | None) -> torch.Tensor:
        part = _take_rows(array, rows, cols)
        t = torch.from_numpy(part)
        if t.dtype == torch.uint8:
            t = t.to(torch.float32).div_(255.0)
        elif t.dtype == torch.float64:
            t = t.to(torch.float32)
        return t.pin_memory() if self.pin_memory else t


def _check_positions(positions: Mapping[str, Sequence[int]], keys: Sequence[str], arrays: Mapping[str, Any]
                     ) -> dict[str, np.ndarray]:
    """``positions`` as index arrays, checked against the arrays of the keys they cut (and of their masks)."""
    out = {}
    for key, pos in positions.items():
        idx = np.asarray(pos, dtype=np.int64).reshape(-1)
        if key not in keys:
            raise ValueError(f"positions has key {key!r}, which this loader does not yield; expected keys of {keys}")
        for k in (key, f"{key}_mask"):
            shape = np.shape(arrays[k]) if k in keys else None
            if shape is not None and (len(shape) < 2 or idx.size == 0 or idx.min() < 0 or idx.max() >= shape[1]):
                raise ValueError(f"positions[{key!r}]={list(pos)}: expected at least one index in [0, axis 1) of "
                                 f"{k!r}, whose shape is {shape}")
        out[key] = idx
    return out


def _take_rows(array: Any, rows: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
    """``array[rows]`` for sorted ``rows`` (``array[rows][:, cols]`` when ``cols`` is given, without copying the other
    positions); a lazy (HDF5) dataset is read as one slice per run of consecutive rows.

    h5py's fancy indexing selects row by row and was 20-30× slower than slices for a batch of 224×224 frames
    (lazily read packs trained at a fraction of the in-memory rate). Numpy arrays index as usual.

    Shapes:
        array: (N, T, ...); rows: (B,) sorted; cols: (n,) or None → (B, n | T, ...)
    """
    if isinstance(array, np.ndarray):
        return array[rows] if cols is None else array[np.ix_(rows, cols)]
    if rows.size == 0:
        part = np.asarray(array[0:0])
        return part if cols is None else part[:, cols]
    runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
    if cols is None:
        parts = [np.asarray(array[int(r[0]):int(r[-1]) + 1]) for r in runs]
    else:  # h5py selects a sorted list of distinct positions; reorder / repeat them afterwards
        wanted, order = np.unique(cols, return_inverse=True)
        parts = [np.asarray(array[int(r[0]):int(r[-1]) + 1, wanted.tolist()])[:, order] for r in runs]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
