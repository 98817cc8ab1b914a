"""Frames and audio from one ffmpeg: ``extract_frames_and_audio`` must return exactly what
``extract_frames`` and ``load_audio`` return separately, and hand the audio back to ``load_audio`` whenever one pass
would cost more than two."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from features.audio import load_audio
from features.media import SIDE_OUTPUT, MediaError, run_tool_capture
from features.probe import probe
from features.video import PER_SECOND, UNIFORM, extract_frames, extract_frames_and_audio
from tests.media_factory import make_video

PROFILES = [dataclasses.replace(PER_SECOND, n_segments=4), dataclasses.replace(UNIFORM, n_frames=6)]


def _same_frames(a, b) -> bool:
    return set(a) == set(b) and all(
        np.array_equal(a[k].frames, b[k].frames) and np.array_equal(a[k].valid, b[k].valid)
        and np.array_equal(a[k].times, b[k].times, equal_nan=True) and a[k].warnings == b[k].warnings for k in a)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_one_pass_gives_the_same_frames_and_bit_identical_pcm(tmp_path, suffix):
    path = make_video(tmp_path / f"clip{suffix}", duration=3.0, size=(96, 64), fps=10, tone_hz=330.0)
    info = probe(path)
    frames, pcm = extract_frames_and_audio(path, info, PROFILES, sr=16000)
    assert _same_frames(frames, extract_frames(path, info, PROFILES))
    want = load_audio(path, info, sr=16000)
    assert pcm is not None and pcm.dtype == np.float32 and pcm.shape == want.shape and np.array_equal(pcm, want)
    assert np.abs(pcm).max() > 0.1  # the tone is there, not silence


def test_audio_is_left_to_load_audio_when_one_pass_would_decode_more(tmp_path):
    long = make_video(tmp_path / "long.mp4", duration=20.0, size=(32, 18), fps=5)
    info = probe(long)
    # a per-second profile stops after ~15 s: one pass would decode the last 5 s of video for the audio's sake
    frames, pcm = extract_frames_and_audio(long, info, [PER_SECOND], sr=16000)
    assert pcm is None and _same_frames(frames, extract_frames(long, info, [PER_SECOND]))
    keyframes = [dataclasses.replace(PER_SECOND, keyframes=True)]  # keyframe samples that stop at 15 s of 20
    assert extract_frames_and_audio(long, info, keyframes, sr=16000)[1] is None
    silent = make_video(tmp_path / "silent.mp4", duration=2.0, size=(32, 18), fps=5, audio=False)
    frames, pcm = extract_frames_and_audio(silent, probe(silent), PROFILES, sr=16000)
    assert pcm is None and frames["uniform"].valid.all()


def test_keyframe_mode_shares_the_pass_when_its_samples_reach_the_end(tmp_path):
    path = make_video(tmp_path / "clip.mp4", duration=6.0, size=(96, 64), fps=10, tone_hz=440.0, gop=10)
    info = probe(path)
    keyframes = [dataclasses.replace(p, keyframes=True) for p in PROFILES]
    frames, pcm = extract_frames_and_audio(path, info, keyframes, sr=16000)
    assert _same_frames(frames, extract_frames(path, info, keyframes))  # the keyframe samples are unchanged
    want = load_audio(path, info, sr=16000)
    assert pcm is not None and np.array_equal(pcm, want)  # and the audio is bit-identical to load_audio's


def test_bad_sample_rate_is_refused(tmp_path):
    path = make_video(tmp_path / "c.mp4", duration=1.0, size=(32, 18), fps=5)
    with pytest.raises(ValueError, match="sr=8"):
        extract_frames_and_audio(path, probe(path), PROFILES, sr=8)


_CHILD = "import os, sys; os.write(int(sys.argv[1].split(':')[1]), b'side-bytes'); print('out', end='')"


def test_side_output_pipe_is_captured_capped_and_required():
    got = run_tool_capture([sys.executable, "-c", _CHILD, SIDE_OUTPUT], 30, side_output_bytes=100)
    assert (got.stdout, got.side, got.returncode) == (b"out", b"side-bytes", 0)
    assert run_tool_capture([sys.executable, "-c", "print('x', end='')"], 30).side == b""
    with pytest.raises(MediaError, match="more than"):
        run_tool_capture([sys.executable, "-c", _CHILD, SIDE_OUTPUT], 30, side_output_bytes=4)
    with pytest.raises(ValueError, match="side_output_bytes"):
        run_tool_capture([sys.executable, "-c", _CHILD], 30, side_output_bytes=100)


def test_fast_decode_keeps_samples_and_audio_and_changes_pixels_only_slightly(tmp_path, monkeypatch):
    import features.video as video
    from pipelines.extract import ExtractConfig

    path = make_video(tmp_path / "clip.mp4", duration=3.0, size=(160, 96), fps=10, tone_hz=330.0)
    info = probe(path)
    calls: list[list[str]] = []
    real = video.run_tool_capture
    monkeypatch.setattr(video, "run_tool_capture", lambda args, *a, **k: calls.append(list(args)) or real(args, *a, **k))
    fast, pcm = extract_frames_and_audio(path, info, PROFILES, sr=16000, fast_decode=True)
    exact, want = extract_frames_and_audio(path, info, PROFILES, sr=16000)
    assert "-skip_loop_filter:v" in calls[0] and "-skip_loop_filter:v" not in calls[-1]
    assert pcm is not None and np.array_equal(pcm, want)  # the audio decoder is untouched
    for name in exact:
        assert np.array_equal(fast[name].valid, exact[name].valid)
        assert np.array_equal(fast[name].times, exact[name].times, equal_nan=True)
        diff = np.abs(fast[name].frames.astype(int) - exact[name].frames.astype(int))
        assert diff.mean() < 1.0, (name, diff.mean())
    # part of the frames fingerprint, and of no other stage's
    exact_cfg, fast_cfg = ExtractConfig(fast_decode=False), ExtractConfig()
    assert fast_cfg.fast_decode and exact_cfg.stage_params("frames") != fast_cfg.stage_params("frames")
    assert all(exact_cfg.stage_params(s) == fast_cfg.stage_params(s) for s in ("probe", "audio", "transcripts"))
