"""Tiny media files for tests, made on the fly by ffmpeg's lavfi sources (testsrc2, sine, color, aevalsrc).

Every generator writes one small file (a few KB, well under a second of ffmpeg time) and returns its path. Damaged
files (truncated, corrupted, random bytes, huge-resolution header) are derived from good ones. Reusable by any test:
``from tests.media_factory import make_video``.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "corrupt_middle",
    "ebml_children",
    "ffprobe_json",
    "make_audio_expr_video",
    "make_broadcast_asf",
    "make_recorder_webm",
    "make_unfinalised_avi",
    "make_audio_only",
    "make_bomb_y4m",
    "make_counter_video",
    "make_interlaced_video",
    "make_patch_video",
    "make_speech_video",
    "make_speech_wav",
    "make_tiny_video",
    "make_video",
    "make_wild",
    "WILD_CASES",
    "WildCase",
    "ffmpeg_encoders",
    "make_vfr_video",
    "set_rotation",
    "truncate",
    "udta_first",
    "write_random",
]

_ROTATION_METHOD: dict[str, str] = {}  # which way of writing a display rotation this ffmpeg understands
_AUDIO_CODEC = {".mp4": "aac", ".m4a": "aac", ".mov": "aac", ".mkv": "aac", ".webm": "libopus", ".avi": "mp3"}


def _ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{done.stderr}")


def ffprobe_json(path: Path) -> dict:
    """Raw ffprobe streams + format, for tests that check facts independently of features.probe."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", "file:" + str(path)],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return json.loads(done.stdout)


def _video_codec_args(path: Path, vcodec: str | None, gop: int | None) -> list[str]:
    codec = vcodec or ("libvpx-vp9" if path.suffix == ".webm" else "libx264")
    args = ["-c:v", codec, "-pix_fmt", "yuv420p"]
    if codec == "libx264":
        args += ["-preset", "ultrafast"]
    if codec.startswith("libvpx"):
        args += ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"]
    if gop is not None:
        args += ["-g", str(gop)]
    return args


def make_video(
    path: Path,
    *,
    duration: float = 2.0,
    size: tuple[int, int] = (96, 64),
    fps: float = 25,
    audio: bool = True,
    tone_hz: float = 440.0,
    vcodec: str | None = None,
    gop: int | None = None,
    faststart: bool = False,
) -> Path:
    """A testsrc2 clip (moving colour pattern with a frame counter), optionally with a sine tone.

    Args:
        path: output file; the extension picks the container (.mp4, .mkv, .webm, .avi, .mov).
        size: (width, height) in pixels.
        gop: keyframe interval in frames (x264's default otherwise).
        faststart: MP4 only, move the index to the front (then a truncated file still probes).
    """
    path = Path(path)
    w, h = size
    args = ["-f", "lavfi", "-i", f"testsrc2=s={w}x{h}:r={fps}:d={duration}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=f={tone_hz}:sample_rate=44100:d={duration}"]
    args += _video_codec_args(path, vcodec, gop)
    if audio:
        args += ["-c:a", _AUDIO_CODEC.get(path.suffix, "aac"), "-shortest"]
    if faststart and path.suffix == ".mp4":
        args += ["-movflags", "+faststart"]
    _ffmpeg(*args, str(path))
    return path


def make_counter_video(path: Path, *, duration: float = 3.0, size: tuple[int, int] = (160, 120), fps: float = 20,
                       gop: int | None = None, red_step: int = 4) -> Path:
    """Frames that identify themselves: red = red_step·(frame index) (flat), green and blue = horizontal and
    vertical ramps (to check crop and scale). No audio. Keep ``red_step · duration · fps`` below 256."""
    path = Path(path)
    w, h = size
    _ffmpeg(
        "-f", "lavfi", "-i", f"nullsrc=s={w}x{h}:r={fps}:d={duration},format=gbrp,"
                             f"geq=r='{red_step}*N':g='255*X/W':b='255*Y/H'",
        *_video_codec_args(path, None, gop), "-crf", "10", str(path),
    )
    return path


def make_audio_expr_video(path: Path, expr: str, *, duration: float = 3.0, size: tuple[int, int] = (64, 48),
                          fps: float = 10, sample_rate: int = 16000) -> Path:
    """A small video whose mono audio is ``aevalsrc`` of ``expr`` (a function of ``t``), e.g. silence then a tone."""
    path = Path(path)
    w, h = size
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=s={w}x{h}:r={fps}:d={duration}",
        "-f", "lavfi", "-i", f"aevalsrc='{expr}':s={sample_rate}:d={duration}",
        *_video_codec_args(path, None, None), "-c:a", _AUDIO_CODEC.get(path.suffix, "aac"), "-shortest", str(path),
    )
    return path


def make_patch_video(path: Path, *, size: tuple[int, int] = (128, 64),
                     box: tuple[int, int, int, int] = (32, 16, 32, 32), duration: float = 1.0, fps: float = 25, sar: str | None = None) -> Path:
    """Black frames with one white box ``(x, y, w, h)`` in stored pixels: a planted patch to check orientation.

    ``sar`` (e.g. "2:1") stores anamorphic pixels: the display width is ``w · sar``.
    """
    path = Path(path)
    w, h = size
    x, y, bw, bh = box
    extra = ["-vf", f"setsar={sar.replace(':', '/')}"] if sar else []
    _ffmpeg(
        "-f", "lavfi", "-i", f"color=black:s={w}x{h}:r={fps}:d={duration},"
                             f"drawbox=x={x}:y={y}:w={bw}:h={bh}:color=white:t=fill",
        *extra, *_video_codec_args(path, None, None), str(path),
    )
    return path


def _display_rotation_ccw(path: Path) -> int:
    for stream in ffprobe_json(path)["streams"]:
        for side in stream.get("side_data_list") or []:
            if "rotation" in side:
                return int(round(float(side["rotation"]))) % 360
    return 0


def set_rotation(src: Path, dst: Path, rotation_cw: int) -> Path:
    """Copy ``src`` to ``dst`` (no re-encode) with a display matrix that turns the picture ``rotation_cw`` degrees
    clockwise for display.

    ffmpeg >= 6 has ``-display_rotation`` (counter-clockwise); older versions take the ``rotate`` tag, whose sign
    handling changed between versions — so the result is read back and the other sign tried if needed.
    """
    want_ccw = (-rotation_cw) % 360
    attempts = {
        "display_rotation": ["-display_rotation", str(want_ccw), "-i", str(src), "-c", "copy", str(dst)],
        "rotate_cw": ["-i", str(src), "-c", "copy", "-metadata:s:v", f"rotate={rotation_cw}", str(dst)],
        "rotate_ccw": ["-i", str(src), "-c", "copy", "-metadata:s:v", f"rotate={want_ccw}", str(dst)],
    }
    order = sorted(attempts, key=lambda name: name != _ROTATION_METHOD.get("works"))  # the one that worked first
    for name in order:
        try:
            _ffmpeg(*attempts[name])
        except RuntimeError:
            continue
        if _display_rotation_ccw(dst) == want_ccw:
            _ROTATION_METHOD["works"] = name
            return dst
    raise RuntimeError(f"could not write a {rotation_cw} degree display rotation with this ffmpeg")


def make_audio_only(path: Path, *, duration: float = 2.0) -> Path:
    """An audio file without any video stream (.m4a, .wav, .mp3 ...)."""
    path = Path(path)
    _ffmpeg("-f", "lavfi", "-i", f"sine=f=440:d={duration}", str(path))
    return path


def make_vfr_video(path: Path) -> Path:
    """3 s, 50 frames of testsrc2 with a variable frame rate: 30 fps during the first second, then 10 fps.

    Frame ``k`` is shown at ``k/30`` s for ``k < 30`` and at ``1 + (k - 30)/10`` s after.
    """
    path = Path(path)
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=s=96x64:r=30", "-frames:v", "50",
        "-vf", "setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'", "-fps_mode", "vfr",
        *_video_codec_args(path, None, None), str(path),
    )
    return path


def make_speech_wav(path: Path, text: str) -> Path:
    """``text`` spoken by espeak-ng into a WAV file (22.05 kHz mono)."""
    path = Path(path)
    espeak = shutil.which("espeak-ng") or shutil.which("espeak")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return path


def make_speech_video(path: Path, text: str, *, size: tuple[int, int] = (64, 48), fps: float = 10) -> Path:
    """A small testsrc2 video whose audio track is ``text`` spoken by espeak-ng."""
    path = Path(path)
    wav = make_speech_wav(path.with_suffix(".speech.wav"), text)
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=s={size[0]}x{size[1]}:r={fps}", "-i", str(wav),
        *_video_codec_args(path, None, None), "-c:a", "aac", "-shortest", str(path),
    )
    wav.unlink()
    return path


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``src``'s bytes."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def corrupt_middle(src: Path, dst: Path, *, at: float = 0.5, n_bytes: int = 2048, seed: int = 0) -> Path:
    """``src`` with ``n_bytes`` random bytes written over the data at ``at`` (a fraction of the file size)."""
    data = bytearray(Path(src).read_bytes())
    start = int(len(data) * at)
    rng = random.Random(seed)
    for i in range(start, min(start + n_bytes, len(data))):
        data[i] = rng.randrange(256)
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def write_random(path: Path, n_bytes: int = 4096, seed: int = 0) -> Path:
    """Random bytes (e.g. named ``.mp4`` to pose as a video)."""
    rng = random.Random(seed)
    Path(path).write_bytes(bytes(rng.randrange(256) for _ in range(n_bytes)))
    return Path(path)


def make_bomb_y4m(path: Path, *, width: int = 16000, height: int = 16000) -> Path:
    """A YUV4MPEG2 file whose header declares a huge picture, followed by a few bytes of one frame."""
    header = f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode()
    Path(path).write_bytes(header + bytes(4096))
    return Path(path)



# ---------------------------------------------------------------------------------------------------- no duration
# EBML ids (Matroska / WebM) and the AVI fields that carry a duration.
EBML_SEGMENT, EBML_SEEKHEAD, EBML_INFO, EBML_DURATION = 0x18538067, 0x114D9B74, 0x1549A966, 0x4489
EBML_TRACKS, EBML_CLUSTER, EBML_CUES, EBML_VOID = 0x1654AE6B, 0x1F43B675, 0x1C53BB6B, 0xEC


def _ebml_vint(data: bytes, at: int, *, keep_marker: bool = False) -> tuple[int, int]:
    """``(value, length)`` of the EBML variable-size integer at ``at`` (element ids keep their length marker)."""
    first, length = data[at], 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    value = first if keep_marker else first & ((0x80 >> (length - 1)) - 1)
    for k in range(1, length):
        value = (value << 8) | data[at + k]
    return value, length


def ebml_children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int, int | None]]:
    """Elements of one EBML level in ``data[start:end]``: ``(id, offset, id length, size length, size)``; size is
    ``None`` for the reserved "unknown" value (all value bits set). Stops at the first element of unknown size."""
    out, at = [], start
    while at < end:
        eid, n_id = _ebml_vint(data, at, keep_marker=True)
        size, n_size = _ebml_vint(data, at + n_id)
        unknown = size == (1 << (7 * n_size)) - 1
        out.append((eid, at, n_id, n_size, None if unknown else size))
        if unknown:
            break
        at += n_id + n_size + size
    return out


def make_recorder_webm(path: Path, *, duration: float = 2.0, size: tuple[int, int] = (96, 64), fps: float = 10,
                       audio: bool = True) -> Path:
    """A WebM laid out as Chrome's MediaRecorder writes it: VP8 (+ Opus), a Segment and Clusters of unknown size, no
    ``Duration`` in the Segment Info, no Cues, no SeekHead.

    ffmpeg's WebM muxer writing to a pipe (non-seekable: it cannot go back to fill in sizes, the duration or an index)
    gives an unknown-size Segment without Duration or Cues; then, in place, its SeekHead becomes a Void element of
    the same length and each Cluster's size field is set to the "unknown" value of the same length.
    """
    path = Path(path)
    w, h = size
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi",
            "-i", f"testsrc2=s={w}x{h}:r={fps}:d={duration}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=f=440:sample_rate=48000:d={duration}"]
    args += ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"]
    if audio:
        args += ["-c:a", "libopus", "-shortest"]
    done = subprocess.run([*args, "-f", "webm", "pipe:1"], capture_output=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {done.stderr.decode(errors='replace')}")
    data = bytearray(done.stdout)
    (_, _, n_id, n_size, _), = [e for e in ebml_children(bytes(data), 0, len(data)) if e[0] == EBML_SEGMENT]
    segment_body = data.index(EBML_SEGMENT.to_bytes(4, "big")) + n_id + n_size
    at = segment_body
    while at < len(data):  # walk the (still known-size) children of the Segment, rewriting as we go
        eid, n_id = _ebml_vint(bytes(data), at, keep_marker=True)
        body_size, n_size = _ebml_vint(bytes(data), at + n_id)
        total = n_id + n_size + body_size
        if eid == EBML_SEEKHEAD:  # Void (1-byte id, 8-byte size) covering exactly the SeekHead's bytes
            data[at: at + total] = bytes([EBML_VOID, 0x01]) + (total - 9).to_bytes(7, "big") + bytes(total - 9)
        elif eid == EBML_CLUSTER:
            data[at + n_id: at + n_id + n_size] = bytes([0xFF >> (n_size - 1)]) + b"\xff" * (n_size - 1)
        at += total
    path.write_bytes(bytes(data))
    return path


def make_broadcast_asf(path: Path, *, duration: float = 2.0, size: tuple[int, int] = (96, 64),
                       fps: float = 10) -> Path:
    """An ASF (WMV2 + WMA2) muxed to a pipe, as a live broadcast is: the File Properties Object carries the broadcast
    flag and a play duration of 0, and there is no index."""
    path = Path(path)
    w, h = size
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
         "-f", "lavfi", "-i", f"testsrc2=s={w}x{h}:r={fps}:d={duration}",
         "-f", "lavfi", "-i", f"sine=f=440:sample_rate=44100:d={duration}",
         "-c:v", "wmv2", "-c:a", "wmav2", "-shortest", "-f", "asf", "pipe:1"], capture_output=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {done.stderr.decode(errors='replace')}")
    path.write_bytes(done.stdout)
    return path


def make_unfinalised_avi(path: Path, *, duration: float = 2.0, size: tuple[int, int] = (96, 64),
                         fps: float = 10) -> Path:
    """An AVI whose writer never went back to finish its header, as a capture tool killed mid-recording leaves it:
    ``avih.dwTotalFrames = 0``, every ``strh.dwLength = 0``, the ``AVIF_HASINDEX`` flag cleared and no ``idx1``
    index (its chunk turned into ``JUNK``, which readers skip). The ``movi`` data is intact (MPEG-4 Part 2 + MP3).

    Offsets (AVI RIFF, little-endian): ``avih`` data = dwMicroSecPerFrame, dwMaxBytesPerSec, dwPaddingGranularity,
    dwFlags (+12), dwTotalFrames (+16), ...; ``strh`` data = fccType, fccHandler, dwFlags, wPriority + wLanguage,
    dwInitialFrames, dwScale, dwRate, dwStart, dwLength (+32), ...
    """
    import struct

    path = Path(path)
    w, h = size
    work = path.with_name(path.name + ".full.avi")
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={w}x{h}:r={fps}:d={duration}",
            "-f", "lavfi", "-i", f"sine=f=440:sample_rate=44100:d={duration}",
            "-c:v", "mpeg4", "-c:a", "mp3", "-shortest", str(work))
    data = bytearray(work.read_bytes())
    work.unlink()
    avih = data.index(b"avih") + 8
    flags = struct.unpack_from("<I", data, avih + 12)[0]
    struct.pack_into("<II", data, avih + 12, flags & ~0x10, 0)  # AVIF_HASINDEX off, dwTotalFrames = 0
    at = data.find(b"strh")
    while at >= 0:
        struct.pack_into("<I", data, at + 8 + 32, 0)  # dwLength = 0
        at = data.find(b"strh", at + 4)
    idx1 = data.rfind(b"idx1")
    if idx1 < 0:
        raise RuntimeError("ffmpeg wrote no idx1 chunk")
    data[idx1: idx1 + 4] = b"JUNK"
    path.write_bytes(bytes(data))
    return path


def make_tiny_video(path: Path, size: tuple[int, int], *, colour: str = "0x2080C0", right: str | None = None,
                    vcodec: str = "libx264", pix_fmt: str = "yuv420p", duration: float = 2.0, fps: float = 10) -> Path:
    """A video of a tiny picture (down to 1x1): flat ``colour`` (RGB hex), its right half ``right`` if given.

    x264 refuses odd sizes in 4:2:0; use ``vcodec="ffv1"`` (lossless, any size, any pixel format) for those.
    """
    path = Path(path)
    w, h = size
    graph = f"color=c={colour}:s={w}x{h}:r={fps}:d={duration},format=rgb24"  # 4:2:0 sources refuse 1-pixel sides
    if right is not None:
        graph += f",drawbox=x={w // 2}:y=0:w={w - w // 2}:h={h}:color={right}:t=fill"
    extra = ["-preset", "ultrafast", "-qp", "0"] if vcodec == "libx264" else []
    _ffmpeg("-f", "lavfi", "-i", graph, "-c:v", vcodec, "-pix_fmt", pix_fmt, *extra, str(path))
    return path


def make_interlaced_video(path: Path, *, interlaced: bool = True, duration: float = 2.0,
                          size: tuple[int, int] = (160, 120), gop: int = 10) -> Path:
    """A 25-fps clip of a picture scrolling sideways (``testsrc2``, 3.2 pixels a field) in x264 lossless.

    ``interlaced``: 50 fields per second woven into top-field-first interlaced frames (``interlace`` filter, coded
    with ``+ilme+ildct -top 1``), so every moving edge combs; otherwise the progressive 25-fps picture of the same
    scene.
    """
    w, h = size
    rate, step = (50, 3.2) if interlaced else (25, 6.4)
    source = f"testsrc2=s={w}x{h}:r={rate},scroll=horizontal={step / w:.6f}"
    weave = ["-vf", "interlace=scan=tff", "-flags", "+ilme+ildct", "-top", "1"] if interlaced else []
    _ffmpeg("-f", "lavfi", "-i", source, "-t", f"{duration}", *weave, "-c:v", "libx264", "-preset", "ultrafast",
            "-qp", "0", "-g", str(gop), "-pix_fmt", "yuv420p", str(path))
    return Path(path)


@dataclass(frozen=True)
class WildCase:
    """A valid but unusual file as cameras, broadcasters and encoders write it (:func:`make_wild`)."""

    file: str  # file name; its extension picks the container
    args: tuple[str, ...]  # ffmpeg arguments between the global options and the output name
    encoders: tuple[str, ...]  # ffmpeg encoders the file needs (the case is skipped without them)


def _v(size: str = "64x48", fps: str = "10", duration: float = 2.0, source: str = "testsrc2") -> tuple[str, ...]:
    sep = ":" if "=" in source else "="
    return ("-f", "lavfi", "-i", f"{source}{sep}s={size}:r={fps}:d={duration}")


def _a(rate: int = 44100, duration: float = 2.0, hz: int = 440) -> tuple[str, ...]:
    return ("-f", "lavfi", "-i", f"sine=f={hz}:sample_rate={rate}:d={duration}")


_X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
_TS = (*_v(fps="25"), *_a(48000), *_X264, "-c:a", "aac", "-output_ts_offset", "95441.6")
# A cover picture (red, attached_pic) beside the real (blue) video; make_wild then lists it first (udta_first).
_COVER = ("-f", "lavfi", "-i", "color=c=red:s=32x32:d=0.1", *_v(source="color=c=0x2080C0", size="64x48"),
          *_a(), "-map", "0:v", "-map", "1:v", "-map", "2:a", "-c:v:0", "mjpeg",
          "-disposition:v:0", "attached_pic", "-c:v:1", "libx264", "-preset", "ultrafast", "-pix_fmt:v:1",
          "yuv420p", "-c:a", "aac")

#: name → the file; durations 2 s unless the case is about its timing
WILD_CASES: dict[str, WildCase] = {
    # broadcast: the PTS start near 2**33 / 90 kHz (~26.5 h), so the timestamps wrap to 0 after 0.7 s
    "ts_wrap": WildCase("ts_wrap.ts", _TS, ("libx264", "aac")),
    "flv": WildCase("flv.flv", (*_v(), *_a(), "-c:v", "flv", "-c:a", "libmp3lame"), ("flv", "libmp3lame")),
    "3gp": WildCase("3gp.3gp", (*_v(size="128x96"), *_a(8000), "-c:v", "h263", "-c:a", "aac", "-ac", "1"),
                    ("h263", "aac")),
    "ogv": WildCase("ogv.ogv", (*_v(), *_a(), "-c:v", "libtheora", "-c:a", "libvorbis"),
                    ("libtheora", "libvorbis")),
    "prores": WildCase("prores.mov", (*_v(), *_a(48000), "-c:v", "prores_ks", "-profile:v", "3", "-c:a",
                                      "pcm_s24le"), ("prores_ks", "pcm_s24le")),
    "qtrle": WildCase("qtrle.mov", (*_v(), *_a(48000), "-c:v", "qtrle", "-c:a", "pcm_f32le"), ("qtrle", "pcm_f32le")),
    "mpeg4_avi": WildCase("mpeg4_avi.avi", (*_v(), *_a(), "-c:v", "mpeg4", "-c:a", "libmp3lame"),
                          ("mpeg4", "libmp3lame")),
    "mjpeg_avi": WildCase("mjpeg_avi.avi", (*_v(), *_a(22050), "-c:v", "mjpeg", "-pix_fmt", "yuvj422p", "-c:a",
                                         "pcm_u8"), ("mjpeg", "pcm_u8")),
    "vob": WildCase("vob.vob", (*_v(size="352x288", fps="25"), *_a(48000), "-c:v", "mpeg2video", "-flags",
                                "+ilme+ildct", "-top", "1", "-c:a", "mp2", "-f", "vob"), ("mpeg2video", "mp2")),
    "wmv": WildCase("wmv.wmv", (*_v(), *_a(), "-c:v", "wmv2", "-c:a", "wmav2"), ("wmv2", "wmav2")),
    "dv_raw": WildCase("dv_raw.dv", (*_v(size="720x576", fps="25", duration=1.0), *_a(48000, 1.0), "-c:v",
                                     "dvvideo", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le", "-ac", "2", "-f", "dv"),
                       ("dvvideo", "pcm_s16le")),
    "hevc10": WildCase("hevc10.mp4", (*_v(), *_a(), "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt",
                                      "yuv420p10le", "-tag:v", "hvc1", "-x265-params", "log-level=error",
                                      "-c:a", "aac"), ("libx265", "aac")),
    "vp9_444": WildCase("vp9_444.webm", (*_v(), *_a(48000), "-c:v", "libvpx-vp9", "-pix_fmt", "yuv444p",
                                         "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"),
                        ("libvpx-vp9", "libopus")),
    "av1": WildCase("av1.mp4", (*_v(), *_a(), "-c:v", "libaom-av1", "-cpu-used", "8", "-row-mt", "1",
                                "-crf", "40", "-c:a", "aac"), ("libaom-av1", "aac")),
    "h264_422_10": WildCase("h264_422_10.mkv", (*_v(), *_a(), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
                                            "yuv422p10le", "-c:a", "aac"), ("libx264", "aac")),
    "h264_raw": WildCase("h264_raw.h264", (*_v(), *_X264, "-f", "h264"), ("libx264",)),
    "gif": WildCase("gif.gif", (*_v(), "-c:v", "gif"), ("gif",)),
    "apng": WildCase("apng.apng", (*_v(), "-c:v", "apng", "-plays", "0", "-f", "apng"), ("apng",)),
    "y4m": WildCase("y4m.y4m", (*_v(size="32x24"), "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe"), ()),
    # stream layouts
    "two_audio": WildCase("two_audio.mkv", (*_v(), "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono:d=2", *_a(32000),
                                             "-map", "0", "-map", "1", "-map", "2", *_X264, "-c:a", "aac",
                                             "-disposition:a:0", "0", "-disposition:a:1", "default"),
                          ("libx264", "aac")),
    "surround": WildCase("surround.mkv", (*_v(), *_a(48000), *_X264, "-c:a", "ac3", "-ac", "6"),
                         ("libx264", "ac3")),
    "hires_audio": WildCase("hires_audio.mkv", (*_v(), *_a(96000), *_X264, "-c:a", "flac"), ("libx264", "flac")),
    "cover_art": WildCase("cover_art.mp4", _COVER, ("libx264", "mjpeg", "aac")),
    # a song with album art only, renamed .mp4: the one video stream is an attached picture
    "music_cover": WildCase("music_cover.mp4", ("-f", "lavfi", "-i", "color=c=red:s=32x32:d=0.1", *_a(), "-map", "0:v",
                                                "-map", "1:a", "-c:v", "mjpeg", "-disposition:v:0", "attached_pic",
                                                "-c:a", "aac"), ("mjpeg", "aac")),
    # a subtitle track before the video, a QuickTime timecode (tmcd) data track after the audio, as cameras write
    "subs_data": WildCase("subs_data.mp4", (*_v(), *_a(), "-i", "{srt}", "-map", "2", "-map", "0", "-map", "1",
                                            *_X264, "-c:a", "aac", "-c:s", "mov_text", "-timecode", "00:00:10:00"),
                          ("libx264", "aac", "mov_text")),
    "audio_late": WildCase("audio_late.mp4", (*_v(duration=3.0), "-itsoffset", "0.5", *_a(duration=2.0),
                                              *_X264, "-c:a", "aac"), ("libx264", "aac")),
    "anamorphic": WildCase("anamorphic.mp4", (
        "-f", "lavfi", "-i", "color=c=black:s=360x240:r=10:d=2,drawbox=x=129:y=0:w=102:h=240:color=white:t=fill,"
        "setsar=32/27", *_a(), *_X264, "-c:a", "aac"), ("libx264", "aac")),
    "odd_size": WildCase("odd_size.mkv", ("-f", "lavfi", "-i", "color=c=0x2080C0:s=33x17:r=10:d=2,format=rgb24,"
                                          "drawbox=x=17:y=0:w=16:h=17:color=white:t=fill", "-c:v", "ffv1",
                                          "-pix_fmt", "yuv420p"), ("ffv1",)),
    "one_frame": WildCase("one_frame.mp4", (*_v(), *_X264, "-frames:v", "1"), ("libx264",)),
    "fps120": WildCase("fps120.mp4", (*_v(size="32x24", fps="120", duration=1.5), *_X264), ("libx264",)),
    "fps_half": WildCase("fps_half.mp4", (*_v(fps="1/2", duration=4.0), *_X264), ("libx264",)),
    "long_gop": WildCase("long_gop.mp4", (*_v(size="32x24", fps="25", duration=6.0), *_X264, "-g", "1000",
                                          "-keyint_min", "1000", "-sc_threshold", "0"), ("libx264",)),
    "podcast": WildCase("podcast.mp4", (*_v(source="color=c=0x2080C0", fps="1", duration=4.0), *_a(duration=4.0),
                                        *_X264, "-tune", "stillimage", "-c:a", "aac"), ("libx264", "aac")),
}


def _atoms(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """``(type, offset, size)`` of the ISO-BMFF boxes laid end to end in ``data[start:end]``."""
    out, at = [], start
    while at + 8 <= end:
        size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        size = int.from_bytes(data[at + 8:at + 16], "big") if size == 1 else size or end - at
        out.append((kind, at, size))
        at += size
    return out


def udta_first(path: Path) -> Path:
    """Move the ``udta`` box (iTunes metadata, the ``covr`` cover art) of an MP4's ``moov`` in front of its tracks,
    as some taggers lay it out: ffmpeg then lists the cover art as stream 0, before the real video. The ``moov``
    keeps its size, so the sample offsets into ``mdat`` stay valid."""
    path = Path(path)
    data = path.read_bytes()
    _, moov, size = next(a for a in _atoms(data, 0, len(data)) if a[0] == b"moov")
    children = _atoms(data, moov + 8, moov + size)
    order = sorted(children, key=lambda a: {b"mvhd": 0, b"udta": 1}.get(a[0], 2))
    body = b"".join(data[at:at + n] for _, at, n in order)
    path.write_bytes(data[:moov + 8] + body + data[moov + size:])
    return path


@functools.lru_cache(maxsize=1)
def ffmpeg_encoders() -> frozenset[str]:
    """Names of the encoders this ffmpeg has (``ffmpeg -encoders``)."""
    done = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30)
    rows = [line.split() for line in done.stdout.splitlines()]  # " V....D libx264  ...": flags, name, description
    return frozenset(row[1] for row in rows if len(row) > 1 and len(row[0]) == 6 and row[0][0] in "VAS")


def make_wild(folder: Path, name: str) -> Path | str:
    """Write case ``name`` of :data:`WILD_CASES` into ``folder``: its path, or why this ffmpeg cannot make it."""
    case = WILD_CASES[name]
    missing = [e for e in case.encoders if e not in ffmpeg_encoders()]
    if missing:
        return f"this ffmpeg has no {', '.join(missing)} encoder"
    path = Path(folder) / case.file
    srt = path.with_suffix(".srt.txt")  # a subtitle input for the cases that carry one
    if "{srt}" in case.args:
        srt.write_text("1\n00:00:00,000 --> 00:00:01,500\nhello\n\n", encoding="utf-8")
    _ffmpeg(*(str(srt) if a == "{srt}" else a for a in case.args), str(path))
    srt.unlink(missing_ok=True)
    if name == "cover_art":
        udta_first(path)
    return path
