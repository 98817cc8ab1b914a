"""features.audio: PCM through ffmpeg, per-second MFCC/Δ/ΔΔ and log-mel, the clip matrix, silence masks, eGeMAPS."""

from __future__ import annotations

import sys
import types

import librosa
import numpy as np
import pytest

from features.audio import AudioParams, clip_matrix, clip_mfcc, egemaps, is_silent, load_audio, segment_features
from features.media import MediaError
from features.probe import probe
from tests.media_factory import make_audio_expr_video, make_video

SR = 16000


def _tone(seconds: float, hz: float = 440.0, amp: float = 0.3, sr: int = SR) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tmp_path_factory.mktemp("audio_media")


# -------------------------------------------------------------------------------------------------------- params
def test_default_geometry():
    p = AudioParams()
    assert (p.sr, p.n_mfcc, p.n_segments, p.fft, p.hop, p.segment_frames, p.clip_frames) == (
        16000, 40, 15, 512, 160, 101, 1500)
    q = AudioParams(sr=44100)
    assert (q.fft, q.hop, q.segment_frames) == (1024, 441, 101)
    assert AudioParams(feature="logmel").n_coeffs == 64


@pytest.mark.parametrize("kwargs, match", [
    ({"feature": "wav2vec"}, "feature"),
    ({"n_mfcc": 80, "n_mels": 64}, "n_mels=64 < n_mfcc=80"),
    ({"silence_db": 10.0}, "silence_db"),
    ({"sr": 0}, "sr"),
    ({"hop_length": -1}, "hop_length"),
])
def test_params_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AudioParams(**kwargs)


# ---------------------------------------------------------------------------------------------------- load_audio
def test_load_audio_resamples_to_mono_at_sr(media):
    clip = make_video(media / "tone.mp4", duration=2.0, tone_hz=440.0)
    info = probe(clip)
    y = load_audio(clip, info, sr=SR)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size - 2 * SR) < 0.05 * SR
    spectrum = np.abs(np.fft.rfft(y[SR // 4: SR // 4 + SR]))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1-Hz bins over one second
    y44 = load_audio(clip, info, sr=44100, max_seconds=1.0)
    assert abs(y44.size - 44100) < 0.02 * 44100


def test_load_audio_without_track_is_none(media):
    clip = make_video(media / "mute.mp4", duration=1.0, audio=False)
    assert load_audio(clip, probe(clip)) is None


def test_load_audio_bad_args(media):
    clip = make_video(media / "tone2.mp4", duration=1.0)
    with pytest.raises(ValueError, match="sr"):
        load_audio(clip, probe(clip), sr=10)
    with pytest.raises(ValueError, match="ProbeInfo"):
        load_audio(clip, None)  # type: ignore[arg-type]


def test_load_audio_of_a_vanished_file_is_media_error(media):
    clip = make_video(media / "gone.mp4", duration=1.0)
    info = probe(clip)
    clip.unlink()
    with pytest.raises(MediaError, match="gone.mp4"):
        load_audio(clip, info)


# ------------------------------------------------------------------------------------------------------ features
def test_segment_features_shapes_masks_and_values():
    p = AudioParams()
    y = np.concatenate([_tone(1.0), np.zeros(SR, np.float32), _tone(1.0, 1000.0), _tone(0.6)])  # 3.6 s
    feats, mask = segment_features(y, p)
    assert feats.shape == (15, 3, 40, 101) and feats.dtype == np.float32
    assert mask.tolist() == [True, False, True, True] + [False] * 11  # silent second 1; 0.6 s tail kept
    assert not feats[~mask].any()
    # channel 0 is librosa's MFCC of the segment, channels 1, 2 its Δ and ΔΔ
    mel = librosa.feature.melspectrogram(y=y[2 * SR:3 * SR], sr=SR, n_fft=512, hop_length=160, n_mels=64)
    ref = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=40)
    np.testing.assert_allclose(feats[2, 0], ref, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(feats[2, 1], librosa.feature.delta(ref), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(feats[2, 2], librosa.feature.delta(ref, order=2), rtol=1e-4, atol=1e-3)
    # the planted difference: a 440 Hz and a 1 kHz second are far apart, two 440 Hz seconds are close
    same = np.abs(feats[0, 0, :, 10:90] - feats[3, 0, :, 10:50].mean(-1, keepdims=True)).mean()
    other = np.abs(feats[0, 0, :, 10:90] - feats[2, 0, :, 10:90]).mean()
    assert other > 5 * same


def test_segment_features_logmel():
    feats, mask = segment_features(_tone(2.0), AudioParams(feature="logmel", n_segments=3))
    assert feats.shape == (3, 3, 64, 101)
    assert mask.tolist() == [True, True, False]
    band = int(np.argmax(feats[0, 0, :, 50]))
    freqs = librosa.mel_frequencies(n_mels=64, fmax=SR / 2)
    assert abs(freqs[band] - 440) < 80  # the loudest mel band holds the tone


def test_no_track_or_silence_is_masked_not_zeros_that_look_like_data():
    for y in (None, np.zeros(0, np.float32), np.zeros(3 * SR, np.float32), 1e-5 * _tone(3.0)):
        feats, mask = segment_features(y, AudioParams())
        assert not mask.any() and not feats.any()
        matrix, valid = clip_mfcc(y, AudioParams())
        assert not valid and not matrix.any()


def test_is_silent():
    p = AudioParams()
    assert is_silent(None, p) and is_silent(np.zeros(SR, np.float32), p)
    assert is_silent(1e-4 * _tone(1.0), p)  # about -83 dBFS
    assert not is_silent(_tone(1.0), p)
    quiet_then_click = np.zeros(SR, np.float32)
    quiet_then_click[8000:8400] = 0.5
    assert not is_silent(quiet_then_click, p)  # one loud frame is enough
    with pytest.raises(ValueError, match="1-D float"):
        is_silent(np.zeros((2, 10), np.float32), p)


def test_clip_mfcc_pads_and_crops():
    p = AudioParams(clip_frames=300)
    matrix, valid = clip_mfcc(_tone(2.0), p)  # 2 s = 201 frames, padded to 300
    assert matrix.shape == (40, 300) and valid
    assert matrix[:, :201].any() and not matrix[:, 201:].any()
    long, valid = clip_mfcc(_tone(5.0), p)  # 501 frames, cropped to 300
    assert valid and long[:, -1].any()
    np.testing.assert_allclose(long[:, :150], matrix[:, :150], atol=1e-3)


def test_clip_matrix_marks_the_padding_frame_by_frame():
    p = AudioParams(clip_frames=300)
    matrix, frames = clip_matrix(_tone(2.0), p)  # 201 real frames, 99 of padding
    np.testing.assert_array_equal(matrix, clip_mfcc(_tone(2.0), p)[0])
    assert frames.shape == (300,) and frames.dtype == bool
    assert frames[:201].all() and not frames[201:].any()
    assert clip_matrix(_tone(5.0), p)[1].all()  # cropped: no padding
    for y in (None, np.zeros(2 * SR, np.float32)):  # no track, silence: nothing is real
        assert not clip_matrix(y, p)[1].any()


def test_inputs_are_not_mutated():
    y = _tone(1.0)
    before = y.copy()
    segment_features(y, AudioParams(n_segments=2))
    clip_mfcc(y, AudioParams(clip_frames=50))
    np.testing.assert_array_equal(y, before)


def test_file_with_silence_then_tone(media):
    # silence until 1.5 s (half a second of margin: AAC spreads a tone onset over a few ms), then a tone
    clip = make_audio_expr_video(media / "gap.mp4", "if(lt(t,1.5),0,0.4*sin(2*PI*440*t))", duration=3.0)
    y = load_audio(clip, probe(clip))
    feats, mask = segment_features(y, AudioParams(n_segments=4))
    assert mask.tolist() == [False, True, True, False]
    assert feats.shape == (4, 3, 40, 101)


# ------------------------------------------------------------------------------------------------------ eGeMAPS
def test_egemaps_without_opensmile_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)  # makes `import opensmile` fail
    with pytest.raises(ImportError, match="pip install opensmile"):
        egemaps(_tone(1.0), SR)


def test_egemaps_calls_opensmile_functionals(monkeypatch):
    seen = {}

    class Smile:
        def __init__(self, feature_set, feature_level):
            seen["config"] = (feature_set, feature_level)

        def process_signal(self, y, sr):
            seen["call"] = (y.shape, sr)
            return np.arange(88, dtype=np.float64)[None, :]

    fake = types.SimpleNamespace(Smile=Smile, FeatureSet=types.SimpleNamespace(eGeMAPSv02="eGeMAPSv02"),
                                 FeatureLevel=types.SimpleNamespace(Functionals="Functionals"))
    monkeypatch.setitem(sys.modules, "opensmile", fake)
    out = egemaps(_tone(1.0), SR)
    assert out.shape == (88,) and out.dtype == np.float32 and out[87] == 87
    assert seen == {"config": ("eGeMAPSv02", "Functionals"), "call": ((SR,), SR)}
    with pytest.raises(ValueError, match="non-empty"):
        egemaps(None, SR)  # type: ignore[arg-type]


def test_clip_frames_for_seconds():
    from features.audio import clip_frames_for

    assert clip_frames_for(15.0) == 1500 and clip_frames_for(15.0, AudioParams(sr=44100)) == 1500
    assert clip_frames_for(2.55) == 255 and clip_frames_for(0.001) == 1
    for bad in (0, -1.0, float("nan"), True, "15"):
        with pytest.raises(ValueError, match="seconds="):
            clip_frames_for(bad)


def test_egemaps_functionals_of_a_tone():
    pytest.importorskip("opensmile")
    t = np.arange(32000) / 16000
    y = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    values = egemaps(y, 16000)
    assert values.shape == (88,) and values.dtype == np.float32 and np.isfinite(values).all()
    assert 30 < values[0] < 40  # F0 mean in semitones from 27.5 Hz: 220 Hz is 36 semitones
