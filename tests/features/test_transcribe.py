"""features.transcribe: the backend interface, pocketsphinx on an espeak-ng sentence (plumbing, not accuracy), and
the Whisper backend's refusals."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from features.audio import load_audio
from features.probe import probe
from features.transcribe import AsrBackend, PocketSphinxBackend, Transcript, WhisperBackend, get_backend
from tests.media_factory import make_speech_video

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def sphinx():
    return PocketSphinxBackend()


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """(16 kHz samples, duration) of a spoken sentence, read back through probe + load_audio like the pipeline."""
    path = make_speech_video(tmp_path_factory.mktemp("speech") / "hello world.mp4",
                             "hello world, this is a short test")
    info = probe(path)
    y = load_audio(path, info, sr=16000)
    return y, y.size / 16000


def test_pocketsphinx_transcribes_espeak_sentence(sphinx, speech):
    y, duration = speech
    result = sphinx.transcribe(y, 16000)
    assert isinstance(result, Transcript)
    assert result.source == "asr:pocketsphinx"
    assert result.text.strip() and len(result.words) >= 2
    assert result.text == " ".join(w for w, _, _ in result.words)
    starts = [s for _, s, _ in result.words]
    assert starts == sorted(starts)
    for word, start, end in result.words:
        assert word and not word.startswith(("<", "[")) and "(" not in word
        assert 0.0 <= start <= end <= duration + 1e-6
    # speech sits inside the clip: the first word starts after the leading silence, the last ends near the end
    assert result.words[-1][2] > 0.5 * duration


def test_pocketsphinx_resamples_other_rates(sphinx, speech):
    import librosa

    y, duration = speech
    y22 = librosa.resample(y, orig_sr=16000, target_sr=22050)
    result = sphinx.transcribe(y22, 22050)
    assert result.words and result.words[-1][2] <= duration + 0.05


def test_silence_and_empty_give_empty_transcripts(sphinx):
    assert sphinx.transcribe(np.zeros(0, np.float32), 16000) == Transcript("", [], "asr:pocketsphinx")
    result = sphinx.transcribe(np.zeros(16000, np.float32), 16000)
    assert result.text == "" and result.words == []


def test_bad_signal(sphinx):
    with pytest.raises(ValueError, match="1-D float"):
        sphinx.transcribe(np.zeros((2, 100), np.float32), 16000)
    with pytest.raises(ValueError, match="sr"):
        sphinx.transcribe(np.zeros(100, np.float32), 0)


def test_backend_protocol_and_registry(sphinx):
    assert isinstance(sphinx, AsrBackend)
    assert isinstance(get_backend("pocketsphinx"), PocketSphinxBackend)
    with pytest.raises(ValueError, match="'pocketsphinx', 'whisper'"):
        get_backend("kaldi")


def test_whisper_refuses_missing_path(tmp_path):
    with pytest.raises(ValueError, match="never downloaded"):
        WhisperBackend(tmp_path / "no-model")
    with pytest.raises(ValueError, match="model_path"):
        get_backend("whisper", model_path=tmp_path / "no-model")


def test_whisper_missing_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    monkeypatch.setitem(sys.modules, "whisper", None)
    model_dir = tmp_path / "ct2-model"
    model_dir.mkdir()
    with pytest.raises(ImportError, match="pip install faster-whisper"):
        WhisperBackend(model_dir)
    checkpoint = tmp_path / "base.pt"
    checkpoint.write_bytes(b"\0")
    with pytest.raises(ImportError, match="pip install openai-whisper"):
        WhisperBackend(checkpoint)


def test_transcript_record_is_json_ready():
    record = Transcript("hi there", [("hi", 0.1, 0.3), ("there", 0.35, 0.8)], "dataset").to_record()
    assert record == {"text": "hi there", "source": "dataset", "words": [["hi", 0.1, 0.3], ["there", 0.35, 0.8]]}


def test_a_track_too_short_to_decode_is_an_empty_transcript(sphinx, tmp_path):
    """A 0.06-s tone: pocketsphinx decodes no hypothesis at all (``seg()`` is None), which is an empty transcript."""
    import subprocess

    path = tmp_path / "blip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1", "-f", "lavfi",
                    "-i", "sine=f=440:sample_rate=16000:d=0.06", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)], check=True, capture_output=True, timeout=60)
    info = probe(path)
    y = load_audio(path, info, sr=16000)
    assert y is not None and 0.04 < y.size / 16000 < 0.2 and np.abs(y).max() > 0.1  # short, and not silent
    assert sphinx.transcribe(y, 16000) == Transcript("", [], "asr:pocketsphinx")


@pytest.mark.parametrize("kind, answer", [("openai", {"segments": None}), ("openai", {}),
                                          ("openai", {"segments": [{"text": None, "words": None}]}),
                                          ("faster", (None, None)), ("faster", ([], None))])
def test_whisper_without_segments_is_an_empty_transcript(kind, answer):
    """A model that recognises nothing (no segments, or segments without text or words) gives an empty transcript."""
    class Model:
        def transcribe(self, pcm, **options):
            return answer

    backend = WhisperBackend.__new__(WhisperBackend)
    backend._kind, backend._model, backend.language, backend.beam_size = kind, Model(), None, 1
    tone = (0.5 * np.sin(np.arange(8000) * 0.3)).astype(np.float32)
    assert backend.transcribe(tone, 16000) == Transcript("", [], "asr:whisper")
