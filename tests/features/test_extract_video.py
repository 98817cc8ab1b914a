"""features.extract_video: one video's stages as a pure function, each output checked against features.schema."""

from __future__ import annotations

import numpy as np
import pytest

from features.extract_video import (PER_VIDEO_STAGES, ExtractConfig, StageFailure, StageOutput, audio_params,
                                    extract_video)
from features.schema import PROFILES, schema
from tests.media_factory import make_video

CFG = ExtractConfig(profiles=PROFILES, n_segments=3, n_frames=4, asr="none", clip_frames=64, egemaps=True)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    path = make_video(tmp_path_factory.mktemp("xv") / "clip.mp4", duration=2.0, size=(64, 48), fps=10)
    row = {"video_id": "v0", "source_path": str(path), "desc": "a #b", "create_time": 1_700_000_000}
    return extract_video(row, PER_VIDEO_STAGES[:5], CFG)


def test_every_stage_returns_exactly_its_declared_arrays_and_fields(outputs):
    assert list(outputs) == ["probe", "frames", "audio", "transcripts", "metadata"]
    for stage, out in outputs.items():
        assert isinstance(out, StageOutput), (stage, out)
        sch = schema(stage)
        for name, value in (out.arrays or {}).items():
            spec = sch.spec_of(name)
            assert spec is not None, f"{stage} wrote undeclared array {name!r}"
            assert str(value.dtype) == spec.dtype and value.ndim == len(spec.shape), (stage, name)
        # every declared array is written under these settings (all profiles, eGeMAPS on)
        expected = {sch.name(a.name, p) for a in sch.arrays if not a.name.endswith("_patches")
                    for p in (PROFILES if "{profile}" in a.name else (None,))}
        assert set(out.arrays or {}) == expected, stage
        assert set(out.record) == {f.name for f in sch.record}, stage
    frames = outputs["frames"].arrays
    assert frames["per_second"].shape == (3, 64, 64, 3) and frames["uniform"].shape == (4, 64, 64, 3)
    assert outputs["audio"].arrays["clip"].shape == (20, 64)


def test_a_missing_file_fails_probe_and_skips_what_needs_it_but_not_a_dataset_transcript():
    row = {"video_id": "gone", "source_path": "/nonexistent/x.mp4", "transcript": "hello"}
    out = extract_video(row, ["probe", "frames", "transcripts", "metadata"], CFG)
    assert isinstance(out["probe"], StageFailure) and "source file missing" in out["probe"].error
    assert out["frames"].error.startswith("skipped: probe failed") and isinstance(out["metadata"], StageFailure)
    assert isinstance(out["transcripts"], StageOutput) and out["transcripts"].record["source"] == "dataset"


def test_refuses_a_stage_that_is_not_per_video():
    with pytest.raises(ValueError, match="not per-video stages"):
        extract_video({"video_id": "v"}, ["text"], CFG)


def test_clip_seconds_and_clip_frames_set_the_clip_matrix():
    assert audio_params(ExtractConfig()).clip_frames == 1500
    assert audio_params(ExtractConfig(clip_seconds=3.0, sample_rate=44100)).clip_frames == 300
    assert audio_params(ExtractConfig(clip_seconds=3.0, clip_frames=64)).clip_frames == 64
    with pytest.raises(ValueError, match="clip_seconds"):
        ExtractConfig(clip_seconds=0)


def test_an_undeclared_array_makes_the_stage_fail_instead_of_reaching_the_store(monkeypatch):
    import features.extract_video as xv

    monkeypatch.setitem(xv._RUNNERS, "metadata", lambda v, todo, cache: ({"extra": np.zeros(3, np.float32)}, {}))
    out = extract_video({"video_id": "v"}, ["metadata"], CFG)["metadata"]
    assert isinstance(out, StageFailure) and "array 'extra', which features.schema does not declare" in out.error
