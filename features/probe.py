"""ffprobe facts about one video file, with refusals for files that must not be decoded.

:func:`probe` runs one ``ffprobe`` (headers plus the timestamps of the first video packets; no full decode; a second
one decodes a frame where the header lacks the field order) and returns a :class:`ProbeInfo`. Files that cannot or
should not be processed are refused with a :class:`~features.media.MediaError` that says what is wrong and what to
do: empty files, files that are not media, files without a video stream (audio-only, cover art only), absurd
dimensions (a decompression-bomb guard checked before any frame is decoded: ffprobe itself runs with ``-max_pixels``
so that not even its stream analysis allocates a huge picture) and absurd or unknown durations.

Duration: the container's, else the video stream's, else — for containers written without one (Chrome's
MediaRecorder WebM has no ``Duration`` in its Segment Info, a live or crashed AVI leaves its frame counts at 0, a
broadcast ASF has no play duration) — the end of the last packet, ``max(pts + duration) − start_time`` over the audio
and video packets; for an elementary stream without timestamps (``.h264``, ``.m2v``) the sum of the video packets'
durations. That costs one demux of the file (no decoding; ``_SCAN_CAP_BYTES`` of packet list at most, about
300 hours of 60-fps video, and the probe's time limit), and nothing for a short file whose packets the first
ffprobe pass already read to the end. The frame count then comes from the video packets too.

Streams: the video stream is the first one that is not cover art (``attached_pic``: an album or podcast picture may
be listed before the real video); the audio stream is the first one flagged ``default`` (the track a player starts
with), else the first. Their indices are :attr:`ProbeInfo.video_stream` / :attr:`ProbeInfo.audio_stream`, and
:mod:`features.video` and :mod:`features.audio` decode exactly those streams (``video_map`` / ``audio_map``).

Rotation convention: :attr:`ProbeInfo.rotation` is the angle in degrees **clockwise** by which the stored picture must
be turned for display — the meaning of the classic ``rotate`` tag written by phones. ffprobe reports a display
matrix as a counter-clockwise angle (``rotation: -90`` for a phone's portrait video), so
``rotation = (-display_matrix_rotation) mod 360``. ffmpeg applies the same matrix when decoding (autorotate), so
frames read by :mod:`features.video` come out in display orientation.

Field order: :attr:`ProbeInfo.field_order` is ffprobe's ``field_order`` of the video stream (``progressive``, ``tt``,
``bb``, ``tb``, ``bt``). Where the stream header has none (DV, MPEG-4 part 2, MJPEG, Theora, GIF, ...), a second
ffprobe decodes the first frame and reads its flags (``interlaced_frame``, ``top_field_first``): ``tt`` or ``bb``
for an interlaced picture, else ``progressive``; ``unknown`` when that frame cannot be read. :mod:`features.video`
deinterlaces the streams whose field order is interlaced (:attr:`ProbeInfo.interlaced`).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from features.media import MediaError, ffprobe_bin, media_url, run_tool_capture, tool_message

__all__ = ["ProbeInfo", "probe"]

# Packets whose timestamps are read to tell constant from variable frame rate (a demux, not a decode).
_VFR_PACKETS = 120
# Relative spread of frame intervals above which a stream counts as variable frame rate. Millisecond time bases
# (Matroska) round 1/29.97 s to 33 or 34 ms, a 3 % spread, so the threshold sits well above rounding noise.
_VFR_SPREAD = 0.25
_REORDER_DEPTH = 16
_MAX_JSON_BYTES = 8 << 20
# Packet list of the duration scan (csv "stream_index,pts_time,duration_time", ~30 bytes a packet).
_SCAN_CAP_BYTES = 64 << 20
# ffprobe's field orders: progressive, then the interlaced ones (top/bottom field coded first, then displayed first).
_INTERLACED_ORDERS = ("tt", "bb", "tb", "bt")
_FIELD_ORDERS = ("progressive", *_INTERLACED_ORDERS)
_BOMB_RE = re.compile(r"Picture size (\d+)x(\d+) (?:exceeds specified max pixel count|is invalid)")


@dataclass(frozen=True, kw_only=True)
class ProbeInfo:
    """What ffprobe says about a video file (one record per video in the store).

    Sizes are in pixels, times in seconds. ``width``/``height`` are the stored (coded) picture; ``display_width`` /
    ``display_height`` are what a player shows: pixel aspect ratio applied, then width and height swapped for a
    rotation of 90 or 270 degrees.
    """

    duration: float  # seconds, container duration (falls back to the video stream's)
    fps: float  # average frame rate of the video stream (frames per second)
    n_frames: int  # frame count: the container's if it records one, else round(duration * fps)
    width: int  # stored picture width
    height: int  # stored picture height
    rotation: int  # 0, 90, 180 or 270: degrees clockwise to turn the stored picture for display
    display_width: int  # width as displayed (aspect ratio and rotation applied)
    display_height: int  # height as displayed (aspect ratio and rotation applied)
    video_codec: str  # ffmpeg codec name of the video stream decoded (see video_stream), e.g. "h264"
    audio_codec: str | None  # codec of the audio stream decoded (see audio_stream), None without audio
    has_video: bool  # always True for a ProbeInfo returned by probe() (files without video are refused)
    has_audio: bool  # the file has at least one audio stream
    sample_rate: int | None  # sample rate in Hz of the audio stream decoded, None without audio
    channels: int | None  # channel count of the audio stream decoded, None without audio
    container: str  # ffmpeg format name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" or "matroska,webm"
    variable_frame_rate: bool  # frame intervals of the first packets vary by more than 25 %
    start_time: float = 0.0  # container start time in seconds (timestamps of the streams are relative to it)
    sample_aspect_ratio: float = 1.0  # pixel aspect ratio (display width / stored width before rotation)
    size_bytes: int = 0  # file size in bytes
    video_stream: int = 0  # ffmpeg index of the video stream decoded (the first that is not cover art)
    audio_stream: int | None = None  # ffmpeg index of the audio stream decoded (module docstring); None without audio
    field_order: str = "unknown"  # "progressive", "tt", "bb", "tb", "bt" or "unknown" (module docstring)

    def to_record(self) -> dict[str, object]:
        """Plain scalars (str, int, float, bool, None) for a Parquet / JSON row."""
        return asdict(self)

    @property
    def interlaced(self) -> bool:
        """The video stream's pictures are interlaced (``field_order`` is ``tt``, ``bb``, ``tb`` or ``bt``)."""
        return self.field_order in _INTERLACED_ORDERS

    @property
    def video_map(self) -> str:
        """ffmpeg ``-map`` specifier of the video stream decoded."""
        return f"0:{self.video_stream}"

    @property
    def audio_map(self) -> str:
        """ffmpeg ``-map`` specifier of the audio stream decoded (``0:a:0`` when the index is unknown)."""
        return "0:a:0" if self.audio_stream is None else f"0:{self.audio_stream}"


def _fraction(text: object) -> float:
    """'30000/1001' → 29.97, '4:3' → 1.333; '0/0', 'N/A', None → nan."""
    if not isinstance(text, str) or not ("/" in text or ":" in text):
        return _float(text)
    num, _, den = text.replace(":", "/").partition("/")
    try:
        value = Fraction(int(num), int(den))
    except (ValueError, ZeroDivisionError):
        return math.nan
    return float(value) if value > 0 else math.nan


def _float(value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def _int(value: object) -> int | None:
    number = _float(value)
    return int(number) if math.isfinite(number) else None


def _rotation_cw(stream: dict) -> int:
    """Clockwise display rotation from the display matrix (counter-clockwise in ffprobe) or the ``rotate`` tag."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            ccw = _float(side["rotation"])
            if math.isfinite(ccw):
                return int(round(-ccw / 90.0)) % 4 * 90
    tag = _float((stream.get("tags") or {}).get("rotate"))
    if math.isfinite(tag):
        return int(round(tag / 90.0)) % 4 * 90
    return 0


def _is_vfr(packet_pts: list[float]) -> bool:
    """Frame intervals of the first packets vary by more than ``_VFR_SPREAD`` of their median."""
    pts = np.unique(np.asarray([p for p in packet_pts if math.isfinite(p)], dtype=np.float64))
    # Packets come in decode order: with B-frames the last ones read may still miss earlier presentation times,
    # which would look like a long interval. Drop the largest timestamps (reordering is at most 16 frames deep).
    pts = pts[: max(pts.size - _REORDER_DEPTH, 0)]
    if pts.size < 4:
        return False
    deltas = np.diff(pts)
    median = float(np.median(deltas))
    if median <= 0:
        return False
    return float(deltas.max() - deltas.min()) > _VFR_SPREAD * median


def _packets_end(packets: list[tuple[int | None, float, float]], video: object,
                 streams: set[object]) -> tuple[float, int]:
    """End of the last packet of ``streams`` (``max(pts + duration)`` in seconds; nan if none has a timestamp) and the
    number of timestamped packets of stream ``video``. ``packets``: ``(stream_index, pts_time, duration_time)``."""
    end, count = math.nan, 0
    for index, pts, dur in packets:
        if index not in streams or not math.isfinite(pts):
            continue
        stop = pts + (dur if math.isfinite(dur) and dur > 0 else 0.0)
        end = stop if not math.isfinite(end) else max(end, stop)
        count += index == video
    return end, count


def _durations_sum(packets: list[tuple[int | None, float, float]], video: object) -> tuple[float, int]:
    """Sum of the durations of the video packets (nan unless every one has a duration) and their number: the length
    of an elementary stream, whose packets carry no timestamps but the frame rate's duration each."""
    durations = [dur for index, _, dur in packets if index == video]
    if not durations or not all(math.isfinite(d) and d > 0 for d in durations):
        return math.nan, 0
    return float(sum(durations)), len(durations)


def _scan_packets(path: str | os.PathLike[str], timeout: float) -> list[tuple[int, float, float]]:
    """``(stream_index, pts_time, duration_time)`` of every packet: one demux, no decoding."""
    args = [ffprobe_bin(), "-v", "error", "-hide_banner", "-show_entries", "packet=stream_index,pts_time,duration_time",
            "-of", "csv=p=0", media_url(path)]
    result = run_tool_capture(args, timeout, _SCAN_CAP_BYTES, what=repr(os.fspath(path)))
    if result.returncode != 0 and not result.stdout:
        raise _refuse(path, f"has no duration and its packets cannot be read (ffprobe: {tool_message(result)})",
                      "the file is damaged or truncated; re-download or re-encode it")
    out = []
    for line in result.stdout.decode("ascii", "replace").splitlines():
        parts = line.split(",")
        if len(parts) >= 2 and parts[0].strip().isdigit():
            out.append((int(parts[0]), _float(parts[1]), _float(parts[2]) if len(parts) > 2 else math.nan))
    return out


def _refuse(path: str | os.PathLike[str], problem: str, advice: str) -> MediaError:
    return MediaError(f"{os.fspath(path)!r}: {problem}; {advice}")


def probe(
    path: str | os.PathLike[str],
    *,
    timeout: float = 30.0,
    max_pixels: int = 8192 * 8192,
    max_duration: float = 6 * 3600,
) -> ProbeInfo:
    """Read a video file's stream facts with ffprobe and refuse files that cannot or must not be decoded.

    Args:
        path: the video file (any name: it is passed to ffprobe as a ``file:`` URL, never through a shell).
        timeout: seconds before ffprobe is killed.
        max_pixels: largest accepted ``width * height`` of the stored picture (decompression-bomb guard).
        max_duration: longest accepted duration in seconds.

    Returns:
        The file's :class:`ProbeInfo`.

    Raises:
        ValueError: a limit argument is not positive.
        MediaError: the file is missing, empty, not media, has no video stream, declares a picture larger than
            ``max_pixels`` or a duration that is unknown, not positive or longer than ``max_duration``.
    """
    if not (isinstance(max_pixels, int) and max_pixels > 0):
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    if not max_duration > 0:
        raise ValueError(f"max_duration must be > 0 seconds, got {max_duration!r}")
    size = _file_size(path)
    data = _ffprobe_json(path, timeout=timeout, max_pixels=max_pixels)
    fmt = data.get("format") or {}
    video, audios = _streams(path, data)
    audio = _main_audio(audios)
    width, height = _picture_size(path, video, max_pixels)
    fps = _fraction(video.get("avg_frame_rate"))
    if not math.isfinite(fps):
        fps = _fraction(video.get("r_frame_rate"))
    start_time, duration, packet_frames = _timing(path, data, video, audios, timeout=timeout,
                                                  max_duration=max_duration)
    if not (math.isfinite(fps) and 0 < fps <= 1000):
        raise _refuse(path, f"has no usable frame rate ({video.get('avg_frame_rate')!r})", "re-encode the file")
    n_frames = _int(video.get("nb_frames"))
    if n_frames is None or n_frames <= 0:
        n_frames = packet_frames or max(1, int(round(duration * fps)))

    sar = _fraction(video.get("sample_aspect_ratio"))
    if not (math.isfinite(sar) and 0.1 < sar < 10):
        sar = 1.0
    rotation = _rotation_cw(video)
    shown_w, shown_h = max(1, int(round(width * sar))), height
    if rotation in (90, 270):
        shown_w, shown_h = shown_h, shown_w

    video_index = video.get("index")
    packet_pts = [
        _float(p.get("pts_time")) for p in data.get("packets") or [] if p.get("stream_index") == video_index
    ]
    return ProbeInfo(
        duration=float(duration),
        fps=float(fps),
        n_frames=int(n_frames),
        width=int(width),
        height=int(height),
        rotation=int(rotation),
        display_width=int(shown_w),
        display_height=int(shown_h),
        video_codec=str(video.get("codec_name") or "unknown"),
        audio_codec=(str(audio.get("codec_name") or "unknown") if audio else None),
        has_video=True,
        has_audio=audio is not None,
        sample_rate=(_int(audio.get("sample_rate")) if audio else None),
        channels=(_int(audio.get("channels")) if audio else None),
        container=str(fmt.get("format_name") or "unknown"),
        variable_frame_rate=_is_vfr(packet_pts[:_VFR_PACKETS]),
        start_time=float(start_time),
        sample_aspect_ratio=float(sar),
        size_bytes=int(size),
        video_stream=_int(video.get("index")) or 0,
        audio_stream=(_int(audio.get("index")) if audio else None),
        field_order=_field_order(path, video, timeout=timeout, max_pixels=max_pixels),
    )


def _field_order(path: str | os.PathLike[str], video: dict, *, timeout: float, max_pixels: int) -> str:
    """The stream header's field order, else the first decoded frame's (``tt`` / ``bb`` / ``progressive``), else
    ``unknown`` (module docstring)."""
    header = str(video.get("field_order") or "unknown")
    if header in _FIELD_ORDERS:
        return header
    args = [ffprobe_bin(), "-v", "error", "-hide_banner", "-max_pixels", str(max_pixels),
            "-select_streams", str(_int(video.get("index")) or 0), "-read_intervals", "%+#2",
            "-show_entries", "frame=interlaced_frame,top_field_first", "-of", "csv=p=0", media_url(path)]
    result = run_tool_capture(args, timeout, 1 << 16, what=repr(os.fspath(path)))
    for line in result.stdout.decode("ascii", "replace").splitlines():
        flags = line.split(",")
        if len(flags) >= 2 and flags[0].strip() in ("0", "1"):
            if flags[0].strip() == "0":
                return "progressive"
            return "tt" if flags[1].strip() == "1" else "bb"
    return "unknown"


def _file_size(path: str | os.PathLike[str]) -> int:
    """The file's size in bytes; MediaError when it is missing, unreadable, not a regular file or empty."""
    file = Path(path)
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        raise _refuse(path, "file not found", "check the dataset's manifest and the file name") from None
    except OSError as exc:
        raise _refuse(path, f"cannot be read ({exc.strerror})", "check permissions and the mount") from None
    if not file.is_file():
        raise _refuse(path, "is not a regular file", "point the dataset at video files")
    if size == 0:
        raise _refuse(path, "is empty (0 bytes)", "the download or copy failed; fetch the file again")
    return size


def _ffprobe_json(path: str | os.PathLike[str], *, timeout: float, max_pixels: int) -> dict:
    """ffprobe's format, streams and first packets as parsed JSON; MediaError when the decoder refuses the picture
    size, ffprobe fails or its output is not JSON."""
    args = [
        ffprobe_bin(),
        "-v", "error",
        "-hide_banner",
        # The decoder refuses to allocate a larger picture even during ffprobe's stream analysis.
        "-max_pixels", str(max_pixels),
        "-print_format", "json",
        "-show_format",
        "-show_streams",
        "-show_entries", "packet=stream_index,pts_time,duration_time",
        "-read_intervals", f"%+#{_VFR_PACKETS * 2}",
        media_url(Path(path)),
    ]
    result = run_tool_capture(args, timeout, _MAX_JSON_BYTES, what=repr(os.fspath(path)))
    stderr = "\n".join(result.stderr_tail)
    bomb = _BOMB_RE.search(stderr)
    if bomb:
        w, h = int(bomb.group(1)), int(bomb.group(2))
        raise _refuse(
            path,
            f"declares a {w}x{h} picture ({w * h:,} pixels, limit max_pixels={max_pixels:,}); refused before decoding "
            "(decompression-bomb guard)",
            "re-encode it at a sane resolution or raise max_pixels if it is genuine",
        )
    if result.returncode != 0:
        raise _refuse(
            path,
            f"is not a readable media file (ffprobe: {tool_message(result)})",
            "the file is damaged, truncated or not a video; re-download or re-encode it",
        )
    try:
        return json.loads(result.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError as exc:
        raise _refuse(path, f"ffprobe printed unreadable JSON ({exc})", "check the FFmpeg installation") from None


def _streams(path: str | os.PathLike[str], data: dict) -> tuple[dict, list[dict]]:
    """The first video stream (cover art excluded) and the audio streams; MediaError without a video stream."""
    streams = data.get("streams") or []
    videos = [
        s for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos:
        kind = "an audio-only file" if audios else "a file without media streams"
        raise _refuse(path, f"has no video stream ({kind})", "use a video file; audio-only input is not supported")
    return videos[0], audios


def _main_audio(audios: list[dict]) -> dict | None:
    """The audio stream vidpipe decodes: the first one flagged ``default`` (the track a player starts with, e.g. the
    original language of a dubbed film), else the first one; None without audio."""
    flagged = [a for a in audios if (a.get("disposition") or {}).get("default")]
    return (flagged or audios or [None])[0]


def _picture_size(path: str | os.PathLike[str], video: dict, max_pixels: int) -> tuple[int, int]:
    """The stored picture's (width, height); MediaError when it is invalid or larger than ``max_pixels``."""
    width, height = _int(video.get("width")) or 0, _int(video.get("height")) or 0
    if width <= 0 or height <= 0:
        raise _refuse(path, f"declares an invalid picture size {width}x{height}", "re-encode the file")
    if width * height > max_pixels:
        raise _refuse(
            path,
            f"declares a {width}x{height} picture ({width * height:,} pixels, limit max_pixels={max_pixels:,}); "
            "refused before decoding (decompression-bomb guard)",
            "re-encode it at a sane resolution or raise max_pixels if it is genuine",
        )
    return width, height


def _timing(path: str | os.PathLike[str], data: dict, video: dict, audios: list[dict], *, timeout: float,
            max_duration: float) -> tuple[float, float, int | None]:
    """``(start_time, duration, packet_frames)``: the duration from the headers, else from the end of the last
    packet (module docstring), with the video packets counted then (None otherwise); MediaError when it is unusable
    or longer than ``max_duration``."""
    fmt = data.get("format") or {}
    start_time = _float(fmt.get("start_time"))
    start_time = start_time if math.isfinite(start_time) else 0.0
    duration = _float(fmt.get("duration"))
    if not (math.isfinite(duration) and duration > 0):
        duration = _float(video.get("duration"))
    packet_frames = None
    if not (math.isfinite(duration) and duration > 0):
        # No duration in the headers: the end of the last packet. The first pass read every packet when it stopped
        # short of its packet budget.
        first = [(_int(p.get("stream_index")), _float(p.get("pts_time")), _float(p.get("duration_time")))
                 for p in data.get("packets") or []]
        packets = first if len(first) < 2 * _VFR_PACKETS else _scan_packets(path, timeout)
        end, packet_frames = _packets_end(packets, video.get("index"),
                                          {video.get("index"), *(a.get("index") for a in audios)})
        duration = end - start_time
        if not math.isfinite(end):  # a raw stream (.h264, .m2v): no timestamps, only packet durations
            duration, packet_frames = _durations_sum(packets, video.get("index"))
        if not packet_frames:
            packet_frames = None
    if not (math.isfinite(duration) and duration > 0):
        raise _refuse(
            path,
            "has no usable duration (a still image, an empty stream or a damaged header)",
            "re-encode it as a regular video file",
        )
    if duration > max_duration:
        raise _refuse(
            path,
            f"lasts {duration:,.0f} s, longer than max_duration={max_duration:,.0f} s",
            "cut the video or raise max_duration if it is genuine",
        )
    return start_time, duration, packet_frames
