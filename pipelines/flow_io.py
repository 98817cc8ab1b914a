"""Wiring shared by the stage flows: opening stores, progress display, Prefect artifacts, run summaries, CPU
accounting and the torch thread count of worker processes.

Nothing here computes features or trains models; it only helps flows run and report what they did.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import sys
from typing import Annotated, Any, Iterator, Sequence

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import Field

from features.schema import DATASET_PATTERN
from features.store import Store, open_store

__all__ = ["DatasetName", "store_for", "progress", "publish_table", "publish_markdown", "artifact_key",
           "markdown_table", "cpu_seconds", "single_torch_thread", "one_torch_thread"]


#: a flow's ``dataset`` parameter: a store name (:data:`features.schema.DATASET_PATTERN`), validated by Prefect
DatasetName = Annotated[str, Field(pattern=DATASET_PATTERN)]


def store_for(root: str | None, dataset: str, *, create: bool = False) -> Store:
    """Open (or create) the dataset's store under ``root`` (``None`` → ``$VIDPIPE_ROOT`` or ``./data``)."""
    return open_store(root, dataset, create=create)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished child processes (worker processes that were
    waited for, ffmpeg decoders): the difference of two calls is what a stage cost, whatever else shares the machine."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def single_torch_thread() -> int:
    """Put torch on one intra-op thread in this process and return the count it had; the initialiser of worker
    processes whose parallelism is the processes themselves (a second thread on small tensors mostly spin-waits)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return before


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread in this process for the duration (:func:`single_torch_thread`), restored afterwards."""
    import torch

    before = single_torch_thread()
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Progress:
    def __init__(self, bar: Any, task: Any) -> None:
        self._bar, self._task = bar, task

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator[_Progress]:
    """A rich progress bar on stderr (off when ``VIDPIPE_PROGRESS=0``, e.g. in tests)."""
    if os.environ.get("VIDPIPE_PROGRESS", "1") == "0" or total <= 0:
        yield _Progress(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(file=sys.stderr), transient=False) as bar:
        yield _Progress(bar, bar.add_task(description, total=total))


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lower-case letters, digits, dashes)."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100] or "vidpipe"


def publish_table(key: str, rows: Sequence[dict], description: str) -> None:
    """Publish rows as a Prefect table artifact (silently skipped outside a flow run)."""
    with contextlib.suppress(Exception):
        create_table_artifact(key=artifact_key(key), table=[dict(r) for r in rows], description=description)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """Publish a Markdown report as a Prefect artifact (silently skipped outside a flow run)."""
    with contextlib.suppress(Exception):
        create_markdown_artifact(key=artifact_key(key), markdown=markdown, description=description)


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Render rows as a GitHub-flavoured Markdown table (floats to 4 significant digits)."""
    if not rows:
        return "_(no rows)_\n"
    cols = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
