"""features.probe: facts of tiny generated files, rotation, VFR, and every refusal with a readable message."""

from __future__ import annotations

import math

import pytest

from features.media import MediaError
from features.probe import ProbeInfo, probe
from tests.media_factory import (
    ffprobe_json,
    make_audio_only,
    make_bomb_y4m,
    make_patch_video,
    make_vfr_video,
    make_video,
    set_rotation,
    truncate,
    write_random,
)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tmp_path_factory.mktemp("probe_media")


@pytest.fixture(scope="module")
def clip(media):
    return make_video(media / "clip.mp4", duration=2.0, size=(96, 64), fps=25)


def test_facts_of_a_generated_clip(clip):
    info = probe(clip)
    assert isinstance(info, ProbeInfo)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert info.fps == 25.0
    assert info.n_frames == 50
    assert (info.width, info.height) == (96, 64)
    assert (info.rotation, info.display_width, info.display_height) == (0, 96, 64)
    assert info.video_codec == "h264"
    assert (info.audio_codec, info.has_audio, info.sample_rate, info.channels) == ("aac", True, 44100, 1)
    assert info.has_video and not info.variable_frame_rate
    assert "mp4" in info.container
    assert info.size_bytes == clip.stat().st_size


def test_to_record_is_plain_scalars(clip):
    record = probe(clip).to_record()
    assert set(record) >= {"duration", "fps", "n_frames", "width", "height", "rotation", "display_width",
                           "display_height", "video_codec", "audio_codec", "has_video", "has_audio", "sample_rate",
                           "channels", "container", "variable_frame_rate"}
    assert all(v is None or type(v) in (str, int, float, bool) for v in record.values())


def test_video_without_audio(media):
    info = probe(make_video(media / "silent.mkv", duration=1.0, audio=False))
    assert (info.has_audio, info.audio_codec, info.sample_rate, info.channels) == (False, None, None, None)
    assert "matroska" in info.container
    assert info.duration == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_gives_display_size(media, rotation):
    src = make_patch_video(media / f"src{rotation}.mp4", size=(128, 64))
    rotated = set_rotation(src, media / f"rot{rotation}.mp4", rotation)
    info = probe(rotated)
    assert (info.width, info.height) == (128, 64)
    assert info.rotation == rotation
    expected = (64, 128) if rotation in (90, 270) else (128, 64)
    assert (info.display_width, info.display_height) == expected


def test_variable_frame_rate_is_detected(media, clip):
    info = probe(make_vfr_video(media / "vfr.mp4"))
    assert info.variable_frame_rate
    assert info.n_frames == 50  # 30 frames in the first second, then 10 fps for 2 s
    assert not probe(clip).variable_frame_rate


@pytest.mark.parametrize(
    "name", ["with space.mp4", "ünïcödé 视频.mp4", "-leading-dash.mp4", "--help.mp4", "colon:in:name.mp4", "$(x);'q.mp4"]
)
def test_odd_file_names(media, clip, name):
    odd = media / name
    odd.write_bytes(clip.read_bytes())
    assert probe(odd).n_frames == 50


def test_relative_leading_dash_path(media, clip, monkeypatch):
    monkeypatch.chdir(media)
    (media / "-i").write_bytes(clip.read_bytes())
    assert probe("-i").width == 96


def test_zero_byte_file(media):
    empty = media / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty \(0 bytes\)"):
        probe(empty)


def test_missing_file(media):
    with pytest.raises(MediaError, match="file not found"):
        probe(media / "nope.mp4")


def test_random_bytes_named_mp4(media):
    with pytest.raises(MediaError, match="not a readable media file"):
        probe(write_random(media / "random.mp4"))


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95])
def test_truncated_mp4_with_index_at_the_end_is_refused(media, clip, fraction):
    cut = truncate(clip, media / f"cut{fraction}.mp4", fraction)
    with pytest.raises(MediaError, match="not a readable media file|no video stream|no usable"):
        probe(cut)


def test_audio_only_file(media):
    with pytest.raises(MediaError, match="no video stream.*audio-only"):
        probe(make_audio_only(media / "tone.m4a"))


def test_huge_resolution_is_refused_before_decoding(media):
    bomb = make_bomb_y4m(media / "bomb.y4m", width=16000, height=16000)
    raw = ffprobe_json(bomb)["streams"][0]
    assert (raw["width"], raw["height"]) == (16000, 16000)  # the header really declares it
    with pytest.raises(MediaError, match=r"16000x16000.*decompression-bomb"):
        probe(bomb)


def test_max_pixels_and_max_duration_limits(clip):
    with pytest.raises(MediaError, match="96x64.*max_pixels=1,000"):
        probe(clip, max_pixels=1000)
    with pytest.raises(MediaError, match="longer than max_duration=1 s"):
        probe(clip, max_duration=1.0)


@pytest.mark.parametrize("kwargs", [{"max_pixels": 0}, {"max_duration": -1}, {"max_pixels": 1.5}])
def test_bad_limits_are_value_errors(clip, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        probe(clip, **kwargs)


def test_duration_is_finite_and_positive(clip):
    info = probe(clip)
    assert math.isfinite(info.duration) and info.duration > 0
