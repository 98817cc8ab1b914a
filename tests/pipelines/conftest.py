"""A small synthetic dataset, generated, ingested, extracted and graph-embedded once per test session (shared by xdist workers)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

DATASET = "syn"
N_VIDEOS = 36
RESCRAPES = 5  # early re-scrapes per post: the scrape history of MTAF's early trend (preset mtaf-table-4)


def _build(root: Path) -> None:
    from flows import extract_features, ingest, pretrain_graph
    from pipelines.extract import ExtractConfig

    ingest(dataset=DATASET, source="synthetic", root=str(root), videos=N_VIDEOS, seed=7, min_duration=3.0,
           max_duration=6.0, rescrapes=RESCRAPES)
    extract_features(dataset=DATASET, root=str(root), config=ExtractConfig(n_frames=16, asr="none"), batch_size=6)
    pretrain_graph(dataset=DATASET, root=str(root), epochs=30, out=16, hidden=32)


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory, prefect_harness) -> Path:
    """Root of a read-only, fully extracted synthetic store (copy it before writing: see ``synthetic_copy``)."""
    base = tmp_path_factory.getbasetemp()
    # under xdist every worker's basetemp lives in this run's folder: share through it (never across runs)
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "vidpipe-synthetic"
    with FileLock(str(shared) + ".lock"):
        if not (shared / "done").exists():
            shutil.rmtree(shared, ignore_errors=True)
            (shared / "root").mkdir(parents=True)
            _build(shared / "root")
            (shared / "done").write_text("ok")
    return shared / "root"


@pytest.fixture
def synthetic_copy(synthetic_store, tmp_path) -> Path:
    """A private writable copy of the synthetic root (store + generated media)."""
    dst = tmp_path / "root"
    shutil.copytree(synthetic_store, dst, symlinks=True)
    # the manifest points at the shared media; that is fine for reading, and tests that touch media copy it
    return dst
