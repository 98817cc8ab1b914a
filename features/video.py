"""Frame sampling: a few frames per video, in display orientation, at model resolution, from one decode pass.

Profiles
--------
A :class:`FrameProfile` says which instants to sample and at what size:

* ``per_second`` (Sec2Sec): segments ``s = 0 .. S-1`` of one second, ``m`` frames per segment at
  ``τ_{s,j} = s + (j + 0.5) / m`` seconds — a sample is valid when ``τ < duration``.
* ``uniform`` (Multimodal Co-attention Transformer, VAN): ``N`` frames evenly spread,
  ``τ_i = (i + 0.5) · duration / N`` (the centres of ``N`` equal bins). ``N = n_frames``; with ``n_frames=None`` it
  is ``m`` frames from each of ``S`` equal segments, ``N = S · m`` — the same instants, grouped by segment (VAN
  samples 2 frames from each of 15 segments).

Every sample owns a bin (per second: ``[s + j/m, s + (j+1)/m)``; uniform: ``[i·D/N, (i+1)·D/N)``). It takes the
decoded frame nearest to ``τ`` inside its bin (half a frame interval of slack on both sides; an instant halfway
between two frames, such as ``s + 0.5`` at 25 fps, takes the earlier one); a frame serves at most one sample of a
profile. A sample with no frame in its bin — past the end, in a corrupt stretch, or one of more samples than a very
short video has frames — gets ``valid=False``, zero pixels and ``time=nan``. So a clip shorter than half a second
has no per-second sample (segment 0's instant lies past its end) while a uniform profile keeps all its frames.

Each frame is resized so that its short side is ``short_side`` and centre-cropped to ``size × size`` (Sec2Sec: 80 →
64). Frames come out RGB, uint8, in display orientation (rotation metadata applied, pixel aspect ratio corrected).

Decoding
--------
One ffmpeg process decodes the video for all profiles, and only the frames some sample needs leave it: a stateful
``select`` expression keeps the frames within ``H`` of a target instant (``H`` = 0.6 frame intervals, or half the
longest frame interval of a variable-frame-rate stream, so the nearest frame is always among them). Inside ffmpeg
those frames are centre-cropped to the square the profiles need, scaled (area filter) and converted to RGB in one
accurate swscale pass, and rotated (after scaling, so rotation costs nothing); in Python each profile takes its
centre crop and OpenCV's area filter resizes it. The pipe carries a few dozen small frames, never the video: memory
is ``O(#samples · R²)`` whatever the video's length. Decoding stops after the last sample, so a per-second profile
on a 10-minute video decodes 15 seconds.

Strategy rule (``strategy="auto"``):

1. Decode from the start unless the gaps between consecutive samples could pay for seeking:
   ``Σ_gaps max(0, gap · fps − c) > 2c`` with ``c = seek_overhead / decode_time_per_frame``, the cost of a seek in
   frames (``0.08 s`` over ``1 ns`` per pixel: 38 frames at 1080p, 87 at 720p, clamped to [8, 1000]). Short clips
   stop here: their samples are denser than a seek is cheap.
2. Otherwise list the video packets (a demux, no decoding: ~0.1 s for a 2-minute 1080p file) to find the
   keyframes and group the samples greedily into runs: a sample joins the current run when decoding on from the
   run's last sample costs fewer frames than ``c`` plus the frames from the keyframe before it.
3. Use the runs when they cost less than 0.8 × the single run from the start. All runs are decoded by the same
   ffmpeg through the concat demuxer (the file listed once per run with ``inpoint`` = its keyframe), so a seek
   costs a re-open of the file, not a new process. Containers without a reliable index (anything but MP4/MOV,
   Matroska/WebM and AVI) are always decoded sequentially.

Measured on the development machine (2 shared cores, heavily loaded, so CPU seconds rather than wall time; default
profiles PER_SECOND + UNIFORM + UNIFORM_224): a 10-minute 1080p H.264 file with 2-second GOPs decodes 30 % of its
frames, 18 s CPU against 55 s for ``ffmpeg -i FILE -f null -`` and 87 s for OpenCV reading every frame; a 10-second
720p clip (140 of its 300 frames sampled) costs 1.1-1.4 × the decode floor — nothing can be skipped and the sampled
frames are scaled; a 2-minute 1080p file with 250-frame GOPs is decoded sequentially (a sample in every GOP).
``fast_decode=True`` (the pipeline's default, ``ExtractConfig.fast_decode``) lets the video decoder skip its in-loop
deblocking filter (``-skip_loop_filter all -flags2 fast``, video decoders only): ~10 % less decode CPU on H.264, for
frames that differ from an exact decode by ~0.13/255 on average once scaled to model size.
Profiles with ``keyframes=True`` take each sample from the nearest keyframe inside its bin (keyframe times come from
the packet list) and, when every profile asks for keyframes, the decoder skips all other frames
(``-skip_frame nokey``) — the fast choice for long videos with long GOPs.

Interlaced video (:attr:`ProbeInfo.interlaced`: broadcast MPEG-2, 1080i H.264, DV) is deinterlaced first in the
filter chain, before the frames are selected, so the deinterlacer sees every decoded frame and its true neighbours:
``bwdif`` in ``send_frame`` mode with ``deint=interlaced`` — one progressive frame per input frame, at its
timestamp, and frames not flagged interlaced pass through untouched — then ``settb`` restores the time base that
``bwdif`` halves, so frame times and counts are those of the plain decode. Every decode path (one pass, seek runs,
keyframe mode) builds its filters with :func:`_filter_chain`. Without it, the two fields of a moving picture show as
combing and the downscale averages two instants 1/50 s apart. ``bwdif`` adds about 2 ms of CPU per 1920x1080 frame
(one thread, load ~2.2: 0.2 s per 100 frames on top of the 0.5-0.6 s their x264-ultrafast decode costs).

Frames and audio in one pass: :func:`extract_frames_and_audio` adds the audio track (mono float32 PCM, exactly what
:func:`features.audio.load_audio` returns) as a second output of the same ffmpeg when that ffmpeg decodes the video
through (nearly) its end anyway — one process, one demux of the file. Otherwise (seek runs, an early stop for a
per-second profile on a long video: ffmpeg 5 would keep decoding video for the audio output; decoder errors in the
combined run, which is then redone frames-only so its warnings stay about the video) the PCM is left to
``load_audio``. Keyframe mode follows the same rule: its run decodes only keyframes (``-skip_frame:v nokey``), so it
shares the pass with the audio when its last keyframe sample lies near the end.

Corrupt or truncated data: the decoder conceals what it can, samples whose bin has no decodable frame stay invalid,
and the number of decoder errors is reported in :attr:`FrameResult.warnings`. Failures (timeout, unreadable file,
no frame decoded at all) raise :class:`~features.media.MediaError`.
"""

from __future__ import annotations

import base64
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import cv2
import numpy as np

from features.media import (
    DEMUXERS, SIDE_OUTPUT, MediaError, ffmpeg_bin, ffprobe_bin, media_url, pcm_args, run_tool_capture, tool_message,
)
from features.probe import ProbeInfo

__all__ = [
    "FrameProfile",
    "FrameResult",
    "PER_SECOND",
    "UNIFORM",
    "UNIFORM_224",
    "extract_frames",
    "extract_frames_and_audio",
    "sample_times",
]

_MODES = ("per_second", "uniform")
_STRATEGIES = ("auto", "sequential", "seek")
# Cost model of the strategy rule (module docstring): seconds to start ffmpeg, open the file and seek, and decode
# seconds per pixel of one frame (H.264 1080p ≈ 2 ms per frame on one core of the development machine).
_SEEK_OVERHEAD_S = 0.08
_DECODE_S_PER_PIXEL = 1.0e-9
_SEEK_MIN_FRAMES, _SEEK_MAX_FRAMES = 8, 1000
_RUNS_MUST_SAVE = 0.8
# Containers whose index makes `-ss` land exactly on the keyframe asked for.
_SEEKABLE = ("mov", "mp4", "matroska", "webm", "avi")
# ffmpeg seeks to the last keyframe at or before the seek point; aim a hair after the keyframe so rounding in the
# printed keyframe time never sends it to the previous one.
_SEEK_EPS_S = 1e-3
_SENTINEL = 1.0e9
# Deinterlacer of interlaced streams (module docstring) and the smallest picture it accepts (3 columns, 4 lines).
_DEINTERLACE = ("bwdif=mode=send_frame:parity=auto:deint=interlaced", "settb=expr=intb*2")
_DEINTERLACE_MIN_W, _DEINTERLACE_MIN_H = 3, 4
_MAX_PIXELS = 8192 * 8192  # decoder limit on a picture's pixels (probe() checks the declared size the same way)
# Runs decoded by one ffmpeg (the concat script travels as a data: URL on the command line: keep it well under the
# 128 KiB limit of one argument), and the gap between runs on ffmpeg's output timeline.
_RUNS_PER_PROCESS = 200
_RUN_GAP_S = 100.0
_SHOWINFO_RE = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:\S+.*?\biskey:(\d)")
_ERROR_RE = re.compile(r"\[(?:error|fatal|panic)\] ")
_TIMEBASE_RE = re.compile(r"config in time_base:\s*(\d+)/(\d+)")


@dataclass(frozen=True, kw_only=True)
class FrameProfile:
    """Which frames to sample from a video and at what size (see the module docstring for the exact instants)."""

    name: str  # key of the result (and of the store array), e.g. "per_second"
    mode: str  # "per_second" (1-second segments) or "uniform" (evenly spread over the whole video)
    n_segments: int = 15  # S: per_second: number of 1-second segments; uniform with n_frames=None: equal segments
    frames_per_segment: int = 1  # m: frames per segment
    n_frames: int | None = 100  # N for uniform; None: n_segments * frames_per_segment (ignored by per_second)
    size: int = 64  # output frames are size x size pixels
    short_side: int = 80  # the short side is resized to this before the centre crop (size <= short_side)
    keyframes: bool = False  # take each sample from the nearest keyframe in its bin (fast, approximate instants)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        if self.mode not in _MODES:
            raise ValueError(f"mode={self.mode!r}: expected one of {_MODES}")
        for attr in ("n_segments", "frames_per_segment", "size", "short_side"):
            value = getattr(self, attr)
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"{attr}={value!r}: expected a positive int")
        if self.n_frames is not None and not (
            isinstance(self.n_frames, int) and not isinstance(self.n_frames, bool) and self.n_frames > 0
        ):
            raise ValueError(f"n_frames={self.n_frames!r}: expected a positive int or None")
        if self.size > self.short_side:
            raise ValueError(
                f"size={self.size} > short_side={self.short_side}: the centre crop cannot be larger than the "
                "resized short side"
            )
        if not isinstance(self.keyframes, bool):
            raise ValueError(f"keyframes={self.keyframes!r}: expected a bool")

    @property
    def n_samples(self) -> int:
        """Number of frames the profile returns (N)."""
        if self.mode == "per_second":
            return self.n_segments * self.frames_per_segment
        return self.n_frames if self.n_frames is not None else self.n_segments * self.frames_per_segment


PER_SECOND = FrameProfile(name="per_second", mode="per_second", n_segments=15, frames_per_segment=1, size=64,
                          short_side=80)
UNIFORM = FrameProfile(name="uniform", mode="uniform", n_frames=100, size=64, short_side=80)
UNIFORM_224 = FrameProfile(name="uniform_224", mode="uniform", n_segments=15, frames_per_segment=2, n_frames=None,
                           size=224, short_side=224)


@dataclass(frozen=True)
class FrameResult:
    """Sampled frames of one profile.

    Shapes:
        frames: (N, size, size, 3) uint8 RGB, display orientation; zeros where not valid
        valid: (N,) bool
        times: (N,) float64 seconds from the start of the video; the true timestamp of the decoded frame, nan where
            not valid
    """

    frames: np.ndarray  # (N, size, size, 3) uint8
    valid: np.ndarray  # (N,) bool
    times: np.ndarray  # (N,) float64
    warnings: tuple[str, ...] = field(default=())  # decoder problems worth recording (corrupt data, missing frames)


def _bins(profile: FrameProfile, duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample instants and their bins ``[lo, hi)``.

    Shapes:
        returns: three (N,) float64 arrays (times, lo, hi)
    """
    if profile.mode == "per_second":
        m = profile.frames_per_segment
        s = np.repeat(np.arange(profile.n_segments, dtype=np.float64), m)
        j = np.tile(np.arange(m, dtype=np.float64), profile.n_segments)
        return s + (j + 0.5) / m, s + j / m, s + (j + 1) / m
    n = profile.n_samples
    i = np.arange(n, dtype=np.float64)
    width = duration / n
    return (i + 0.5) * width, i * width, (i + 1) * width


def sample_times(profile: FrameProfile, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """The instants a profile samples from a video of ``duration`` seconds.

    per_second: ``τ_{s,j} = s + (j + 0.5)/m`` for segments ``s < S``; uniform: ``τ_i = (i + 0.5)·duration/N``.

    Returns:
        ``(times, valid)``: times in seconds; valid where the instant lies inside the video (``τ < duration``).

    Shapes:
        times: (N,) float64, N = ``profile.n_samples`` (per_second: S·m, segment-major)
        valid: (N,) bool

    Raises:
        ValueError: ``duration`` is not a finite number >= 0.
    """
    if not isinstance(profile, FrameProfile):
        raise ValueError(f"profile must be a FrameProfile, got {type(profile).__name__}")
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration >= 0):
        raise ValueError(f"duration={duration!r}: expected a finite number of seconds >= 0")
    times, _, _ = _bins(profile, float(duration))
    return times, times < duration


@dataclass
class _Run:
    """A stretch of the video decoded by one ffmpeg: from ``start`` (a keyframe, or 0) through ``end``."""

    start: float  # seconds; 0 means "from the beginning, no seek"
    end: float  # the last target instant of the run
    targets: list[float]  # sorted target instants


@dataclass
class _Decoded:
    """Frames that left ffmpeg."""

    times: list[float]  # seconds from the start of the video
    keys: list[bool]  # decoded from a keyframe
    images: list[np.ndarray]  # (R, R, 3) uint8 each
    errors: int  # decoder error lines
    messages: list[str]  # a few of them
    pcm: bytes | None = None  # f32le mono audio from the same ffmpeg (extract_frames_and_audio), None if not decoded


def _geometry(profiles: Sequence[FrameProfile]) -> tuple[int, int]:
    """Master short side and master crop that serve every profile by cropping and downscaling only.

    Profile p keeps the centre square of side ``f_p · short`` (``f_p = size_p / short_side_p``) of a frame whose
    short side is ``short``. ffmpeg scales the short side to ``M = max_p short_side_p`` and crops the centre
    ``R = ceil(M · max_p f_p)`` square; profile p then takes the centre ``M · f_p >= size_p`` pixels and resizes them
    to ``size_p``. With a single profile that is exactly "short side to short_side, centre crop size".
    """
    short = max(p.short_side for p in profiles)
    crop = max(math.ceil(short * p.size / p.short_side - 1e-9) for p in profiles)
    return short, crop


def _filter_chain(info: ProbeInfo, short: int, crop: int, select: str) -> str:
    """ffmpeg -vf: deinterlace an interlaced stream, select the wanted frames, crop the centre square that a
    ``crop`` x ``crop`` crop of a ``short``-pixel short side keeps (pixel aspect applied), scale it to ``crop`` x
    ``crop`` RGB, rotate to display orientation, report timestamps."""
    # The centre square a `crop`-pixel crop of a `short`-pixel short side keeps, in display pixels: side
    # f·min(iw·sar, ih) with f = crop/short; stored width = side / sar. Cropping before scaling spares the scaler the
    # discarded sides; even sizes keep 4:2:0 chroma aligned (at most one source pixel off the exact square). No side
    # exceeds the picture (the rounding takes 7 up to 8, the minimum of 2 exceeds a 1-pixel side), so every picture
    # of at least 1x1 gets a crop the filter accepts, which the scaler then enlarges.
    f = f"{crop / short:.9f}"

    def side(exact: str, limit: str) -> str:
        return f"min({limit}\\,max(2\\,2*trunc({exact}/2+0.5)))"

    square = f"min(iw*sar\\,ih)*{f}"
    steps = [f"select='{select}'"]
    if info.interlaced and info.width >= _DEINTERLACE_MIN_W and info.height >= _DEINTERLACE_MIN_H:
        steps[:0] = _DEINTERLACE  # before select: the deinterlacer takes each frame's neighbours
    if min(info.width, info.height) < 2:
        # crop rounds a subsampled (4:2:0) picture's sides down to whole chroma samples: 1 pixel would become 0
        steps.append("format=rgb24")
    steps += [
        f"crop=w='{side(square + '/sar', 'iw')}':h='{side(square, 'ih')}'",
        # One swscale pass scales and converts to RGB; accurate rounding and full chroma interpolation keep flat
        # colours within a level of the source (the fast default conversion is off by ~3 levels).
        f"scale={crop}:{crop}:flags=area+accurate_rnd+full_chroma_int",
        "format=rgb24",
        "setsar=1",
    ]
    # ProbeInfo.rotation is clockwise; autorotate is off so the rotation runs on the small cropped frames only.
    steps += {90: ["transpose=clock"], 180: ["hflip", "vflip"], 270: ["transpose=cclock"]}.get(info.rotation, [])
    steps.append("showinfo")
    return ",".join(steps)


def _lookup_expr(values: Sequence[float], lo: int, hi: int) -> str:
    """ffmpeg expression for ``values[ld(0)]`` restricted to indices [lo, hi): a balanced tree of ``if``s.

    ffmpeg's expression parser rejects long flat sums (about 100 terms), and a tree costs O(log N) per frame.
    """
    if hi - lo == 1:
        return f"{values[lo]:.6f}"
    mid = (lo + hi) // 2
    return f"if(lt(ld(0)\\,{mid})\\,{_lookup_expr(values, lo, mid)}\\,{_lookup_expr(values, mid, hi)})"


def _select_expr(targets: Sequence[float], half_window: float) -> str:
    """Stateful ffmpeg ``select`` expression keeping every frame within ``H`` of some target instant.

    With sorted targets ``τ_0 < τ_1 < ...`` and a pointer ``i`` (variable 0), frame time ``t`` is kept iff
    ``|t − τ_i| <= H`` after ``i ← min{k : τ_k + H >= t}``. Variable 1 caches ``τ_i − H − c0`` so that frames before
    the next window cost one comparison. ``τ_i`` is looked up in the sorted list (``τ_N = ∞`` ends the selection).
    """
    values = [*targets, _SENTINEL]
    t_of_i = _lookup_expr(values, 0, len(values))
    c0 = targets[0] - half_window
    h = f"{half_window:.6f}"
    gate = f"gte(t\\,ld(1)+{c0:.6f})"
    return (
        f"if({gate}\\,"
        f"while(lt({t_of_i}+{h}\\,t)\\,st(0\\,ld(0)+1));st(1\\,{t_of_i}-{h}-{c0:.6f});{gate}\\,0)"
    )


def _packet_scan(path: str | os.PathLike[str], info: ProbeInfo, timeout: float) -> tuple[np.ndarray, np.ndarray]:
    """Presentation times (relative to the container start) of the packets of the video stream decoded
    (``info.video_stream``) and their keyframe flags.

    A demux without decoding. Shapes: two (P,) arrays, float64 seconds sorted ascending and bool.
    """
    args = [
        ffprobe_bin(), "-v", "error", "-hide_banner", "-select_streams", str(info.video_stream),
        "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0", media_url(path),
    ]
    cap = 64 * max(info.n_frames, 1) + (1 << 20)
    result = run_tool_capture(args, timeout, cap, what=repr(os.fspath(path)))
    times, keys = [], []
    for line in result.stdout.decode("ascii", "replace").splitlines():
        pts, _, flags = line.partition(",")
        try:
            value = float(pts)
        except ValueError:
            continue
        if math.isfinite(value):
            times.append(value - info.start_time)
            keys.append("K" in flags)
    order = np.argsort(np.asarray(times, dtype=np.float64), kind="stable")
    return np.asarray(times, dtype=np.float64)[order], np.asarray(keys, dtype=bool)[order]


def _seek_cost_frames(info: ProbeInfo) -> float:
    per_frame = _DECODE_S_PER_PIXEL * info.width * info.height
    return float(np.clip(_SEEK_OVERHEAD_S / max(per_frame, 1e-12), _SEEK_MIN_FRAMES, _SEEK_MAX_FRAMES))


def _plan_runs(targets: Sequence[float], keyframes: np.ndarray, fps: float, seek_cost: float,
               window: float = 0.0) -> list[_Run]:
    """Greedy grouping of sorted targets into decode runs (strategy rule 2 in the module docstring).

    A run serving target ``τ`` starts at the last keyframe at or before ``τ − window`` (the earliest frame the
    target may take).
    """
    runs: list[_Run] = []
    for tau in targets:
        idx = int(np.searchsorted(keyframes, tau - window + 1e-6, side="right")) - 1
        key = float(keyframes[idx]) if idx >= 0 else 0.0
        if runs:
            run = runs[-1]
            go_on = (tau - run.end) * fps
            restart = seek_cost + (tau - key) * fps
            if key <= run.end or go_on <= restart:
                run.end = tau
                run.targets.append(tau)
                continue
        runs.append(_Run(start=key if idx >= 0 else 0.0, end=tau, targets=[tau]))
    return runs


def _runs_cost(runs: Sequence[_Run], fps: float, seek_cost: float) -> float:
    return sum(seek_cost + (r.end - r.start) * fps for r in runs)


def _rescale_us(us: int, time_base: Fraction) -> int:
    """``av_rescale_q(us, 1/1e6, time_base)``: microseconds to ticks, rounding half away from zero (as ffmpeg)."""
    num = abs(us) * time_base.denominator
    den = 1_000_000 * time_base.numerator
    ticks = (2 * num + den) // (2 * den)
    return ticks if us >= 0 else -ticks


def _seconds(us: int) -> str:
    """Exact decimal seconds of an integer microsecond count, as ffmpeg's time parser reads them."""
    sign = "-" if us < 0 else ""
    return f"{sign}{abs(us) // 1_000_000}.{abs(us) % 1_000_000:06d}"


@dataclass
class _Raw:
    """What one ffmpeg run returned, before timestamps are mapped back to the video's timeline."""

    pts: list[int]  # presentation timestamps in time_base ticks, as the filter graph saw them
    keys: list[bool]  # decoded from a keyframe
    time_base: Fraction | None  # of the filter graph's input
    images: list[np.ndarray]  # (R, R, 3) uint8 each
    errors: int  # decoder / demuxer error lines (and a non-zero exit)
    messages: list[str]  # the last few of them
    pcm: bytes | None = None  # the audio output (f32le mono) when one was asked for


def _run_ffmpeg(path: str | os.PathLike[str], info: ProbeInfo, input_args: list[str], targets: Sequence[float], *,
                short: int, master: int, window: float, per_target: int, keyframes_only: bool, threads: int,
                fast_decode: bool, timeout: float, audio_sr: int | None = None) -> _Raw:
    """One ffmpeg: decode the input, keep the frames within ``window`` s of ``targets`` (in the input's own
    timeline), crop/scale/rotate them and read their timestamps from ``showinfo``. With ``audio_sr``, the audio
    track ``info.audio_stream`` also goes, as ``load_audio`` decodes it (mono f32le at ``audio_sr`` Hz), to a
    second pipe."""
    args = [ffmpeg_bin(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info", "-noautorotate",
            "-threads", str(threads),
            # a stream that switches to a huge resolution mid-way is refused by the decoder, not allocated
            "-max_pixels", str(max(info.width * info.height, _MAX_PIXELS))]
    if keyframes_only:
        args += ["-skip_frame:v", "nokey"]  # video decoders only: the audio of a one-pass run is decoded in full
    if fast_decode:  # video decoders only (":v"): the audio samples stay bit-identical to load_audio's
        args += ["-skip_loop_filter:v", "all", "-flags2:v", "fast"]
    args += [*input_args, "-map", info.video_map, "-an", "-sn", "-dn",
             "-vf", _filter_chain(info, short, master, _select_expr(targets, window)),
             "-vsync", "passthrough", "-f", "rawvideo", "pipe:1"]
    side_cap = None
    if audio_sr is not None:  # the output options of features.audio.load_audio, so the samples are identical
        args += [*pcm_args(info.audio_map, audio_sr), SIDE_OUTPUT]
        side_cap = int((2 * info.duration + 1) * audio_sr * 4) + (1 << 16)  # load_audio's cap
    frame_bytes = master * master * 3
    result = run_tool_capture(
        args, timeout, (len(targets) * per_target + 8) * frame_bytes,
        keep_stderr=r"Parsed_showinfo", count_stderr=_ERROR_RE.pattern, what=repr(os.fspath(path)),
        side_output_bytes=side_cap,
    )
    time_base = None
    stamps: list[tuple[int, bool]] = []
    for line in result.stderr_kept:
        if time_base is None and (tb := _TIMEBASE_RE.search(line)):
            time_base = Fraction(int(tb.group(1)), max(int(tb.group(2)), 1))
        elif shown := _SHOWINFO_RE.search(line):
            stamps.append((int(shown.group(2)), shown.group(3) == "1"))
    n = min(len(stamps), len(result.stdout) // frame_bytes)
    if n and time_base is None:
        raise MediaError(f"{os.fspath(path)!r}: could not read frame timestamps from ffmpeg; check the FFmpeg build")
    buffer = np.frombuffer(result.stdout, dtype=np.uint8, count=n * frame_bytes).reshape(n, master, master, 3)
    messages = [ln for ln in result.stderr_tail if _ERROR_RE.search(ln)]
    if result.returncode != 0 and n == 0:
        messages.append(f"ffmpeg exit status {result.returncode}: {tool_message(result)}")
    return _Raw(pts=[p for p, _ in stamps[:n]], keys=[k for _, k in stamps[:n]], time_base=time_base,
                images=[buffer[i] for i in range(n)],
                errors=result.stderr_counted + (1 if result.returncode != 0 else 0), messages=messages[-3:],
                pcm=result.side if audio_sr is not None else None)


def _decode_sequential(path: str | os.PathLike[str], info: ProbeInfo, targets: Sequence[float], *, window: float,
                       audio_sr: int | None = None, **opts) -> _Decoded:
    """Decode from the start through the last target (``-t``), one ffmpeg — with ``audio_sr``, and when that run
    reaches (nearly) the end of the video anyway, the audio track too (see the module docstring)."""
    end = targets[-1] + window + 2.0 / info.fps + 0.05
    stop = ["-t", f"{end:.6f}", "-i", media_url(path)]
    raw = None
    # At most 2 % (or 1 s) of the video more than the frames alone need: ffmpeg 5 decodes video until the audio
    # output ends, so a run that stops early (a per-second profile on a long video) keeps its -t and its speed.
    if (audio_sr is not None and info.has_audio
            and end >= info.duration - max(1.0, 0.02 * info.duration)):
        raw = _run_ffmpeg(path, info, ["-i", media_url(path)], targets, window=window, audio_sr=audio_sr, **opts)
        if raw.errors:  # damaged data (video or audio): redo frames-only, as without audio, and leave audio alone
            raw = None
    if raw is None:
        raw = _run_ffmpeg(path, info, stop, targets, window=window, **opts)
    # Without -copyts ffmpeg shifts timestamps by -start_time (microseconds rescaled to the stream's time base).
    times: list[float] = []
    if raw.time_base is not None:
        shift = _rescale_us(round(info.start_time * 1e6), raw.time_base)
        times = [float((p + shift) * raw.time_base) - info.start_time for p in raw.pts]
    return _Decoded(times, raw.keys, raw.images, raw.errors, raw.messages, raw.pcm)


def _decode_runs(path: str | os.PathLike[str], info: ProbeInfo, runs: Sequence[_Run], *, window: float,
                 **opts) -> _Decoded:
    """Decode several runs in ONE ffmpeg through the concat demuxer: the file is listed once per run with
    ``inpoint`` = the run's keyframe (+1 ms), ``outpoint`` = its last target + margin, and a ``duration`` that adds
    a 100-s gap, so the output timeline holds the runs one after another and a frame's run is unambiguous.

    concat shifts run j's timestamps by ``start_j − inpoint_j`` (``start_j`` = sum of the previous durations,
    rescaled to the time base); ``-copyts`` keeps them as they are, and the shift is undone per frame.
    """
    url = media_url(path)
    start_us = round(info.start_time * 1e6)
    margin = window + 2.0 / info.fps + 0.05
    entries: list[tuple[int, int]] = []  # (inpoint, start) in microseconds
    lines = ["ffconcat version 1.0"]
    targets_out: list[float] = []
    begin = 0
    for run in runs:
        inpoint = start_us + (round((run.start + _SEEK_EPS_S) * 1e6) if run.start > 0 else 0)
        outpoint = start_us + round((run.end + margin) * 1e6)
        duration = outpoint - inpoint + round(_RUN_GAP_S * 1e6)
        quoted = "'" + url.replace("'", "'\\''") + "'"
        # the file itself may only be opened by a container demuxer, as run_tool does for direct inputs
        lines += [f"file {quoted}", f"option format_whitelist {DEMUXERS}", f"inpoint {_seconds(inpoint)}",
                  f"outpoint {_seconds(outpoint)}", f"duration {_seconds(duration)}"]
        targets_out += [(begin - inpoint) / 1e6 + (tau + info.start_time) for tau in run.targets]
        entries.append((inpoint, begin))
        begin += duration
    script = base64.b64encode(("\n".join(lines) + "\n").encode("utf-8")).decode("ascii")
    input_args = ["-copyts", "-protocol_whitelist", "data,file", "-f", "concat", "-safe", "0",
                  "-i", f"data:text/plain;base64,{script}"]
    raw = _run_ffmpeg(path, info, input_args, targets_out, window=window, **opts)
    times: list[float] = []
    if raw.time_base is not None:
        firsts = np.array([b for _, b in entries], dtype=np.float64) / 1e6 - _RUN_GAP_S / 2
        for p in raw.pts:
            j = max(int(np.searchsorted(firsts, float(p * raw.time_base), side="right")) - 1, 0)
            inpoint, begin = entries[j]
            original = p - _rescale_us(begin - inpoint, raw.time_base)
            times.append(float(original * raw.time_base) - info.start_time)
    return _Decoded(times, raw.keys, raw.images, raw.errors, raw.messages)


def _assign(
    profile: FrameProfile,
    info: ProbeInfo,
    decoded: _Decoded,
    short: int,
    wanted: np.ndarray,
) -> FrameResult:
    """Give every valid sample of ``profile`` the nearest decoded frame in its bin (ties: the earlier frame), each
    frame at most once.

    ``wanted``: per sample, the instant to match (``τ``, or the chosen keyframe's time in keyframe mode).
    """
    times, lo, hi = _bins(profile, info.duration)
    n = times.size
    frames = np.zeros((n, profile.size, profile.size, 3), dtype=np.uint8)
    valid = np.zeros(n, dtype=bool)
    out_times = np.full(n, np.nan, dtype=np.float64)
    if not decoded.times:
        return FrameResult(frames, valid, out_times)
    have = np.asarray(decoded.times, dtype=np.float64)
    keys = np.asarray(decoded.keys, dtype=bool)
    slack = 0.5 / info.fps
    master = decoded.images[0].shape[0]
    side_px = min(master, max(profile.size, int(round(short * profile.size / profile.short_side))))
    offset = (master - side_px) // 2
    used: set[int] = set()
    for i in range(n):
        if not (times[i] < info.duration and math.isfinite(wanted[i])):
            continue
        ok = (have >= lo[i] - slack) & (have < hi[i] + slack)
        if profile.keyframes:
            ok &= keys
        candidates = np.flatnonzero(ok)
        candidates = candidates[[c not in used for c in candidates]] if candidates.size else candidates
        if candidates.size == 0:
            continue
        # nearest frame; a tie (within 0.1 ms: instants halfway between two frames) goes to the earlier frame
        distance = np.round(np.abs(have[candidates] - wanted[i]), 4)
        best = int(candidates[np.lexsort((have[candidates], distance))[0]])
        used.add(best)
        crop = decoded.images[best][offset:offset + side_px, offset:offset + side_px]
        frames[i] = crop if side_px == profile.size else cv2.resize(
            crop, (profile.size, profile.size), interpolation=cv2.INTER_AREA)
        valid[i] = True
        out_times[i] = have[best]
    return FrameResult(frames, valid, out_times)


def _nearest_keyframes(bins: tuple[np.ndarray, np.ndarray, np.ndarray], key_times: np.ndarray, duration: float,
                       slack: float) -> np.ndarray:
    """Per sample, the keyframe time nearest to its instant inside its bin (nan if the bin has none).

    Shapes:
        key_times: (K,) sorted seconds; returns (N,) float64
    """
    times, lo, hi = bins
    picked = np.full(times.size, np.nan)
    for i in range(times.size):
        inside = key_times[(key_times >= lo[i] - slack) & (key_times < hi[i] + slack)]
        if times[i] < duration and inside.size:
            picked[i] = inside[np.argmin(np.abs(inside - times[i]))]
    return picked


def _merge(parts: Sequence[_Decoded]) -> _Decoded:
    """Concatenate runs, dropping frames decoded twice (runs never overlap by plan, but be safe)."""
    seen: dict[float, int] = {}
    out = _Decoded([], [], [], 0, [])
    for part in parts:
        out.errors += part.errors
        out.messages += part.messages
        for t, k, img in zip(part.times, part.keys, part.images):
            stamp = round(t, 6)
            if stamp in seen:
                continue
            seen[stamp] = len(out.times)
            out.times.append(t)
            out.keys.append(k)
            out.images.append(img)
    return out


def extract_frames_and_audio(
    path: str | os.PathLike[str],
    info: ProbeInfo,
    profiles: Sequence[FrameProfile],
    *,
    sr: int = 16000,
    timeout: float = 120.0,
    strategy: str = "auto",
    threads: int = 0,
    fast_decode: bool = False,
) -> tuple[dict[str, FrameResult], np.ndarray | None]:
    """:func:`extract_frames`, plus the audio track from the same ffmpeg when the plan decodes the whole video.

    The frames are exactly :func:`extract_frames`'s; the PCM is exactly what :func:`features.audio.load_audio`
    returns for ``sr`` (same decoder and resampler arguments), decoded in the same pass — one process and one demux
    per video instead of two.

    Returns:
        ``(frames, pcm)``: ``pcm`` is None when it was not decoded here — no audio track, a plan that does not decode
        the whole video (in keyframe mode: a last keyframe sample far from the end), or decoder errors (see the module
        docstring); then call ``load_audio``.

    Shapes:
        frames[name].frames: (N, size, size, 3) uint8; pcm: (n_samples,) float32 in [-1, 1]

    Raises:
        ValueError, MediaError: as :func:`extract_frames`; ``sr`` not an int sample rate in [1000, 384000].
    """
    if not (isinstance(sr, int) and not isinstance(sr, bool) and 1000 <= sr <= 384000):
        raise ValueError(f"sr={sr!r}: expected an int sample rate in Hz between 1000 and 384000")
    out, decoded = _extract_frames(path, info, profiles, timeout=timeout, strategy=strategy, threads=threads,
                                   fast_decode=fast_decode, audio_sr=sr)
    if decoded.pcm is None:
        return out, None
    usable = len(decoded.pcm) // 4 * 4
    return out, np.frombuffer(decoded.pcm[:usable], dtype="<f4").astype(np.float32)


def extract_frames(
    path: str | os.PathLike[str],
    info: ProbeInfo,
    profiles: Sequence[FrameProfile],
    *,
    timeout: float = 120.0,
    strategy: str = "auto",
    threads: int = 0,
    fast_decode: bool = False,
) -> dict[str, FrameResult]:
    """Sample frames for several profiles from one decode of a video.

    Args:
        path: the video file (passed to ffmpeg as a ``file:`` URL, never through a shell).
        info: its :func:`~features.probe.probe` facts (duration, fps, rotation, size, container).
        profiles: what to sample; names must be unique.
        timeout: wall-clock limit in seconds for the whole video (all runs together).
        strategy: "auto" (the documented rule), "sequential" (one pass from the start) or "seek" (keyframe runs
            whenever the container allows).
        threads: decoder threads (0: ffmpeg's automatic choice).
        fast_decode: let the video decoder skip its in-loop deblocking filter and use non-bit-exact shortcuts
            (ffmpeg ``-skip_loop_filter all -flags2 fast``): 10–15 % less decode CPU on H.264; the frames differ from
            an exact decode by about 0.13/255 on average (99th percentile 3/255) once scaled to 64² or 224²,
            far below compression noise. Deterministic; errors compound only within a GOP (a keyframe resets them).

    Returns:
        profile name → :class:`FrameResult`.

    Shapes:
        result[name].frames: (N, size, size, 3) uint8 RGB; .valid: (N,) bool; .times: (N,) float64 seconds

    Raises:
        ValueError: bad ``profiles``, ``info``, ``timeout``, ``strategy`` or ``threads``.
        MediaError: ffmpeg failed before producing any frame, or ran past ``timeout``.
    """
    return _extract_frames(path, info, profiles, timeout=timeout, strategy=strategy, threads=threads,
                           fast_decode=fast_decode)[0]


def _extract_frames(path: str | os.PathLike[str], info: ProbeInfo, profiles: Sequence[FrameProfile], *,
                    timeout: float, strategy: str, threads: int, fast_decode: bool = False,
                    audio_sr: int | None = None) -> tuple[dict[str, FrameResult], _Decoded]:
    """:func:`extract_frames` and what was decoded (its ``pcm`` when ``audio_sr`` was given and honoured).

    Steps: check the arguments → the instant each sample wants → scan the packet list when seeking could pay off or
    keyframes are wanted → snap keyframe profiles to keyframes → plan the decode runs and decode → assign frames to
    samples per profile.
    """
    profiles = _checked_profiles(path, info, profiles, timeout=timeout, strategy=strategy, threads=threads)
    deadline = _Deadline(os.fspath(path), float(timeout))
    fps = info.fps
    bins = {p.name: _bins(p, info.duration) for p in profiles}
    # The instant each sample wants; nan where it lies past the end (or, for keyframe profiles, has no keyframe).
    wanted = {p.name: np.where(bins[p.name][0] < info.duration, bins[p.name][0], np.nan) for p in profiles}
    seekable = any(tag in info.container for tag in _SEEKABLE)
    seek_cost = _seek_cost_frames(info)
    keyframes_only = all(p.keyframes for p in profiles)
    warnings: list[str] = []
    packet_times, key_times = np.zeros(0), np.zeros(0)
    if _wants_packet_scan(profiles, wanted, info, seekable=seekable, seek_cost=seek_cost, strategy=strategy):
        packet_times, packet_keys = _packet_scan(path, info, deadline.remaining())
        key_times = packet_times[packet_keys]
    window, per_target = _sample_window(packet_times, fps)
    if any(p.keyframes for p in profiles):
        if key_times.size == 0:
            warnings.append("no keyframe timestamps in the packet list; keyframe profiles used the nearest frames")
            keyframes_only = False
        else:
            for p in profiles:
                if p.keyframes:
                    wanted[p.name] = _nearest_keyframes(bins[p.name], key_times, info.duration, 0.5 / fps)

    short, master = _geometry(profiles)
    decoded = _Decoded([], [], [], 0, [])
    targets = sorted({float(t) for p in profiles for t in wanted[p.name] if math.isfinite(t)})
    if targets:
        runs = _choose_runs(targets, key_times, fps, seek_cost, window, seekable=seekable, strategy=strategy,
                            keyframes_only=keyframes_only)
        opts = dict(short=short, master=master, window=window, per_target=per_target, threads=threads,
                    keyframes_only=keyframes_only, fast_decode=bool(fast_decode))
        decoded = _decode_planned(path, info, runs, targets, deadline, audio_sr, opts)
        warnings += _decode_warnings(path, decoded)
    return _frame_results(profiles, info, decoded, short, wanted, bins, warnings), decoded


def _checked_profiles(path: str | os.PathLike[str], info: ProbeInfo, profiles: Sequence[FrameProfile], *,
                      timeout: float, strategy: str, threads: int) -> list[FrameProfile]:
    """``profiles`` as a list, after checking every argument of :func:`extract_frames` (see its Raises)."""
    if not isinstance(info, ProbeInfo):
        raise ValueError(f"info must be a ProbeInfo from features.probe.probe(), got {type(info).__name__}")
    profiles = list(profiles)
    if not profiles or not all(isinstance(p, FrameProfile) for p in profiles):
        raise ValueError(f"profiles must be a non-empty sequence of FrameProfile, got {profiles!r}")
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise ValueError(f"profiles: names must be unique, got {names}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: expected one of {_STRATEGIES}")
    if not (isinstance(threads, int) and threads >= 0):
        raise ValueError(f"threads={threads!r}: expected an int >= 0")
    if not info.has_video:
        raise MediaError(f"{os.fspath(path)!r}: has no video stream; nothing to sample")
    return profiles


@dataclass
class _Deadline:
    """The wall-clock budget of one video's extraction, shared by all its ffmpeg runs."""

    path: str  # the video, for the error message
    seconds: float  # the budget
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        """Seconds left; MediaError once the budget is spent."""
        left = self.seconds - (time.monotonic() - self.started)
        if left <= 0:
            raise MediaError(
                f"{self.path!r}: frame extraction ran longer than the {self.seconds:g} s limit; the file "
                "may be damaged or very long — raise the timeout if it is legitimately long"
            )
        return left


def _wants_packet_scan(profiles: Sequence[FrameProfile], wanted: dict[str, np.ndarray], info: ProbeInfo, *,
                       seekable: bool, seek_cost: float, strategy: str) -> bool:
    """Whether to list the packets first: keyframe profiles and variable frame rates need their timestamps, and a
    seekable container is worth planning seeks for when forced ("seek") or when, in "auto", the optimistic saving of
    seeking (rule 1: every gap longer than a seek skipped entirely) exceeds two seeks."""
    if any(p.keyframes for p in profiles) or info.variable_frame_rate:
        return True
    plain = sorted({float(t) for p in profiles if not p.keyframes for t in wanted[p.name] if math.isfinite(t)})
    gaps = np.diff([0.0, *plain])
    skippable = float(np.clip(gaps * info.fps - seek_cost, 0, None).sum())
    return seekable and (strategy == "seek" or (strategy == "auto" and skippable > 2 * seek_cost))


def _sample_window(packet_times: np.ndarray, fps: float) -> tuple[float, int]:
    """Window around each target — half a frame interval (+20 % for timestamp jitter), or half the longest frame
    interval of a variable-frame-rate stream so the nearest frame is always inside — and the most frames one
    window can hold."""
    window = 0.6 / fps
    per_target = 2
    if packet_times.size >= 2:
        intervals = np.diff(packet_times)
        intervals = intervals[intervals > 1e-6]
        if intervals.size:
            window = max(window, 0.5 * min(float(intervals.max()), 1.0) + 1e-4)
            per_target = int(math.ceil(2 * window / float(intervals.min()))) + 1
    return window, per_target


def _choose_runs(targets: list[float], key_times: np.ndarray, fps: float, seek_cost: float, window: float, *,
                 seekable: bool, strategy: str, keyframes_only: bool) -> list[_Run]:
    """One sequential run from the start, or keyframe-seeking runs when the container allows and they save enough
    (always under a forced "seek", which plans with a free seek so every keyframe before a target is used)."""
    runs = [_Run(start=0.0, end=targets[-1], targets=list(targets))]
    if key_times.size and seekable and strategy != "sequential" and not keyframes_only:
        planned = _plan_runs(targets, key_times, fps, 0.0 if strategy == "seek" else seek_cost, window)
        if strategy == "seek" or _runs_cost(planned, fps, seek_cost) < _RUNS_MUST_SAVE * _runs_cost(
                runs, fps, seek_cost):
            runs = planned
    return runs


def _decode_planned(path: str | os.PathLike[str], info: ProbeInfo, runs: list[_Run], targets: list[float],
                    deadline: _Deadline, audio_sr: int | None, opts: dict) -> _Decoded:
    """Decode the planned runs: one sequential pass (with the audio when ``audio_sr`` is given), or keyframe runs
    in batches of :data:`_RUNS_PER_PROCESS` per ffmpeg."""
    if len(runs) == 1 and runs[0].start == 0:
        return _decode_sequential(path, info, runs[0].targets, timeout=deadline.remaining(), audio_sr=audio_sr, **opts)
    if "\n" in media_url(path) or "\r" in media_url(path):  # a name the concat script cannot hold
        return _decode_sequential(path, info, targets, timeout=deadline.remaining(), **opts)
    return _merge([_decode_runs(path, info, runs[i:i + _RUNS_PER_PROCESS], timeout=deadline.remaining(), **opts)
                   for i in range(0, len(runs), _RUNS_PER_PROCESS)])


def _decode_warnings(path: str | os.PathLike[str], decoded: _Decoded) -> list[str]:
    """Warnings about decoder errors; MediaError when no frame was decoded at all."""
    if not decoded.times:
        detail = "; ".join(decoded.messages) or "no decoder message"
        raise MediaError(
            f"{os.fspath(path)!r}: ffmpeg decoded no frame ({detail}); the video stream is damaged or empty — "
            "re-download or re-encode the file"
        )
    if not decoded.errors:
        return []
    example = f" (e.g. {decoded.messages[-1]})" if decoded.messages else ""
    return [f"{decoded.errors} decoder error message(s): corrupt or truncated data; samples without a decodable "
            f"frame are masked{example}"]


def _frame_results(profiles: Sequence[FrameProfile], info: ProbeInfo, decoded: _Decoded, short: int,
                   wanted: dict[str, np.ndarray], bins: dict[str, tuple], warnings: list[str]
                   ) -> dict[str, FrameResult]:
    """Each profile's samples from the decoded frames, with the shared warnings and a count of masked samples."""
    out: dict[str, FrameResult] = {}
    for p in profiles:
        res = _assign(p, info, decoded, short, wanted[p.name])
        notes = list(warnings)
        inside = int(np.count_nonzero(bins[p.name][0] < info.duration))
        missing = inside - int(res.valid.sum())
        if missing > 0 and decoded.errors:
            notes.append(f"{missing} of {inside} samples inside the video had no decodable frame")
        out[p.name] = FrameResult(res.frames, res.valid, res.times, tuple(notes))
    return out
