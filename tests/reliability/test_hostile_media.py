"""Hostile and broken media: every file of the corpus ends with correct features or a recorded, readable failure.

The corpus (tests/reliability/corpus.py) goes through the real ``folder`` ingest and the real extraction flow in a
child process with a hard time limit, so a crash, a hang or a runaway allocation shows up as what it is. Separate tests
pin the per-call time limit (a tool that never returns) and the per-tool memory cap.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

import pytest

from features.media import DEFAULT_TOOL_MEMORY_MB, MediaError, ffmpeg_bin, run_tool, run_tool_capture
from features.store import open_store
from tests.reliability.conftest import (DATASET, EXTRACT_CONFIG, assert_same_output, check_store, extraction_stages,
                                        ingest_folder)
from tests.reliability.corpus import build_corpus

#: the flow's peak resident memory may exceed the fork server's (the shared, already-imported interpreter) by this much
_RSS_HEADROOM_MB = 700


@pytest.fixture(scope="module")
def corpus_run(runner, tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    cases = build_corpus(base / "dataset", base / "outside")
    root = base / "root"
    ingest_folder(root, base / "dataset")
    out = runner.run("extract", limit=240, kwargs={"dataset": DATASET, "root": str(root),
                                                    "stages": extraction_stages(), "workers": 2, "batch_size": 2,
                                                    "config": {**EXTRACT_CONFIG, "timeout": 30.0}})
    return cases, root, out


def test_the_flow_neither_crashes_nor_hangs(corpus_run):
    cases, root, out = corpus_run
    assert not out.hung, f"extraction of the corpus ran past its limit; it was in {out.where()}"
    assert out.exit == 0, out.log[-4000:]
    assert out.result["videos"] == len([c for c in cases if c.expect != "absent"])
    check_store(root)


def test_the_flow_memory_stays_bounded(corpus_run, runner):
    _, _, out = corpus_run
    idle = runner.run("cli", argv=["--help"])  # the same fork server doing nothing: its baseline
    assert out.maxrss_mb < idle.maxrss_mb + _RSS_HEADROOM_MB, (out.maxrss_mb, idle.maxrss_mb)


def test_every_file_has_features_or_a_readable_failure(corpus_run):
    cases, root, _ = corpus_run
    store = open_store(root, DATASET)
    manifest = store.manifest().set_index("video_id")
    stages = extraction_stages()
    per_video = {s: store.entries(s) for s in stages}
    failures = store.failures()
    problems = []
    for case in cases:
        vid = case.video_id
        if case.expect == "absent":
            if vid in manifest.index:
                problems.append(f"{case.name!r} was ingested (it points outside the dataset or is not a file)")
            continue
        done = {s for s in stages if vid in per_video[s]}
        failed = failures[failures["video_id"] == vid]
        if case.expect == "ok" or (case.expect == "either" and vid in per_video["probe"]):
            if done != set(stages) and case.expect == "ok":
                problems.append(f"{case.name!r}: stages {sorted(set(stages) - done)} missing: "
                                f"{failed[['stage', 'error']].to_dict('records')}")
                continue
            if case.expect == "either" and done != set(stages):
                missing = set(stages) - done - set(failed["stage"])
                if missing:
                    problems.append(f"{case.name!r}: stages {sorted(missing)} neither done nor failed")
                continue
            probe = store.read("probe", vid)
            for key, value in case.facts.items():
                if probe.get(key) != value:
                    problems.append(f"{case.name!r}: probe {key}={probe.get(key)!r}, expected {value!r}")
            if case.same_as:
                ref = Path(case.same_as).stem
                for stage in stages:
                    try:
                        assert_same_output(store.read(stage, vid), store.read(stage, ref), f"{case.name!r} {stage}")
                    except AssertionError as exc:
                        problems.append(str(exc))
        else:  # "fail", or "either" whose probe failed: a readable failure for every stage that needs the file
            probe_fail = store.failure("probe", vid)
            if probe_fail is None:
                problems.append(f"{case.name!r}: no recorded probe failure (done: {sorted(done)})")
                continue
            message = probe_fail["error"]
            if case.error and not re.search(case.error, message):
                problems.append(f"{case.name!r}: failure {message!r} does not match {case.error!r}")
            if "Traceback" in message or len(message) > 2000 or case.name not in message:
                problems.append(f"{case.name!r}: failure message does not name the file readably: {message!r}")
            for stage in ("frames", "audio", "metadata"):
                if stage in stages and store.failure(stage, vid) is None:
                    problems.append(f"{case.name!r}: {stage} has neither output nor recorded failure")
    for case in cases:  # the outcome table RELIABILITY.md quotes (shown with -s)
        fail = store.failure("probe", case.video_id)
        state = "absent" if case.expect == "absent" else ("failed: " + fail["error"].split(": ", 1)[-1][:90]
                                                          if fail else "features")
        print(f"corpus {case.name!r:40} expect={case.expect:6} -> {state}")
    assert not problems, "\n".join(problems)


def test_inspect_reports_the_failures(corpus_run):
    cases, root, _ = corpus_run
    summary = open_store(root, DATASET).summary(extraction_stages())
    must_fail = {c.video_id for c in cases if c.expect == "fail"}
    reported = {f["video_id"] for f in summary["failures"] if f["stage"] == "probe"}
    assert must_fail <= reported
    assert summary["stages"]["probe"]["failed"] >= len(must_fail)
    assert summary["stages"]["probe"]["pending"] == 0


# ---------------------------------------------------------------------------------------------------- time limits
def test_a_tool_that_never_returns_is_killed_and_recorded(runner, clean_media, tmp_path):
    """A hung ffprobe (here: a stand-in that sleeps forever) costs each video its time limit, not the run."""
    fake = tmp_path / "bin" / "ffprobe"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    root = tmp_path / "root"
    ingest_folder(root, clean_media)
    out = runner.run("extract", limit=120, env={"VIDPIPE_FFPROBE": str(fake)},
                     kwargs={"dataset": DATASET, "root": str(root), "stages": ["probe", "frames"], "workers": 2,
                             "batch_size": 1, "config": {**EXTRACT_CONFIG, "timeout": 1.5}})
    assert out.exit == 0 and not out.hung, out.log[-3000:]
    n = len(list(clean_media.iterdir()))
    assert out.result["stages"]["probe"] == {"done": 0, "skipped": 0, "failed": n}
    fails = open_store(root, DATASET).failures()
    probe_fails = fails[fails["stage"] == "probe"]["error"]
    assert len(probe_fails) == n and probe_fails.str.contains("longer than the 1.5 s limit").all()
    # n videos, 2 at a time, 1.5 s each: far below the 600 s the tool would take
    assert out.seconds < 60


# ---------------------------------------------------------------------------------------------------- memory cap
def test_tools_run_under_an_address_space_cap(monkeypatch):
    script = "import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0])"
    out = run_tool([sys.executable, "-c", script], timeout=30)
    assert int(out) == DEFAULT_TOOL_MEMORY_MB << 20
    assert int(run_tool([sys.executable, "-c", script], timeout=30, memory_mb=2048)) == 2048 << 20
    monkeypatch.setenv("VIDPIPE_TOOL_MEMORY_MB", "3000")
    assert int(run_tool([sys.executable, "-c", script], timeout=30)) == 3000 << 20
    monkeypatch.setenv("VIDPIPE_TOOL_MEMORY_MB", "0")
    assert int(run_tool([sys.executable, "-c", script], timeout=30)) == resource.getrlimit(resource.RLIMIT_AS)[0]
    monkeypatch.setenv("VIDPIPE_TOOL_MEMORY_MB", "lots")
    with pytest.raises(ValueError, match="VIDPIPE_TOOL_MEMORY_MB='lots'"):
        run_tool(["/bin/true"], timeout=5)
    with pytest.raises(ValueError, match="memory_mb=-1"):
        run_tool(["/bin/true"], timeout=5, memory_mb=-1)


@pytest.mark.parametrize("with_prlimit", [True, False])
def test_the_cap_is_applied_with_or_without_the_prlimit_tool(monkeypatch, with_prlimit):
    """util-linux ``prlimit`` (no ``preexec_fn``, so the worker can vfork) or the ``preexec_fn`` fallback: same cap."""
    import features.media as media

    if with_prlimit and media._prlimit_bin() is None:
        pytest.skip("no prlimit on PATH")
    if not with_prlimit:
        monkeypatch.setattr(media, "_prlimit_bin", lambda: None)
    prefix, preexec = media._limit_address_space(1024)
    assert bool(prefix) is with_prlimit and (preexec is None) is with_prlimit
    script = "import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0])"
    assert int(run_tool([sys.executable, "-c", script], timeout=30, memory_mb=1024)) == 1024 << 20
    with pytest.raises(MediaError, match="could not start '/nonexistent/ffmpeg'"):
        run_tool(["/nonexistent/ffmpeg", "-version"], timeout=5, memory_mb=1024)


def test_a_huge_picture_fails_under_the_cap_with_advice():
    """6000x6000 frames need more than a 400 MiB address space: ffmpeg fails cleanly, the message says what to do."""
    args = [ffmpeg_bin(), "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=6000x6000:d=0.04", "-vf", "scale=64:64",
            "-f", "rawvideo", "pipe:1"]
    with pytest.raises(MediaError, match="VIDPIPE_TOOL_MEMORY_MB|exit status"):
        run_tool(args, timeout=60, memory_mb=400)
    assert len(run_tool(args, timeout=60)) == 64 * 64 * 3 // 2  # yuv420p: the default cap leaves room


def test_memory_cap_failures_are_recorded_per_video(runner, clean_media, tmp_path):
    """A cap too small for ffprobe itself: every video gets a readable failure that names the knob; the run ends."""
    root = tmp_path / "root"
    ingest_folder(root, clean_media)
    out = runner.run("extract", limit=120, env={"VIDPIPE_TOOL_MEMORY_MB": "64"},
                     kwargs={"dataset": DATASET, "root": str(root), "stages": ["probe"], "workers": 2,
                             "batch_size": 4, "config": EXTRACT_CONFIG})
    assert out.exit == 0, out.log[-3000:]
    errors = open_store(root, DATASET).failures()["error"]
    assert len(errors) == len(list(clean_media.iterdir())) and errors.str.contains("VIDPIPE_TOOL_MEMORY_MB").all(), \
        errors.tolist()


def test_run_tool_capture_kills_the_whole_process_group(tmp_path):
    """A tool that forks and then hangs: the timeout kills its children too (they share the tool's session)."""
    marker = tmp_path / "child.pid"
    script = f"sleep 600 & echo $! > {marker}; wait"
    with pytest.raises(MediaError, match="longer than"):
        run_tool_capture(["/bin/sh", "-c", script], timeout=1.0)
    import time

    pid = int(marker.read_text())
    stat = Path(f"/proc/{pid}/stat")
    for _ in range(100):  # gone, or a zombie waiting for whoever inherited it
        if not stat.exists() or stat.read_text().rsplit(")", 1)[-1].split()[0] in {"Z", "X"}:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the tool's child {pid} outlived the timeout")
