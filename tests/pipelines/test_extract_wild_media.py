"""Media as users have it, through the real ``folder`` ingest and every extraction stage: containers without a duration
(browser-recorded WebM, broadcast ASF, unfinalised AVI), tiny pictures (1x1, 8x8), a 0.06-s audio track under speech
recognition, the audio-only refusal, and the valid but unusual files of :data:`tests.media_factory.WILD_CASES`
(broadcast TS, FLV, 3GP, Ogg, ProRes / MJPEG / Animation MOV, DV, HEVC 10-bit, VP9 4:4:4, AV1, raw H.264, GIF, APNG,
Y4M; two audio tracks, 5.1, 96 kHz, cover art before the video, late audio, anamorphic pixels, odd sizes, 1 frame,
120 fps, 0.5 fps, a 1000-frame GOP, a still-picture podcast)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from features import open_store
from pipelines.extract import STAGES, ExtractConfig
from tests.media_factory import (WILD_CASES, make_audio_only, make_broadcast_asf, make_recorder_webm, make_tiny_video,
                                 make_unfinalised_avi, make_wild)

CFG = ExtractConfig(n_segments=3, n_frames=8, n_mfcc=13, clip_frames=32, asr="pocketsphinx")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, prefect_harness):
    from flows import extract_features, ingest

    base = tmp_path_factory.mktemp("wild")
    folder = base / "media"
    folder.mkdir()
    make_recorder_webm(folder / "recorded.webm")
    make_broadcast_asf(folder / "broadcast.asf")
    make_unfinalised_avi(folder / "unfinalised.avi")
    make_tiny_video(folder / "tiny1x1.mkv", (1, 1), vcodec="ffv1")  # 4:2:0 with 1-pixel sides
    make_tiny_video(folder / "tiny8x8.mp4", (8, 8), right="white")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1", "-f", "lavfi",
                    "-i", "sine=f=440:sample_rate=16000:d=0.06", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(folder / "blip.mp4")], check=True, capture_output=True)
    make_audio_only(base / "tone.m4a")
    (folder / "voice.mp4").write_bytes((base / "tone.m4a").read_bytes())
    skipped = {name: why for name in WILD_CASES if isinstance(why := make_wild(folder, name), str)}
    root = base / "root"
    ingest(dataset="wild", source="folder", path=str(folder), root=str(root))
    result = extract_features(dataset="wild", root=str(root), config=CFG, batch_size=4, workers=2)
    return open_store(root, "wild"), result, skipped


@pytest.mark.parametrize("vid", ["recorded", "broadcast", "unfinalised", "tiny1x1", "tiny8x8", "blip"])
def test_every_stage_is_done(extracted, vid):
    store, *_ = extracted
    fails = store.failures()
    assert fails[fails["video_id"] == vid].empty, fails[fails["video_id"] == vid].to_dict("records")
    assert all(store.entry(stage, vid) is not None for stage in STAGES)


@pytest.mark.parametrize("vid", ["recorded", "broadcast", "unfinalised"])
def test_duration_without_a_header_duration(extracted, vid):
    store, *_ = extracted
    probe = store.read("probe", vid)
    assert 2.0 - 1e-6 <= probe["duration"] <= 2.15 and probe["n_frames"] == 20
    frames = store.read("frames", vid)
    assert frames["per_second_valid"].tolist() == [True, True, False]  # seconds 0 and 1 of a 2-s clip
    assert frames["uniform_valid"].all()
    audio = store.read("audio", vid)
    assert audio["segments_mask"].tolist() == [True, True, False] and bool(audio["clip_valid"])


def test_tiny_pictures_are_scaled_up_through_the_frames_stage(extracted):
    store, *_ = extracted
    one = store.read("frames", "tiny1x1")
    assert one["uniform"].shape == (8, 64, 64, 3) and one["uniform_valid"].all()
    flat = one["uniform"].reshape(-1, 3)
    assert (flat == flat[0]).all() and flat[0].astype(int).sum() > 0  # one colour, scaled over the whole square
    eight = store.read("frames", "tiny8x8")
    assert eight["per_second_valid"].tolist() == [True, True, False] and eight["uniform_valid"].all()
    frames = eight["uniform"].astype(int)
    # left half blue-ish, right half white (the 4:2:0 crop may shift the 6-pixel centre square by one source pixel,
    # so only the outer fifths are compared)
    assert np.abs(frames[:, :, :12] - [32, 128, 192]).max() <= 4 and (frames[:, :, -12:] >= 250).all()
    assert store.read("metadata", "tiny1x1")["width"] == 1


def test_a_short_audio_track_is_an_empty_transcript(extracted):
    store, *_ = extracted
    transcript = store.read("transcripts", "blip")
    assert transcript["text"] == "" and transcript["source"] == "asr:pocketsphinx"
    assert store.read("audio", "blip")["clip_valid"]


def test_audio_only_keeps_its_refusal(extracted):
    store, result, skipped = extracted
    assert store.failure("probe", "voice")["error"].endswith(
        "has no video stream (an audio-only file); use a video file; audio-only input is not supported")
    assert result["failed_videos"] == 1 + len(set(REFUSED) - set(skipped)) and result["missing_sources"] == 0


# case → (video codec, audio codec, duration s, fps, stored (width, height), per-second validity, valid uniform frames)
WILD = {
    "ts_wrap": ("h264", "aac", 2.0, 25, (64, 48), [True, True, False], 8),  # timestamps wrap 0.7 s in
    "flv": ("flv1", "mp3", 2.0, 10, (64, 48), [True, True, False], 8),
    "3gp": ("h263", "aac", 2.0, 10, (128, 96), [True, True, False], 8),
    "ogv": ("theora", "vorbis", 2.0, 10, (64, 48), [True, True, False], 8),
    "prores": ("prores", "pcm_s24le", 2.0, 10, (64, 48), [True, True, False], 8),
    "qtrle": ("qtrle", "pcm_f32le", 2.0, 10, (64, 48), [True, True, False], 8),
    "mpeg4_avi": ("mpeg4", "mp3", 2.0, 10, (64, 48), [True, True, False], 8),
    "mjpeg_avi": ("mjpeg", "pcm_u8", 2.0, 10, (64, 48), [True, True, False], 8),
    "vob": ("mpeg2video", "mp2", 2.0, 25, (352, 288), [True, True, False], 8),
    "wmv": ("wmv2", "wmav2", 2.0, 10, (64, 48), [True, True, False], 8),
    "dv_raw": ("dvvideo", "pcm_s16le", 1.0, 25, (720, 576), [True, False, False], 8),
    "hevc10": ("hevc", "aac", 2.0, 10, (64, 48), [True, True, False], 8),
    "vp9_444": ("vp9", "opus", 2.0, 10, (64, 48), [True, True, False], 8),
    "av1": ("av1", "aac", 2.0, 10, (64, 48), [True, True, False], 8),
    "h264_422_10": ("h264", "aac", 2.0, 10, (64, 48), [True, True, False], 8),
    "h264_raw": ("h264", None, 2.0, 10, (64, 48), [True, True, False], 8),
    "gif": ("gif", None, 2.0, 10, (64, 48), [True, True, False], 8),
    "apng": ("apng", None, 2.0, 10, (64, 48), [True, True, False], 8),
    "y4m": ("rawvideo", None, 2.0, 10, (32, 24), [True, True, False], 8),
    "two_audio": ("h264", "aac", 2.0, 10, (64, 48), [True, True, False], 8),
    "surround": ("h264", "ac3", 2.0, 10, (64, 48), [True, True, False], 8),
    "hires_audio": ("h264", "flac", 2.0, 10, (64, 48), [True, True, False], 8),
    "cover_art": ("h264", "aac", 2.0, 10, (64, 48), [True, True, False], 8),
    "subs_data": ("h264", "aac", 2.0, 10, (64, 48), [True, True, False], 8),
    "audio_late": ("h264", "aac", 3.0, 10, (64, 48), [True, True, True], 8),
    "anamorphic": ("h264", "aac", 2.0, 10, (360, 240), [True, True, False], 8),
    "odd_size": ("ffv1", None, 2.0, 10, (33, 17), [True, True, False], 8),
    "one_frame": ("h264", None, 0.1, 10, (64, 48), [False, False, False], 1),  # a 0.1-s clip: no second reached
    "fps120": ("h264", None, 1.5, 120, (32, 24), [True, False, False], 8),
    "fps_half": ("h264", None, 4.0, 0.5, (64, 48), [True, True, False], 2),  # 2 frames: at 0 s and 2 s
    "long_gop": ("h264", None, 6.0, 25, (32, 24), [True, True, True], 8),
    "podcast": ("h264", "aac", 4.0, 1, (64, 48), [True, True, True], 4),  # 1 fps: 4 frames for 8 uniform samples
}
# case → the end of its recorded probe failure (every later stage: "skipped: probe failed")
REFUSED = {"music_cover": "has no video stream (an audio-only file); use a video file; audio-only input is not supported"}
FLAT = {"cover_art": (32, 128, 192), "podcast": (32, 128, 192)}  # one colour over the whole picture (RGB)
# case → its field order, where it is not progressive (DV: from the first frame's flags; its header has none)
INTERLACED = {"vob": "tt", "dv_raw": "bb"}


def _case(extracted, case):
    store, _, skipped = extracted
    if case in skipped:
        pytest.skip(skipped[case])
    return store


def test_every_wild_case_has_an_expectation():
    assert set(WILD) | set(REFUSED) == set(WILD_CASES) and not set(WILD) & set(REFUSED)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unusable_wild_media_is_one_clear_failure(extracted, case):
    store = _case(extracted, case)
    assert store.failure("probe", case)["error"].endswith(REFUSED[case])
    for stage in STAGES[1:]:
        failure = store.failure(stage, case)
        assert failure is None or failure["error"].startswith("skipped: probe failed"), (stage, failure)


@pytest.mark.parametrize("case", sorted(WILD))
def test_wild_media_probe(extracted, case):
    store = _case(extracted, case)
    fails = store.failures()
    assert fails[fails["video_id"] == case].empty, fails[fails["video_id"] == case].to_dict("records")
    assert all(store.entry(stage, case) is not None for stage in STAGES)
    vcodec, acodec, duration, fps, (w, h), _, _ = WILD[case]
    probe = store.read("probe", case)
    assert duration - 1e-3 <= probe["duration"] <= duration + 0.15, probe
    assert probe["fps"] == pytest.approx(fps, rel=1e-3) and probe["rotation"] == 0
    assert (probe["width"], probe["height"]) == (w, h)
    assert (probe["video_codec"], probe["audio_codec"], probe["has_audio"]) == (vcodec, acodec, acodec is not None)
    assert probe["field_order"] == INTERLACED.get(case, "progressive")
    if case not in ("anamorphic", "dv_raw"):
        assert (probe["display_width"], probe["display_height"]) == (w, h)


@pytest.mark.parametrize("case", sorted(WILD))
def test_wild_media_frames(extracted, case):
    store = _case(extracted, case)
    *_, per_second, n_uniform = WILD[case]
    frames = store.read("frames", case)
    assert frames["uniform"].shape == (8, 64, 64, 3) and frames["per_second"].shape == (3, 64, 64, 3)
    assert frames["per_second_valid"].tolist() == per_second
    assert int(frames["uniform_valid"].sum()) == n_uniform and frames["uniform_valid"][0]
    shown = frames["uniform"][frames["uniform_valid"]].astype(int)
    assert not frames["uniform"][~frames["uniform_valid"]].any()  # invalid samples are zeros
    if case in FLAT:
        assert np.abs(shown - FLAT[case]).max() <= 4
    elif case not in ("anamorphic", "odd_size"):  # testsrc2: a colourful, moving picture in every valid frame
        assert all(frame.std() > 20 for frame in shown)
        assert n_uniform == 1 or np.abs(shown[0] - shown[-1]).mean() > 1  # not one frozen picture


@pytest.mark.parametrize("case", sorted(WILD))
def test_wild_media_audio(extracted, case):
    store = _case(extracted, case)
    acodec, duration = WILD[case][1], WILD[case][2]
    audio = store.read("audio", case)
    assert np.isfinite(audio["segments"]).all() and np.isfinite(audio["clip"]).all()
    assert bool(audio["clip_valid"]) == (acodec is not None)  # every track here is a tone (two_audio: see below)
    if acodec is not None:
        assert audio["segments_mask"].tolist() == [s + 0.5 <= duration for s in range(3)]


def test_the_default_flagged_audio_track_is_the_one_decoded(extracted):
    store = _case(extracted, "two_audio")
    probe = store.read("probe", "two_audio")
    # track 1: silent, 8 kHz, not flagged; track 2: a 32-kHz tone flagged default
    assert (probe["audio_stream"], probe["sample_rate"]) == (2, 32000)
    assert store.read("audio", "two_audio")["clip_valid"]


def test_cover_art_before_the_video_is_not_the_video(extracted):
    store = _case(extracted, "cover_art")
    probe = store.read("probe", "cover_art")
    assert (probe["video_stream"], probe["audio_stream"], probe["video_codec"]) == (1, 2, "h264")
    frames = store.read("frames", "cover_art")["uniform"].astype(int)
    assert np.abs(frames - [32, 128, 192]).max() <= 4  # the blue video, not the red 32x32 cover


def test_audio_that_starts_late_is_padded_in_step_with_the_video(extracted):
    store = _case(extracted, "audio_late")
    # a 2-s track starting at 0.5 s: 2.5 s of PCM from the file's start (2.0 s if it were shifted to 0)
    samples = store.read("audio", "audio_late")["samples"]
    assert 2.45 * 16000 <= samples <= 2.56 * 16000


def test_anamorphic_pixels_are_shown_at_their_display_aspect(extracted):
    store = _case(extracted, "anamorphic")
    probe = store.read("probe", "anamorphic")
    assert (probe["display_width"], probe["display_height"]) == (427, 240)
    assert probe["sample_aspect_ratio"] == pytest.approx(32 / 27)
    # A white band 102 stored pixels wide in a 360x240 picture; the frame is the centre 80 % of the display-square
    # crop (64 of 80): 162 stored pixels across at SAR 32:27, so the band fills 64·102/162 = 40.3 columns (34.0 if
    # the pixels were taken as square).
    frames = store.read("frames", "anamorphic")["uniform"].astype(float)
    white = np.flatnonzero(frames.mean(axis=(0, 1, 3)) > 128)
    assert abs(len(white) - 40.3) <= 1.5 and abs(white.mean() - 31.5) <= 1.0


def test_raw_dv_has_its_pal_pixel_aspect(extracted):
    store = _case(extracted, "dv_raw")
    probe = store.read("probe", "dv_raw")
    assert (probe["display_width"], probe["display_height"]) == (768, 576)
    assert (probe["sample_rate"], probe["channels"]) == (48000, 2)


def test_odd_sized_picture_keeps_its_halves(extracted):
    store = _case(extracted, "odd_size")
    frames = store.read("frames", "odd_size")["uniform"].astype(int)
    # 33x17: blue left of column 17, white from it; the centre crop keeps the middle 80 % of the 17-pixel square
    assert np.abs(frames[:, :, :20] - [32, 128, 192]).max() <= 6 and (frames[:, :, -20:] >= 248).all()


@pytest.mark.parametrize("case, rate, channels", [("3gp", 8000, 1), ("surround", 48000, 6),
                                                  ("hires_audio", 96000, 1), ("prores", 48000, 1), ("qtrle", 48000, 1),
                                                  ("mjpeg_avi", 22050, 1)])
def test_unusual_audio_tracks(extracted, case, rate, channels):
    store = _case(extracted, case)
    probe = store.read("probe", case)
    assert (probe["sample_rate"], probe["channels"]) == (rate, channels)
    assert store.read("audio", case)["clip_valid"]


def test_very_low_frame_rate_keeps_frame_times(extracted):
    store = _case(extracted, "fps_half")
    frames = store.read("frames", "fps_half")
    # frames at 0 s and 2 s: second 1 (its bin widened by half a 2-s frame interval) takes the frame at 2 s
    np.testing.assert_allclose(frames["per_second_times"][:2], [0.0, 2.0], atol=1e-3)
    assert np.isnan(frames["per_second_times"][2])
