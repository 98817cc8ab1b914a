"""File names that look like command-line options (``-6otZ7M-Mro.003.mp4`` in First Impressions) reach every media
tool as data, never as an option: probe, frames (every decode strategy) and audio, from a relative path."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from features.audio import load_audio
from features.probe import probe
from features.video import PER_SECOND, UNIFORM, extract_frames, extract_frames_and_audio
from tests.media_factory import make_video


@pytest.mark.parametrize("name", ["-abc.003.mp4", "--help.mp4", "-i.mkv"])
def test_probe_frames_and_audio_of_an_option_like_name(tmp_path, monkeypatch, name):
    make_video(tmp_path / name, duration=2.0, size=(64, 48), fps=10, gop=5)
    monkeypatch.chdir(tmp_path)
    info = probe(name)  # relative: "-abc.003.mp4" exactly as a listing gives it
    assert (info.width, info.height) == (64, 48) and abs(info.duration - 2.0) < 0.2 and info.has_audio
    for strategy in ("sequential", "seek"):
        frames = extract_frames(name, info, [PER_SECOND, UNIFORM], strategy=strategy)
        assert frames["per_second"].valid.sum() == 2 and frames["uniform"].valid.sum() >= 15
    y = load_audio(name, info, sr=16000)
    assert y is not None and abs(len(y) - 32000) < 1600 and np.abs(y).max() > 0.1
    _, pcm = extract_frames_and_audio(name, info, [PER_SECOND], sr=16000)
    assert pcm is not None and abs(len(pcm) - len(y)) < 1600


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_synthetic_speech_of_text_starting_with_a_dash(tmp_path):
    from features.sources.synthetic import _Design, _speak

    y = _speak("-v hello there", shutil.which("espeak-ng"), tmp_path, _Design())
    assert y.ndim == 1 and len(y) > 0.5 * _Design().sample_rate and np.abs(y).max() > 0.05
