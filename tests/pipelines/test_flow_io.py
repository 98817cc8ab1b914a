"""pipelines.flow_io: CPU accounting and the torch thread count of worker processes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pipelines.flow_io import cpu_seconds, one_torch_thread, single_torch_thread


def test_cpu_seconds_counts_a_finished_child_process():
    before = cpu_seconds()
    # a child that spins for 0.3 s of its own CPU time (not wall time), then is waited for
    subprocess.run([sys.executable, "-c", "import time\nwhile time.process_time() < 0.3: pass"], check=True)
    assert cpu_seconds() - before >= 0.3


def test_one_torch_thread_restores_the_count_even_after_an_error():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="inside"), one_torch_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        assert single_torch_thread() == 2 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
