"""Fixtures of the reliability suite: flows in killable child processes, a small extraction dataset, store checks.

**Killable flow runs.** Importing vidpipe and Prefect takes 5-10 s on the 2-core CI machine, far too long to pay once
per SIGKILL. A *fork server* (:class:`FlowRunner`) imports everything once, then forks one child per job; the child
runs a real Prefect flow (``extract_features``, ``pretrain_graph``, ``train``) against the test session's Prefect API
and the fork server SIGKILLs it after ``kill_after`` seconds (or when it runs past ``limit``: a hang). The child is a
real process killed by a real signal at an arbitrary instruction: nothing gets to clean up.

Each child writes a **trace** of what it was doing (``B``egin / ``E``nd of decoding, of each store write, of each
checkpoint...), so a test can say where every kill landed ("mid-write frames", "decode:probe", "epoch"...); with
``slow_ms`` every Zarr array write sleeps that long, which widens the mid-write windows a random kill can hit.

Stages run today: while ``features.audio`` / ``features.transcribe`` / ``features.text`` are not written yet, the
extraction tests run ``probe``, ``frames`` and ``metadata`` only and the child installs a stand-in ``features.audio``
module (``pipelines.extract`` imports it for every video); once the modules exist every stage runs, unchanged.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATASET = "rel"
#: the extraction parameters of every reliability test: tiny, so a full run takes seconds
EXTRACT_CONFIG = {"n_segments": 3, "n_frames": 8, "asr": "none", "n_mfcc": 13, "clip_frames": 32, "timeout": 60.0}
_MUTATING = ("write:", "table:", "artifact:", "failure:", "pack", "checkpoint:", "run-record", "manifest", "compact")


def _have(module: str) -> bool:
    with contextlib.suppress(ImportError, ValueError):
        return importlib.util.find_spec(module) is not None
    return False


def full_extraction() -> bool:
    """Whether every extraction stage can run (the audio / transcript / text modules exist)."""
    return all(_have(m) for m in ("features.audio", "features.transcribe", "features.text"))


def extraction_stages() -> list[str]:
    """The stages the reliability tests extract: all of them, or those that need no unwritten module."""
    from pipelines.extract import STAGES

    return list(STAGES) if full_extraction() else ["probe", "frames", "metadata"]


def install_audio_stand_in() -> None:
    """Register a stand-in ``features.audio`` when the real one does not exist yet (see module docstring)."""
    if _have("features.audio"):
        return
    import types

    stub = types.ModuleType("features.audio")

    def _missing(*_: Any, **__: Any) -> Any:
        raise NotImplementedError("features.audio is not written yet")

    stub.AudioParams = stub.clip_mfcc = stub.load_audio = stub.segment_features = _missing
    sys.modules["features.audio"] = stub


# ---------------------------------------------------------------------------------------------------- fork server
def _preload() -> None:
    install_audio_stand_in()
    import pipelines.extract  # noqa: F401
    import pipelines.graph  # noqa: F401
    import pipelines.train  # noqa: F401
    import features.probe, features.video, features.packs, features.graph  # noqa: E401,F401
    import models.engine, models.gat, models.registry, models.data, models.metrics  # noqa: E401,F401
    import pipelines.cli  # noqa: F401

    if full_extraction():  # warm librosa up once (its first MFCC compiles numba kernels: seconds per child otherwise)
        import features.audio as fa
        import features.text  # noqa: F401
        import features.transcribe  # noqa: F401

        y = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
        params = fa.AudioParams(sr=16000, n_mfcc=13, n_segments=1, clip_frames=32)
        fa.segment_features(y, params)
        fa.clip_mfcc(y, params)


def _instrument(trace: str | None, slow_ms: float, die_at: list | None = None, hold_at: list | None = None) -> None:
    """Trace begin/end of the interesting steps to ``trace`` (O_APPEND, unbuffered: a kill loses no line).

    ``die_at = [kind, step, n]``: the process SIGKILLs itself right after the n-th such trace event (a kill at an exact
    point, for tests that must not depend on timing). Every Zarr array written emits ``E array``, so
    ``["E", "array", 3]`` dies between two arrays of one output: mid-write.

    ``hold_at = [kind, step, gate]``: right after the first such event the process waits (up to 300 s) until the file
    ``gate`` exists, so a test can hold it at an exact point while something else happens.
    """
    import functools

    import zarr

    fd = os.open(trace, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if trace else None
    seen, held = [0], [False]

    def emit(kind: str, what: str) -> None:
        if fd is not None:
            os.write(fd, f"{time.time():.4f} {kind} {what}\n".encode())
        if die_at and kind == die_at[0] and what == die_at[1]:
            seen[0] += 1
            if seen[0] == die_at[2]:
                os.kill(os.getpid(), signal.SIGKILL)
        if hold_at and kind == hold_at[0] and what == hold_at[1] and not held[0]:
            held[0] = True
            deadline = time.monotonic() + 300
            while not os.path.exists(hold_at[2]) and time.monotonic() < deadline:
                time.sleep(0.01)

    create = zarr.Group.create_array

    @functools.wraps(create)
    def traced_create(self, *a, **k):
        out = create(self, *a, **k)
        if slow_ms > 0:
            time.sleep(slow_ms / 1000.0)
        emit("E", "array")
        return out
    zarr.Group.create_array = traced_create

    def wrap(owner: Any, attr: str, label: Any) -> None:
        if not hasattr(owner, attr):
            return
        orig = getattr(owner, attr)

        @functools.wraps(orig)
        def inner(*a, **k):
            name = label(*a, **k) if callable(label) else label
            emit("B", name)
            try:
                return orig(*a, **k)
            finally:
                emit("E", name)
        setattr(owner, attr, inner)

    import features.compaction
    import features.probe
    import features.video
    import models.engine
    import models.gat
    import pipelines.extract
    from features.store import Store

    wrap(Store, "write", lambda self, stage, *a, **k: f"write:{stage}")
    wrap(Store, "record_failure", lambda self, stage, *a, **k: f"failure:{stage}")
    wrap(Store, "write_table", lambda self, name, *a, **k: f"table:{name}")
    wrap(Store, "write_manifest", "manifest")
    wrap(Store, "write_artifact", lambda self, name, *a, **k: f"artifact:{name}")
    wrap(Store, "update_artifact_meta", lambda self, name, *a, **k: f"artifact:{name}:meta")
    wrap(Store, "write_pack", "pack")
    wrap(Store, "save_run", "run-record")
    # compaction: the whole fold, each index partition / failure table / shard written before the commit, and the
    # removal of each folded fresh file after it
    wrap(Store, "compact", "compact")
    wrap(features.compaction, "_write_parquet", lambda store, rel, *a, **k: f"compact:{rel.split('/', 1)[0]}")
    wrap(features.compaction._ShardWriter, "close", "compact:shard")
    wrap(Store, "_remove_fresh", "compact:cleanup")
    wrap(pipelines.extract, "plan_extraction", "plan")
    wrap(pipelines.extract, "_text_stage", "text-stage")
    wrap(features.probe, "probe", "decode:probe")
    wrap(features.video, "extract_frames", "decode:frames")
    wrap(features.video, "extract_frames_and_audio", "decode:frames+audio")
    if "features.audio" in sys.modules and hasattr(sys.modules["features.audio"], "__file__"):
        wrap(sys.modules["features.audio"], "load_audio", "decode:audio")
    wrap(models.engine, "save_checkpoint", lambda path, *a, **k: f"checkpoint:{Path(path).name}")
    wrap(models.engine, "_train_epoch", "epoch")
    wrap(models.gat, "pretrain_link_prediction", "gat-train")


def _one_object_commits() -> None:
    """Make every store of this process commit outputs as one object each (object stores' commit path, see
    features.objects), on local roots too, so kill campaigns reach it."""
    from features.store import Store

    init = Store.__init__

    def one_object_init(self, *a, **k):
        init(self, *a, **k)
        self._inline_arrays = True
    Store.__init__ = one_object_init


def _run_job(job: dict) -> Any:
    kind, kwargs = job["flow"], dict(job.get("kwargs", {}))
    if kind == "extract":
        from pipelines.extract import ExtractConfig, extract_features

        kwargs["config"] = ExtractConfig(**kwargs.get("config", {}))
        return extract_features(**kwargs)
    if kind == "graph":
        from pipelines.graph import pretrain_graph

        return pretrain_graph(**kwargs)
    if kind == "train":
        from pipelines.train import train

        return train(**kwargs)
    if kind == "cli":
        from pipelines.cli import main

        try:
            main(job["argv"])
        except SystemExit as exc:
            return {"exit": exc.code}
        return {"exit": 0}
    raise ValueError(f"unknown job kind {kind!r}")


def _child(job: dict) -> None:
    code = 1
    try:
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.environ.update(job.get("env", {}))
        _instrument(job.get("trace"), float(job.get("slow_ms", 0)), job.get("die_at"), job.get("hold_at"))
        if job.get("one_object"):
            _one_object_commits()
        result = _run_job(job)
        tmp = job["result"] + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(result, fh, default=str)
        os.replace(tmp, job["result"])
        code = 0
    except BaseException:  # noqa: BLE001 - report everything, the parent reads the log
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _zygote_main() -> None:
    """Body of the fork server: one JSON job per stdin line, one JSON outcome per stdout line."""
    _preload()
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        started, started_wall = time.monotonic(), time.time()
        pid = os.fork()
        if pid == 0:
            _child(job)
        kill_after, limit = job.get("kill_after"), job.get("limit", 300.0)
        hung = False
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            elapsed = time.monotonic() - started
            if (kill_after is not None and elapsed >= kill_after) or elapsed >= limit:
                hung = kill_after is None or elapsed >= limit
                os.kill(pid, signal.SIGKILL)  # our own unreaped child: the pid cannot have been reused
                _, status, usage = os.wait4(pid, 0)
                break
            time.sleep(0.003)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL  # by us, or by itself (die_at)
        print(json.dumps({"pid": pid, "started": started_wall, "killed": killed, "hung": hung and killed,
                          "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                          "seconds": time.monotonic() - started, "maxrss_mb": usage.ru_maxrss / 1024}), flush=True)


@dataclass
class Outcome:
    """What happened to one forked flow run."""

    killed: bool  # SIGKILLed by the fork server (at kill_after, or at the limit)
    hung: bool  # ran past its limit
    exit: int | None  # exit status when it ended by itself (0 = the flow returned)
    seconds: float  # wall time until it ended or was killed
    maxrss_mb: float  # peak resident memory of the child (includes pages shared with the fork server)
    result: Any  # the flow's return value (JSON), when it finished
    log: str  # the child's stdout + stderr
    trace: list[tuple[float, str, str]]  # (time, "B" | "E", step)
    started: float  # wall-clock time of the fork (trace times are wall-clock too)

    def at(self, kind: str, step: str, nth: int = 1) -> float:
        """Seconds after the fork of the ``nth`` ``kind`` ("B" / "E") event of ``step`` in the trace."""
        times = [t for t, k, w in self.trace if k == kind and w == step]
        if len(times) < nth:
            raise ValueError(f"step={step!r}: only {len(times)} {kind} events in the trace, wanted #{nth}")
        return times[nth - 1] - self.started

    def first_step(self) -> float:
        """Seconds from the fork to the first traced step (interpreter and Prefect start-up before it)."""
        return self.trace[0][0] - self.started if self.trace else self.seconds

    def last_step(self) -> float:
        """Seconds from the fork to the last traced event (Prefect's bookkeeping after it)."""
        return self.trace[-1][0] - self.started if self.trace else self.seconds

    def where(self) -> str:
        """Where the run was when it ended: the innermost unfinished step, or what it last finished."""
        stack: list[str] = []
        for _, kind, what in self.trace:
            if what == "array":
                continue
            if kind == "B":
                stack.append(what)
            elif what in stack:
                del stack[len(stack) - 1 - stack[::-1].index(what)]
        for what in reversed(stack):
            if what.startswith(_MUTATING):
                return f"mid-write {what}"
        if stack:
            return stack[-1]
        steps = [w for _, _, w in self.trace if w != "array"]
        return f"after {steps[-1]}" if steps else "startup (before the first step)"


class FlowRunner:
    """Client of the fork server (see module docstring)."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.reliability.conftest import _zygote_main; _zygote_main()"],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(workdir / "zygote.log", "wb"),
            text=True, bufsize=1,
        )
        self.count = 0

    def run(self, flow: str, **job: Any) -> Outcome:
        """Run ``flow`` ("extract", "graph", "train", "cli") in a fresh forked child and wait; see :meth:`submit`."""
        return self.submit(flow, **job)()

    def submit(self, flow: str, *, kill_after: float | None = None, limit: float = 300.0, slow_ms: float = 0,
               env: dict[str, str] | None = None, **job: Any):
        """Start ``flow`` in a forked child; returns a function that waits for it and returns its :class:`Outcome`.

        Args:
            kill_after: SIGKILL the child this many seconds after the fork (``None``: let it finish).
            limit: SIGKILL it after this many seconds in any case (then ``Outcome.hung``).
            slow_ms: sleep this long after every Zarr array write (widens mid-write windows).
            env: environment variables set in the child.
            job: ``kwargs`` of the flow (``argv`` for "cli").
        """
        self.count += 1
        base = self.workdir / f"job{self.count:04d}"
        paths = {k: f"{base}.{k}" for k in ("log", "trace", "result")}
        spec = {"flow": flow, "kill_after": kill_after, "limit": limit, "slow_ms": slow_ms, "env": env or {},
                **paths, **job}
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()

        def wait() -> Outcome:
            meta = json.loads(self._readline(timeout=limit + 60))
            result = None
            if Path(paths["result"]).exists():
                result = json.loads(Path(paths["result"]).read_text())
            trace = []
            if Path(paths["trace"]).exists():
                for row in Path(paths["trace"]).read_text().splitlines():
                    t, kind, what = row.split(" ", 2)
                    trace.append((float(t), kind, what))
            log = Path(paths["log"]).read_text(errors="replace") if Path(paths["log"]).exists() else ""
            return Outcome(killed=meta["killed"], hung=meta["hung"], exit=meta["exit"], seconds=meta["seconds"],
                           maxrss_mb=meta["maxrss_mb"], result=result, log=log, trace=trace,
                           started=meta["started"])
        wait.trace_path = Path(paths["trace"])  # type: ignore[attr-defined]  # to watch a running child
        wait.log_path = Path(paths["log"])  # type: ignore[attr-defined]
        return wait

    def _readline(self, timeout: float) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            log = (self.workdir / "zygote.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the fork server did not answer (exit {self.proc.poll()}):\n{log}")
        return line

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _runner_env() -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())  # the session's test server: no server start per child
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["VIDPIPE_PROGRESS"] = "0"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="session")
def runner(prefect_harness, tmp_path_factory):
    """A fork server for killable flow runs (one per test process: its start-up is the expensive part)."""
    r = FlowRunner(tmp_path_factory.mktemp("runner"), _runner_env())
    yield r
    r.close()


@pytest.fixture(scope="session")
def second_runner(prefect_harness, tmp_path_factory):
    """Another fork server, for two flow runs at the same time."""
    r = FlowRunner(tmp_path_factory.mktemp("runner2"), _runner_env())
    yield r
    r.close()


# ---------------------------------------------------------------------------------------------------- dataset
def make_clean_media(folder: Path, n: int = 4) -> Path:
    """``n`` tiny, valid clips (2 s, 96x64 / 64x96, 10 fps; mp4, mkv and avi; every third without audio)."""
    from tests.media_factory import make_video

    folder.mkdir(parents=True, exist_ok=True)
    exts = (".mp4", ".mkv", ".avi")
    for i in range(n):
        path = folder / f"clip{i:02d}{exts[i % 3]}"
        if not path.exists():
            make_video(path, duration=2.0, size=(96, 64) if i % 2 == 0 else (64, 96), fps=10, audio=i % 3 != 2,
                       tone_hz=300 + 100 * i)
    return folder


def ingest_folder(root: Path, media: Path, dataset: str = DATASET) -> None:
    """Ingest ``media`` (folder source) into a store under ``root``, in this process (needs the Prefect harness)."""
    from pipelines.ingest import ingest

    ingest(dataset=dataset, source="folder", path=str(media), root=str(root))


@pytest.fixture(scope="session")
def clean_media(tmp_path_factory) -> Path:
    """A folder of four clean tiny clips, shared by the reliability tests."""
    return make_clean_media(tmp_path_factory.mktemp("media") / "clips")


# ---------------------------------------------------------------------------------------------------- store checks
def _json_files(folder: Path) -> list[dict]:
    """The JSON records of a folder (of a one-object output, its first line: the arrays follow it); temporaries of
    an interrupted atomic write end in ``.part`` and are not listed."""
    return [json.loads(p.read_bytes().split(b"\n", 1)[0]) for p in sorted(folder.glob("*.json"))] \
        if folder.is_dir() else []


def raw_layers(store_dir: Path) -> tuple[dict[str, dict[str, dict]], dict[str, set[str]]]:
    """What the files say, read here without the store's code: (stage → video id → visible index record as a dict
    with a ``where`` key, stage → video ids with a visible failure).

    Compacted rows come from ``compact/CURRENT.json`` and the Parquet partitions it names; fresh index files override
    them (a ``dropped`` tombstone hides them); a compacted failure is hidden by any fresh index file of its (stage,
    video) and replaced by a fresh failure file. Every committed output's data is checked to exist.
    """
    import pyarrow.parquet as pq

    from features.store import video_key

    current_path = store_dir / "compact" / "CURRENT.json"
    current = json.loads(current_path.read_text()) if current_path.exists() else {"stages": {}, "shards": {},
                                                                                   "failures": None}
    visible: dict[str, dict[str, dict]] = {}
    for stage, info in current["stages"].items():
        rows = visible.setdefault(stage, {})
        for rel in info["parts"]:
            if rel is None:
                continue
            for row in pq.read_table(store_dir / "compact" / rel).to_pylist():
                if row["shard"] is not None:
                    shard = current["shards"].get(f"{stage}/{row['shard']}")
                    assert shard is not None and 0 <= row["row"] < shard["rows"], f"{stage}/{row['video_id']}: {row}"
                    assert (store_dir / "compact" / "shards.zarr" / stage / row["shard"]).is_dir(), row
                rows[row["video_id"]] = {**row, "where": "compacted"}
    fresh_index: dict[str, set[str]] = {}
    index_root = store_dir / "index"
    for folder in sorted(index_root.iterdir()) if index_root.is_dir() else []:
        for rec in _json_files(folder):
            fresh_index.setdefault(folder.name, set()).add(rec["video_id"])
            if rec.get("dropped"):
                visible.get(folder.name, {}).pop(rec["video_id"], None)
                continue
            if rec["data"] == "inline":  # its arrays follow the record in the same file (features.objects)
                from features.objects import decode_arrays

                assert set(decode_arrays((folder / f"{video_key(rec['video_id'])}.json").read_bytes())[1]) == \
                    {a[0] for a in rec["arrays"]}, f"{folder.name}/{rec['video_id']}: inline arrays do not read"
            elif rec["data"] is not None:
                data_dir = store_dir / "features.zarr" / folder.name / video_key(rec["video_id"]) / rec["data"]
                assert data_dir.is_dir(), f"{folder.name}/{rec['video_id']}: committed data {data_dir} is missing"
            visible.setdefault(folder.name, {})[rec["video_id"]] = {**rec, "where": "fresh"}
    failed: dict[str, set[str]] = {}
    if current.get("failures"):
        for row in pq.read_table(store_dir / "compact" / current["failures"]).to_pylist():
            if row["video_id"] not in fresh_index.get(row["stage"], set()):
                failed.setdefault(row["stage"], set()).add(row["video_id"])
    fail_root = store_dir / "failures"
    for folder in (fail_root.iterdir() if fail_root.is_dir() else []):
        failed.setdefault(folder.name, set()).update(f["video_id"] for f in _json_files(folder))
    return {s: v for s, v in visible.items() if v}, failed


def check_store(root: Path, dataset: str = DATASET, reference: Path | None = None) -> dict[str, int]:
    """Assert that a store is consistent (after a crash); returns committed outputs per stage.

    * the store opens, its manifest and every ``tables/*.parquet`` read;
    * every visible output (fresh or compacted, see :func:`raw_layers`) has its data, and every array of it reads;
    * with ``reference`` (the root of an uninterrupted run), every visible output has the reference's fingerprint and
      arrays equal to it byte for byte, and its record fields equal (times aside);
    * ``entries()`` and ``summary()`` agree with what the files say (read here by :func:`raw_layers`);
    * every current artifact reads.
    """
    import pyarrow.parquet as pq

    from features.store import open_store

    store = open_store(root, dataset)
    ids = set(store.manifest()["video_id"])
    for table in sorted((Path(store.path) / "tables").glob("*.parquet")):
        pq.read_table(table)
    ref = open_store(reference, dataset) if reference is not None else None
    visible, failed = raw_layers(Path(store.path))
    counts: dict[str, int] = {}
    assert sorted(visible) == store.stages(), (sorted(visible), store.stages())
    for stage, recs in visible.items():
        assert sorted(store.entries(stage)) == sorted(recs), stage
        for vid, rec in recs.items():
            out = store.read(stage, vid)
            if ref is not None:
                want = ref.entry(stage, vid)
                assert want is not None and want.fingerprint == rec["fingerprint"], \
                    f"{stage}/{vid}: fingerprint {rec['fingerprint']} is not the uninterrupted run's"
                assert_same_output(out, ref.read(stage, vid), f"{stage}/{vid}")
        counts[stage] = len(recs)
    summary = store.summary()
    for stage, got in summary["stages"].items():
        if stage == "source":
            continue
        done = set(visible.get(stage, {})) & ids
        if not done and store.artifact_fingerprint(stage) is not None:
            done = set(store.read_artifact(stage)[1].get("video_ids", [])) & ids
        missing = failed.get("source", set()) & ids
        failed_here = (failed.get(stage, set()) & ids) - done
        assert got == {"done": len(done), "failed": len(failed_here),
                       "pending": len(ids - done - failed_here - missing)}, (stage, got)
    art = Path(store.path) / "artifacts"
    for name in sorted(p.name for p in art.iterdir()) if art.is_dir() else []:
        if store.artifact_fingerprint(name) is not None:
            store.read_artifact(name)
    return counts


def assert_same_output(got: dict, want: dict, what: str) -> None:
    """Arrays byte-for-byte equal (dtype, shape, bytes) and other fields equal, timing fields aside."""
    assert set(got) == set(want), f"{what}: fields {sorted(got)} != {sorted(want)}"
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            other = got[key]
            assert isinstance(other, np.ndarray) and other.dtype == value.dtype and other.shape == value.shape, \
                f"{what}.{key}: {getattr(other, 'dtype', None)} {getattr(other, 'shape', None)} != " \
                f"{value.dtype} {value.shape}"
            assert other.tobytes() == value.tobytes(), f"{what}.{key}: bytes differ"
        elif key not in {"seconds", "created"}:
            assert got[key] == value or (value != value and got[key] != got[key]), f"{what}.{key}: {got[key]!r} != {value!r}"


def committed(root: Path, dataset: str = DATASET) -> dict[str, dict[str, str]]:
    """stage → video id → fingerprint of every committed output."""
    from features.store import open_store

    store = open_store(root, dataset)
    return {stage: store.fingerprints(stage) for stage in store.stages()}


# ---------------------------------------------------------------------------------------------------- training / graph
TRAIN_MODEL = "sec2sec-vision"
#: a tiny Sec2Sec (vision only): trains an epoch in well under a second on CPU
TRAIN_OVERRIDES = {"dim": 8, "heads": 2, "lstm_hidden": 8, "cnn_width": 4, "vision_grid": 2}


def make_training_store(root: Path, dataset: str = DATASET, n: int = 24, seed: int = 0) -> None:
    """A store with a manifest (emotion labels) and ``frames`` outputs written directly: no media, no decoding.

    Planted signal: the frames of a high-valence video are brighter (valence = 1 ⇔ grey level ≈ 170 vs 85).
    """
    import pandas as pd

    from features.store import open_store

    rng = np.random.default_rng(seed)
    store = open_store(root, dataset, create=True)
    ids = [f"v{i:03d}" for i in range(n)]
    valence = (np.arange(n) % 2).astype(float)
    split = ["train"] * (n - 8) + ["val"] * 4 + ["test"] * 4
    store.write_manifest(pd.DataFrame({"video_id": ids, "source_path": None, "split": split, "valence": valence,
                                       "arousal": rng.integers(0, 2, n).astype(float)}))
    for i, vid in enumerate(ids):
        grey = 85 + 85 * valence[i] + rng.normal(0, 20, (3, 16, 16, 3))
        frames = np.clip(grey, 0, 255).astype(np.uint8)
        store.write("frames", vid, f"{i:032x}", version=1, params={"n_segments": 3},
                    arrays={"per_second": frames, "per_second_valid": np.ones(3, bool),
                            "per_second_times": np.arange(3, dtype=np.float32) + 0.5})


def make_graph_store(root: Path, dataset: str = DATASET, n_videos: int = 40, n_songs: int = 8, seed: int = 0) -> None:
    """A store whose manifest and song–video edges are written directly (all the graph flow reads)."""
    import pandas as pd

    from features.store import open_store

    rng = np.random.default_rng(seed)
    store = open_store(root, dataset, create=True)
    ids = [f"v{i:03d}" for i in range(n_videos)]
    songs = [f"s{int(j)}" for j in rng.integers(0, n_songs, n_videos)]
    store.write_manifest(pd.DataFrame({"video_id": ids, "source_path": None, "split": "train", "song_id": songs}),
                         pd.DataFrame({"video_id": ids, "song_id": songs}))
