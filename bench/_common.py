"""Helpers shared by the benchmark scripts: environment, timing, machine facts, tables and JSON results.

Every benchmark measures **ratios side by side in one run** (both sides under the same load, interleaved, repeated,
medians taken), because absolute times on a shared machine are noise. Each result carries the machine description
and the load average before and after, so a reader can judge how busy the machine was.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
WORK_DIR = RESULTS_DIR / "work"

if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from features.atomic import atomic_write  # noqa: E402 - after the path set-up above

__all__ = [
    "RESULTS_DIR",
    "ROOT",
    "WORK_DIR",
    "cpu_seconds",
    "fmt_ratio",
    "load_average",
    "machine_info",
    "median",
    "prefect_env",
    "table",
    "timed",
    "verdict",
    "write_result",
]


def prefect_env() -> None:
    """Quiet, offline Prefect defaults for benchmark runs (set only where the caller has not set them)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_HOME", str(RESULTS_DIR / "prefect-home"))
    os.environ.setdefault("VIDPIPE_PROGRESS", "0")


prefect_env()  # before anything imports prefect


def load_average() -> float:
    """1-minute load average (how many runnable processes competed for the cores)."""
    return float(os.getloadavg()[0])


def cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and its waited-for children (ffmpeg)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Run ``fn`` once: ``(wall seconds, CPU seconds incl. waited children, result)``."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, cpu_seconds() - c0, out


def median(values: Iterable[float]) -> float:
    """Median of ``values`` (nan when empty)."""
    vals = [v for v in values]
    return float(statistics.median(vals)) if vals else float("nan")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ffmpeg_version() -> str | None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU model and count, memory, library versions, load average."""
    import numpy
    import torch

    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "ffmpeg": _ffmpeg_version(),
        "load_avg_1m": load_average(),
    }


def write_result(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    """Write ``payload`` as ``bench/results/<name>.json`` (or ``out``) atomically; returns the path."""
    path = Path(out) if out is not None else RESULTS_DIR / f"{name}.json"
    atomic_write(path, json.dumps(payload, indent=2, sort_keys=True, default=str))
    return path


def fmt_ratio(x: float | None) -> str:
    """``0.84×`` (``n/a`` for None or nan)."""
    if x is None or x != x:
        return "n/a"
    return f"{x:.2f}×"


def verdict(ok: bool | None) -> str:
    """``met`` / ``MISSED`` / ``n/a``."""
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain-text table (floats to 3 significant digits) under ``title``."""
    if not rows:
        return f"{title}\n  (no rows)"
    cols = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if v != v else f"{v:.3g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = [title, "  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths)),
             "  " + "  ".join("-" * w for w in widths)]
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
