"""features.video: sampling instants, exact frames and geometry, one decode pass, seek plans, keyframes, the bad
inputs (rotation, VFR, very short, corrupt, truncated, odd names, timeout), tiny pictures, frames and audio from
one ffmpeg (``extract_frames_and_audio``), and interlaced video deinterlaced on every decode path."""

from __future__ import annotations

import base64
import dataclasses
import subprocess

import cv2
import numpy as np
import pytest

import features.video as video
from features.audio import load_audio
from features.media import MediaError
from features.probe import probe
from features.video import (PER_SECOND, UNIFORM, UNIFORM_224, FrameProfile, FrameResult, extract_frames,
                            extract_frames_and_audio, sample_times)
from tests.media_factory import (
    corrupt_middle,
    make_patch_video,
    make_counter_video,
    make_interlaced_video,
    make_vfr_video,
    make_video,
    set_rotation,
    truncate,
)

SMALL = FrameProfile(name="small", mode="uniform", n_frames=6, size=32, short_side=40)
SEG = FrameProfile(name="seg", mode="per_second", n_segments=5, frames_per_segment=2, size=24, short_side=32)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tmp_path_factory.mktemp("video_media")


@pytest.fixture(scope="module")
def clip(media):
    """3 s, 25 fps, 96x64, a keyframe every 10 frames."""
    return make_video(media / "clip.mp4", duration=3.0, size=(96, 64), fps=25, gop=10)


@pytest.fixture(scope="module")
def counter(media):
    """3 s, 20 fps, 160x120; red = 4 x frame index, green/blue = x/y ramps."""
    return make_counter_video(media / "counter.mp4", duration=3.0, size=(160, 120), fps=20, gop=10)


@pytest.fixture(scope="module")
def counter_frames(counter):
    """Reference: every frame of the counter clip, full size, from a plain ffmpeg decode to RGB."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(counter), "-vf",
                          "scale=160:120:flags=accurate_rnd+full_chroma_int,format=rgb24", "-f", "rawvideo", "-"],
                         capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 120, 160, 3)
    assert len(frames) == 60
    return frames


def _reference(rgb: np.ndarray, size: int, short_side: int) -> np.ndarray:
    """Resize the short side to ``short_side``, centre-crop ``size`` (the documented geometry)."""
    h, w = rgb.shape[:2]
    scale = short_side / min(h, w)
    resized = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    rh, rw = resized.shape[:2]
    top, left = (rh - size) // 2, (rw - size) // 2
    return resized[top:top + size, left:left + size]


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


# ---------------------------------------------------------------------------------------------- sampling instants
def test_per_second_instants():
    times, valid = sample_times(PER_SECOND, 3.2)
    np.testing.assert_allclose(times, np.arange(15) + 0.5)
    assert valid.tolist() == [True] * 3 + [False] * 12
    times, valid = sample_times(SEG, 1.6)
    np.testing.assert_allclose(times, [0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75, 4.25, 4.75])
    assert valid.tolist() == [True, True, True] + [False] * 7


def test_uniform_instants():
    times, valid = sample_times(FrameProfile(name="u", mode="uniform", n_frames=4), 2.0)
    np.testing.assert_allclose(times, [0.25, 0.75, 1.25, 1.75])
    assert valid.all()
    times, valid = sample_times(UNIFORM_224, 15.0)
    assert UNIFORM_224.n_samples == 30 and times.shape == (30,)
    np.testing.assert_allclose(times[:4], [0.25, 0.75, 1.25, 1.75])  # 2 per 1-s segment of a 15-s clip
    assert UNIFORM.n_samples == 100 and PER_SECOND.n_samples == 15


def test_sample_times_rejects_bad_duration():
    with pytest.raises(ValueError, match="duration"):
        sample_times(UNIFORM, float("nan"))
    with pytest.raises(ValueError, match="duration"):
        sample_times(UNIFORM, -1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "random"}, "mode"),
        ({"mode": "uniform", "size": 100, "short_side": 80}, "size=100 > short_side=80"),
        ({"mode": "uniform", "n_frames": 0}, "n_frames"),
        ({"mode": "per_second", "frames_per_segment": 0}, "frames_per_segment"),
        ({"mode": "uniform", "keyframes": "yes"}, "keyframes"),
    ],
)
def test_profile_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FrameProfile(name="x", **kwargs)


def test_profile_is_keyword_only():
    with pytest.raises(TypeError):
        FrameProfile("x", "uniform")  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------ decoded frames
def test_shapes_dtypes_and_masks(clip):
    info = probe(clip)
    out = extract_frames(clip, info, [PER_SECOND, SMALL, SEG])
    assert set(out) == {"per_second", "small", "seg"}
    ps = out["per_second"]
    assert isinstance(ps, FrameResult)
    assert ps.frames.shape == (15, 64, 64, 3) and ps.frames.dtype == np.uint8
    assert ps.valid.tolist() == [True] * 3 + [False] * 12
    np.testing.assert_allclose(ps.times[:3], [0.48, 1.48, 2.48])  # frames at k/25 s nearest to s + 0.5
    assert np.isnan(ps.times[3:]).all() and not ps.frames[3:].any() and ps.frames[:3].any()
    assert out["small"].frames.shape == (6, 32, 32, 3) and out["small"].valid.all()
    assert out["seg"].frames.shape == (10, 24, 24, 3)
    assert out["seg"].valid.tolist() == [True] * 6 + [False] * 4
    assert ps.warnings == ()


def test_exact_frames_and_geometry(counter, counter_frames):
    """Each sample is the frame its timestamp names, cropped and scaled as documented (compared with OpenCV)."""
    info = probe(counter)
    out = extract_frames(counter, info, [PER_SECOND, SMALL, SEG, UNIFORM_224])
    ref_red = np.array([f[..., 0].mean() for f in counter_frames])
    for name, (size, short) in {"per_second": (64, 80), "small": (32, 40), "seg": (24, 32),
                                "uniform_224": (224, 224)}.items():
        res = out[name]
        assert res.valid.any()
        for frame, t in zip(res.frames[res.valid], res.times[res.valid]):
            k = int(round(t * 20))
            assert int(np.argmin(np.abs(ref_red - frame[..., 0].mean()))) == k, (name, t)
            ref = _reference(counter_frames[k], size, short)
            assert _mae(frame[..., 1:], ref[..., 1:]) < 3.0, (name, t)  # the x/y ramps: crop and scale


def test_times_are_nearest_frames(clip):
    info = probe(clip)
    res = extract_frames(clip, info, [FrameProfile(name="u", mode="uniform", n_frames=7, size=16, short_side=16)])["u"]
    want, _ = sample_times(FrameProfile(name="u", mode="uniform", n_frames=7), info.duration)
    frame_times = np.arange(75) / 25
    nearest = frame_times[np.abs(frame_times[None, :] - want[:, None]).argmin(axis=1)]
    np.testing.assert_allclose(res.times, nearest, atol=1e-6)


def _tool_calls(monkeypatch) -> list[list[str]]:
    """The argument lists of the tools that features.video runs after this call, appended as they run."""
    calls: list[list[str]] = []
    real = video.run_tool_capture

    def spy(args, *a, **kw):
        calls.append(list(args))
        return real(args, *a, **kw)

    monkeypatch.setattr(video, "run_tool_capture", spy)
    return calls


def test_one_decode_pass_serves_all_profiles(clip, monkeypatch):
    calls = _tool_calls(monkeypatch)
    extract_frames(clip, probe(clip), [PER_SECOND, UNIFORM, UNIFORM_224, SEG], strategy="sequential")
    decodes = [c for c in calls if c[0].endswith("ffmpeg")]
    assert len(decodes) == 1
    assert "-noautorotate" in decodes[0] and "-t" in decodes[0]


def test_seek_plan_gives_the_same_frames(clip, monkeypatch):
    info = probe(clip)
    sparse = FrameProfile(name="sparse", mode="uniform", n_frames=3, size=32, short_side=40)
    calls = _tool_calls(monkeypatch)
    seq = extract_frames(clip, info, [sparse], strategy="sequential")["sparse"]
    n_seq = sum(c[0].endswith("ffmpeg") for c in calls)
    calls.clear()
    seek = extract_frames(clip, info, [sparse], strategy="seek")["sparse"]
    seek_decodes = [c for c in calls if c[0].endswith("ffmpeg")]
    assert n_seq == 1 and len(seek_decodes) == 1  # still one ffmpeg: the runs go through the concat demuxer
    script = base64.b64decode(seek_decodes[0][seek_decodes[0].index("-i") + 1].split("base64,")[1]).decode()
    # 0.5 s, 1.5 s, 2.5 s: three runs from keyframes 0.4, 1.2, 2.4 (+1 ms)
    assert [ln for ln in script.splitlines() if ln.startswith("inpoint")] == [
        "inpoint 0.401000", "inpoint 1.201000", "inpoint 2.401000"]
    np.testing.assert_allclose(seek.times, seq.times)
    np.testing.assert_array_equal(seek.valid, seq.valid)
    assert _mae(seek.frames, seq.frames) < 1.0


def test_seek_runs_with_a_quote_in_the_name_and_matroska(media):
    path = make_video(media / "it's -a'test.mkv", duration=3.0, size=(64, 48), fps=20, gop=10, audio=False)
    info = probe(path)
    sparse = FrameProfile(name="sparse", mode="uniform", n_frames=3, size=16, short_side=16)
    seek = extract_frames(path, info, [sparse], strategy="seek")["sparse"]
    seq = extract_frames(path, info, [sparse], strategy="sequential")["sparse"]
    assert seek.valid.all()
    np.testing.assert_allclose(seek.times, seq.times, atol=1e-6)
    np.testing.assert_array_equal(seek.frames, seq.frames)


def test_plan_runs_rule():
    keys = np.array([0.0, 10.0, 20.0, 30.0])
    runs = video._plan_runs([1.0, 2.0, 25.0, 26.0], keys, fps=10, seek_cost=20)
    assert [(r.start, r.end, r.targets) for r in runs] == [(0.0, 2.0, [1.0, 2.0]), (20.0, 26.0, [25.0, 26.0])]
    # a gap cheaper to decode through than to seek over is decoded through
    runs = video._plan_runs([1.0, 11.0], keys, fps=10, seek_cost=200)
    assert len(runs) == 1


def test_keyframe_profile_takes_keyframes(clip, monkeypatch):
    info = probe(clip)
    keyed = FrameProfile(name="k", mode="per_second", n_segments=3, size=16, short_side=16, keyframes=True)
    calls = _tool_calls(monkeypatch)
    res = extract_frames(clip, info, [keyed])["k"]
    # keyframes every 10 frames = 0.4 s; nearest to 0.5, 1.5, 2.5 inside [s, s+1): 0.4, 1.6, 2.4
    np.testing.assert_allclose(res.times, [0.4, 1.6, 2.4])
    assert res.valid.all()
    decode = [c for c in calls if c[0].endswith("ffmpeg")]
    assert len(decode) == 1 and "nokey" in decode[0]


def test_mixed_keyframe_and_exact_profiles(clip):
    info = probe(clip)
    keyed = FrameProfile(name="k", mode="per_second", n_segments=3, size=16, short_side=16, keyframes=True)
    out = extract_frames(clip, info, [keyed, PER_SECOND])
    np.testing.assert_allclose(out["k"].times, [0.4, 1.6, 2.4])
    np.testing.assert_allclose(out["per_second"].times[:3], [0.48, 1.48, 2.48])


# ---------------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("rotation, bright", [(0, "left"), (90, "top"), (180, "right"), (270, "bottom")])
def test_rotation_gives_display_orientation(media, rotation, bright):
    # Stored picture 128x64, white box left of centre. Turned clockwise by `rotation` for display, the box lands in
    # the centre square's left / top / right / bottom half.
    src = media / "patch.mp4"
    if not src.exists():
        make_patch_video(src, size=(128, 64), box=(32, 16, 32, 32))
    path = src if rotation == 0 else set_rotation(src, media / f"patch{rotation}.mp4", rotation)
    info = probe(path)
    prof = FrameProfile(name="u", mode="uniform", n_frames=2, size=32, short_side=64)
    frame = extract_frames(path, info, [prof])["u"].frames[0].mean(axis=2)
    halves = {"left": frame[:, :16], "right": frame[:, 16:], "top": frame[:16], "bottom": frame[16:]}
    means = {k: float(v.mean()) for k, v in halves.items()}
    assert means[bright] > 200, means
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[bright]
    assert means[opposite] < 30, means
    # independent truth: ffmpeg's own autorotated decode shows the box in the same half
    shown = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt",
                            "gray", "-"], capture_output=True, check=True).stdout
    dw, dh = info.display_width, info.display_height
    gray = np.frombuffer(shown, np.uint8).reshape(dh, dw)
    s = min(dw, dh)
    square = gray[(dh - s) // 2:(dh - s) // 2 + s, (dw - s) // 2:(dw - s) // 2 + s]
    half = {"left": square[:, : s // 2], "right": square[:, s // 2:], "top": square[: s // 2],
            "bottom": square[s // 2:]}[bright]
    assert half.mean() > 100  # the 32x32 box fills half of this 64x32 half


def test_anamorphic_pixels_are_made_square(media):
    # stored 64x64 with 2:1 pixels = displayed 128x64; the display's centre square is stored columns 16..48, and the
    # box at stored columns 16..32 fills its left half (a crop that ignored the aspect would show it at 1/4..1/2)
    path = make_patch_video(media / "anamorphic.mp4", size=(64, 64), box=(16, 16, 16, 32), sar="2:1")
    info = probe(path)
    assert (info.sample_aspect_ratio, info.display_width, info.display_height) == (2.0, 128, 64)
    frame = extract_frames(path, info, [FrameProfile(name="u", mode="uniform", n_frames=1, size=32,
                                                     short_side=32)])["u"].frames[0].mean(axis=2)
    assert frame[8:24, :15].mean() > 220 and frame[:, 17:].mean() < 30


def test_variable_frame_rate_uses_true_timestamps(media):
    path = make_vfr_video(media / "vfr.mp4")
    info = probe(path)
    out = extract_frames(path, info, [PER_SECOND, FrameProfile(name="u", mode="uniform", n_frames=3, size=16,
                                                               short_side=16)])
    # frames: k/30 s for k < 30, then 1 + (k-30)/10 s
    schedule = np.concatenate([np.arange(30) / 30, 1 + np.arange(20) / 10])
    ps = out["per_second"]
    assert ps.valid.tolist()[:4] == [True, True, True, False]
    np.testing.assert_allclose(ps.times[:3], [0.5, 1.5, 2.5], atol=1e-6)
    want, _ = sample_times(FrameProfile(name="u", mode="uniform", n_frames=3), info.duration)
    nearest = schedule[np.abs(schedule[None] - want[:, None]).argmin(axis=1)]
    np.testing.assert_allclose(out["u"].times, nearest, atol=1e-6)


@pytest.mark.parametrize("duration, fps, n_valid_per_second, n_valid_uniform",
                         [(0.4, 10, 0, 4), (0.8, 25, 1, 20)])
def test_very_short_video_fills_what_exists(media, duration, fps, n_valid_per_second, n_valid_uniform):
    path = make_video(media / f"short{duration}.mp4", duration=duration, fps=fps, size=(64, 48), audio=False)
    info = probe(path)
    out = extract_frames(path, info, [PER_SECOND, UNIFORM])
    assert out["per_second"].valid.sum() == n_valid_per_second
    uni = out["uniform"]
    assert uni.frames.shape == (100, 64, 64, 3)
    assert uni.valid.sum() == n_valid_uniform  # every frame used once, the other samples masked
    assert len(set(np.round(uni.times[uni.valid], 6))) == n_valid_uniform
    assert not uni.frames[~uni.valid].any()


def test_corrupt_packets_mid_stream_decode_what_can_be(media):
    good = make_video(media / "forcorrupt.mp4", duration=4.0, size=(96, 64), fps=25, gop=25, audio=False)
    bad = corrupt_middle(good, media / "corrupt.mp4", at=0.5, n_bytes=6000, seed=3)
    info = probe(bad)
    out = extract_frames(bad, info, [PER_SECOND, SMALL])
    ps = out["per_second"]
    assert ps.frames.shape == (15, 64, 64, 3)
    assert ps.valid[0] and ps.valid[3]  # before the damage, and after the next keyframe
    assert any("decoder error" in w for w in ps.warnings), ps.warnings


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_mp4_with_index_first(media, fraction):
    good = make_video(media / "faststart.mp4", duration=4.0, size=(96, 64), fps=25, gop=25, audio=False,
                      faststart=True)
    cut = truncate(good, media / f"fs_cut{fraction}.mp4", fraction)
    try:
        info = probe(cut)
    except MediaError as exc:  # a refusal is fine too, as long as it is a MediaError with a message
        assert "fs_cut" in str(exc)
        return
    ps = extract_frames(cut, info, [PER_SECOND])["per_second"]
    assert ps.valid[:4].tolist() == sorted(ps.valid[:4].tolist(), reverse=True)  # a valid prefix, then masked
    assert ps.valid[0] and (fraction > 0.8 or not ps.valid[3])


@pytest.mark.parametrize("name", ["-dash start.mkv", "ünï 视频 space.mkv", "a:b;$(c).mkv"])
def test_odd_names(media, name, monkeypatch):
    path = make_video(media / "plain.mkv", duration=1.0, size=(64, 48), fps=10, audio=False)
    odd = media / name
    odd.write_bytes(path.read_bytes())
    monkeypatch.chdir(media)
    res = extract_frames(name, probe(name), [SMALL])["small"]
    assert res.valid.all()


def test_timeout_raises_media_error(clip):
    with pytest.raises(MediaError, match="limit"):
        extract_frames(clip, probe(clip), [UNIFORM], timeout=1e-6)


def test_bad_arguments(clip):
    info = probe(clip)
    with pytest.raises(ValueError, match="profiles"):
        extract_frames(clip, info, [])
    with pytest.raises(ValueError, match="unique"):
        extract_frames(clip, info, [SMALL, SMALL])
    with pytest.raises(ValueError, match="ProbeInfo"):
        extract_frames(clip, {"duration": 3}, [SMALL])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strategy"):
        extract_frames(clip, info, [SMALL], strategy="fast")


# ---------------------------------------------------------------------------------------------------- tiny pictures
def _first_frame_rgb(path) -> np.ndarray:
    """ffmpeg's own decode of the first frame, as RGB (the reference the pipeline must agree with)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-vf", "format=rgb24",
                          "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8)


@pytest.mark.parametrize("size, vcodec, pix_fmt", [
    ((1, 1), "ffv1", "yuv420p"),  # a 1-pixel side in 4:2:0: the crop cannot round it to whole chroma samples
    ((1, 1), "ffv1", "yuv444p"),
    ((1, 8), "ffv1", "yuv420p"),
    ((7, 7), "ffv1", "yuv444p"),  # an odd side that the profiles' even rounding would push past the picture
])
@pytest.mark.parametrize("profiles", [[PER_SECOND, UNIFORM], [PER_SECOND, UNIFORM, UNIFORM_224]],
                         ids=["64", "64+224"])
def test_tiny_flat_pictures_are_scaled_up(media, size, vcodec, pix_fmt, profiles):
    from tests.media_factory import make_tiny_video

    path = make_tiny_video(media / f"tiny_{size[0]}x{size[1]}_{pix_fmt}.mkv", size, vcodec=vcodec, pix_fmt=pix_fmt)
    info = probe(path)
    assert (info.width, info.height) == size
    result = extract_frames(path, info, profiles)
    want = _first_frame_rgb(path)[:3].astype(int)  # flat picture: every pixel is this colour
    for profile in profiles:
        res = result[profile.name]
        assert res.frames.shape == (profile.n_samples, profile.size, profile.size, 3)
        inside = sample_times(profile, info.duration)[1]
        # every instant inside the 2-s clip gets a frame, up to one frame per sample (20 frames for 100 samples)
        assert res.valid.sum() == min(int(inside.sum()), info.n_frames) and not (res.valid & ~inside).any()
        assert np.abs(res.frames[res.valid].astype(int) - want).max() <= 2, (profile.name, want)


def test_an_8x8_picture_keeps_its_halves(media):
    """8x8, left half blue-ish, right half white: scaled up, the halves stay where they were."""
    from tests.media_factory import make_tiny_video

    path = make_tiny_video(media / "tiny_8x8.mp4", (8, 8), right="white")
    info = probe(path)
    result = extract_frames(path, info, [PER_SECOND, UNIFORM, UNIFORM_224])
    for name, res in result.items():
        frames = res.frames[res.valid].astype(int)
        third = frames.shape[2] // 3
        assert np.abs(frames[:, :, :third] - [32, 128, 192]).max() <= 4, name
        assert (frames[:, :, -third:] >= 250).all(), name


# ----------------------------------------------------------------------------------- frames and audio in one pass
# ``extract_frames_and_audio`` must return exactly what ``extract_frames`` and ``load_audio`` return separately, and
# hand the audio back to ``load_audio`` whenever one pass would cost more than two.
PASS_PROFILES = [dataclasses.replace(PER_SECOND, n_segments=4), dataclasses.replace(UNIFORM, n_frames=6)]


def _same_frames(a, b) -> bool:
    return set(a) == set(b) and all(
        np.array_equal(a[k].frames, b[k].frames) and np.array_equal(a[k].valid, b[k].valid)
        and np.array_equal(a[k].times, b[k].times, equal_nan=True) and a[k].warnings == b[k].warnings for k in a)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_one_pass_gives_the_same_frames_and_bit_identical_pcm(tmp_path, suffix):
    path = make_video(tmp_path / f"clip{suffix}", duration=3.0, size=(96, 64), fps=10, tone_hz=330.0)
    info = probe(path)
    frames, pcm = extract_frames_and_audio(path, info, PASS_PROFILES, sr=16000)
    assert _same_frames(frames, extract_frames(path, info, PASS_PROFILES))
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
    frames, pcm = extract_frames_and_audio(silent, probe(silent), PASS_PROFILES, sr=16000)
    assert pcm is None and frames["uniform"].valid.all()


def test_keyframe_mode_shares_the_pass_when_its_samples_reach_the_end(tmp_path):
    path = make_video(tmp_path / "clip.mp4", duration=6.0, size=(96, 64), fps=10, tone_hz=440.0, gop=10)
    info = probe(path)
    keyframes = [dataclasses.replace(p, keyframes=True) for p in PASS_PROFILES]
    frames, pcm = extract_frames_and_audio(path, info, keyframes, sr=16000)
    assert _same_frames(frames, extract_frames(path, info, keyframes))  # the keyframe samples are unchanged
    want = load_audio(path, info, sr=16000)
    assert pcm is not None and np.array_equal(pcm, want)  # and the audio is bit-identical to load_audio's


def test_bad_sample_rate_is_refused(tmp_path):
    path = make_video(tmp_path / "c.mp4", duration=1.0, size=(32, 18), fps=5)
    with pytest.raises(ValueError, match="sr=8"):
        extract_frames_and_audio(path, probe(path), PASS_PROFILES, sr=8)


def test_fast_decode_keeps_samples_and_audio_and_changes_pixels_only_slightly(tmp_path, monkeypatch):
    from pipelines.extract import ExtractConfig

    path = make_video(tmp_path / "clip.mp4", duration=3.0, size=(160, 96), fps=10, tone_hz=330.0)
    info = probe(path)
    calls = _tool_calls(monkeypatch)
    fast, pcm = extract_frames_and_audio(path, info, PASS_PROFILES, sr=16000, fast_decode=True)
    exact, want = extract_frames_and_audio(path, info, PASS_PROFILES, sr=16000)
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


def test_the_packet_scan_reads_the_probed_video_stream_not_cover_art_listed_first(tmp_path):
    from tests.media_factory import make_wild

    path = make_wild(tmp_path, "cover_art")
    if isinstance(path, str):
        pytest.skip(path)
    info = probe(path)
    assert info.video_stream != 0  # the cover art is stream 0
    times, keys = video._packet_scan(path, info, timeout=30)
    assert len(times) == info.n_frames and keys.any() and keys[0]


FULL = FrameProfile(name="full", mode="uniform", n_frames=8, size=120, short_side=120)  # 1:1 pixels of 160x120
_BWDIF = "bwdif=mode=send_frame:parity=auto:deint=interlaced,settb=expr=intb*2,select="


def _combing(frames: np.ndarray) -> float:
    """Mean |row y − row y+1| over mean |row y − row y+2| (grey levels): above 1 when the rows of two fields
    interleave, below 1 for a progressive picture (neighbouring rows are the most alike)."""
    grey = frames.astype(np.float32).mean(-1)
    return float(np.abs(grey[:, 1:] - grey[:, :-1]).mean() / np.abs(grey[:, 2:] - grey[:, :-2]).mean())


@pytest.fixture(scope="module")
def interlaced(media):
    """2 s, 25 interlaced frames a second (50 fields), 160x120, scrolling sideways; a keyframe every 10 frames."""
    return make_interlaced_video(media / "interlaced.mp4")


@pytest.mark.parametrize("strategy, keyframes, path_flag", [
    ("sequential", False, "-t"), ("seek", False, "concat"), ("auto", True, "nokey")])
def test_interlaced_video_is_deinterlaced_on_every_decode_path(interlaced, monkeypatch, strategy, keyframes,
                                                               path_flag):
    info = probe(interlaced)
    assert info.field_order == "tt"
    profile = dataclasses.replace(FULL, n_frames=4 if keyframes else 8, keyframes=keyframes)
    calls = _tool_calls(monkeypatch)
    deinterlaced = extract_frames(interlaced, info, [profile], strategy=strategy)["full"]
    woven = extract_frames(interlaced, dataclasses.replace(info, field_order="progressive"), [profile],
                           strategy=strategy)["full"]
    decodes = [c for c in calls if c[0].endswith("ffmpeg")]
    assert len(decodes) == 2 and all(path_flag in c for c in decodes)
    assert decodes[0][decodes[0].index("-vf") + 1].startswith(_BWDIF)
    assert "bwdif" not in decodes[1][decodes[1].index("-vf") + 1]
    # one output frame per input frame, at its own time: the same samples and times as the plain decode
    assert deinterlaced.valid.all() and woven.valid.all()
    np.testing.assert_array_equal(deinterlaced.times, woven.times)
    assert _combing(woven.frames) > 1.3 and _combing(deinterlaced.frames) < 0.8


def test_progressive_video_is_not_deinterlaced_and_a_late_start_keeps_its_times(media, interlaced, monkeypatch):
    progressive = make_interlaced_video(media / "progressive.mp4", interlaced=False)
    info = probe(progressive)
    assert info.field_order == "progressive"
    calls = _tool_calls(monkeypatch)
    frames = extract_frames(progressive, info, [FULL])["full"]
    decode = next(c for c in calls if c[0].endswith("ffmpeg"))
    assert "bwdif" not in decode[decode.index("-vf") + 1]
    assert _combing(frames.frames) < 0.8
    # MPEG-TS starts its timestamps at 1.4 s: the deinterlaced frames keep the plain decode's times
    ts = media / "interlaced.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(interlaced), "-c", "copy", str(ts)], check=True)
    info = probe(ts)
    assert info.interlaced and info.start_time > 1.0
    deinterlaced = extract_frames(ts, info, [FULL])["full"]
    woven = extract_frames(ts, dataclasses.replace(info, field_order="progressive"), [FULL])["full"]
    assert deinterlaced.valid.all()
    np.testing.assert_array_equal(deinterlaced.times, woven.times)
    assert _combing(woven.frames) > 1.3 and _combing(deinterlaced.frames) < 0.8
