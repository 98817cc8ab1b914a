"""Cross-video encoder batching: the rows of many videos fill fixed-size encoder batches; each video gets its result.

An embedding stage's encoder input for one video is a few rows (frames, 1-s audio segments) with a validity mask
(bool, or 0/1 integers). Run one video at a time, a store of short clips runs many small forwards (a 30-frame clip:
one batch of 30). Here the rows of consecutive videos fill batches of ``batch_size`` rows, a long video's rows are
split over several batches, and a video's result is handed back as soon as the batch holding its last row has run —
so results come in the order videos finish, not the order they went in.

* :class:`RowBatcher` — one encoder's batches: :meth:`~RowBatcher.add` an item, get back the items that finished;
  every batch is full but the one :meth:`~RowBatcher.flush` runs.
* :class:`SharedBatcher` / :func:`shared_batcher` — one encoder's batches filled with the rows that several threads
  submit (the extraction flow's worker threads): one bounded queue for all of them, a service thread that runs the
  forwards, and a :class:`~concurrent.futures.Future` per item for the thread that submitted it. A partly filled
  batch runs when every client is idle (:meth:`BatchClient.pause`: waiting on its results) or when no item has come
  for ``max_wait`` seconds; :func:`shared_batcher` keeps one per key in the process and joins its thread when its last
  client leaves. The submitting threads decode their next videos while the service thread runs the encoder.

Memory is bounded by the queue, one encoder batch and the results of the videos whose rows are in flight, never by the
number of videos or of threads. A failure stays with its video: an item whose rows the encoder's ``check`` refuses
fails alone, and when a forward raises on a batch holding several videos' rows, each video's rows of that batch are
run again on their own, so only the video whose rows raise fails. Per-row outputs do not depend on which rows share a
batch (encoders in eval mode), so the results equal per-video embedding within float tolerance.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Hashable, Iterator, Sequence

import numpy as np

__all__ = ["RowEncoder", "RowItem", "RowResult", "RowBatcher", "encode_rows", "item_bytes", "SharedBatcher",
           "BatchClient", "shared_batcher"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RowEncoder:
    """One encoder as the batcher sees it."""

    forward: Callable[[np.ndarray], Sequence[np.ndarray]]  # rows (B, ...) → outputs, each (B, *shape)
    outputs: tuple[tuple[tuple[int, ...], Any], ...]  # per output: (per-row shape, dtype); zeros where not valid
    batch_size: int  # rows per forward
    check: Callable[[np.ndarray], None] | None = None  # raises ValueError for rows this encoder cannot take

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}: expected an int >= 1")
        if not self.outputs:
            raise ValueError("outputs: expected at least one (shape, dtype) per-row output")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RowItem:
    """One video's rows for one encoder."""

    key: Hashable  # the video; unique among the items of a lane in flight
    rows: np.ndarray  # (N, ...) encoder input
    valid: np.ndarray | None = None  # (N,) bool or 0/1 int: rows to encode (the others' outputs are zeros); None: all
    lane: Hashable = None  # which encoder (a stage name; results carry it back)
    context: Any = None  # handed back with the result untouched


@dataclasses.dataclass(frozen=True, kw_only=True)
class RowResult:
    """One video's complete result: every output for all of its rows, or the error that failed it."""

    key: Hashable
    lane: Hashable
    context: Any
    outputs: tuple[np.ndarray, ...] | None  # each (N, *shape) as the encoder declares; None on error
    error: BaseException | None  # why the video failed (its rows were refused, or the encoder raised on them)
    seconds: float  # this video's share of encoder time: each batch's time split by rows


class _Open:
    """A video whose rows are not all done: its output buffers, rows left, encoder seconds so far. It keeps the
    item's key and context, not its rows: they are freed once copied into batches."""

    __slots__ = ("key", "context", "outputs", "left", "seconds")

    def __init__(self, item: RowItem, outputs: tuple[np.ndarray, ...], left: int) -> None:
        self.key, self.context, self.outputs, self.left, self.seconds = item.key, item.context, outputs, left, 0.0


class RowBatcher:
    """Fills ``encoder``'s batches with the rows of successive items (see the module docstring).

    Shapes:
        item rows (N, ...), valid (N,) → result outputs (N, *shape) per declared output
    """

    def __init__(self, encoder: RowEncoder, *, lane: Hashable = None) -> None:
        self.encoder, self.lane = encoder, lane
        self._open: dict[Hashable, _Open] = {}
        self._batch: list[tuple[Hashable, np.ndarray, np.ndarray]] = []  # (key, destination rows, input rows)
        self._filled = 0
        self._row_spec: tuple[tuple[int, ...], np.dtype] | None = None  # every batch's rows share shape and dtype

    def add(self, item: RowItem) -> list[RowResult]:
        """Queue ``item``'s valid rows, running every batch they fill; returns the items that finished meanwhile.

        Raises:
            ValueError: ``item.key`` already has rows in flight (a caller's bug, not the video's).
        """
        if item.key in self._open:
            raise ValueError(f"item key={item.key!r} already has rows in flight in lane {self.lane!r}")
        done: list[RowResult] = []
        try:
            rows, idx = self._accept(item)
        except Exception as exc:  # noqa: BLE001 - the video's failure, handed back with it
            return [self._result(item.key, item.context, None, exc, 0.0)]
        self._open[item.key] = _Open(item, tuple(np.zeros((len(rows), *shape), dtype) for shape, dtype
                                                 in self.encoder.outputs), len(idx))
        if not len(idx):
            done.append(self._close(item.key))
        start = 0
        while start < len(idx) and item.key in self._open:
            take = idx[start:start + self.encoder.batch_size - self._filled]
            self._batch.append((item.key, take, rows[take]))
            self._filled += len(take)
            start += len(take)
            if self._filled == self.encoder.batch_size:
                done += self._run()
        return done

    def flush(self) -> list[RowResult]:
        """Run the last, partial batch; returns the items it finished (every item added is then finished)."""
        done = self._run() if self._batch else []
        assert not self._open, f"items left open after flush: {list(self._open)}"
        return done

    @property
    def pending_rows(self) -> int:
        """Rows waiting in the current, partly filled batch (0: every item added is finished)."""
        return self._filled

    def run_one(self, item: RowItem) -> RowResult:
        """``item`` alone (its rows in batches of ``batch_size``): one video embedded on its own."""
        (result,) = self.add(item) + self.flush()
        return result

    # ------------------------------------------------------------------ internals
    def _accept(self, item: RowItem) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(item.rows)
        if rows.ndim < 1:
            raise ValueError(f"rows of {item.key!r}: expected an array of shape (N, ...), got a scalar")
        valid = np.ones(len(rows), bool) if item.valid is None else _mask(item.key, item.valid, len(rows))
        if self.encoder.check is not None:
            self.encoder.check(rows)
        spec = (rows.shape[1:], rows.dtype)
        if self._row_spec is None:
            self._row_spec = spec
        elif spec != self._row_spec:
            raise ValueError(f"rows of {item.key!r}: expected {self._row_spec[1]} rows of shape "
                             f"{self._row_spec[0]} like the other items of lane {self.lane!r}, got {rows.dtype} "
                             f"{rows.shape[1:]}")
        return rows, np.flatnonzero(valid)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        out = self.encoder.forward(x)
        out = (out,) if isinstance(out, np.ndarray) else tuple(out)
        shapes = [(len(x), *shape) for shape, _ in self.encoder.outputs]
        if [tuple(np.shape(o)) for o in out] != shapes:
            raise ValueError(f"the encoder of lane {self.lane!r} returned shapes {[np.shape(o) for o in out]}, "
                             f"expected {shapes}")
        return out

    def _run(self) -> list[RowResult]:
        """Run the current batch; on an exception with several videos in it, each video's rows again on their own."""
        batch, self._batch, self._filled = self._batch, [], 0
        keys = list(dict.fromkeys(key for key, _, _ in batch))
        groups = [batch]  # one video's rows: its failure is its own
        if len(keys) > 1:
            try:
                self._scatter(batch, *self._timed(np.concatenate([rows for _, _, rows in batch])))
                groups = []
            except Exception:  # noqa: BLE001 - isolated below: only the videos whose rows raise fail
                groups = [[part for part in batch if part[0] == key] for key in keys]
        failed: dict[Hashable, BaseException] = {}
        for group in groups:
            try:
                x = group[0][2] if len(group) == 1 else np.concatenate([rows for _, _, rows in group])
                self._scatter(group, *self._timed(x))
            except Exception as exc:  # noqa: BLE001 - that video's failure
                failed[group[0][0]] = exc
        done = [self._result(key, self._open.pop(key).context, None, exc, 0.0) for key, exc in failed.items()]
        for key in keys:
            if key in self._open and self._open[key].left == 0:
                done.append(self._close(key))
        return done

    def _timed(self, x: np.ndarray) -> tuple[tuple[np.ndarray, ...], float]:
        t0 = time.perf_counter()
        out = self._forward(x)
        return out, time.perf_counter() - t0

    def _scatter(self, parts: list[tuple[Hashable, np.ndarray, np.ndarray]], out: tuple[np.ndarray, ...],
                 seconds: float) -> None:
        n = sum(len(dst) for _, dst, _ in parts)
        at = 0
        for key, dst, _ in parts:
            state = self._open[key]
            for buf, o in zip(state.outputs, out):
                buf[dst] = o[at:at + len(dst)]
            at += len(dst)
            state.left -= len(dst)
            state.seconds += seconds * len(dst) / n

    def _close(self, key: Hashable) -> RowResult:
        state = self._open.pop(key)
        return self._result(key, state.context, state.outputs, None, state.seconds)

    def _result(self, key: Hashable, context: Any, outputs: tuple[np.ndarray, ...] | None,
                error: BaseException | None, seconds: float) -> RowResult:
        return RowResult(key=key, lane=self.lane, context=context, outputs=outputs, error=error, seconds=seconds)


def _mask(key: Hashable, valid: Any, n: int) -> np.ndarray:
    """``valid`` as a bool (n,) mask: a bool array, or an integer array of 0s and 1s.

    Raises:
        ValueError: another dtype or shape, or an integer other than 0 and 1.
    """
    valid = np.asarray(valid)
    if valid.shape != (n,) or not (valid.dtype == bool or np.issubdtype(valid.dtype, np.integer)):
        raise ValueError(f"valid of {key!r}: expected a bool or 0/1 integer mask of shape ({n},), got {valid.dtype} "
                         f"{valid.shape}")
    if valid.dtype != bool:
        other = np.setdiff1d(valid, (0, 1))
        if other.size:
            raise ValueError(f"valid of {key!r}: expected a bool or 0/1 integer mask, got {valid.dtype} values "
                             f"{other[:3].tolist()}")
        valid = valid.astype(bool)
    return valid


def encode_rows(encoder: RowEncoder, rows: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """One video's rows through ``encoder`` on their own (:meth:`RowBatcher.run_one`): each declared output,
    (N, *shape), zeros where not valid.

    Raises:
        Whatever the encoder's ``check`` or forward raised on these rows.
    """
    result = RowBatcher(encoder).run_one(RowItem(key=0, rows=rows, valid=valid))
    if result.error is not None:
        raise result.error
    return result.outputs


def item_bytes(item: Any) -> int:
    """Bytes a :class:`RowItem` holds in its rows and mask (0 for anything else)."""
    if not isinstance(item, RowItem):
        return 0
    return int(np.asarray(item.rows).nbytes + (0 if item.valid is None else np.asarray(item.valid).nbytes))


# ---------------------------------------------------------------------------------------------------- shared batcher
class SharedBatcher:
    """One encoder's batches, filled with the rows that any number of threads submit (see :func:`shared_batcher`).

    A service thread takes submitted items from one bounded queue (at most ``max_items`` items and ``max_bytes``
    bytes across every client; an item is always admitted into an empty queue, so one larger than ``max_bytes``
    passes alone) into a :class:`RowBatcher` and resolves each item's :class:`~concurrent.futures.Future` with its
    :class:`RowResult` (a refused or failing video's error is in the result; the future raises only when the service
    itself broke). A partly filled batch runs as soon as

    * every client is idle — it called :meth:`BatchClient.pause` (nothing more to submit until its results are in)
      or closed — so a thread that waits on its last results never waits for rows nobody will send, or
    * no item has arrived for ``max_wait`` seconds, so a batch never waits longer than that on a client that stays
      busy (a long decode, or waiting on a result without pausing).

    Both rules depend only on this service's own state, so no client can deadlock it: the queue is drained by the
    service thread whatever the clients do, and a partial batch runs after at most ``max_wait``. The forward calls run
    in the service thread only (one at a time per encoder).

    Shapes:
        item rows (N, ...), valid (N,) → result outputs (N, *shape) per declared output
    """

    def __init__(self, encoder: RowEncoder, *, lane: Hashable = None, max_items: int = 4,
                 max_bytes: int = 256 << 20, max_wait: float = 0.1) -> None:
        _check_limits(max_items, max_bytes, max_wait)
        self.lane, self.max_items, self.max_bytes, self.max_wait = lane, max_items, max_bytes, max_wait
        self._batcher = RowBatcher(encoder, lane=lane)
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[RowItem, int, BatchClient]] = collections.deque()
        self._held = 0  # bytes in the queue
        self._pending: dict[int, tuple[Future, RowItem]] = {}  # sequence number → (future, the item without rows)
        self._seq = 0
        self._clients: set[BatchClient] = set()
        self._idle: set[BatchClient] = set()
        self._last = time.monotonic()  # when the last item went into a batch
        self._stop = False
        self._broken: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=f"batcher-{lane}", daemon=True)
        self._thread.start()

    def client(self) -> "BatchClient":
        """A new client of this service (busy until it pauses); close it when done (it is a context manager)."""
        client = BatchClient(self)
        with self._cond:
            if self._stop:
                raise RuntimeError(f"the batcher of lane {self.lane!r} is closed")
            self._clients.add(client)
        return client

    def close(self) -> None:
        """Run what is queued and the partial batch, then stop and join the service thread."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()

    @property
    def alive(self) -> bool:
        """The service thread is running."""
        return self._thread.is_alive()

    # ------------------------------------------------------------------ called by clients
    def _submit(self, client: "BatchClient", item: RowItem) -> Future:
        size, future = item_bytes(item), Future()
        with self._cond:
            if client not in self._clients or self._stop:
                raise RuntimeError(f"submit on a closed client of lane {self.lane!r}")
            self._idle.discard(client)
            self._cond.wait_for(lambda: self._broken is not None or self._fits(size))
            if self._broken is not None:
                raise RuntimeError(f"the batcher of lane {self.lane!r} stopped") from self._broken
            seq, self._seq = self._seq, self._seq + 1
            self._queue.append((RowItem(key=seq, rows=item.rows, valid=item.valid, lane=self.lane), size, client))
            self._held += size
            self._pending[seq] = (future, dataclasses.replace(item, rows=np.empty(0), valid=None))
            self._cond.notify_all()
        return future

    def _pause(self, client: "BatchClient") -> None:
        with self._cond:
            if client in self._clients:
                self._idle.add(client)
                self._cond.notify_all()

    def _leave(self, client: "BatchClient") -> None:
        """``client`` is gone: its queued items are dropped (their futures cancelled); rows already in a batch run."""
        with self._cond:
            self._clients.discard(client)
            self._idle.discard(client)
            kept = collections.deque()
            for entry in self._queue:
                if entry[2] is client:
                    self._held -= entry[1]
                    self._pending.pop(entry[0].key)[0].cancel()
                else:
                    kept.append(entry)
            self._queue = kept
            self._cond.notify_all()

    # ------------------------------------------------------------------ the service thread
    def _fits(self, size: int) -> bool:
        return not self._queue or (len(self._queue) < self.max_items and self._held + size <= self.max_bytes)

    def _next(self) -> RowItem | None:
        """The next queued item, ``_FLUSH`` when the partial batch is to run, ``None`` when the service stops."""
        with self._cond:
            while True:
                if self._queue:
                    item, size, _ = self._queue.popleft()
                    self._held -= size
                    self._cond.notify_all()
                    self._last = time.monotonic()
                    return item
                if self._batcher.pending_rows:
                    left = self._last + self.max_wait - time.monotonic()
                    if self._stop or self._idle >= self._clients or left <= 0:
                        return _FLUSH
                    self._cond.wait(left)
                elif self._stop:
                    return None
                else:
                    self._cond.wait()

    def _serve(self) -> None:
        try:
            while (item := self._next()) is not None:
                self._deliver(self._batcher.flush() if item is _FLUSH else self._batcher.add(item))
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting future, and to later submits
            with self._cond:
                self._broken = exc
                pending, self._pending = self._pending, {}
                self._queue.clear()
                self._held = 0
                self._cond.notify_all()
            for future, _ in pending.values():
                if future.set_running_or_notify_cancel():
                    future.set_exception(exc)

    def _deliver(self, results: list[RowResult]) -> None:
        with self._cond:
            owned = [(self._pending.pop(r.key), r) for r in results]
        for (future, item), res in owned:
            if future.set_running_or_notify_cancel():  # False: cancelled, its client left
                future.set_result(dataclasses.replace(res, key=item.key, lane=item.lane, context=item.context))


_FLUSH = RowItem(key=None, rows=np.empty(0))


class BatchClient:
    """One thread's handle on a :class:`SharedBatcher` (from :meth:`SharedBatcher.client` or
    :func:`shared_batcher`)."""

    def __init__(self, service: SharedBatcher) -> None:
        self.service = service

    def submit(self, item: RowItem) -> Future:
        """Queue ``item``'s rows (waiting while the shared queue is full); its future's result is its
        :class:`RowResult`. Marks this client busy: partial batches wait for its rows (at most ``max_wait``).

        Raises:
            RuntimeError: this client is closed, or the service broke (the cause is chained).
        """
        return self.service._submit(self, item)

    def pause(self) -> None:
        """Nothing more to submit until this client's results are in: partial batches no longer wait for it."""
        self.service._pause(self)

    def close(self) -> None:
        """Leave the service: items still queued are dropped and their futures cancelled."""
        self.service._leave(self)

    def __enter__(self) -> "BatchClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: the process's shared batchers by key, each with the number of its open clients
_SHARED: dict[Hashable, list] = {}
_SHARED_LOCK = threading.Lock()


@contextlib.contextmanager
def shared_batcher(key: Hashable, encoder: RowEncoder | Callable[[], RowEncoder], *, lane: Hashable = None,
                   max_items: int = 4, max_bytes: int = 256 << 20, max_wait: float = 0.1) -> Iterator[BatchClient]:
    """A client of this process's :class:`SharedBatcher` for ``key``, started on first use and closed (its thread
    joined) when its last client leaves, so no thread outlives the work that needed it.

    Every thread of a process that enters this with an equal ``key`` (e.g. the encoder's checkpoint digest, device,
    batch size and outputs) shares one queue and one stream of batches: the rows of their videos fill the same
    forwards. ``encoder`` (or a callable returning it, called only when the service starts) and the limits of the
    client that starts the service apply until it closes.

    Raises:
        ValueError: ``max_items`` < 1, ``max_bytes`` < 1 or ``max_wait`` <= 0.
    """
    _check_limits(max_items, max_bytes, max_wait)
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            enc = encoder if isinstance(encoder, RowEncoder) else encoder()
            entry = _SHARED[key] = [SharedBatcher(enc, lane=lane, max_items=max_items, max_bytes=max_bytes,
                                                  max_wait=max_wait), 0]
        entry[1] += 1
        client = entry[0].client()
    try:
        with client:
            yield client
    finally:
        with _SHARED_LOCK:
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _SHARED[key]
        if last:
            entry[0].close()


def _check_limits(max_items: int, max_bytes: int, max_wait: float) -> None:
    """The queue limits of :class:`SharedBatcher`."""
    if not isinstance(max_items, int) or isinstance(max_items, bool) or max_items < 1:
        raise ValueError(f"max_items={max_items!r}: expected an int >= 1")
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ValueError(f"max_bytes={max_bytes!r}: expected an int >= 1")
    if not isinstance(max_wait, (int, float)) or isinstance(max_wait, bool) or not max_wait > 0:
        raise ValueError(f"max_wait={max_wait!r}: expected seconds > 0")
