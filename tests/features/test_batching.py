"""features.batching: rows of many videos in fixed-size encoder batches, per-video results, one batcher shared by
several threads through a bounded queue."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from features.batching import RowBatcher, RowEncoder, RowItem, SharedBatcher, shared_batcher
from tests.embed_factory import run_shared

POISON = -1.0  # a row holding this value makes the test encoder raise


def _encoder(batch_size: int, calls: list | None = None, **kw) -> RowEncoder:
    """A row-wise encoder: row (3,) → (sum·2 (1,), row reversed (3,) float16); raises on a batch with POISON."""

    def forward(x: np.ndarray):
        if calls is not None:
            calls.append(x.copy())
        if (x == POISON).any():
            raise RuntimeError("poisoned rows")
        return 2 * x.sum(axis=1, keepdims=True), x[:, ::-1]

    return RowEncoder(forward=forward, outputs=(((1,), np.float32), ((3,), np.float16)), batch_size=batch_size, **kw)


def _item(key: str, n: int, valid=None, seed: int = 0, **kw) -> RowItem:
    rows = np.random.default_rng(seed).random((n, 3)).astype(np.float32) + 1
    return RowItem(key=key, rows=rows, valid=None if valid is None else np.asarray(valid, bool), **kw)


def _expected(item: RowItem) -> tuple[np.ndarray, np.ndarray]:
    valid = np.ones(len(item.rows), bool) if item.valid is None else item.valid
    return (np.where(valid[:, None], 2 * item.rows.sum(axis=1, keepdims=True), 0),
            np.where(valid[:, None], item.rows[:, ::-1], 0).astype(np.float16))


def test_rows_of_several_videos_fill_each_batch_and_videos_finish_in_the_order_their_last_row_runs():
    calls: list = []
    b = RowBatcher(_encoder(4, calls))
    a, b_, c, d = _item("a", 5, seed=1), _item("b", 2, seed=2), _item("c", 6, seed=3), _item("d", 3, [0, 0, 0])
    assert b.add(a) == []  # a's first 4 rows run; its 5th waits for the next batch
    assert b.add(b_) == []  # 3 rows waiting
    assert [r.key for r in b.add(c)] == ["a", "b"]  # c's first row completes the batch (a4, b0, b1, c0)
    assert [r.key for r in b.add(d)] == ["d"]  # no valid row: finished at once, zeros
    assert [r.key for r in b.flush()] == ["c"]  # c's last row ran in the partial batch
    assert [len(x) for x in calls] == [4, 4, 4, 1]  # c1..c4 filled a batch on their own
    np.testing.assert_array_equal(calls[1], np.concatenate([a.rows[4:], b_.rows, c.rows[:1]]))


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_results_equal_the_rows_own_outputs_for_videos_of_1_to_20_rows(batch_size):
    rng = np.random.default_rng(batch_size)
    items = [_item(f"v{n}", n, rng.random(n) > 0.3, seed=n, lane="x") for n in range(1, 21)]
    calls: list = []
    results = run_shared(items, {"x": _encoder(batch_size, calls)}, max_items=2, max_wait=30)
    assert sorted(r.key for r in results) == sorted(i.key for i in items)
    by_key = {r.key: r for r in results}
    for item in items:
        res = by_key[item.key]
        assert res.error is None and res.lane == "x" and res.seconds >= 0
        vec, rev = _expected(item)
        np.testing.assert_allclose(res.outputs[0], vec, rtol=1e-6)
        np.testing.assert_array_equal(res.outputs[1], rev)
        assert res.outputs[0].dtype == np.float32 and res.outputs[1].dtype == np.float16
    sizes = [len(x) for x in calls]
    total = sum(int(i.valid.sum()) for i in items)
    assert sum(sizes) == total and all(s == batch_size for s in sizes[:-1]) and 1 <= sizes[-1] <= batch_size


def test_a_long_video_is_split_into_batches_of_at_most_batch_size_rows():
    calls: list = []
    long = _item("long", 50, seed=4)
    res = RowBatcher(_encoder(8, calls)).run_one(long)
    assert [len(x) for x in calls] == [8] * 6 + [2]
    np.testing.assert_allclose(res.outputs[0], _expected(long)[0], rtol=1e-6)


def test_an_encoder_error_on_one_videos_rows_fails_that_video_only():
    calls: list = []
    batcher = RowBatcher(_encoder(8, calls))
    bad = _item("bad", 6, seed=5)
    bad.rows[3, 1] = POISON
    good = [_item("g1", 3, seed=6), _item("g2", 5, seed=7)]
    results = batcher.add(good[0]) + batcher.add(bad) + batcher.add(good[1]) + batcher.flush()
    by_key = {r.key: r for r in results}
    assert set(by_key) == {"g1", "bad", "g2"}
    assert isinstance(by_key["bad"].error, RuntimeError) and by_key["bad"].outputs is None
    for item in good:
        assert by_key[item.key].error is None
        np.testing.assert_allclose(by_key[item.key].outputs[0], _expected(item)[0], rtol=1e-6)
    # the mixed batch (g1, bad, g2's first row) raised; each video's rows ran again on their own; the poisoned
    # video's later rows were never sent
    assert [len(x) for x in calls] == [8, 3, 5, 5]
    np.testing.assert_array_equal(calls[3], good[1].rows)


def test_rows_the_encoder_refuses_fail_their_video_and_the_rest_go_on():
    def check(rows: np.ndarray) -> None:
        if rows.dtype != np.float32:
            raise ValueError(f"rows: expected float32, got {rows.dtype}")

    batcher = RowBatcher(_encoder(4, check=check))
    ok = _item("ok", 3)
    wrong_dtype = RowItem(key="f64", rows=np.ones((2, 3)))
    wrong_shape = RowItem(key="wide", rows=np.ones((2, 4), np.float32))
    wrong_mask = RowItem(key="mask", rows=np.ones((2, 3), np.float32), valid=np.ones(3, bool))
    results = batcher.add(ok) + batcher.add(wrong_dtype) + batcher.add(wrong_shape) + batcher.add(wrong_mask)
    errors = {r.key: str(r.error) for r in results}
    assert "expected float32, got float64" in errors["f64"]
    assert "rows of 'wide': expected float32 rows of shape (3,)" in errors["wide"]
    assert "valid of 'mask': expected a bool or 0/1 integer mask of shape (2,), got bool (3,)" in errors["mask"]
    (done,) = batcher.flush()
    assert done.key == "ok" and done.error is None
    with pytest.raises(ValueError, match="batch_size=0: expected an int >= 1"):
        _encoder(0)


def test_an_encoder_returning_the_wrong_shape_fails_the_videos_of_that_batch():
    enc = RowEncoder(forward=lambda x: (np.zeros((len(x), 2), np.float32),), outputs=(((1,), np.float32),),
                     batch_size=4)
    res = RowBatcher(enc, lane="v").run_one(_item("a", 2))
    assert "the encoder of lane 'v' returned shapes [(2, 2)], expected [(2, 1)]" in str(res.error)


def test_a_key_in_flight_twice_is_refused():
    batcher = RowBatcher(_encoder(4))
    batcher.add(_item("a", 1))
    with pytest.raises(ValueError, match="key='a' already has rows in flight"):
        batcher.add(_item("a", 1))


def test_two_encoders_batch_their_own_rows_from_one_thread():
    items = [_item(f"v{i}", 3, seed=i, lane="x" if i % 2 else "y") for i in range(6)]
    calls = {"x": [], "y": []}
    out = run_shared(items, {k: _encoder(4, calls[k]) for k in calls}, max_wait=30)
    assert [(r.key, r.lane) for r in out] == [(i.key, i.lane) for i in items]
    assert [len(c) for c in calls["x"]] == [4, 4, 1] and [len(c) for c in calls["y"]] == [4, 4, 1]


def test_integer_0_1_masks_are_accepted_and_other_masks_are_refused_by_name():
    item = _item("a", 4, seed=8)
    as_int = RowBatcher(_encoder(8)).run_one(RowItem(key="i", rows=item.rows, valid=np.array([1, 0, 0, 1], np.int8)))
    as_bool = RowBatcher(_encoder(8)).run_one(RowItem(key="b", rows=item.rows, valid=np.array([1, 0, 0, 1], bool)))
    assert as_int.error is None
    for got, want in zip(as_int.outputs, as_bool.outputs):
        np.testing.assert_array_equal(got, want)
    batcher = RowBatcher(_encoder(8))
    twos = batcher.run_one(RowItem(key="t", rows=item.rows, valid=np.array([0, 2, 1, 1])))
    assert "valid of 't': expected a bool or 0/1 integer mask, got int64 values [2]" in str(twos.error)
    floats = batcher.run_one(RowItem(key="f", rows=item.rows, valid=np.ones(4)))
    assert "valid of 'f': expected a bool or 0/1 integer mask of shape (4,), got float64 (4,)" in str(floats.error)


# ------------------------------------------------------------------ one batcher shared by several threads
def _batcher_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("batcher-")]


def _submit_from_threads(service: SharedBatcher, per_thread: list[list[RowItem]]) -> dict:
    """Each list of items submitted by its own thread (clients registered first), which then pauses and waits."""
    clients = [service.client() for _ in per_thread]
    results: dict = {}

    def work(client, items):
        futures = [client.submit(item) for item in items]
        client.pause()
        for f in futures:
            res = f.result(timeout=30)
            results[res.key] = res
        client.close()

    threads = [threading.Thread(target=work, args=(c, items)) for c, items in zip(clients, per_thread)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results


def test_rows_of_three_threads_fill_one_encoders_batches_and_each_gets_its_own_results():
    calls: list = []
    service = SharedBatcher(_encoder(8, calls), lane="x", max_wait=30.0)  # only "every client idle" flushes
    per_thread = [[_item(f"t{t}v{v}", 5, seed=10 * t + v, lane="x") for v in range(2)] for t in range(3)]
    results = _submit_from_threads(service, per_thread)
    service.close()
    assert [len(x) for x in calls] == [8, 8, 8, 6]  # 30 rows: full batches across threads, one partial at the end
    for item in sum(per_thread, []):
        res = results[item.key]
        assert res.error is None and res.lane == "x"
        alone = RowBatcher(_encoder(8)).run_one(item)  # per-video encoding
        for got, want in zip(res.outputs, alone.outputs):
            np.testing.assert_array_equal(got, want)
    assert not service.alive


def test_a_raising_video_fails_alone_while_other_threads_videos_in_its_batch_succeed():
    calls: list = []

    def check(rows: np.ndarray) -> None:
        if rows.dtype != np.float32:
            raise ValueError(f"rows: expected float32, got {rows.dtype}")

    service = SharedBatcher(_encoder(8, calls, check=check), max_wait=30.0)
    bad = _item("bad", 3, seed=1)
    bad.rows[1, 0] = POISON
    refused = RowItem(key="f64", rows=np.ones((2, 3)))
    goods = [_item("g1", 3, seed=2), _item("g2", 2, seed=3)]
    results = _submit_from_threads(service, [[goods[0]], [bad, refused], [goods[1]]])
    service.close()
    assert isinstance(results["bad"].error, RuntimeError) and results["bad"].outputs is None
    assert "expected float32, got float64" in str(results["f64"].error)
    for item in goods:
        assert results[item.key].error is None
        np.testing.assert_allclose(results[item.key].outputs[0], _expected(item)[0], rtol=1e-6)
    # one mixed batch of the 8 rows raised, then each video's rows ran alone: only "bad" raised again
    assert sorted(len(x) for x in calls) == [2, 3, 3, 8]


def test_a_partial_batch_of_one_thread_runs_without_waiting_for_rows_nobody_sends():
    with shared_batcher("partial", _encoder(8), max_wait=30.0) as client:
        t0 = time.perf_counter()
        future = client.submit(_item("a", 3))
        client.pause()  # the only client is idle: its partial batch runs now, not after max_wait
        assert future.result(timeout=10).error is None
        assert time.perf_counter() - t0 < 10
    with shared_batcher("busy", _encoder(8), max_wait=0.2) as client, shared_batcher("busy", _encoder(8)) as other:
        assert other.service is client.service  # the same key: one service
        t0 = time.perf_counter()
        future = client.submit(_item("b", 3))  # neither client pauses: max_wait runs the partial batch
        assert future.result(timeout=10).error is None
        assert 0.2 <= time.perf_counter() - t0 < 10
    assert not _batcher_threads()


@pytest.mark.parametrize("limit", [{"max_items": 2}, {"max_items": 100, "max_bytes": 2 * 12 * 4}])
def test_a_submitting_thread_waits_while_the_shared_queue_is_full(limit):
    gate, started = threading.Event(), threading.Event()

    def forward(x):
        started.set()
        assert gate.wait(timeout=30)
        return (x.sum(axis=1, keepdims=True),)

    enc = RowEncoder(forward=forward, outputs=(((1,), np.float32),), batch_size=4)
    submitted: list = []
    with shared_batcher("bounded", enc, max_wait=30.0, **limit) as client:
        def produce():
            for i in range(6):
                submitted.append(client.submit(_item(f"v{i}", 4, seed=i)))  # 4 rows: a full batch, 48 bytes
        producer = threading.Thread(target=produce)
        producer.start()
        assert started.wait(timeout=30)  # v0 runs (and blocks); v1, v2 fill the queue; v3 waits to be admitted
        time.sleep(0.3)
        assert len(submitted) == 3 and producer.is_alive()
        gate.set()
        producer.join(timeout=30)
        assert len(submitted) == 6 and all(f.result(timeout=30).error is None for f in submitted)
    assert not _batcher_threads()


def test_shared_batchers_start_on_first_use_and_their_threads_end_with_the_last_client():
    assert not _batcher_threads()
    with shared_batcher(("enc", 1), _encoder(4), lane="a") as a1:
        with shared_batcher(("enc", 1), lambda: pytest.fail("a running service is reused"), lane="a") as a2:
            with shared_batcher(("enc", 2), _encoder(4), lane="b") as b:
                assert a1.service is a2.service and b.service is not a1.service
                assert sorted(_batcher_threads()) == ["batcher-a", "batcher-b"]
        assert _batcher_threads() == ["batcher-a"]
        queued = a1.submit(_item("x", 1))
    assert queued.done() and not _batcher_threads()
    with pytest.raises(ValueError, match="max_wait=0: expected seconds > 0"):
        with shared_batcher("bad", _encoder(4), max_wait=0):
            pass


def test_a_client_that_leaves_drops_its_queued_items_and_the_others_still_run():
    gate, started = threading.Event(), threading.Event()

    def forward(x):
        started.set()
        assert gate.wait(timeout=30)
        return (x.sum(axis=1, keepdims=True),)

    service = SharedBatcher(RowEncoder(forward=forward, outputs=(((1,), np.float32),), batch_size=4), max_items=8,
                            max_wait=30.0)
    stays, leaves = service.client(), service.client()
    running = stays.submit(_item("a", 4))  # a full batch: taken from the queue, its forward waits on the gate
    assert started.wait(timeout=30)
    queued = [leaves.submit(_item(f"l{i}", 4, seed=i)) for i in range(2)]
    kept = stays.submit(_item("b", 4, seed=9))
    leaves.close()
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="submit on a closed client"):
        leaves.submit(_item("c", 1))
    gate.set()
    assert running.result(timeout=30).key == "a" and kept.result(timeout=30).error is None
    stays.close()
    service.close()
    assert not service.alive
