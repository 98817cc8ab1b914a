"""The ``vidpipe`` shell experience: one-line errors, ``--debug``, start-up without Prefect, the no-op fast path.

Commands run as subprocesses (what a user's shell sees). Runs that would need Prefect talk to the session's test
server (``prefect_harness``) through ``PREFECT_API_URL``, except where the temporary server itself is under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from pipelines.cli_runner import fail, one_line, parse_overrides, run_flow
from tests.media_factory import make_video

REPO = Path(__file__).resolve().parents[2]
VIDPIPE = str(Path(sys.executable).with_name("vidpipe"))


def _env(tmp_path: Path, api: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VIDPIPE_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               VIDPIPE_PROGRESS="0", PYTHONPATH=str(REPO), COLUMNS="200", **extra)
    if api:
        env["PREFECT_API_URL"] = api
    return env


def _vidpipe(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([VIDPIPE, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def harness_api(prefect_harness) -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


@pytest.fixture
def tiny_root(tmp_path, prefect_harness) -> Path:
    """A root with dataset ``tiny``: two 1-s clips, ingested, probe + metadata extracted (in this process)."""
    from pipelines.extract import extract_features
    from pipelines.ingest import ingest

    media = tmp_path / "media"
    media.mkdir()
    for i in range(2):
        make_video(media / f"c{i}.mp4", duration=1.0, size=(32, 24), tone_hz=300 + 100 * i)
    root = tmp_path / "root"
    ingest(dataset="tiny", source="folder", path=str(media), root=str(root))
    extract_features(dataset="tiny", root=str(root), stages=["probe", "metadata"], workers=1)
    return root


# ---------------------------------------------------------------------------------------------------- helpers
def test_parse_overrides_reads_json_values_and_names_a_bad_item():
    assert parse_overrides(["dim=32", "name=abc", "drop=0.1", "flags=[1, 2]", "eq=a=b"]) == {
        "dim": 32, "name": "abc", "drop": 0.1, "flags": [1, 2], "eq": "a=b"}
    assert parse_overrides(None) == {}
    with pytest.raises(typer.BadParameter, match=r"--set 'dim': expected FIELD=VALUE"):
        parse_overrides(["dim"])
    with pytest.raises(typer.BadParameter, match=r"--set '=3'"):
        parse_overrides(["=3"])


def test_run_flow_turns_failures_into_one_line_and_an_exit_code(capsys, monkeypatch):
    monkeypatch.delenv("VIDPIPE_DEBUG", raising=False)

    def bad_input():
        raise ValueError("batch_size=0: expected a positive number\n  (second line of detail)")

    def bug():
        raise ZeroDivisionError("division by zero")

    with pytest.raises(typer.Exit) as exit_info:
        run_flow(bad_input)
    assert exit_info.value.exit_code == 2
    err = capsys.readouterr().err
    assert _lines(err) == ["error: batch_size=0: expected a positive number (second line of detail)"]
    with pytest.raises(typer.Exit) as exit_info:
        run_flow(bug)
    assert exit_info.value.exit_code == 1
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith("error: ZeroDivisionError: division by zero") and "--debug" in line
    assert run_flow(lambda x: x + 1, x=1) == 2

    monkeypatch.setenv("VIDPIPE_DEBUG", "1")  # --debug: the exception itself, with its traceback
    with pytest.raises(ZeroDivisionError):
        run_flow(bug)
    with pytest.raises(typer.Exit) as exit_info:
        fail("x [not markup]", 3)
    assert exit_info.value.exit_code == 3 and "x [not markup]" in capsys.readouterr().err
    assert one_line(KeyError()) == "KeyError"


def test_console_filter_drops_run_tracebacks_and_exit_notes_only():
    import logging

    from pipelines.cli_runner import _NoRunTracebacks

    def record(name: str, level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, None, None)

    keep = _NoRunTracebacks().filter
    assert not keep(record("prefect.flow_runs", logging.ERROR, "Encountered exception during execution"))
    assert not keep(record("prefect.task_runs", logging.CRITICAL, "Task run failed"))
    assert not keep(record("EventsWorker", logging.WARNING, "Still processing items: 1 items remaining..."))
    assert keep(record("prefect.flow_runs", logging.WARNING, "extract x: 3 videos failed at least one stage"))
    assert keep(record("prefect.flow_runs", logging.INFO, "Beginning flow run"))
    assert keep(record("vidpipe", logging.ERROR, "something else"))


# ---------------------------------------------------------------------------------------------------- start-up
def test_help_and_inspect_never_import_prefect_or_torch(tiny_root, tmp_path):
    probe = ("import sys, json\nfrom pipelines.cli import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print(json.dumps({m: m in sys.modules for m in ('prefect', 'torch', 'pipelines.extract', 'flows')}))")
    inspect = ["inspect", "tiny", "--root", str(tiny_root), "--json", "--schema"]
    for args in (["--help"], ["extract", "--help"], inspect):
        out = subprocess.run([sys.executable, "-c", probe, *args], env=_env(tmp_path), cwd=REPO, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == (
            '{"prefect": false, "torch": false, "pipelines.extract": false, "flows": false}'), (args, out.stdout)


def test_inspect_schema_shows_the_declared_output_of_each_stage_the_store_holds(tiny_root, capsys, monkeypatch):
    from features.schema import STAGE_SCHEMAS
    from pipelines.cli import main

    monkeypatch.setenv("COLUMNS", "200")  # rich folds table cells to the terminal's width

    with pytest.raises(SystemExit) as exit_:
        main(["inspect", "tiny", "--root", str(tiny_root), "--json", "--schema"])
    assert exit_.value.code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out["schema"]) == set(out["stages"]) and "frames" in out["schema"]
    assert out["schema"]["frames"] == STAGE_SCHEMAS["frames"].to_dict()
    valid = out["schema"]["frames"]["arrays"][1]
    assert (valid["name"], valid["dtype"], valid["shape"]) == ("{profile}_valid", "bool", "(N,)")
    with pytest.raises(SystemExit):
        main(["inspect", "tiny", "--root", str(tiny_root), "--schema"])
    table = capsys.readouterr().out
    assert "record.display_width" in table and "(N, H, W, 3)" in table


# ---------------------------------------------------------------------------------------------------- errors
def test_a_missing_store_is_one_line_without_starting_prefect(tmp_path):
    t0 = time.monotonic()
    out = _vidpipe(["extract", "nosuch", "--root", str(tmp_path / "root")], _env(tmp_path))
    assert out.returncode == 2, out.stderr
    assert _lines(out.stderr) == [f"error: no vidpipe store for dataset 'nosuch' under {tmp_path / 'root'}: run "
                                  "`vidpipe ingest nosuch --source ...` first"], out.stderr
    assert "temporary server" not in out.stderr and out.stdout == ""
    assert time.monotonic() - t0 < 60  # no temporary Prefect server was started (that alone takes 10-60 s here)


def test_an_invalid_option_is_one_line(tmp_path):
    out = _vidpipe(["extract", "x", "--n-mfcc", "1", "--root", str(tmp_path)], _env(tmp_path))
    assert out.returncode == 2
    (line,) = _lines(out.stderr)
    assert line.startswith("error: invalid extraction option:") and "n_mfcc" in line, out.stderr


def test_a_failing_flow_prints_one_line_the_trace_stays_in_prefect_and_debug_shows_it(tmp_path, harness_api):
    """A bad source path fails inside the ingest flow: one line on the console, the traceback in the flow run's
    logs on the server; with --debug the console shows it too."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    env = _env(tmp_path, harness_api, PREFECT_LOGGING_TO_API_ENABLED="true")
    args = ["ingest", "broken", "--source", "folder", str(tmp_path / "nowhere"), "--root", str(tmp_path / "root")]
    out = _vidpipe(args, env)
    assert out.returncode == 2, out.stderr
    (line,) = _lines(out.stderr)
    assert line.startswith("error: path=") and "nowhere" in line, out.stderr
    assert "Traceback" not in out.stderr + out.stdout and "CancelledError" not in out.stderr

    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs() if r.parameters.get("dataset") == "broken"]
        assert len(runs) == 1 and runs[0].state.is_failed()
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])))
        assert any("Traceback" in log.message for log in logs), [log.message[:200] for log in logs]

    debug = _vidpipe(["--debug", *args], env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "SourceError" in debug.stderr


@pytest.mark.slow  # starts Prefect's temporary server (10-60 s on a loaded 2-core machine)
def test_temporary_server_shutdown_prints_no_cancelled_error(tmp_path):
    out = _vidpipe(["ingest", "broken", "--source", "folder", str(tmp_path / "nowhere"), "--root",
                    str(tmp_path / "root")], _env(tmp_path), timeout=400)
    assert out.returncode == 2, out.stderr
    assert len(_lines(out.stderr)) == 1 and _lines(out.stderr)[0].startswith("error: path="), out.stderr
    assert "CancelledError" not in out.stderr and "Traceback" not in out.stderr


# ---------------------------------------------------------------------------------------------------- fast path
def test_noop_extract_answers_without_prefect_and_matches_the_flow(tiny_root, tmp_path):
    from pipelines.extract import extract_features, nothing_to_extract

    args = ["extract", "tiny", "--stage", "probe", "--stage", "metadata", "--root", str(tiny_root), "--json"]
    out = _vidpipe(args, _env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "temporary server" not in out.stderr
    fast = json.loads(out.stdout.strip().splitlines()[-1])
    flow = extract_features(dataset="tiny", root=str(tiny_root), stages=["probe", "metadata"], workers=1)
    for result in (fast, flow):
        result.pop("seconds")
    assert fast == flow and fast["stages"]["probe"] == {"done": 0, "skipped": 2, "failed": 0}

    # anything to do → no answer (the flow runs): a changed file, a stage never run, a removed video
    assert nothing_to_extract("tiny", str(tiny_root), ["probe"]) is not None
    assert nothing_to_extract("tiny", str(tiny_root), ["probe", "frames"]) is None
    assert nothing_to_extract("tiny", str(tiny_root), ["probe", "nope"]) is None
    make_video(tmp_path / "media" / "c0.mp4", duration=1.0, size=(32, 24), tone_hz=900)
    assert nothing_to_extract("tiny", str(tiny_root), ["probe"]) is None
    with pytest.raises(ValueError, match="dataset="):
        nothing_to_extract("../x", str(tiny_root))


def test_noop_extract_with_a_server_still_records_a_flow_run(tiny_root, tmp_path, harness_api):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        before = len(client.read_flow_runs())
    out = _vidpipe(["extract", "tiny", "--stage", "probe", "--root", str(tiny_root), "--json"],
                   _env(tmp_path, harness_api))
    assert out.returncode == 0, out.stderr
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    assert len(runs) == before + 1
