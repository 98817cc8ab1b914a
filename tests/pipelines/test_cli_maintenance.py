"""Tests of pipelines/cli_maintenance.py: ``vidpipe compact DATASET`` folds the fresh layer, upgrades a version-1 store,
refuses a missing one clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from features.store import FORMAT_VERSION, open_store
from pipelines.cli import main


def _run(argv: list[str]) -> None:
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code


def test_compact_command_folds_the_store_and_upgrades_an_old_one(tmp_path, capsys):
    store = open_store(tmp_path, "ds", create=True)
    for i in range(3):
        store.write("audio", f"v{i}", f"{i:032x}", version=1, arrays={"clip": np.full((2, 5), i, np.float32)})
    store.record_failure("audio", "v9", "MediaError: no audio stream", fingerprint="f" * 32)
    Path(store.path, "store.json").write_text(json.dumps({"format_version": 1, "dataset": "ds"}))
    _run(["compact", "ds", "--root", str(tmp_path), "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["folded"] == 3 and result["failures"] == 1 and result["generation"] == 1, result
    again = open_store(tmp_path, "ds")
    assert again.format_version == FORMAT_VERSION
    assert again.read("audio", "v2")["clip"].tolist() == [[2.0] * 5] * 2
    assert again.failures()[["video_id", "error"]].to_dict("records") == [
        {"video_id": "v9", "error": "MediaError: no audio stream"}]
    _run(["compact", "ds", "--root", str(tmp_path), "--json"])  # nothing left to fold
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["folded"] == 0


def test_compact_command_refuses_a_missing_store(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compact", "nope", "--root", str(tmp_path)])
    assert exit_.value.code == 2
    assert "vidpipe ingest nope" in " ".join(capsys.readouterr().err.split())
