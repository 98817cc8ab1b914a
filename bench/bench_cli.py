"""Benchmark: CLI round trips, from the shell prompt to exit — ``vidpipe --help``, ``vidpipe inspect --json`` and a
no-op ``vidpipe extract`` on a 1,000-video store, without a Prefect server and with one running.

The store is seeded through the store API (no decoding): one real 1.5-s clip hard-linked under ``--videos`` names, a
folder manifest, and for every video an index record per per-video stage under its planned fingerprint (records
without arrays: the nothing-changed path reads index records only). One real ``extract_features`` run then builds the
vocabulary, the text stage, the compacted layer and the tables, leaving the store as a finished extraction leaves it.

Every command runs as a fresh subprocess (``vidpipe`` from ``.venv/bin``), ``--repeats`` times, medians reported with
the CPU seconds of the process. ``--tree DIR`` puts another source tree first on ``PYTHONPATH`` (a "before" tree from
``git archive <commit> | tar -x -C DIR``); each tree seeds its own store. ``--importtime`` adds the ten slowest
imports of ``inspect`` and ``extract`` (``python -X importtime``, cumulative).

Targets: no-op extract ≤ 3 s without a server and ≤ 2 s with one; ``inspect --json`` ≤ 1.5 s;
``--help`` ≤ 0.5 s.

    .venv/bin/python bench/bench_cli.py                       # --quick: 1,000 videos, 3 repeats
    .venv/bin/python bench/bench_cli.py --tree /tmp/before    # the same on another tree
    .venv/bin/python bench/bench_cli.py --tiny                # 20 videos, 1 repeat (the smoke test)
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, WORK_DIR, load_average, median, table, write_result  # noqa: E402

__all__ = ["TARGETS", "main", "run", "seed"]

TARGETS = {"help": 0.5, "inspect": 1.5, "extract_noop": 3.0, "extract_noop_server": 2.0}
DATASET = "clibench"
VIDPIPE = str(Path(sys.executable).with_name("vidpipe"))
PREFECT = str(Path(sys.executable).with_name("prefect"))


def seed(root: Path, videos: int) -> None:
    """Fill ``root/DATASET`` (see the module docstring); runs with whatever tree is first on ``sys.path``."""
    from bench._media import clone_names
    from features import open_store
    from features.sources import load_source
    from pipelines.extract import STAGE_VERSIONS, ExtractConfig, extract_features, plan_extraction
    from tests.media_factory import make_video

    clip = root / "_clip.mp4"
    if not clip.exists():
        make_video(clip, duration=1.5, size=(64, 48), tone_hz=440)
    media = root / "_media"
    clone_names([clip], media, videos)
    shutil.rmtree(root / DATASET, ignore_errors=True)
    store = open_store(root, DATASET, create=True)
    manifest = load_source("folder", str(media))
    store.write_manifest(manifest.videos, manifest.edges, source={"kind": "folder", "path": str(media)})
    cfg = ExtractConfig()
    per_video = ["probe", "frames", "audio", "transcripts", "metadata"]
    records = {"probe": {"duration": 1.5, "width": 64, "height": 48}, "frames": {}, "audio": {},
               "transcripts": {"text": "a planted transcript"}, "metadata": {}}
    items, _, _ = plan_extraction(store, store.manifest(), cfg, per_video)
    with store.lock():
        for item in items:
            for stage in item["todo"]:
                store.write(stage, item["row"]["video_id"], item["fps"][stage], version=STAGE_VERSIONS[stage],
                            record=records[stage], params=cfg.stage_params(stage))
    extract_features(dataset=DATASET, root=str(root), workers=1)  # text stage, compaction, tables


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tree: Path, home: Path, api: Optional[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VIDPIPE_"))}
    env.update(PYTHONPATH=str(tree), PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               VIDPIPE_PROGRESS="0")
    if api:
        env["PREFECT_API_URL"] = api
    return env


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, stdout) of one run; fails loudly on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def _import_profile(cmd: list[str], env: dict[str, str], cwd: Path, top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` slowest first-party-or-not imports (cumulative µs) of one run, from ``-X importtime``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *cmd], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m and len(m.group(3)) <= 3:  # top-level imports only (nested ones are inside their parents)
            rows.append({"module": m.group(4), "cumulative_s": int(m.group(2)) / 1e6})
    return sorted(rows, key=lambda r: -r["cumulative_s"])[:top]


def run(*, videos: int, repeats: int, tree: Path, importtime: bool = False,
        work: Optional[Path] = None) -> dict[str, Any]:
    """Seed (per tree), then time each command ``repeats`` times without and with a running server."""
    work = Path(work or WORK_DIR / f"cli-{tree.name or 'tree'}")
    root, home = work / "root", work / "prefect-home"
    root.mkdir(parents=True, exist_ok=True)
    env = _env(tree, home, None)
    # importing this module puts this repository first on sys.path: put the measured tree back in front afterwards
    seed_cmd = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                f"from bench.bench_cli import seed; sys.path.insert(0, {str(tree)!r}); "
                f"from pathlib import Path; seed(Path({str(root)!r}), {videos})"]
    t0 = time.perf_counter()
    subprocess.run(seed_cmd, env=env, cwd=ROOT, check=True, capture_output=True, timeout=1800)
    seed_seconds = time.perf_counter() - t0

    commands = {
        "help": [VIDPIPE, "--help"],
        "inspect": [VIDPIPE, "inspect", DATASET, "--root", str(root), "--json"],
        "extract_noop": [VIDPIPE, "extract", DATASET, "--root", str(root), "--json"],
    }
    results: dict[str, dict[str, list[float]]] = {}
    load_before = load_average()
    for _ in range(repeats):
        for name, cmd in commands.items():
            wall, cpu, out = _timed(cmd, env, ROOT)
            results.setdefault(name, {"wall": [], "cpu": []})
            results[name]["wall"].append(wall)
            results[name]["cpu"].append(cpu)
            if name == "extract_noop":
                assert '"done": 0' in out and f'"videos": {videos}' in out, out[-500:]

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
                              env=_env(tree, home, None), cwd=work, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        import httpx

        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the Prefect server did not start")
            time.sleep(0.5)
        senv = _env(tree, home, api)
        _timed(commands["extract_noop"], senv, ROOT)  # first run registers the flow on this server
        for _ in range(repeats):
            wall, cpu, _ = _timed(commands["extract_noop"], senv, ROOT)
            results.setdefault("extract_noop_server", {"wall": [], "cpu": []})
            results["extract_noop_server"]["wall"].append(wall)
            results["extract_noop_server"]["cpu"].append(cpu)
        runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}, timeout=10).json()
        recorded = sum(1 for r in runs if r.get("state_type") == "COMPLETED"
                       or (r.get("state") or {}).get("type") == "COMPLETED")
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)

    rows = []
    for name, vals in results.items():
        wall = median(vals["wall"])
        rows.append({"command": name, "wall_s": wall, "cpu_s": median(vals["cpu"]), "target_s": TARGETS[name],
                     "met": wall <= TARGETS[name]})
    payload: dict[str, Any] = {
        "tree": str(tree), "videos": videos, "repeats": repeats, "seed_seconds": seed_seconds, "rows": rows,
        "raw": results, "server_runs_recorded": recorded, "load_avg_1m_before": load_before,
        "load_avg_1m_after": load_average(),
    }
    if importtime:
        payload["importtime"] = {name: _import_profile(commands[name], env, ROOT) for name in ("inspect", "extract_noop")}
    return payload


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="1,000 videos, 3 repeats (default)")
    size.add_argument("--tiny", action="store_true", help="20 videos, 1 repeat (smoke test)")
    ap.add_argument("--videos", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--tree", type=Path, default=ROOT, help="source tree to measure (default: this one)")
    ap.add_argument("--importtime", action="store_true", help="add the slowest imports of inspect and extract")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default bench/results/work/cli-*)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    videos = args.videos or (20 if args.tiny else 1000)
    repeats = args.repeats or (1 if args.tiny else 3)
    payload = run(videos=videos, repeats=repeats, tree=args.tree.resolve(), importtime=args.importtime,
                  work=args.work)
    print(table(f"CLI round trips, {videos} videos, median of {repeats} (load {payload['load_avg_1m_before']:.1f}"
                f" → {payload['load_avg_1m_after']:.1f})", payload["rows"]))
    for name, rows in payload.get("importtime", {}).items():
        print(table(f"slowest imports: {name}", rows))
    write_result("cli", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
