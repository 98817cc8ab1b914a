"""First Impressions V2 end to end: official-structure pickles, a video named like an option, relative paths."""

from __future__ import annotations

import pytest

from features import open_store
from tests.features.sources.fi_fixtures import annotation_bytes, transcription_bytes
from tests.media_factory import make_video

TRAITS = ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness", "interview")


@pytest.mark.slow
def test_dash_named_video_from_relative_paths_through_ingest_and_extract(tmp_path, monkeypatch, prefect_harness):
    from flows import extract_features, ingest

    fi = tmp_path / "fi"
    (fi / "train").mkdir(parents=True)
    names = ["-abc.003.mp4", "--help.001.mp4"]
    for i, name in enumerate(names):
        make_video(fi / "train" / name, duration=2.0, size=(64, 48), fps=10, tone_hz=300.0 + 200 * i)
    scores = {t: {n: 0.25 + 0.1 * j + 0.05 * i for i, n in enumerate(names)} for j, t in enumerate(TRAITS)}
    (fi / "annotation_training.pkl").write_bytes(annotation_bytes(scores))
    (fi / "transcription_training.pkl").write_bytes(transcription_bytes(
        {names[0]: "", names[1]: "[inaudible 00:00:16] talking about caf\u00e9 culture\u2026 isn\u2019t it"}))
    monkeypatch.chdir(tmp_path)  # every path below is relative, and the names start with "-"

    result = ingest(dataset="fi", source="first-impressions", path="fi", root="root")
    assert result["added"] == 2
    store = open_store("root", "fi")
    m = store.manifest().set_index("video_id")
    assert m.loc["-abc.003", "transcript"] == "" and m.loc["-abc.003", "interview"] == scores["interview"][names[0]]

    extract_features(dataset="fi", root="root", workers=1)
    assert store.failures().empty, store.failures().to_dict("records")
    for vid in ("-abc.003", "--help.001"):
        probe = store.entries("probe")[vid].record
        assert probe["width"] == 64 and abs(probe["duration"] - 2.0) < 0.2
        assert store.read("audio", vid)["segments_mask"].sum() == 2  # two seconds of audio
        assert store.read("frames", vid)["per_second_valid"].any()
    tr = store.entries("transcripts")
    assert tr["-abc.003"].record["text"] == "" and tr["-abc.003"].record["source"] == "dataset"  # no ASR over it
    assert tr["--help.001"].record["text"].startswith("[inaudible 00:00:16]")  # raw text kept
    text = store.entries("text")
    assert text["-abc.003"].record["n_tokens"] == 0
    assert text["--help.001"].record["n_tokens"] == 4  # talk, café, cultur, isnt: no marker words
