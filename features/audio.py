"""Audio features: mono PCM through ffmpeg, per-second MFCC/Δ/ΔΔ (or log-mel), the whole-clip MFCC, silence, eGeMAPS.

Papers:

* Sec2Sec (dissertation ch. 2): per 1-second segment, MFCC plus its first and second time derivatives stacked as a
  3-channel "image" → :func:`segment_features`, shape (S, 3, n_mfcc, F).
* Multimodal Co-attention Transformer / VAN (ch. 3-4): audio resampled from 44.1 kHz to 16 kHz, the clip's 2-D MFCC
  matrix flattened into a linear layer; log filter banks were tried and MFCC at 16 kHz won → :func:`clip_matrix`,
  shape (n_mfcc, F) padded or cropped to a fixed F so it can be flattened, with a per-frame mask of the padding.
* Cross-modal personality embeddings: the 88 eGeMAPS functionals from openSMILE → :func:`egemaps` (optional).

None of the papers gives the number of coefficients or the frame geometry. Defaults here: 40 MFCC from 64 mel bands
(the usual speech setting at 16 kHz; librosa's default of 20 would drop the upper cepstrum), 25 ms windows
(``n_fft`` = the power of two nearest to 25 ms: 512 at 16 kHz, 1024 at 44.1 kHz) every 10 ms, so a 1-second segment
has ``F = 1 + sr/hop = 101`` frames at either rate, and the clip matrix keeps ``F = 1500`` frames (15 s, the clip
length of LIRIS-ACCEDE and First Impressions).

Missing audio is never disguised as data: no track (``None``) or a silent stretch gives a ``False`` mask and zeros.
A segment counts as present when at least half a second of it lies inside the clip (the same rule as a per-second
video frame at the segment's midpoint) and as silent when its loudest 25 ms frame is below ``silence_db`` dBFS.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import librosa
import numpy as np

from features.media import MediaError, ffmpeg_bin, media_url, pcm_args, run_tool_capture, tool_message
from features.probe import ProbeInfo

__all__ = ["AudioParams", "clip_frames_for", "clip_matrix", "clip_mfcc", "egemaps", "is_silent", "load_audio",
           "segment_features"]

_FEATURES = ("mfcc", "logmel")
_AMIN = 1e-10  # floor of the power spectrum before the log (librosa's default)
_DELTA_WIDTH = 9  # librosa's default regression window for Δ and ΔΔ
_LEVEL_BLOCK_FRAMES = 2048  # frames per block when finding a long signal's loudest frame (n_fft × this floats)


@dataclass(frozen=True, kw_only=True)
class AudioParams:
    """How audio becomes features (all fields change the output, so all belong in the stage fingerprint)."""

    sr: int = 16000  # sample rate in Hz the audio is resampled to (16 kHz beat 44.1 kHz in VAN's ablation)
    n_mfcc: int = 40  # MFCC coefficients per frame
    n_segments: int = 15  # S: 1-second segments for segment_features
    feature: str = "mfcc"  # "mfcc" or "logmel" (log mel filter bank energies, the alternative in the papers)
    n_mels: int = 64  # mel bands (MFCC is the DCT of these; logmel returns them directly)
    n_fft: int | None = None  # FFT / window length in samples; None: the power of two nearest to 25 ms
    hop_length: int | None = None  # samples between frames; None: 10 ms
    clip_frames: int = 1500  # F of the whole-clip matrix (padded with zeros or cropped)
    silence_db: float = -60.0  # a stretch whose loudest frame is below this RMS level (dBFS) is silent

    def __post_init__(self) -> None:
        for attr in ("sr", "n_mfcc", "n_segments", "n_mels", "clip_frames"):
            value = getattr(self, attr)
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"{attr}={value!r}: expected a positive int")
        if self.feature not in _FEATURES:
            raise ValueError(f"feature={self.feature!r}: expected one of {_FEATURES}")
        if self.n_mels < self.n_mfcc:
            raise ValueError(f"n_mels={self.n_mels} < n_mfcc={self.n_mfcc}: MFCC needs at least as many mel bands")
        for attr in ("n_fft", "hop_length"):
            value = getattr(self, attr)
            if value is not None and not (isinstance(value, int) and value > 0):
                raise ValueError(f"{attr}={value!r}: expected a positive int or None")
        if not (isinstance(self.silence_db, (int, float)) and math.isfinite(self.silence_db) and self.silence_db < 0):
            raise ValueError(f"silence_db={self.silence_db!r}: expected a negative level in dBFS, e.g. -60")
        if self.fft > self.sr:
            raise ValueError(f"n_fft={self.fft} is longer than one second at sr={self.sr}")

    @property
    def fft(self) -> int:
        """FFT and window length in samples."""
        return self.n_fft if self.n_fft is not None else 2 ** int(round(math.log2(0.025 * self.sr)))

    @property
    def hop(self) -> int:
        """Samples between frames."""
        return self.hop_length if self.hop_length is not None else max(1, self.sr // 100)

    @property
    def n_coeffs(self) -> int:
        """Rows of a feature matrix: n_mfcc for "mfcc", n_mels for "logmel"."""
        return self.n_mfcc if self.feature == "mfcc" else self.n_mels

    @property
    def segment_frames(self) -> int:
        """F of one 1-second segment (centred frames: ``1 + sr // hop``)."""
        return 1 + self.sr // self.hop


def clip_frames_for(seconds: float, params: AudioParams = AudioParams()) -> int:
    """F of a whole-clip matrix that spans ``seconds``: ``round(seconds · sr / hop)`` frames (1,500 for 15 s at the
    10 ms hop), so :func:`clip_matrix` analyses the first ``seconds`` of the clip.

    Raises:
        ValueError: ``seconds`` is not a positive finite number.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds={seconds!r}: expected a positive number of seconds, e.g. 15.0")
    return max(1, int(round(seconds * params.sr / params.hop)))


def _check_signal(y: np.ndarray | None, name: str = "y") -> np.ndarray | None:
    if y is None:
        return None
    arr = np.asarray(y)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name}: expected a 1-D float array of mono samples, got shape {arr.shape} {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains nan or inf samples")
    return arr.astype(np.float32, copy=False)


def load_audio(
    path: str | os.PathLike[str],
    info: ProbeInfo,
    *,
    sr: int = 16000,
    timeout: float = 120.0,
    max_seconds: float | None = None,
) -> np.ndarray | None:
    """Decode the audio track ``info.audio_stream`` to mono float32 PCM at ``sr`` Hz with ffmpeg (channels averaged),
    from the file's start time (a track that starts later is padded with silence: see
    :data:`features.media.AUDIO_ALIGN`).

    Args:
        path: the media file (passed as a ``file:`` URL, never through a shell).
        info: its probe facts; ``info.has_audio`` False returns None without running ffmpeg.
        sr: output sample rate in Hz.
        timeout: seconds before ffmpeg is killed.
        max_seconds: decode at most this many seconds from the start (None: all).

    Returns:
        Samples in [-1, 1] (an empty array when the track holds no decodable sample), or None without an audio track.

    Shapes:
        returns: (n_samples,) float32

    Raises:
        ValueError: bad ``sr``, ``max_seconds`` or ``info``.
        MediaError: ffmpeg failed without producing any sample, or ran past ``timeout``.
    """
    if not isinstance(info, ProbeInfo):
        raise ValueError(f"info must be a ProbeInfo from features.probe.probe(), got {type(info).__name__}")
    if not (isinstance(sr, int) and 1000 <= sr <= 384000):
        raise ValueError(f"sr={sr!r}: expected an int sample rate in Hz between 1000 and 384000")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds={max_seconds!r}: expected a positive number of seconds or None")
    if not info.has_audio:
        return None
    seconds = info.duration if max_seconds is None else min(info.duration, max_seconds)
    args = [ffmpeg_bin(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-i", media_url(path),
            *pcm_args(info.audio_map, sr)]
    if max_seconds is not None:
        args += ["-t", f"{max_seconds:.6f}"]
    args.append("pipe:1")
    # Twice the declared length plus a second: room for a lying header, a stop for a hostile one.
    cap = int((2 * seconds + 1) * sr * 4) + (1 << 16)
    result = run_tool_capture(args, timeout, cap, what=repr(os.fspath(path)))
    if result.returncode != 0 and not result.stdout:
        raise MediaError(
            f"{os.fspath(path)!r}: ffmpeg could not decode the audio track ({tool_message(result)}); the file is "
            "damaged — re-download or re-encode it"
        )
    usable = len(result.stdout) // 4 * 4
    return np.frombuffer(result.stdout[:usable], dtype="<f4").astype(np.float32)


def _frame_db(y: np.ndarray, params: AudioParams) -> np.ndarray:
    """Frame RMS level in dBFS: ``20·log10(sqrt(mean(x²)))`` over windows of ``fft`` every ``hop`` samples.

    Shapes:
        y: (..., n); returns (..., frames)
    """
    rms = librosa.feature.rms(y=y, frame_length=params.fft, hop_length=params.hop, center=True)[..., 0, :]
    return 20.0 * np.log10(np.maximum(rms, 1e-12))


def _max_frame_db(y: np.ndarray, params: AudioParams) -> float:
    """``_frame_db(y, params).max()``, computed over blocks of frames so memory does not grow with the signal.

    :func:`_frame_db` frames the whole centre-padded signal at once: an ``n_fft × frames`` temporary (about 120 MB,
    twice, for 10 minutes at 16 kHz), which made a worker's peak memory grow with video length. Blocks of
    :data:`_LEVEL_BLOCK_FRAMES` frames cut from the same zero-padded signal are the same frames, and each frame's
    RMS is the same computation, so the maximum is bit-identical.

    Shapes:
        y: (n_samples,) float32, n_samples >= 1
    """
    fft, hop, pad = params.fft, params.hop, params.fft // 2
    n_frames = 1 + (y.size + 2 * pad - fft) // hop
    if n_frames <= _LEVEL_BLOCK_FRAMES:
        return float(_frame_db(y, params).max())
    best = -np.inf
    for first in range(0, n_frames, _LEVEL_BLOCK_FRAMES):
        last = min(n_frames, first + _LEVEL_BLOCK_FRAMES)
        lo, hi = first * hop - pad, (last - 1) * hop + fft - pad  # the block's samples, in y's coordinates
        piece = y[max(lo, 0):min(hi, y.size)]
        if lo < 0 or hi > y.size:  # the centre padding (zeros, librosa's pad_mode="constant") at either end
            piece = np.pad(piece, (max(0, -lo), max(0, hi - y.size)))
        rms = librosa.feature.rms(y=piece, frame_length=fft, hop_length=hop, center=False)[..., 0, :]
        best = max(best, float((20.0 * np.log10(np.maximum(rms, 1e-12))).max()))
    return best


def is_silent(y: np.ndarray | None, params: AudioParams = AudioParams()) -> bool:
    """True when there is no signal: ``y`` is None or empty, or its loudest frame is below ``params.silence_db``.

    Shapes:
        y: (n_samples,) float
    """
    y = _check_signal(y)
    if y is None or y.size == 0:
        return True
    return bool(_max_frame_db(y, params) < params.silence_db)


def _features(x: np.ndarray, params: AudioParams) -> np.ndarray:
    """MFCC or log-mel of a batch of signals.

    MFCC: ``c = DCT-II(10·log10(max(M·|STFT|², amin)))[:n_mfcc]`` (librosa, orthonormal DCT); log-mel: the same
    log mel energies without the DCT, in dB relative to full scale (``ref=1``, no per-clip top_db clamp, so levels
    are comparable across clips).

    Shapes:
        x: (..., n_samples) float32; returns (..., n_coeffs, frames) float32
    """
    mel = librosa.feature.melspectrogram(y=x, sr=params.sr, n_fft=params.fft, hop_length=params.hop,
                                         n_mels=params.n_mels, power=2.0)
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=_AMIN, top_db=None)
    if params.feature == "logmel":
        return log_mel.astype(np.float32)
    return librosa.feature.mfcc(S=log_mel, n_mfcc=params.n_mfcc, dct_type=2, norm="ortho").astype(np.float32)


def _with_deltas(feat: np.ndarray) -> np.ndarray:
    """Stack a feature with its first and second time derivatives (librosa's Savitzky-Golay Δ, width 9).

    ``Δc_t = Σ_{n=1..N} n·(c_{t+n} − c_{t−n}) / (2·Σ n²)`` (edges interpolated), ``ΔΔ`` the same applied twice.

    Shapes:
        feat: (..., C, F); returns (..., 3, C, F)
    """
    frames = feat.shape[-1]
    width = min(_DELTA_WIDTH, frames if frames % 2 else frames - 1)
    if width < 3:
        zeros = np.zeros_like(feat)
        return np.stack([feat, zeros, zeros], axis=-3)
    d1 = librosa.feature.delta(feat, width=width, order=1, axis=-1)
    d2 = librosa.feature.delta(feat, width=width, order=2, axis=-1)
    return np.stack([feat, d1, d2], axis=-3).astype(np.float32)


def segment_features(y: np.ndarray | None, params: AudioParams = AudioParams()) -> tuple[np.ndarray, np.ndarray]:
    """Per 1-second segment: [feature, Δ, ΔΔ] as a 3-channel array (Sec2Sec's audio "image").

    Segment ``s`` covers samples ``[s·sr, (s+1)·sr)``; a partial last segment is zero-padded to one second. It is
    masked (zeros) when less than half a second of it exists, or when it is silent (loudest frame below
    ``params.silence_db``); ``y`` None (no track) masks every segment.

    Returns:
        ``(feats, mask)``.

    Shapes:
        y: (n_samples,) float at ``params.sr``
        feats: (S, 3, C, F) float32 with C = ``params.n_coeffs``, F = ``params.segment_frames``
        mask: (S,) bool
    """
    y = _check_signal(y)
    sr, n_seg = params.sr, params.n_segments
    feats = np.zeros((n_seg, 3, params.n_coeffs, params.segment_frames), dtype=np.float32)
    mask = np.zeros(n_seg, dtype=bool)
    if y is None or y.size == 0:
        return feats, mask
    segments, keep = [], []
    for s in range(n_seg):
        piece = y[s * sr:(s + 1) * sr]
        if piece.size < sr / 2 or is_silent(piece, params):
            continue
        segments.append(np.pad(piece, (0, sr - piece.size)))
        keep.append(s)
    if keep:
        stacked = _with_deltas(_features(np.stack(segments), params))
        assert stacked.shape[1:] == feats.shape[1:], (stacked.shape, feats.shape)
        feats[keep] = stacked
        mask[keep] = True
    return feats, mask


def clip_matrix(y: np.ndarray | None, params: AudioParams = AudioParams()) -> tuple[np.ndarray, np.ndarray]:
    """The whole clip's MFCC (or log-mel) matrix, cropped or zero-padded to ``params.clip_frames`` frames, and which
    of its frames hold audio.

    Only the first ``(clip_frames − 1)·hop`` samples are analysed (the rest would be cropped anyway). A clip shorter
    than ``clip_frames`` frames is padded with zero columns; ``frame_valid`` is False there, so a consumer can tell
    the padding from the clip (a 3-s clip in a 15-s matrix is 80 % padding).

    Returns:
        ``(matrix, frame_valid)``; zeros and all False for no track, an empty signal or a silent clip.

    Shapes:
        y: (n_samples,) float at ``params.sr``
        matrix: (C, F) float32 with C = ``params.n_coeffs``, F = ``params.clip_frames``
        frame_valid: (F,) bool
    """
    y = _check_signal(y)
    out = np.zeros((params.n_coeffs, params.clip_frames), dtype=np.float32)
    frame_valid = np.zeros(params.clip_frames, dtype=bool)
    if y is None or is_silent(y, params):
        return out, frame_valid
    feat = _features(y[: (params.clip_frames - 1) * params.hop], params)
    frames = min(feat.shape[-1], params.clip_frames)
    out[:, :frames] = feat[:, :frames]
    frame_valid[:frames] = True
    return out, frame_valid


def clip_mfcc(y: np.ndarray | None, params: AudioParams = AudioParams()) -> tuple[np.ndarray, bool]:
    """:func:`clip_matrix` with one flag for the clip instead of one per frame.

    Returns:
        ``(matrix, valid)``; valid False (and zeros) for no track, an empty signal or a silent clip.

    Shapes:
        y: (n_samples,) float at ``params.sr``
        matrix: (C, clip_frames) float32 with C = ``params.n_coeffs``
    """
    matrix, frame_valid = clip_matrix(y, params)
    return matrix, bool(frame_valid.any())


def egemaps(y: np.ndarray, sr: int) -> np.ndarray:
    """The 88 eGeMAPS v02 functionals of a clip (openSMILE), as used by the cross-modal personality baseline.

    Requires the optional ``opensmile`` package (``pip install opensmile`` or ``pip install 'vidpipe[egemaps]'``).

    Shapes:
        y: (n_samples,) float mono; returns (88,) float32

    Raises:
        ImportError: opensmile is not installed.
        ValueError: ``y`` is None, empty or not mono float; ``sr`` is not positive.
    """
    y = _check_signal(y)
    if y is None or y.size == 0:
        raise ValueError("y: expected a non-empty mono signal; a clip without audio has no eGeMAPS features")
    if not (isinstance(sr, int) and sr > 0):
        raise ValueError(f"sr={sr!r}: expected a positive int sample rate")
    try:
        import opensmile
    except ImportError as exc:
        raise ImportError(
            "eGeMAPS features need the optional 'opensmile' package: pip install opensmile "
            "(or pip install 'vidpipe[egemaps]')"
        ) from exc
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    values = np.asarray(smile.process_signal(y, sr), dtype=np.float32).reshape(-1)
    if values.shape != (88,):
        raise MediaError(f"openSMILE returned {values.size} eGeMAPS values instead of 88; check the opensmile version")
    return values
