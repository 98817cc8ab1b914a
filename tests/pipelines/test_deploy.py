"""Deployments: their names, parameters and schedules, and one end-to-end run on a real local Prefect server.

The server test starts ``prefect server start`` (127.0.0.1, a free port, a temporary PREFECT_HOME) and
``python flows.py serve`` as subprocesses, triggers ``extract-features/<dataset>`` with ``prefect deployment run
--param ...``, waits for the flow run through the REST API, checks the store, and always stops both processes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from features import open_store
from pipelines.deploy import DEFAULT_SCHEDULES, deployments, serve_deployments
from tests.media_factory import make_video

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
VIDPIPE = str(Path(sys.executable).with_name("vidpipe"))


# ---------------------------------------------------------------------------------------------------- unit
def test_one_deployment_per_flow_with_defaults_and_schedules():
    deps = {d.flow_name: d for d in deployments("demo", "/data/root")}
    assert {"refresh", "extract-features", "pretrain-graph", "train", "sweep"} <= set(deps)
    assert set(deps) <= set(DEFAULT_SCHEDULES)
    for name, d in deps.items():
        assert d.name == "demo" and d.parameters["dataset"] == "demo" and d.parameters["root"] == "/data/root"
        assert d.enforce_parameter_schema and d.concurrency_limit == 1
        # by module path: a served run imports the flow from the installed package, from any working directory
        assert d.entrypoint.startswith("pipelines.") and ":" not in d.entrypoint
        crons = [s.schedule.cron for s in d.schedules or []]
        assert crons == ([DEFAULT_SCHEDULES[name]] if DEFAULT_SCHEDULES[name] else []), name
    assert deps["extract-features"].schedules[0].schedule.cron == "0 2 * * *"  # nightly
    assert deps["train"].schedules[0].schedule.cron == "0 4 * * 0"  # weekly
    assert deps["train"].parameters["model"] == "sec2sec" and deps["train"].parameters["task"] == "emotion"
    assert deps["sweep"].parameters["grid"] == {"lr": [1e-3, 3e-4]} and not deps["sweep"].schedules
    # the default parameters satisfy the flows' own schemas (a served run would refuse them otherwise)
    props = deps["train"]._parameter_openapi_schema.properties
    from models.base import TASKS

    assert props["epochs"]["minimum"] == 1 and props["task"]["enum"] == list(TASKS)


def test_only_and_no_schedules_and_bad_input():
    deps = deployments("fi2", only=["train", "refresh"], schedules=False, timezone="Europe/Paris")
    assert [d.flow_name for d in deps] == ["train", "refresh"]
    assert all(not d.schedules for d in deps) and deps[0].parameters["root"] is None
    with pytest.raises(ValueError, match=r"only=\['nope'\]"):
        deployments("demo", only=["nope"])
    with pytest.raises(ValueError, match="dataset="):
        deployments("../etc")


def test_prefect_yaml_matches_the_served_deployments():
    import yaml
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    served = {d.flow_name: d for d in deployments("demo", None)}
    seen = set()
    for dep in spec["deployments"]:
        path, fn = dep["entrypoint"].split(":")
        if not (REPO / path).exists():  # the optional compare stage, not installed here
            assert path == "pipelines/compare.py" and "compare" not in served
            continue
        fl = load_flow_from_entrypoint(f"{REPO / path}:{fn}")
        seen.add(fl.name)
        fl.validate_parameters(dep["parameters"])  # the defaults pass the flow's own validation
        assert dep["name"] == "demo" and dep["parameters"] == served[fl.name].parameters, fl.name
        assert [s["cron"] for s in dep.get("schedules", [])] == ([DEFAULT_SCHEDULES[fl.name]]
                                                                 if DEFAULT_SCHEDULES[fl.name] else []), fl.name
        assert dep["concurrency_limit"] == 1 and dep["enforce_parameter_schema"] is True
        assert dep["work_pool"]["name"] == "vidpipe"
    assert seen == set(served)


def test_serve_refuses_without_a_server():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}):
        with pytest.raises(ValueError, match="prefect server start"):
            serve_deployments("demo")


def test_serve_names_an_unreachable_server_and_bad_arguments():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{_free_port()}/api"}):
        with pytest.raises(ValueError, match=r"PREFECT_API_URL=http://127\.0\.0\.1:\d+/api: no Prefect server answers"):
            serve_deployments("demo", only=["train"], schedules=False)
        with pytest.raises(ValueError, match=r"stop_timeout=0: expected a positive number"):
            serve_deployments("demo", stop_timeout=0)
        with pytest.raises(ValueError, match=r"limit=0"):
            serve_deployments("demo", limit=0)


# ---------------------------------------------------------------------------------------------------- server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen | None) -> None:
    """Stop a process this test started (and its children: it leads its own session), politely first."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait(what: str, check, timeout: float, procs: list[subprocess.Popen]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{p.args[:4]} exited with {p.returncode} while waiting for {what}")
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.server
def test_served_deployment_runs_on_a_real_server(tmp_path):
    dataset, root, media = "served", tmp_path / "root", tmp_path / "media"
    media.mkdir()
    for i in range(2):
        make_video(media / f"clip{i}.mp4", duration=1.5, size=(64, 48), tone_hz=300 + 200 * i)

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_LOGGING_LEVEL="INFO", VIDPIPE_PROGRESS="0",
               PYTHONPATH=str(REPO))
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("server", "serve")}
    server = serve = None
    try:
        server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
                                  env=env, cwd=tmp_path, stdout=logs["server"], stderr=subprocess.STDOUT,
                                  start_new_session=True)
        client = httpx.Client(base_url=api, timeout=10)
        _wait("the server", lambda: client.get("/health").status_code == 200, 150, [server])

        # ingest through the CLI against the same server, while the deployments start being served
        ingest = subprocess.Popen([VIDPIPE, "ingest", dataset, "--source", "folder",
                                   str(media), "--root", str(root)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        serve = subprocess.Popen([sys.executable, "flows.py", "serve", "--dataset", dataset, "--root", str(root),
                                  "--no-schedules", "--only", "extract-features", "--only", "train"],
                                 env=env, cwd=REPO, stdout=logs["serve"], stderr=subprocess.STDOUT,
                                 start_new_session=True)
        ingest_out = ingest.communicate(timeout=120)[0]
        assert ingest.returncode == 0, ingest_out
        assert open_store(root, dataset).entries("probe") == {}
        dep = _wait("the deployment", lambda: (r := client.get(f"/deployments/name/extract-features/{dataset}"))
                    .status_code == 200 and r.json(), 90, [server, serve])
        assert dep["parameters"] == {"dataset": dataset, "root": str(root.resolve())}

        run = lambda *params: subprocess.Popen(  # noqa: E731
            [PREFECT, "deployment", "run", f"extract-features/{dataset}", *[a for p in params for a in ("--param", p)]],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        bad, good = run("batch_size=0"), run('stages=["probe", "metadata"]', "batch_size=1")
        bad_out, good_out = bad.communicate(timeout=120)[0], good.communicate(timeout=120)[0]

        # a bad parameter is refused by the server's schema check: no flow run is created, no work starts
        assert bad.returncode != 0, bad_out
        assert "batch_size" in bad_out and "less than the minimum of 1" in bad_out, bad_out
        assert good.returncode == 0, good_out
        run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", good_out).group(1)
        runs = client.post("/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}}).json()
        assert [r["id"] for r in runs] == [run_id], "the refused run must not exist"

        def finished():
            state = client.get(f"/flow_runs/{run_id}").json()["state"]
            return state if state and state["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None
        state = _wait("the flow run", finished, 180, [server, serve])
        assert state["type"] == "COMPLETED", (state, (tmp_path / "serve.log").read_text()[-3000:])
        flow_run = client.get(f"/flow_runs/{run_id}").json()
        assert flow_run["parameters"]["stages"] == ["probe", "metadata"]
    finally:
        _stop(serve)
        _stop(server)
        for fh in logs.values():
            fh.close()
    # the run changed the store: exactly the asked stages, for both videos
    store = open_store(root, dataset)
    assert sorted(store.entries("probe")) == ["clip0", "clip1"] and sorted(store.entries("metadata")) == ["clip0", "clip1"]
    assert store.entries("frames") == {} and store.entries("audio") == {}
    assert server.poll() is not None and serve.poll() is not None


# ---------------------------------------------------------------------------------------------------- stock CLI
def test_stock_list_commands_work_against_the_installed_server(prefect_harness):
    """`prefect work-pool ls`, `deployment ls` and `flow-run ls` send `"limit": null`; FastAPI >= 0.151 makes
    Prefect 3.8's server answer 422 to that. Runs in `make test` against the session's test server."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "COLUMNS": "250"}
    procs = {cmd: subprocess.Popen([PREFECT, *cmd.split()], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True) for cmd in ("work-pool ls", "deployment ls", "flow-run ls")}
    for cmd, proc in procs.items():
        out = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0 and "Unprocessable" not in out, f"prefect {cmd}: {out[-2000:]}"  # 422 text


class _Served:
    """A real ``prefect server start`` and ``vidpipe serve`` for one dataset of two tiny clips (all subprocesses)."""

    def __init__(self, tmp_path: Path, dataset: str) -> None:
        self.tmp, self.dataset, self.root = tmp_path, dataset, tmp_path / "root"
        media = tmp_path / "media"
        media.mkdir()
        for i in range(2):
            make_video(media / f"clip{i}.mp4", duration=1.5, size=(64, 48), tone_hz=300 + 200 * i)
        self.media = media
        port = _free_port()
        self.api = f"http://127.0.0.1:{port}/api"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VIDPIPE_"))}
        env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_API_URL=self.api,
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="INFO", VIDPIPE_PROGRESS="0",
                   PYTHONPATH=str(REPO), COLUMNS="250")  # wide tables: names and ids are not truncated
        self.env = env
        self.server: subprocess.Popen | None = None
        self.serve: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.api, timeout=10)

    def start_server(self) -> None:
        port = self.api.rsplit(":", 1)[1].split("/")[0]
        log = open(self.tmp / "server.log", "a")
        self.server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port, "--no-ui"],
                                       env=self.env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        _wait("the server", lambda: self.client.get("/health").status_code == 200, 150, [self.server])

    def start_serving(self, name: str) -> Path:
        """``vidpipe serve`` (on demand, extract-features only); returns its log once the runner is up."""
        log_path = self.tmp / f"{name}.log"
        log = open(log_path, "w")
        self.serve = subprocess.Popen([VIDPIPE, "serve", "--dataset", self.dataset, "--root", str(self.root),
                                       "--no-schedules", "--only", "extract-features"],
                                      env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        _wait("vidpipe serve", lambda: "serving 'extract-features/" in log_path.read_text(), 120, [self.serve])
        time.sleep(1.0)  # past the start of the runner's event loop: the signal handlers are in place
        return log_path

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, cwd=self.tmp, capture_output=True, text=True,
                              timeout=timeout)

    def signal_serve(self, sig: int) -> float:
        """Send ``sig`` to ``vidpipe serve`` alone; seconds until it exited (the test fails past 10 s + slack)."""
        assert self.serve is not None and self.serve.poll() is None
        t0 = time.monotonic()
        self.serve.send_signal(sig)
        try:
            self.serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        return time.monotonic() - t0

    def close(self) -> None:
        _stop(self.serve)
        _stop(self.server)
        self.client.close()


@pytest.mark.slow  # ~1 min on an idle 2-core machine, 4-5 min under load: `make test-all` (README "Development")
@pytest.mark.server
def test_stock_prefect_cli_works_against_served_deployments(tmp_path):
    """What a Prefect user types, against a real server: list, inspect, run --watch, logs; then a stop with a run in
    flight. Any dependency bump that makes the server refuse the stock client fails here."""
    dataset = "stock"
    s = _Served(tmp_path, dataset)
    try:
        s.start_server()
        ingest = s.cli(VIDPIPE, "ingest", dataset, "--source", "folder", str(s.media), "--root", str(s.root))
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        serve_log = s.start_serving("serve")
        dep_name = f"extract-features/{dataset}"

        ls = s.cli(PREFECT, "deployment", "ls")
        assert ls.returncode == 0 and dep_name in ls.stdout, ls.stdout + ls.stderr
        inspect = s.cli(PREFECT, "deployment", "inspect", dep_name)
        assert inspect.returncode == 0, inspect.stdout + inspect.stderr
        assert f"'name': '{dataset}'" in inspect.stdout and "'enforce_parameter_schema': True" in inspect.stdout
        # served deployments need no work pool; the pool prefect.yaml deploys to (docs/OPERATIONS.md) must list
        created = s.cli(PREFECT, "work-pool", "create", "vidpipe", "--type", "process")
        assert created.returncode == 0, created.stdout + created.stderr
        pools = s.cli(PREFECT, "work-pool", "ls")
        assert pools.returncode == 0 and "vidpipe" in pools.stdout and "process" in pools.stdout, pools.stdout

        run = s.cli(PREFECT, "deployment", "run", dep_name, "--param", 'stages=["probe"]', "--watch", timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr + serve_log.read_text()[-3000:]
        run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", run.stdout).group(1)
        state = s.client.get(f"/flow_runs/{run_id}").json()["state"]
        assert state["type"] == "COMPLETED", state
        assert sorted(open_store(s.root, dataset).entries("probe")) == ["clip0", "clip1"]

        runs = s.cli(PREFECT, "flow-run", "ls")
        assert runs.returncode == 0, runs.stdout + runs.stderr
        assert run_id in runs.stdout and "extract-features" in runs.stdout and "COMPLETED" in runs.stdout, runs.stdout
        logs = s.cli(PREFECT, "flow-run", "logs", run_id)
        assert logs.returncode == 0, logs.stdout + logs.stderr
        assert f"extract {dataset}: 2 videos to process" in logs.stdout, logs.stdout

        # a run in flight (every stage recomputed), then SIGTERM: serve ends within 10 s, the store stays readable
        busy = s.cli(PREFECT, "deployment", "run", dep_name, "--param", "refresh=true")
        assert busy.returncode == 0, busy.stdout + busy.stderr
        busy_id = re.search(r"UUID:\s*([0-9a-f-]{36})", busy.stdout).group(1)
        _wait("the run to start", lambda: s.client.get(f"/flow_runs/{busy_id}").json()["state"]["type"]
              in {"RUNNING", "COMPLETED"}, 120, [s.server, s.serve])
        seconds = s.signal_serve(signal.SIGTERM)
        assert s.serve.poll() is not None and seconds <= 10.0, (seconds, serve_log.read_text()[-3000:])
        assert "Runner.astop' was never awaited" not in serve_log.read_text()
        store = open_store(s.root, dataset)
        for stage in ("probe", "frames", "audio", "metadata"):
            for vid in store.entries(stage):
                store.read(stage, vid)  # every committed output is complete
    finally:
        s.close()


@pytest.mark.slow  # a server start per signal (~40 s each idle): `make test-all`
@pytest.mark.server
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_within_10_s_when_the_server_is_gone(tmp_path, sig):
    s = _Served(tmp_path, "gone")
    try:
        s.start_server()
        ingest = s.cli(VIDPIPE, "ingest", "gone", "--source", "folder", str(s.media), "--root", str(s.root))
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        serve_log = s.start_serving("serve")
        os.killpg(s.server.pid, signal.SIGKILL)  # the API goes away first
        s.server.wait(timeout=10)
        time.sleep(2.0)  # the runner notices while polling
        seconds = s.signal_serve(sig)
        out = serve_log.read_text()
        assert s.serve.poll() is not None and seconds <= 10.0, (seconds, out[-3000:])
        assert "Runner.astop' was never awaited" not in out, out[-3000:]
    finally:
        s.close()
