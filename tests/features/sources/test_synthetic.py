"""Tests for features/sources/synthetic.py: real files in the three real formats, and planted truth that survives
encoding and the pipeline's extraction (short side -> 80, centre crop 64x64; mono 16 kHz audio)."""

from __future__ import annotations

import json
import math
import pickle
import pickletools
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import cv2
import librosa
import numpy as np
import pandas as pd
import pytest
import scipy.fft
import scipy.io.wavfile
import scipy.signal
import scipy.stats

from features.sources import synthetic
from features.sources.synthetic import SyntheticDataset, generate_synthetic

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs ffmpeg and ffprobe")

TRAITS = ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness")
ARGS = dict(n_videos=6, seed=3, workers=2, min_duration=2.0, max_duration=4.0)
FI_TAGS = {"train": "training", "val": "validation", "test": "test"}
CODECS = {"mp4": ("h264", {"aac"}), "mkv": ("h264", {"opus", "vorbis"}), "avi": ("mpeg4", {"mp3"}),
          "webm": ("vp8", {"vorbis"})}
SPEAKS = shutil.which("espeak-ng") is not None or shutil.which("espeak") is not None


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> SyntheticDataset:
    return generate_synthetic(tmp_path_factory.mktemp("syn") / "data", speech=True, **ARGS)


@pytest.fixture(scope="module")
def gt(ds) -> pd.DataFrame:
    return ds.ground_truth


@pytest.fixture(scope="module")
def mute(tmp_path_factory) -> SyntheticDataset:
    """The same dataset without speech (same labels and cues: speech draws nothing from the seeded generator)."""
    return generate_synthetic(tmp_path_factory.mktemp("mute") / "data", speech=False, **ARGS)


# ------------------------------------------------------------------------------------------------------- helpers

def _probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _decode_rgb(path: Path, width: int, height: int) -> np.ndarray:
    """(T, H, W, 3) uint8, every frame as stored (no frame-rate conversion)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "-fps_mode", "passthrough", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def _decode_audio(path: Path, sr: int = 16000) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sr), "-f", "f32le",
                          "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32)


def _pipeline_crop(frame: np.ndarray) -> np.ndarray:
    """What the frames stage does: resize so the short side is 80, centre-crop 64x64."""
    h, w = frame.shape[:2]
    scale = 80 / min(h, w)
    frame = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    h, w = frame.shape[:2]
    y, x = (h - 64) // 2, (w - 64) // 2
    return frame[y:y + 64, x:x + 64]


def _band_db(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return 10 * math.log10(spec[(f >= lo) & (f <= hi)].sum() + 1e-12)


def _peak_hz(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    f = np.fft.rfftfreq(len(x), 1 / sr)
    band = (f >= lo) & (f <= hi)
    return float(f[band][np.argmax(spec[band])])


def _cue_band_from_mfcc(seg: np.ndarray, sr: int) -> float:
    """A fixed linear read-out of 13 MFCCs: undo the DCT and average the log-mel bands inside the cue's 1.5-7.5 kHz."""
    mfcc = librosa.feature.mfcc(y=seg, sr=sr, n_mfcc=13)  # librosa defaults: 128 mel bands, orthonormal DCT-II
    log_mel = scipy.fft.idct(np.pad(mfcc, ((0, 128 - 13), (0, 0))), type=2, norm="ortho", axis=0)
    freqs = librosa.mel_frequencies(n_mels=128, fmax=sr / 2)
    return float(log_mel[(freqs >= 1500) & (freqs <= 7500)].mean())


def _recency(n: int) -> np.ndarray:
    """The documented weights: 1 inside the 15-s window, 6 for the last 3 s, 0 before the window; sum 1."""
    w = np.array([0.0 if t < n - 15 else 6.0 if t >= n - 3 else 1.0 for t in range(n)])
    return w / w.sum()


# --------------------------------------------------------------------------------------------------------- tests

def test_every_format_is_written_and_parses_with_plain_readers(ds, gt):
    names = set(gt["name"])
    assert set(ds.files) == {*(f"{k}_{t}" for k in ("annotation", "transcription") for t in FI_TAGS.values()),
                             "liris_ranking", "liris_sets", "tiktok_scrape", "tiktok_posts",
                             "ground_truth_parquet", "ground_truth_json"}
    assert all(p.is_file() and p.parent == ds.out_dir for p in ds.files.values())
    assert [p.name for p in ds.video_paths] == gt["name"].tolist()
    assert sorted(p.name for p in (ds.out_dir / "videos").iterdir()) == sorted(names)  # no temporaries left

    # First Impressions: py2 protocol-2 pickles whose strings are py2 str (needs encoding="latin1").
    seen = {}
    for split, tag in FI_TAGS.items():
        raw = ds.files[f"annotation_{tag}"].read_bytes()
        ops = {op.name for op, _, _ in pickletools.genops(raw)}
        assert raw[:2] == b"\x80\x02" and "SHORT_BINSTRING" in ops and not ops & {"BINUNICODE", "SHORT_BINUNICODE"}
        ann = pickle.loads(raw, encoding="latin1")
        assert set(ann) == {*TRAITS, "interview"}
        part = gt[gt["split"] == split]
        for trait, scores in ann.items():
            assert scores == dict(zip(part["name"], part[trait]))  # exact floats
            assert all(0.0 <= s <= 1.0 for s in scores.values())
        tr = pickle.loads(ds.files[f"transcription_{tag}"].read_bytes(), encoding="latin1")
        assert tr == dict(zip(part["name"], part["transcript"]))
        seen.update(dict.fromkeys(tr, split))
    assert seen == dict(zip(gt["name"], gt["split"]))  # every video in exactly one split
    assert gt["split"].value_counts().to_dict() == {"train": 4, "val": 1, "test": 1}  # 60/20/20 of 6, rounded

    # LIRIS-ACCEDE
    rank = pd.read_csv(ds.files["liris_ranking"], sep="\t")
    assert list(rank.columns) == ["id", "name", "valenceRank", "arousalRank", "valenceValue", "arousalValue",
                                  "valenceVariance", "arousalVariance"]
    assert rank["id"].tolist() == list(range(6)) and rank["name"].tolist() == gt["name"].tolist()
    assert rank["valenceValue"].tolist() == gt["valence"].tolist()
    assert rank["arousalValue"].tolist() == gt["arousal"].tolist()
    for col in ("valence", "arousal"):  # 0-based ranks of the values
        assert rank[f"{col}Rank"].tolist() == np.argsort(np.argsort(rank[f"{col}Value"].to_numpy())).tolist()
        assert rank[f"{col}Variance"].between(0.0, 1.0, inclusive="neither").all()
    assert rank[["valenceValue", "arousalValue"]].stack().between(1, 5).all()
    sets = pd.read_csv(ds.files["liris_sets"], sep="\t")
    assert list(sets.columns) == ["id", "name", "set"]
    assert sets["set"].tolist() == gt["split"].map({"train": 1, "val": 2, "test": 0}).tolist()

    # TikTok
    posts = [json.loads(line) for line in ds.files["tiktok_posts"].read_text().splitlines()]
    assert [p["id"] for p in posts] == gt["video_id"].tolist()
    for post, row in zip(posts, gt.itertuples()):
        assert set(post) == {"id", "createTime", "stats", "music", "desc", "video"}
        assert set(post["stats"]) == {"playCount", "shareCount", "commentCount", "diggCount"}
        assert all(type(v) is int and v >= 0 for v in post["stats"].values())
        assert type(post["createTime"]) is int and post["video"]["duration"] == round(row.duration)
        assert post["music"]["id"] == (row.song_id if isinstance(row.song_id, str) else "")
    assert json.loads(ds.files["tiktok_scrape"].read_text()) == {"scrape_time": 1_700_000_000}

    # ground truth
    pd.testing.assert_frame_equal(pd.read_parquet(ds.files["ground_truth_parquet"]), gt, check_dtype=False)
    doc = json.loads(ds.files["ground_truth_json"].read_text())
    assert doc["seed"] == 3 and doc["params"]["n_videos"] == 6
    assert doc["labels"]["extraversion"]["modality"] == ["visual"]
    assert doc["labels"]["neuroticism"]["modality"] == ["audio"]
    assert doc["labels"]["agreeableness"]["modality"] == ["text"]
    assert doc["labels"]["openness"]["modality"] == ["visual", "audio"]
    for s, w in doc["recency_weights"]["by_n_seconds"].items():
        np.testing.assert_allclose(w, _recency(int(s)))


def test_ffprobe_reads_every_video_as_planned(ds, gt):
    assert set(gt["container"]) == set(CODECS)  # 6 videos already cover every container
    assert set(gt["orientation"]) == {"landscape", "portrait"} and (~gt["has_audio"]).sum() == 1
    for path, row in zip(ds.video_paths, gt.itertuples()):
        info = _probe(path)
        video = [s for s in info["streams"] if s["codec_type"] == "video"]
        audio = [s for s in info["streams"] if s["codec_type"] == "audio"]
        assert len(video) == 1 and len(audio) == int(row.has_audio), path.name
        v = video[0]
        assert (v["codec_name"], v["width"], v["height"]) == (CODECS[row.container][0], row.width, row.height)
        assert (v["width"] > v["height"]) == (row.orientation == "landscape")
        num, den = map(int, v["r_frame_rate"].split("/"))
        assert num / den == row.fps and row.fps in (24, 25, 30)
        assert 2.0 - 0.5 / row.fps <= row.duration <= 4.0 + 0.5 / row.fps
        assert abs(float(info["format"]["duration"]) - row.duration) < 0.1, path.name
        if row.has_audio:
            assert audio[0]["codec_name"] == row.audio_codec and audio[0]["codec_name"] in CODECS[row.container][1]
            assert abs(float(audio[0].get("duration", info["format"]["duration"])) - row.duration) < 0.1


def _assert_documented_formulas(gt: pd.DataFrame) -> None:
    clip01 = lambda x: min(max(x, 0.0), 1.0)  # noqa: E731
    for r in gt.itertuples():
        s = math.floor(r.duration + 1e-9)
        assert r.n_seconds == s == len(r.visual_cue) == len(r.audio_cue)
        w = _recency(s)
        np.testing.assert_allclose(r.recency_weights, w)
        assert r.valence == pytest.approx(min(max(1 + 4 * w @ np.array(r.visual_cue) + r.noise_valence, 1), 5))
        # synchrony: k beat and k flash seconds inside the last min(S, 15) seconds, m of them shared, sync = m / k
        beat, flash = np.array(r.sync_beat, dtype=bool), np.array(r.sync_flash, dtype=bool)
        window = min(s, 15)
        k = max(1, window // 3)
        assert len(beat) == len(flash) == s and beat.sum() == flash.sum() == k
        assert not beat[: s - window].any() and not flash[: s - window].any()
        assert r.sync_cue == (beat & flash).sum() / k
        sync_part, recency_part = 4 * 0.35 * r.sync_cue, 4 * 0.65 * w @ np.array(r.audio_cue)
        assert (r.arousal_sync_part, r.arousal_recency_part) == (pytest.approx(sync_part), pytest.approx(recency_part))
        assert r.valence_recency_part == pytest.approx(4 * w @ np.array(r.visual_cue))
        assert r.arousal == pytest.approx(min(max(1 + recency_part + sync_part + r.noise_arousal, 1), 5))
        words = re.findall(r"[a-z]+", r.transcript.lower())
        k_a = sum(wd in {"kind", "friendly", "warm", "gentle"} for wd in words)
        k_c = sum(wd in {"plan", "careful", "organised", "deadline"} for wd in words)
        assert (k_a, k_c) == (r.agreeableness_words, r.conscientiousness_words)
        x = {"extraversion": r.extraversion_cue, "neuroticism": r.neuroticism_cue, "agreeableness": k_a / 4,
             "conscientiousness": k_c / 4, "openness": (r.extraversion_cue + r.neuroticism_cue) / 2}
        for t in TRAITS:
            assert getattr(r, t) == pytest.approx(clip01(0.1 + 0.8 * x[t] + getattr(r, f"noise_{t}")))
        assert r.interview == pytest.approx(np.mean([getattr(r, t) for t in TRAITS]))
        assert r.neuroticism_tone_hz == pytest.approx(110 * 4 ** r.neuroticism_cue)
        assert r.content_effect == pytest.approx(5 + 8 * np.mean(r.visual_cue))
        assert r.popularity == pytest.approx(0.6 * r.song_effect + 0.4 * r.content_effect + r.noise_popularity)
        assert r.popularity == pytest.approx(5 + r.popularity_network_part + r.popularity_content_part
                                             + r.noise_popularity)
        assert r.popularity_network_part == pytest.approx(0.6 * (r.song_effect - 5))
        if isinstance(r.song_id, str):  # Φ(z) of the song's latent popularity; no song: the median, 5 + 8 / 2
            assert r.song_effect == pytest.approx(5 + 8 * 0.5 * (1 + math.erf(r.song_popularity / math.sqrt(2))))
        else:
            assert r.song_effect == 9.0 and pd.isna(r.song_popularity)
    noise = gt[[c for c in gt.columns if c.startswith("noise_")]]
    assert noise.abs().max().max() < 0.5


def test_planted_labels_follow_the_documented_formulas(gt):
    _assert_documented_formulas(gt)
    assert gt["popularity_norm"].agg(["min", "max"]).tolist() == [0.0, 1.0]


def test_planned_labels_follow_the_formulas_for_long_clips():
    # The fixture's 2-4 s clips lie entirely inside the last 3 seconds; planning alone (no ffmpeg) covers 3-20 s
    # clips, where the 1:6 recency step and the 15-second window matter.
    plans, _ = synthetic._plan(60, 1, 3.0, 20.0, 1.0, synthetic._DESIGN)
    rows = pd.DataFrame([p.row for p in plans])
    assert rows["n_seconds"].min() < 10 and rows["n_seconds"].max() > 15
    _assert_documented_formulas(rows)


def test_popularity_formula_on_the_tiktok_json_gives_the_planted_p(ds, gt):
    scrape = json.loads(ds.files["tiktok_scrape"].read_text())["scrape_time"]
    posts = {p["id"]: p for p in map(json.loads, ds.files["tiktok_posts"].read_text().splitlines())}
    for r in gt.itertuples():
        st = posts[r.video_id]["stats"]
        t_days = (scrape - posts[r.video_id]["createTime"]) / 86400
        assert t_days == pytest.approx(r.t_days) and 2 <= t_days <= 90
        p = math.log((st["playCount"] + st["shareCount"] + st["commentCount"] + 1) / t_days)
        assert abs(p - r.popularity) <= 0.5 / (math.exp(r.popularity) * t_days) + 1e-12  # integer rounding only
        assert st["shareCount"] < st["playCount"] and st["diggCount"] < st["playCount"]


def test_songs_and_network_effect(ds, gt):
    doc = json.loads(ds.files["ground_truth_json"].read_text())
    songs = {s["song_id"]: s for s in doc["songs"]}
    assert len(songs) == 3  # the catalogue: max(3, 6 // 4)
    counts = gt["song_id"].value_counts().to_dict()
    assert counts == {sid: s["n_videos"] for sid, s in songs.items() if s["n_videos"]}
    assert sum(s["n_videos"] for s in songs.values()) == gt["song_id"].notna().sum()
    assert gt["song_id"].isna().sum() == 1  # ~5 %, at least one once n >= 4
    assert len({tuple(s["notes_hz"]) for s in songs.values()}) == 3
    for r in gt.itertuples():
        assert r.song_effect == (songs[r.song_id]["effect"] if isinstance(r.song_id, str) else 9.0)
        if isinstance(r.song_id, str):
            assert r.song_popularity == songs[r.song_id]["popularity"]
    for s in songs.values():
        assert s["percentile"] == pytest.approx(0.5 * (1 + math.erf(s["popularity"] / math.sqrt(2))))
        assert s["effect"] == pytest.approx(5 + 8 * s["percentile"])
    # every component is documented with its variance share on this dataset and what can / cannot see it
    comps = doc["components"]
    assert set(comps["arousal"]) == {"arousal_recency_part", "arousal_sync_part", "noise_arousal"}
    assert set(comps["popularity"]) == {"popularity_network_part", "popularity_content_part", "noise_popularity"}
    assert comps["arousal"]["arousal_sync_part"]["variance_share"] == pytest.approx(
        gt["arousal_sync_part"].var() / gt["arousal"].var())
    assert "time-averaged" in comps["arousal"]["arousal_sync_part"]["not_seen_by"]


def test_planning_proportions_at_scale():
    # The planning stage alone (no ffmpeg): quotas, power-law songs and splits for 200 videos.
    plans, songs = synthetic._plan(200, 0, 3.0, 15.0, 1.0, synthetic._DESIGN)
    rows = pd.DataFrame([p.row for p in plans])
    assert (~rows["has_audio"]).sum() == 20 and rows["song_id"].isna().sum() == 10
    assert rows["container"].value_counts().to_dict() == {"mp4": 110, "mkv": 40, "avi": 30, "webm": 20}
    assert (rows["orientation"] == "portrait").sum() == 80
    assert rows["split"].value_counts().to_dict() == {"train": 120, "val": 40, "test": 40}
    assert set(rows["fps"]) == {24, 25, 30} and rows["duration"].between(3, 15).all()
    deg = np.array([s.n_videos for s in songs])
    z = np.array([s.popularity for s in songs])
    assert len(songs) == 50 and deg.sum() == 190 and (deg == 0).any()  # a catalogue: some songs nobody used
    assert np.sort(deg)[::-1][:10].sum() > deg.sum() / 2  # a few songs hold most videos
    # network effect: popular songs are used by more videos (what the graph sees), and videos inherit it
    assert scipy.stats.spearmanr(deg, z).statistic > 0.5
    used = rows[rows["song_id"].notna()]
    assert scipy.stats.spearmanr(used["song_id"].map(used["song_id"].value_counts()),
                                 used["popularity_network_part"]).statistic > 0.5
    # synchrony is independent of the per-clip totals: time-pooled counts are a function of the clip length only
    assert rows.groupby("n_seconds")["sync_beat"].apply(lambda b: len({sum(x) for x in b})).eq(1).all()
    assert abs(scipy.stats.spearmanr(rows["sync_cue"], rows["n_seconds"]).statistic) < 0.2


def test_variance_shares_at_scale_match_the_docstring():
    plans, _ = synthetic._plan(4000, 0, 3.0, 15.0, 1.0, synthetic._DESIGN)
    rows = pd.DataFrame([p.row for p in plans])
    share = lambda part, label: rows[part].var() / rows[label].var()  # noqa: E731
    assert share("arousal_sync_part", "arousal") == pytest.approx(0.67, abs=0.03)
    assert share("arousal_recency_part", "arousal") == pytest.approx(0.35, abs=0.03)
    assert share("popularity_network_part", "popularity") == pytest.approx(0.77, abs=0.03)
    assert share("popularity_content_part", "popularity") == pytest.approx(0.23, abs=0.03)
    assert 0.45 < (rows["arousal"] > 3).mean() < 0.55


def test_visual_cues_survive_encoding_and_the_centre_crop(ds, gt):
    measured, planted, tl_measured, tl_planted = [], [], [], []
    for path, r in zip(ds.video_paths, gt.itertuples()):
        frames = _decode_rgb(path, r.width, r.height)
        assert abs(len(frames) - r.n_frames) <= 1, path.name
        for t, v in enumerate(r.visual_cue):
            crop = _pipeline_crop(frames[min(int((t + 0.5) * r.fps), len(frames) - 1)])
            measured.append(crop[16:48, 16:48].mean())  # the central square covers 12..52 of the crop
            planted.append(v)
        crop = _pipeline_crop(frames[len(frames) // 2])
        tl_measured.append(crop[2:10, 2:30, 0].mean())  # red channel of the top-left L-shaped patch
        tl_planted.append(r.extraversion_cue)
    measured, planted = np.array(measured), np.array(planted)
    assert np.corrcoef(measured, planted)[0, 1] > 0.99
    assert np.abs(measured - 255 * (0.1 + 0.8 * planted)).max() < 6  # the documented pixel mapping
    assert np.corrcoef(tl_measured, tl_planted)[0, 1] > 0.99
    assert np.abs(np.array(tl_measured) - 255 * (0.1 + 0.8 * np.array(tl_planted))).max() < 10


def test_audio_cues_survive_encoding_and_mfcc(ds, gt):
    sr = 16000
    cue_db, mfcc_readout, planted, video = [], [], [], []
    for path, r in zip(ds.video_paths, gt.itertuples()):
        if not r.has_audio:
            continue
        y = _decode_audio(path, sr)
        assert abs(len(y) / sr - r.duration) < 0.1
        for t, a in enumerate(r.audio_cue):
            seg = y[t * sr:(t + 1) * sr]
            cue_db.append(_band_db(seg, sr, 1500, 7500))  # the cue's noise band
            mfcc_readout.append(_cue_band_from_mfcc(seg, sr))
            planted.append(a)
            video.append(r.name)
        # neuroticism: the steady background tone is the strongest low-frequency peak
        assert _peak_hz(y, sr, 90, 480) == pytest.approx(r.neuroticism_tone_hz, rel=0.03), path.name
        if isinstance(r.song_id, str):  # the song's melody is there: the strongest mid peak is one of its notes
            doc = json.loads(ds.files["ground_truth_json"].read_text())
            notes = next(s["notes_hz"] for s in doc["songs"] if s["song_id"] == r.song_id)
            peak = _peak_hz(y, sr, 500, 1400)
            assert min(abs(peak - f) / f for f in notes) < 0.02, (path.name, peak, notes)
    planted = np.array(planted)
    # Across videos the codecs add an offset (Opus at 48 kb/s reads about 3 dB lower in this band than AAC or MP3);
    # within a video the level is linear in the cue.
    within = lambda x: np.asarray(x) - pd.Series(x).groupby(video).transform("mean").to_numpy()  # noqa: E731
    assert np.corrcoef(cue_db, planted)[0, 1] > 0.9
    assert np.corrcoef(within(cue_db), within(planted))[0, 1] > 0.98
    assert np.polyfit(within(planted), within(cue_db), 1)[0] == pytest.approx(20, abs=2)  # 20 dB from a = 0 to 1
    assert np.corrcoef(mfcc_readout, planted)[0, 1] > 0.9  # a 2 kHz pure-tone cue scored 0.33 on this read-out
    assert np.corrcoef(within(mfcc_readout), within(planted))[0, 1] > 0.95


def test_synchrony_cues_survive_encoding_per_second(mute):
    """The flash bar is in the pipeline's crop exactly in the flash seconds; the beat's four bursts are in the audio
    exactly in the beat seconds (burst windows louder than the gaps between them, in the beat's band; measured without
    speech, whose syllables would make any two windows differ)."""
    sr = 16000
    sos = scipy.signal.butter(4, [150, 700], btype="bandpass", fs=sr, output="sos")
    for path, r in zip(mute.video_paths, mute.ground_truth.itertuples()):
        frames = _decode_rgb(path, r.width, r.height)
        for t, on in enumerate(r.sync_flash):
            bar = _pipeline_crop(frames[min(int((t + 0.5) * r.fps), len(frames) - 1)])[4:8, 42:58].astype(float)
            blue_minus_red = (bar[..., 2] - bar[..., 0]).mean()
            assert (blue_minus_red > 150) if on else (abs(blue_minus_red) < 60), (path.name, t, blue_minus_red)
        if not r.has_audio:
            continue
        y = scipy.signal.sosfiltfilt(sos, _decode_audio(path, sr).astype(float))

        def ratio_db(t: int, lag: float) -> float:
            starts = [int((t + (i + 0.25) / 4 + lag) * sr) for i in range(4)]
            burst = np.mean([np.mean(y[a:a + int(0.04 * sr)] ** 2) for a in starts])
            gap = np.mean([np.mean(y[a + int(0.15 * sr):a + int(0.23 * sr)] ** 2) for a in starts])
            return 10 * math.log10(burst / max(gap, 1e-12))

        # the codec's delay (MP3 in .avi: tens of ms): the lag that best fits the beat seconds
        beat_seconds = [t for t, on in enumerate(r.sync_beat) if on]
        lag = max(np.arange(0, 0.08, 0.005), key=lambda d: np.mean([ratio_db(t, d) for t in beat_seconds]))
        for t, on in enumerate(r.sync_beat):
            got = ratio_db(t, lag)
            assert (got > 6) if on else (got < 3), (path.name, t, lag, got)


def test_deterministic_given_seed_and_independent_of_speech(ds, gt, mute, tmp_path):
    again = generate_synthetic(tmp_path / "again", speech=True, **ARGS)
    pd.testing.assert_frame_equal(again.ground_truth, gt)
    for role, path in ds.files.items():
        assert again.files[role].read_bytes() == path.read_bytes(), role
    for a, b in zip(again.video_paths, ds.video_paths):
        assert a.read_bytes() == b.read_bytes(), a.name

    pd.testing.assert_frame_equal(mute.ground_truth.drop(columns="spoken"), gt.drop(columns="spoken"))
    assert not mute.ground_truth["spoken"].any() and gt["spoken"].tolist() == (gt["has_audio"] & SPEAKS).tolist()
    if SPEAKS:  # spoken minus unspoken audio is the transcript as espeak-ng says it (codec noise is uncorrelated)
        sos = scipy.signal.butter(4, [100, 1400], btype="bandpass", fs=16000, output="sos")
        for r in gt[gt["has_audio"]].itertuples():
            spoken, silent = (_decode_audio(d / "videos" / r.name).astype(float) for d in (ds.out_dir, mute.out_dir))
            n = min(len(spoken), len(silent))
            res = scipy.signal.sosfiltfilt(sos, spoken[:n] - silent[:n])
            wav = tmp_path / "say.wav"
            subprocess.run([shutil.which("espeak-ng") or shutil.which("espeak"), "-v", "en-us", "-s", "170",
                            "-w", str(wav), r.transcript], check=True, capture_output=True)
            rate, say = scipy.io.wavfile.read(wav)
            say = scipy.signal.sosfiltfilt(sos, scipy.signal.resample_poly(say.astype(float), 16000, rate))
            c = scipy.signal.correlate(res, say, mode="full")[len(say) - 1:len(say) - 1 + 8000]  # lags 0..0.5 s
            lag = int(np.argmax(np.abs(c)))
            m = min(n - lag, len(say))
            assert 0.2 <= lag / 16000 <= 0.35, r.name  # onset 0.25 s (+ the MP3 encoder delay in .avi)
            assert np.corrcoef(res[lag:lag + m], say[:m])[0, 1] > 0.7, r.name

    other, _ = synthetic._plan(6, 4, 2.0, 4.0, 1.0, synthetic._DESIGN)  # another seed: other cues (planning only)
    assert [p.row["visual_cue"] for p in other] != gt["visual_cue"].tolist()


def test_reads_back_through_the_real_adapters(ds, gt):
    from features.sources import read_synthetic

    m = read_synthetic(ds.out_dir).set_index("video_id").loc[gt["video_id"]]
    assert m["split"].tolist() == gt["split"].tolist()
    assert [Path(p).name for p in m["source_path"]] == gt["name"].tolist()
    for t in (*TRAITS, "interview"):
        assert m[t].tolist() == gt[t].tolist()
    assert m["valence_value"].tolist() == gt["valence"].tolist()
    assert m["valence"].tolist() == (gt["valence"] > 3).astype(float).tolist()
    np.testing.assert_allclose(m["popularity_raw"], gt["popularity"], atol=1e-3)
    as_id = lambda ids: [s if isinstance(s, str) else None for s in ids]  # noqa: E731 - merges turn None into NaN
    assert as_id(m["song_id"]) == as_id(gt["song_id"])
    assert m["transcript"].tolist() == gt["transcript"].tolist()


def test_failed_encode_leaves_no_labels_and_no_partial_files(tmp_path, monkeypatch):
    out = tmp_path / "data"
    (out / "videos").mkdir(parents=True)
    for name in ("annotation_training.pkl", "ACCEDEranking.txt", "tiktok_posts.jsonl", "ground_truth.json"):
        (out / name).write_text("stale labels of an earlier run")
    (out / "videos" / "syn_0099.mp4").write_bytes(b"stale")
    (out / "videos" / ".syn_0001.mp4.partial").write_bytes(b"half")
    (out / "videos" / "mine.mp4").write_bytes(b"user file")
    real_which = shutil.which
    monkeypatch.setattr(synthetic.shutil, "which", lambda n: "/bin/false" if n == "ffmpeg" else real_which(n))
    with pytest.raises(RuntimeError, match=r"ffmpeg failed to encode syn_000\d"):
        generate_synthetic(out, n_videos=3, seed=0, speech=False, min_duration=1.0, max_duration=1.5)
    assert sorted(p.name for p in out.rglob("*")) == ["mine.mp4", "videos"]


@pytest.mark.parametrize("kwargs, arg", [
    ({"n_videos": 0}, "n_videos"), ({"n_videos": 2.5}, "n_videos"), ({"n_videos": True}, "n_videos"),
    ({"n_videos": 2, "seed": -1}, "seed"), ({"n_videos": 2, "workers": 0}, "workers"),
    ({"n_videos": 2, "min_duration": 0.5}, "min_duration"),
    ({"n_videos": 2, "min_duration": 5.0, "max_duration": 4.0}, "max_duration"),
    ({"n_videos": 2, "size_scale": 0.0}, "size_scale"), ({"n_videos": 2, "size_scale": float("nan")}, "size_scale"),
    ({"n_videos": 2, "speech": "yes"}, "speech"), ({"n_videos": 2, "rescrapes": -1}, "rescrapes"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{arg}="):
        generate_synthetic(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_catalogue_larger_than_the_distinct_melodies_is_refused():
    # 8 notes, 4 per melody, not all the same: 8^4 - 8 = 4088 songs, at 4 videos per song
    with pytest.raises(ValueError, match=r"^n_videos=16356: the catalogue would need 4089 songs"):
        synthetic._plan(16356, 0, 3.0, 4.0, 1.0, synthetic._DESIGN)


def test_sync_weight_zero_draws_no_synchrony_cue_and_keeps_every_other_draw():
    base, _ = synthetic._plan(40, 3, 3.0, 15.0, 1.0, synthetic._DESIGN)
    off, _ = synthetic._plan(40, 3, 3.0, 15.0, 1.0, replace(synthetic._DESIGN, sync_weight=0.0))
    assert any(any(p.beat) for p in base) and not any(any(p.beat) or any(p.flash) for p in off)
    assert [p.row["sync_cue"] for p in off] == [0.0] * 40
    for b, o in zip(base, off):  # the same draws: only the synchrony part of arousal differs
        assert b.audio_cue == o.audio_cue and b.row["valence"] == o.row["valence"]
        assert o.row["arousal_sync_part"] == 0.0


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.2"])
def test_sync_weight_out_of_range_is_refused_naming_it(tmp_path, bad):
    with pytest.raises(ValueError, match="sync_weight"):
        synthetic.generate_synthetic(tmp_path, n_videos=1, sync_weight=bad)


def test_rescrape_plant_at_scale_matches_the_docstring():
    """The early-trend plant on 4,000 planned videos: shares of MTAF's label, monotone counts, scrapes before the
    final one, and nothing else of the dataset moved (the re-scrapes draw from their own generator)."""
    plans, _ = synthetic._plan(4000, 0, 3.0, 15.0, 1.0, synthetic._DESIGN)
    gt = pd.DataFrame([p.row for p in plans])
    rows, cols = synthetic._plan_rescrapes(gt, 5, 0, synthetic._DESIGN)
    g = gt.assign(**cols)
    var = g["mtaf_label_log"].var()
    assert g["mtaf_early_part"].var() / var == pytest.approx(0.99, abs=0.02)
    assert g["mtaf_late_growth_part"].var() / var == pytest.approx(0.04, abs=0.01)
    assert np.corrcoef(g["mtaf_early_part"], g["mtaf_label_log"])[0, 1] ** 2 == pytest.approx(0.96, abs=0.01)
    np.testing.assert_allclose(g["mtaf_label_log"], np.log1p(0.2 * g["digg_count"] + 0.3 * g["comment_count"]
                                                              + 0.5 * g["share_count"]))
    merged = rows.merge(gt[["video_id", "create_time", "t_days", "play_count", "digg_count"]], on="video_id",
                        suffixes=("", "_final"))
    hours = (merged["scrape_time"] - merged["create_time"]) / 3600
    assert (hours < merged["t_days"] * 24).all() and hours.between(1, 123).all()
    assert (merged["play_count"] <= merged["play_count_final"]).all()
    assert merged.groupby("video_id")["digg_count"].apply(lambda c: c.is_monotonic_increasing).all()
    assert (rows.groupby("video_id").size()[gt.loc[gt["t_days"] > 123 / 24, "video_id"]] == 5).all()
    again, _ = synthetic._plan(4000, 0, 3.0, 15.0, 1.0, synthetic._DESIGN)  # planning ignores re-scrapes entirely
    assert [p.row["popularity"] for p in again] == gt["popularity"].tolist()


def test_rescrape_files_read_back_through_the_tiktok_adapter(tmp_path):
    from features.sources import read_synthetic, read_synthetic_rescrapes

    ds = generate_synthetic(tmp_path / "data", n_videos=4, seed=5, speech=False, min_duration=1.0, max_duration=1.5,
                            size_scale=0.25, rescrapes=3)
    gt = ds.ground_truth
    assert [p.name for p in sorted((tmp_path / "data" / "tiktok_rescrapes").iterdir())] == \
        ["scrape_01.jsonl", "scrape_02.jsonl", "scrape_03.jsonl"]
    assert list(ds.files)[-1] == "tiktok_posts" and "tiktok_rescrape_03" in ds.files
    scrapes = read_synthetic_rescrapes(tmp_path / "data")
    assert len(scrapes) == 3
    for j, frame in enumerate(scrapes):
        for r in frame.itertuples():
            planted = gt.set_index("video_id").loc[r.video_id]
            assert r.scrape_time == pytest.approx(planted["create_time"] + planted["rescrape_hours"][j] * 3600)
            assert r.digg_count == math.floor(planted["rescrape_share"][j] * planted["digg_count"])
    final = read_synthetic(tmp_path / "data").set_index("video_id")
    assert (final["scrape_time"] == synthetic._DESIGN.scrape_time).all()  # the final scrape is untouched
    doc = json.loads((tmp_path / "data" / "ground_truth.json").read_text())
    assert doc["params"]["rescrapes"] == 3 and set(doc["early_trend"]["components"]) == {
        "mtaf_early_part", "mtaf_late_growth_part"}
    plain = generate_synthetic(tmp_path / "plain", n_videos=4, seed=5, speech=False, min_duration=1.0,
                               max_duration=1.5, size_scale=0.25)
    pd.testing.assert_frame_equal(plain.ground_truth, gt[plain.ground_truth.columns])  # same dataset otherwise
    assert not (tmp_path / "plain" / "tiktok_rescrapes").exists() and read_synthetic_rescrapes(tmp_path / "plain") == ()
