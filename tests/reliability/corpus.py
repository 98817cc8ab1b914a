"""The bad-file corpus: hostile and broken media generated on the fly (ffmpeg lavfi sources, byte surgery).

:func:`build_corpus` fills a folder with one file per case and returns what vidpipe must make of each one
(:class:`Case`): ``ok`` (every stage done, with correct facts), ``fail`` (a recorded, readable failure matching a
pattern), ``either`` (damaged files a decoder may partly recover: done or a recorded failure, never a crash) or
``absent`` (the folder adapter must not even list it: symlinks leaving the folder, FIFOs, directories).

Everything is tiny (2-second clips of 96x64 pixels), so the whole corpus builds in a few seconds.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

from tests.media_factory import (_ffmpeg, corrupt_middle, make_audio_only, make_bomb_y4m, make_broadcast_asf,
                                 make_recorder_webm, make_tiny_video, make_unfinalised_avi, make_vfr_video, make_video,
                                 set_rotation, truncate, write_random)

__all__ = ["Case", "HOSTILE_NAMES", "build_corpus", "patch_mp4_duration", "make_hls_playlist", "make_subtitles_only"]

#: file names that would break a shell, an option parser or a naive path join (all hold the same clip as plain.mp4)
#: (tests/reliability/test_paths.py adds "--", "file:x.mp4", "http:x.mp4" and friends at the probe/frames level)
HOSTILE_NAMES = (
    "-i.mp4",
    "-y.mp4",
    "ünï cödé 😀.mp4",
    "a b; touch pwned $(id) `id` 'q\".mp4",
    "%d%s%n.mp4",
    "new\nline.mp4",
)


@dataclass(frozen=True)
class Case:
    """What must happen to one corpus file."""

    name: str  # file name in the corpus folder
    expect: str  # "ok" | "fail" | "either" | "absent"
    error: str = ""  # regex the recorded probe failure must match (expect == "fail")
    facts: dict = field(default_factory=dict)  # probe facts an "ok" file must have (e.g. {"rotation": 90})
    same_as: str | None = None  # an "ok" file whose features must equal this file's, byte for byte

    @property
    def video_id(self) -> str:
        """The id the folder adapter gives it (the file stem)."""
        return Path(self.name).stem


def patch_mp4_duration(src: Path, dst: Path, duration_units: int = 0xFFFFFFF0) -> Path:
    """``src`` (an MP4 with a version-0 ``mvhd``) whose movie header declares ``duration_units`` time-scale units
    (about 50 days at the usual 1000 units per second); the streams themselves are untouched."""
    data = bytearray(Path(src).read_bytes())
    at = data.find(b"mvhd")
    if at < 0 or data[at + 4] != 0:
        raise ValueError(f"{src}: no version-0 mvhd box")
    # box type | version+flags (4) | creation (4) | modification (4) | timescale (4) | duration (4)
    data[at + 20: at + 24] = struct.pack(">I", duration_units)
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def make_hls_playlist(path: Path, target: Path) -> Path:
    """An HLS playlist (``#EXTM3U``) naming ``target`` by absolute path, saved as ``path`` (e.g. ``clip.mp4``)."""
    Path(path).write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{Path(target).resolve()}\n#EXT-X-ENDLIST\n")
    return Path(path)


def make_subtitles_only(path: Path) -> Path:
    """A Matroska file with a subtitle stream and nothing else (no audio, no video)."""
    srt = Path(path).with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:01,500\nno pictures here\n")
    _ffmpeg("-i", str(srt), str(path))
    srt.unlink()
    return Path(path)


def build_corpus(folder: Path, outside: Path) -> list[Case]:
    """Write the corpus into ``folder`` (and a few targets into ``outside``, a sibling folder); returns its cases."""
    folder, outside = Path(folder), Path(outside)
    folder.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    work = outside / "_work"
    work.mkdir(exist_ok=True)
    cases: list[Case] = []

    # good references
    plain = make_video(folder / "plain.mp4", duration=2.0, size=(96, 64), fps=10)
    cases.append(Case("plain.mp4", "ok", facts={"rotation": 0, "has_audio": True}))
    for name in HOSTILE_NAMES:
        shutil.copyfile(plain, folder / name)
        cases.append(Case(name, "ok", same_as="plain.mp4"))
    os.symlink("plain.mp4", folder / "inside-link.mp4")  # a symlink that stays inside the folder is fine
    cases.append(Case("inside-link.mp4", "ok", same_as="plain.mp4"))

    # empty, random, truncated, corrupt
    (folder / "empty.mp4").write_bytes(b"")
    cases.append(Case("empty.mp4", "fail", error=r"empty \(0 bytes\)"))
    write_random(folder / "random_bytes.mp4", 8192, seed=1)
    cases.append(Case("random_bytes.mp4", "fail", error="not a readable media file"))
    write_random(folder / "garbage.mkv", 8192, seed=2)
    cases.append(Case("garbage.mkv", "fail", error="not a readable media file"))
    long_mp4 = make_video(work / "long.mp4", duration=3.0, size=(96, 64), fps=10)  # moov at the end
    for frac in (0.1, 0.5, 0.9):
        truncate(long_mp4, folder / f"trunc{int(frac * 100):02d}.mp4", frac)
        cases.append(Case(f"trunc{int(frac * 100):02d}.mp4", "fail", error="not a readable media file"))
    fast = make_video(work / "fast.mp4", duration=3.0, size=(96, 64), fps=10, faststart=True, gop=5)
    truncate(fast, folder / "trunc_faststart60.mp4", 0.6)
    cases.append(Case("trunc_faststart60.mp4", "either"))
    mkv = make_video(work / "stream.mkv", duration=3.0, size=(96, 64), fps=10, gop=5)
    for frac in (0.3, 0.7):
        truncate(mkv, folder / f"trunc{int(frac * 100):02d}.mkv", frac)
        cases.append(Case(f"trunc{int(frac * 100):02d}.mkv", "either"))
    corrupt_middle(mkv, folder / "corrupt_mkv.mkv", at=0.5, n_bytes=1500, seed=3)
    cases.append(Case("corrupt_mkv.mkv", "either"))
    corrupt_middle(long_mp4, folder / "corrupt_mp4.mp4", at=0.4, n_bytes=1500, seed=4)
    cases.append(Case("corrupt_mp4.mp4", "either"))

    # wrong extension: the content decides, not the name
    webm = make_video(work / "real.webm", duration=2.0, size=(96, 64), fps=10)
    shutil.copyfile(webm, folder / "webm_named.mp4")
    cases.append(Case("webm_named.mp4", "ok", facts={"container": "matroska,webm"}))
    shutil.copyfile(mkv, folder / "mkv_named.avi")
    cases.append(Case("mkv_named.avi", "ok", facts={"container": "matroska,webm"}))

    # no video
    make_audio_only(work / "tone.m4a", duration=2.0)
    shutil.copyfile(work / "tone.m4a", folder / "audio_only.mp4")
    cases.append(Case("audio_only.mp4", "fail", error="audio-only"))
    make_subtitles_only(folder / "no_streams.mkv")
    cases.append(Case("no_streams.mkv", "fail", error="no video stream"))

    # absurd headers
    make_bomb_y4m(work / "bomb.y4m", width=30000, height=30000)
    shutil.copyfile(work / "bomb.y4m", folder / "bomb.mp4")
    cases.append(Case("bomb.mp4", "fail", error="decompression-bomb"))
    patch_mp4_duration(plain, folder / "absurd_duration.mp4")
    cases.append(Case("absurd_duration.mp4", "fail", error="longer than max_duration"))

    # metadata that changes the picture
    set_rotation(make_video(work / "landscape.mp4", duration=2.0, size=(96, 64), fps=10), folder / "rotated.mp4", 90)
    cases.append(Case("rotated.mp4", "ok", facts={"rotation": 90, "display_width": 64, "display_height": 96}))
    make_vfr_video(folder / "vfr.mp4")
    cases.append(Case("vfr.mp4", "ok", facts={"variable_frame_rate": True}))

    # containers without a duration (browser recording, live ASF, unfinalised AVI) and tiny pictures
    make_recorder_webm(folder / "recorded.webm")
    cases.append(Case("recorded.webm", "ok", facts={"container": "matroska,webm", "n_frames": 20}))
    make_broadcast_asf(folder / "broadcast.asf")
    cases.append(Case("broadcast.asf", "ok", facts={"container": "asf", "n_frames": 20}))
    make_unfinalised_avi(folder / "unfinalised.avi")
    cases.append(Case("unfinalised.avi", "ok", facts={"container": "avi", "n_frames": 20}))
    make_tiny_video(folder / "one_pixel.mkv", (1, 1), vcodec="ffv1")
    cases.append(Case("one_pixel.mkv", "ok", facts={"width": 1, "height": 1}))
    make_tiny_video(folder / "eight_pixels.mp4", (8, 8), right="white")
    cases.append(Case("eight_pixels.mp4", "ok", facts={"width": 8, "height": 8}))

    # things that point elsewhere
    secret = make_video(outside / "secret.mp4", duration=2.0, size=(96, 64), fps=10)
    os.symlink(secret, folder / "outside-link.mp4")
    cases.append(Case("outside-link.mp4", "absent"))
    os.symlink("/dev/zero", folder / "devzero.mp4")
    cases.append(Case("devzero.mp4", "absent"))
    os.mkfifo(folder / "fifo.mp4")  # ffmpeg would block forever reading it
    cases.append(Case("fifo.mp4", "absent"))
    (folder / "folder.mp4").mkdir()
    cases.append(Case("folder.mp4", "absent"))
    make_hls_playlist(folder / "playlist.mp4", secret)  # an .m3u8 in disguise naming a file outside the dataset
    cases.append(Case("playlist.mp4", "fail", error="not on whitelist|not a readable media file"))
    shutil.rmtree(work)
    stems = [c.video_id for c in cases]
    assert len(stems) == len(set(stems)), "corpus file stems must be unique (they are the video ids)"
    return cases
