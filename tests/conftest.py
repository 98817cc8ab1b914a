"""Test-wide setup: an isolated Prefect home and one ephemeral Prefect API for the whole session."""

from __future__ import annotations

import os
import tempfile

# Must be set before prefect is imported anywhere.
_PREFECT_HOME = tempfile.mkdtemp(prefix="vidpipe-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", None)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["VIDPIPE_PROGRESS"] = "0"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect database + ephemeral API for every flow test in this worker."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def root(tmp_path):
    """A fresh data root."""
    path = tmp_path / "root"
    path.mkdir()
    return path
