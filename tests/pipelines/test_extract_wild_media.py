"""Media as users have it, through the real ``folder`` ingest and every extraction stage: containers without a duration
(browser-recorded WebM, broadcast ASF, unfinalised AVI), tiny pictures (1x1, 8x8), a 0.06-s audio track under speech
recognition, and the audio-only refusal."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from features import open_store
from pipelines.extract import STAGES, ExtractConfig
from tests.media_factory import (make_audio_only, make_broadcast_asf, make_recorder_webm, make_tiny_video,
                                 make_unfinalised_avi)

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
    root = base / "root"
    ingest(dataset="wild", source="folder", path=str(folder), root=str(root))
    result = extract_features(dataset="wild", root=str(root), config=CFG, batch_size=4, workers=2)
    return open_store(root, "wild"), result


@pytest.mark.parametrize("vid", ["recorded", "broadcast", "unfinalised", "tiny1x1", "tiny8x8", "blip"])
def test_every_stage_is_done(extracted, vid):
    store, _ = extracted
    fails = store.failures()
    assert fails[fails["video_id"] == vid].empty, fails[fails["video_id"] == vid].to_dict("records")
    assert all(store.entry(stage, vid) is not None for stage in STAGES)


@pytest.mark.parametrize("vid", ["recorded", "broadcast", "unfinalised"])
def test_duration_without_a_header_duration(extracted, vid):
    store, _ = extracted
    probe = store.read("probe", vid)
    assert 2.0 - 1e-6 <= probe["duration"] <= 2.15 and probe["n_frames"] == 20
    frames = store.read("frames", vid)
    assert frames["per_second_valid"].tolist() == [True, True, False]  # seconds 0 and 1 of a 2-s clip
    assert frames["uniform_valid"].all()
    audio = store.read("audio", vid)
    assert audio["segments_mask"].tolist() == [True, True, False] and bool(audio["clip_valid"])


def test_tiny_pictures_are_scaled_up_through_the_frames_stage(extracted):
    store, _ = extracted
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
    store, _ = extracted
    transcript = store.read("transcripts", "blip")
    assert transcript["text"] == "" and transcript["source"] == "asr:pocketsphinx"
    assert store.read("audio", "blip")["clip_valid"]


def test_audio_only_keeps_its_refusal(extracted):
    store, result = extracted
    assert store.failure("probe", "voice")["error"].endswith(
        "has no video stream (an audio-only file); use a video file; audio-only input is not supported")
    assert result["failed_videos"] == 1 and result["missing_sources"] == 0
