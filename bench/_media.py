"""Benchmark media, generated with ffmpeg's lavfi sources and cached under ``bench/results/media/`` (git-ignored).

Three sets (the ``full`` mode); ``quick`` keeps the shapes of the sets but fewer and shorter files, and
``tiny`` (the smoke test) makes a few 2-second thumbnails:

===============  ===========================================  ==============================  ======================
set              full                                         quick                           tiny
===============  ===========================================  ==============================  ======================
``short720``     100 × 15 s, 1280×720, 30 fps                 3 × 8 s, 1280×720, 30 fps        1 × 2 s, 160×90
``minute1080``   10 × 60 s, 1920×1080, 30 fps                 1 × 20 s, 1920×1080, 30 fps      1 × 2 s, 160×90
``long1080``     1 × 600 s, 1920×1080, 30 fps                 1 × 150 s, 1920×1080, 30 fps     1 × 3 s, 160×90
===============  ===========================================  ==============================  ======================

Every clip: H.264 (libx264 ``veryfast``, CRF 23, yuv420p, High profile with B-frames — what phones and upload sites
produce) with a keyframe every ``gop_seconds`` (2 s by default, the interval streaming sites recommend; x264's own
default of 250 frames is ``gop_seconds=None``) and a 44.1 kHz stereo AAC track (a sine whose pitch differs per clip).
Pictures are ``testsrc2`` (moving colour pattern, about 3 Mbit/s at 720p, which is a realistic bitrate), hue-shifted
per clip so no two files of a set are identical.

Files are named by a hash of everything that shapes them, so a cached file is reused only when it is what was asked
for; a half-written file never passes (written under a temporary name, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from features.atomic import atomic_file

__all__ = ["MEDIA_DIR", "MODES", "ClipSpec", "media_sets", "make_clip", "ensure_media", "clone_names"]

#: where generated media are cached (inside the git-ignored results folder)
MEDIA_DIR = Path(__file__).resolve().parent / "results" / "media"
#: benchmark sizes: "tiny" (smoke test, seconds), "quick" (make bench, minutes), "full" (the target sets)
MODES = ("tiny", "quick", "full")


@dataclass(frozen=True, kw_only=True)
class ClipSpec:
    """One generated clip (every field changes the file, so every field is in its cache name)."""

    seconds: float  # duration
    width: int  # picture width in pixels
    height: int  # picture height in pixels
    fps: int = 30  # frame rate
    gop_seconds: float | None = 2.0  # keyframe interval in seconds; None = x264's default (250 frames)
    audio: bool = True  # add a stereo AAC track
    variant: int = 0  # per-clip hue shift and tone pitch, so clips of a set differ
    preset: str = "veryfast"  # libx264 preset

    def __post_init__(self) -> None:
        if not (self.seconds > 0 and self.width >= 16 and self.height >= 16 and self.fps >= 1):
            raise ValueError(f"ClipSpec: expected seconds > 0, width/height >= 16 and fps >= 1, got {self}")
        if self.width % 2 or self.height % 2:
            raise ValueError(f"width={self.width}, height={self.height}: yuv420p needs even sizes")
        if self.gop_seconds is not None and not self.gop_seconds > 0:
            raise ValueError(f"gop_seconds={self.gop_seconds!r}: expected a positive number of seconds or None")

    @property
    def label(self) -> str:
        """Short human description, e.g. ``15s 1280x720``."""
        return f"{self.seconds:g}s {self.width}x{self.height}"

    def filename(self) -> str:
        digest = hashlib.blake2b(json.dumps(asdict(self), sort_keys=True).encode(), digest_size=6).hexdigest()
        return f"clip-{self.width}x{self.height}-{self.seconds:g}s-{digest}.mp4"


def media_sets(mode: str) -> dict[str, list[ClipSpec]]:
    """The clips of each benchmark set for ``mode`` (see the module docstring's table).

    Raises:
        ValueError: ``mode`` is not one of :data:`MODES`.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    if mode == "full":
        counts, secs, sizes = (100, 10, 1), (15, 60, 600), ((1280, 720), (1920, 1080), (1920, 1080))
    elif mode == "quick":
        # the long clip must be long enough for seeking to pay (100 uniform samples 1.5 s apart at 1080p)
        counts, secs, sizes = (3, 1, 1), (8, 20, 150), ((1280, 720), (1920, 1080), (1920, 1080))
    else:
        counts, secs, sizes = (1, 1, 1), (2, 2, 3), ((160, 90), (160, 90), (160, 90))
    out: dict[str, list[ClipSpec]] = {}
    for name, n, s, (w, h) in zip(("short720", "minute1080", "long1080"), counts, secs, sizes):
        out[name] = [ClipSpec(seconds=s, width=w, height=h, variant=i) for i in range(n)]
    return out


def make_clip(spec: ClipSpec, folder: Path = MEDIA_DIR, *, timeout: float = 3600.0) -> Path:
    """Generate ``spec`` into ``folder`` (or reuse the cached file) and return its path.

    Raises:
        RuntimeError: ffmpeg is missing or failed (its message is included).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / spec.filename()
    if final.is_file() and final.stat().st_size > 0:
        return final
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not on PATH: the benchmarks generate their media with it")
    hue = (spec.variant * 47) % 360
    video = (f"testsrc2=size={spec.width}x{spec.height}:rate={spec.fps}:duration={spec.seconds},"
             f"hue=h={hue}")
    args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", video]
    if spec.audio:
        tone = 220 + 37 * spec.variant
        args += ["-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=44100:duration={spec.seconds}"]
    args += ["-c:v", "libx264", "-preset", spec.preset, "-crf", "23", "-pix_fmt", "yuv420p"]
    if spec.gop_seconds is not None:
        gop = max(1, round(spec.gop_seconds * spec.fps))
        args += ["-g", str(gop), "-keyint_min", str(gop)]
    if spec.audio:
        args += ["-c:a", "aac", "-b:a", "128k", "-ac", "2", "-shortest"]
    with atomic_file(final, fsync=False) as tmp:
        done = subprocess.run([*args, str(tmp)], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"ffmpeg could not generate {spec}: {done.stderr.strip()[-500:]}")
    return final


def ensure_media(mode: str, folder: Path = MEDIA_DIR) -> dict[str, list[Path]]:
    """Every clip of :func:`media_sets` for ``mode``, generated when not cached: set name → paths."""
    return {name: [make_clip(spec, folder) for spec in specs] for name, specs in media_sets(mode).items()}


def clone_names(sources: list[Path], folder: Path, count: int) -> list[Path]:
    """``count`` hard links (copies where links are impossible) named ``v00000.mp4 ...`` cycling over ``sources``.

    Identical content under many names is enough for planning benchmarks (the digest memo keys on path, size,
    mtime and inode, so every name is hashed once).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        dst = folder / f"v{i:05d}.mp4"
        if not dst.exists():
            src = sources[i % len(sources)]
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        out.append(dst)
    return out
