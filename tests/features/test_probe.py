"""features.probe: facts of tiny generated files, rotation, VFR, and every refusal with a readable message."""

from __future__ import annotations

import math

import pytest

from features.media import MediaError
from features.probe import ProbeInfo, probe
from tests.media_factory import (
    EBML_CLUSTER,
    EBML_CUES,
    EBML_DURATION,
    EBML_INFO,
    EBML_SEEKHEAD,
    EBML_SEGMENT,
    ebml_children,
    ffprobe_json,
    make_audio_only,
    make_bomb_y4m,
    make_broadcast_asf,
    make_interlaced_video,
    make_recorder_webm,
    make_unfinalised_avi,
    make_patch_video,
    make_vfr_video,
    make_video,
    make_wild,
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


# ---------------------------------------------------------------------------------------------------- no duration
def _no_header_duration(path) -> None:
    """What makes these fixtures what they are: ffprobe finds no duration in the container nor in any stream."""
    raw = ffprobe_json(path)
    assert "duration" not in raw["format"], raw["format"]
    for stream in raw["streams"]:
        assert float(stream.get("duration", 0)) == 0, stream


def test_recorder_webm_has_the_browser_layout(media):
    """Chrome MediaRecorder's layout: Segment and Clusters of unknown size, Info without Duration, no Cues/SeekHead."""
    path = make_recorder_webm(media / "recorded.webm")
    data = path.read_bytes()
    top = ebml_children(data, 0, len(data))
    assert [e[0] for e in top] == [0x1A45DFA3, EBML_SEGMENT] and top[1][4] is None  # EBML header, unknown size
    _, at, n_id, n_size, _ = top[1]
    children = ebml_children(data, at + n_id + n_size, len(data))
    ids = [e[0] for e in children]
    assert EBML_SEEKHEAD not in ids and EBML_CUES not in ids and EBML_INFO in ids
    assert ids[-1] == EBML_CLUSTER and children[-1][4] is None  # the first cluster: unknown size
    info = children[ids.index(EBML_INFO)]
    info_ids = [e[0] for e in ebml_children(data, info[1] + info[2] + info[3], info[1] + info[2] + info[3] + info[4])]
    assert EBML_DURATION not in info_ids and 0x2AD7B1 in info_ids  # TimecodeScale, no Duration
    assert EBML_CUES.to_bytes(4, "big") not in data
    _no_header_duration(path)


@pytest.mark.parametrize("make, container, has_audio", [
    (lambda p: make_recorder_webm(p / "recorded.webm"), "matroska,webm", True),
    (lambda p: make_recorder_webm(p / "recorded_silent.webm", audio=False), "matroska,webm", False),
    (lambda p: make_broadcast_asf(p / "broadcast.asf"), "asf", True),
    (lambda p: make_unfinalised_avi(p / "unfinalised.avi"), "avi", True),
], ids=["webm", "webm-video-only", "asf", "avi"])
def test_duration_from_the_packets_when_the_container_has_none(media, make, container, has_audio):
    path = make(media)
    _no_header_duration(path)
    info = probe(path)
    assert info.container == container and info.has_audio is has_audio
    # 2 s of 10-fps video; the audio's last packet may end a little later (ffprobe gives 2.1 s for the finalised AVI)
    assert 2.0 - 1e-6 <= info.duration <= 2.15
    assert info.fps == 10.0
    assert info.n_frames == 20  # counted packets, not duration * fps guessed
    assert (info.width, info.height) == (96, 64)


def test_long_file_without_duration_is_scanned_to_its_end(media):
    """More packets than the first ffprobe pass reads: the duration comes from a full packet scan."""
    path = make_recorder_webm(media / "long_recorded.webm", duration=30.0, size=(32, 32), fps=25)
    info = probe(path)
    assert info.duration == pytest.approx(30.0, abs=0.1)
    assert info.n_frames == 750


def test_packet_scan_respects_the_duration_limit(media):
    path = make_recorder_webm(media / "recorded.webm")
    with pytest.raises(MediaError, match="longer than max_duration=1 s"):
        probe(path, max_duration=1.0)


def test_audio_only_recording_keeps_its_refusal(media, tmp_path):
    """A browser's audio-only recording (Opus in WebM, no duration either) is refused as audio-only."""
    import subprocess

    path = tmp_path / "voice.webm"
    done = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=300:sample_rate=48000:d=1",
                           "-c:a", "libopus", "-f", "webm", "pipe:1"], capture_output=True, check=True, timeout=60)
    path.write_bytes(done.stdout)
    with pytest.raises(MediaError, match="no video stream.*audio-only"):
        probe(path)


def test_the_audio_track_decoded_is_the_first_flagged_default_else_the_first():
    from features.probe import _main_audio

    def track(index, default):
        return {"index": index, "codec_type": "audio", "disposition": {"default": default}}

    assert _main_audio([track(1, 0), track(2, 1), track(3, 1)])["index"] == 2
    assert _main_audio([track(1, 0), track(2, 0)])["index"] == 1  # nothing flagged: the first
    assert _main_audio([{"index": 4}])["index"] == 4 and _main_audio([]) is None


def test_field_order_from_the_header_else_the_first_frame(media):
    woven = make_interlaced_video(media / "interlaced.mp4", duration=1.0)
    progressive = make_interlaced_video(media / "progressive.mp4", interlaced=False, duration=1.0)
    for path, expected in ((woven, ("tt", True)), (progressive, ("progressive", False))):
        info = probe(path)
        assert (info.field_order, info.interlaced) == expected
    # DV and MPEG-4 part 2 carry no field order in their headers: the first decoded frame's flags decide
    for name, expected in (("dv_raw", "bb"), ("mpeg4_avi", "progressive")):
        path = make_wild(media, name)
        if isinstance(path, str):
            pytest.skip(path)
        stream = next(s for s in ffprobe_json(path)["streams"] if s["codec_type"] == "video")
        assert stream.get("field_order") is None
        assert probe(path).field_order == expected
