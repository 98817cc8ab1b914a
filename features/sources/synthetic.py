"""Planted-truth synthetic dataset: real video files plus labels in the three real on-disk formats.

:func:`generate_synthetic` renders ``n_videos`` short clips with ffmpeg (raw RGB frames piped into ffmpeg's stdin,
the audio track from a temporary WAV) and describes the **same** videos three times, in the formats the real adapters
parse (:mod:`features.sources.first_impressions`, :mod:`features.sources.liris`, :mod:`features.sources.tiktok`),
plus the ground truth that later tests use to prove that models learn and that interpretability recovers the truth.

Layout of ``out_dir``::

    videos/syn_0000.mp4 ...                      H.264/AAC .mp4 (most), H.264 + Opus/Vorbis .mkv, mpeg4 + MP3 .avi,
                                                 VP8 + Vorbis .webm; 24/25/30 fps; landscape 128x96 / portrait 96x128
                                                 (times ``size_scale``); about 10 % have no audio stream
    annotation_{training,validation,test}.pkl    First Impressions V2: {trait: {file name: score in [0,1]}} (py2 pickle)
    transcription_{training,validation,test}.pkl First Impressions V2: {file name: transcript} (py2 pickle)
    ACCEDEranking.txt, ACCEDEsets.txt            LIRIS-ACCEDE (tab-separated; set 1 = train, 2 = val, 0 = test)
    tiktok_scrape.json                           {"scrape_time": epoch s}
    ground_truth.parquet, ground_truth.json      one row per video (cues, planted labels, effects); the planting
    tiktok_rescrapes/scrape_{01..K}.jsonl        only with ``rescrapes`` = K > 0: the same posts re-scraped in their
                                                 first days, each record with its own ``scrapeTime`` (see below)
    tiktok_posts.jsonl                           TikTok post records -- written LAST: it marks a complete dataset

The split (60/20/20 by a seeded shuffle) is the same in every format; ``ground_truth.split`` uses vidpipe's names
``train`` / ``val`` / ``test``.

Planted signals (``x`` = a cue in [0, 1]; every noise draw is stored in a ``noise_<label>`` column so each label is
reproducible exactly from the ground truth):

* Seconds: ``S = floor(duration)`` whole seconds carry one cue value each; the sub-second tail (< 1 s) repeats the
  cue of second ``S - 1`` so a segmenter that keeps or drops the partial last second sees consistent content.
  Each per-second cue is ``x_t = (μ + u_t) / 2`` with a per-video level ``μ ~ U(0, 1)`` and ``u_t ~ U(0, 1)``, so
  clips differ as a whole (what popularity's content effect needs) and second to second (what makes recency
  identifiable).
* **valence** <- visual: ``v_t`` = grey level of the central square (side = half the short side, centred), mapped
  linearly to pixel value ``255 * (0.1 + 0.8 v_t)``. Of the 64x64 centre crop the pipeline takes (short side -> 80,
  centre crop 64) the square covers pixels 12..52.
* **arousal** <- audio: ``a_t`` = loudness of a cue sound in second ``t``: band-limited noise (1.5-7.5 kHz, a "hiss")
  at RMS ``0.12 * 10^(-20 (1 - a_t) / 20)`` (-38..-18 dBFS), i.e. linear in dB so log-mel energies and MFCC c0 are
  close to linear in ``a_t``. The brief suggested a cue *tone*; we measured that a pure tone's level nearly vanishes in
  13 MFCCs (a tone moves one mel band of 128, which the truncated DCT smears away): with speech mixed in, the cue-band
  log-mel level rebuilt from 13 MFCCs correlates 0.33 with ``a_t`` for a 2 kHz tone and 1.00 for the noise band
  (MFCC c0 alone: 0.26 vs 0.73).
* **synchrony** (Sec2Sec's audio-visual "synergy": an effect of the two modalities *in the same second* that neither
  has alone): a **beat** (``b_t = 1``: four 120-ms bursts of 150-700 Hz noise decaying with a 40-ms time constant,
  peak 0.25, starting 0.0625, 0.3125, 0.5625 and 0.8125 s into the second) and a **flash** (``f_t = 1``: a blue bar
  right of and above the central square, 8-36 % of the short side right of the centre and 28-38 % above it -- crop
  pixels ~38..61 x 2..10 -- background-coloured when off). Inside the last
  ``W = min(S, 15)`` seconds each clip has exactly ``k = max(1, W // 3)`` beat seconds and ``k`` flash seconds, of
  which ``m`` coincide (``m`` uniform on ``max(0, 2k - W) .. k``); ``sync = m / k``. The per-clip totals depend only
  on ``S``, so the mean, SD or any other statistic pooled over time of one modality has the same distribution
  whatever ``sync`` is: only a model that pairs the audio and the vision of the same second can see it.
* Emotion values (LIRIS-ACCEDE's [1, 5] scale), with recency weights ``w`` (the dissertation, Ch. 2, finds the last
  3 seconds weigh most) and ``λ = sync_weight = 0.35``::

      w_t  ∝ 0 for t < S - 15,   1 for S - 15 <= t < S - 3,   6 for t >= S - 3;   Σ_t w_t = 1
      valence = clip(1 + 4 Σ_t w_t v_t + ε_v, 1, 5)
      arousal = clip(1 + 4 (1 - λ) Σ_t w_t a_t + 4 λ sync + ε_a, 1, 5)

  The binary labels the pipeline trains on (LIRIS-ACCEDE's threshold 3) are about half positive each; a perfect
  reader of ``Σ w a`` alone gets about 65 % arousal accuracy, of ``sync`` alone about 85 % (4,000 planned videos).

* Personality (First Impressions, all in [0, 1]; ``trait = clip(0.1 + 0.8 x + ε, 0, 1)``, a min-max squash -- linear,
  so attribution magnitudes stay proportional to the cue):

  - extraversion <- visual ``e``: brightness of a warm colour filling the **top-left quadrant** (constant over the
    video; the central square is drawn over the quadrant's inner corner, so the visible patch is an L shape);
  - neuroticism <- audio ``n``: pitch of a steady background tone, ``f = 110 * 4^n`` Hz (110..440 Hz);
  - agreeableness <- text: ``k_A / 4``, ``k_A`` in 0..4 = count of words from {kind, friendly, warm, gentle};
  - conscientiousness <- text: ``k_C / 4`` with {plan, careful, organised, deadline};
  - openness <- visual + audio: ``x = (e + n) / 2``;
  - interview = mean of the five traits (no extra noise).

  Videos without an audio track keep their audio-driven labels: the modality is missing, not the label.
* Songs (VAN's network effect): a **catalogue** of ``max(3, n_videos // 4)`` songs, each with a latent popularity
  ``z_j ~ N(0, 1)``; a video picks song ``j`` with probability ``∝ exp(1.6 z_j)``, so popular songs are used by
  more videos and the song-video graph carries ``z`` through the songs' degrees (catalogue songs no video picked are
  listed with ``n_videos = 0``); about 5 % of videos have no song (TikTok ``music.id == ""``). Each song has a
  distinct 4-note melody (pentatonic, 523-1319 Hz) looped in the audio of its videos; the melody is random, so it says
  which song plays, never how popular it is. Videos inherit part of their song's popularity::

      song_effect_j = 5 + 8 Φ(z_j);  no song -> 5 + 8 / 2 (the median: no network information)
      content_effect = 5 + 8 mean_t(v_t)
      p = 0.6 song_effect + 0.4 content_effect + ε_p          (natural-log units, per day)

  TikTok counts are chosen so that ``log((plays + shares + comments + 1) / t_days) = p`` up to rounding the total
  count to an integer: ``|Δp| <= 0.5 / (e^p t_days)`` (< 3e-3 here).
* **Early popularity trend** (MTAF, paper 003, Table 4; only with ``rescrapes`` = K > 0): the scrape history a
  crawler that revisits each post at fixed ages would record. Post i, ``A_i`` hours old at the final scrape, gains
  its final counts along a saturating curve ``G_i(h) = 1 - e^{-h/τ_i}`` with a growth time constant ``τ_i``
  log-uniform on 24-240 h (fast posts have nearly all their counts by day 5, slow ones under half). It is re-scraped
  at hours ``h_ij = 120 · j / K ± 3`` (only those before ``A_i``, so posts 2-5 days old have fewer), showing
  ``floor(s_ij · final count)`` of each of its four counts, ``s_ij = min(1, G_i(h_ij) / G_i(A_i) · e^{ε_ij})``,
  ``ε_ij ~ N(0, 0.05)`` reading noise, made non-decreasing over j (cumulative counts never fall). The final counts,
  and with them every label above, are untouched: the re-scrapes are drawn from a generator of their own. The
  ground truth keeps ``growth_tau_hours``, ``rescrape_hours`` and ``rescrape_share`` (lists per post), and MTAF's
  label before normalising, ``mtaf_label_log = log(1 + 0.2 digg + 0.3 comments + 0.5 shares)`` at the final scrape,
  split into ``mtaf_early_part`` (the noise-free value at hour ``min(A_i, 120)``: what the series' last point reads)
  and ``mtaf_late_growth_part`` (the growth after it). On 4,000 planned videos with K = 5 (seed 0) the early part
  carries 99 % of the label's variance and alone explains 96 % of it (R²); the late growth carries 4 % (the parts
  are negatively correlated), and only the series' shape (how fast it flattens, i.e. ``τ_i``) hints at it. The
  planted popularity ``p`` (song + content) explains 60 % and the post's age 35 %: what a model without the trend
  can reach is bounded by what it sees of ``p``. ``ground_truth.json["early_trend"]`` holds the rule and the shares
  on the generated dataset. Ingest reads each re-scrape file with the TikTok adapter and records its counts in the
  store's scrape history before the final scrape's, as successive re-scrapes of a real dataset are recorded
  (:mod:`features.trend`).
* Speech: when ``speech`` and espeak-ng (or espeak) is on PATH, the transcript is spoken into the audio at a peak of
  0.12 (its energy mostly below 1.5 kHz, where the cue noise is not), so the cue stays dominant in its band; the
  parts' peaks sum to at most 0.48 + 0.05 + 0.05 + 0.25 (beat) + 0.12 = 0.95, so the mix cannot clip.
* What each planted component is, its share of the label variance (4,000 planned videos, 3-15 s; the ground truth
  stores each component as a column, ``ground_truth.json["components"]`` the shares on the generated dataset), and
  which features can and cannot see it:

  ==========  ============================  =====  ===================================  ===========================
  label       component (column)            share  seen by                              not seen by
  ==========  ============================  =====  ===================================  ===========================
  valence     ``valence_recency_part``      99.6%  per-second vision, weighted to the   audio, text, graph
              ``4 Σ w v``                          end; time-averaged vision sees most
                                                   of it (the mean level)
  arousal     ``arousal_recency_part``      35 %   per-second audio, weighted to the    vision, text, graph
              ``4 (1-λ) Σ w a``                    end; time-averaged audio: most
  arousal     ``arousal_sync_part``         67 %   only audio and vision paired per     time-averaged features of
              ``4 λ sync``                         second                               any modality; either
                                                                                        modality alone
  popularity  ``popularity_network_part``   77 %   the song-video graph (degree grows   the video's own pixels; its
              ``0.6 (song_effect - 5)``            with popularity); a model that       audio beyond the melody's
                                                   memorises a melody from training     identity; text
                                                   videos of the same song
  popularity  ``popularity_content_part``   23 %   vision (mean central level)          graph, audio, text
              ``0.4 (content_effect - 5)``
  ==========  ============================  =====  ===================================  ===========================

  Personality keeps the modality-importance plant above (each trait from its documented modality). Noise is under
  1 % of every label's variance. ``popularity = 5 + popularity_network_part + popularity_content_part + noise``;
  ``arousal`` and ``valence`` are 1 + their parts + noise, clipped to [1, 5].

The paper's recency finding is an attention pattern, not a formula; the 1:6 step weights are our choice of the simplest
weighting in which "the last 3 seconds weigh most" (72 % of the mass for a 10-second clip).

Determinism: every random draw happens in the calling thread from ``numpy.random.default_rng(seed)`` before any
encoding (the re-scrapes' from ``default_rng([seed, 0x7E5D])``, after it), so labels and cue arrays depend only on
the arguments (not on ``workers`` or ``speech``); ffmpeg runs single-threaded with ``+bitexact`` and no metadata, so
the same machine writes identical bytes.

Crash safety: label files from an earlier run are removed first; each video is encoded to a hidden ``.<name>.partial``
file and renamed; the label files are written (temporary name + rename) only after every video exists, and
``tiktok_posts.jsonl`` is renamed into place last. An interrupted run therefore never leaves labels pointing at
half-written videos.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import scipy.io.wavfile
import scipy.signal
from scipy.ndimage import uniform_filter1d
from scipy.stats import rankdata

__all__ = ["RESCRAPE_DIR", "SyntheticDataset", "generate_synthetic"]

_TRAITS = ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness")
_FI_SPLIT_TAGS = {"train": "training", "val": "validation", "test": "test"}
_LIRIS_SET_CODES = {"train": 1, "val": 2, "test": 0}
_GENERATOR = "vidpipe.synthetic@1"


@dataclass(frozen=True, kw_only=True)
class _Design:
    """Every constant of the planting; dumped into ``ground_truth.json`` so the truth is self-describing."""

    base_width: int = 128  # landscape frame width at size_scale=1 (portrait swaps width and height)
    base_height: int = 96  # landscape frame height at size_scale=1
    fps_choices: tuple[int, ...] = (24, 25, 30)  # frame rates, drawn uniformly per video
    portrait_share: float = 0.4  # share of portrait videos
    no_audio_share: float = 0.1  # share of videos without an audio stream
    no_song_share: float = 0.05  # share of videos without a song (music.id == "")
    cover_from: int = 4  # from this many videos on, every category (container, portrait, no audio, no song) occurs
    containers: tuple[tuple[str, float], ...] = (("mp4", 0.55), ("mkv", 0.2), ("avi", 0.15), ("webm", 0.1))  # shares
    level_lo: float = 0.1  # pixel level (fraction of 255) for a visual cue of 0
    level_hi: float = 0.9  # pixel level for a visual cue of 1
    centre_square: float = 0.5  # side of the valence square, as a fraction of the short side
    quadrant_rgb: tuple[float, float, float] = (1.0, 0.55, 0.15)  # hue of the extraversion patch (scaled by level)
    background_range: tuple[float, float] = (0.15, 0.35)  # per-video random background level per channel (nuisance)
    distractor_size: float = 0.1  # side of a moving nuisance square below the centre, fraction of the short side
    distractor_rgb: tuple[int, int, int] = (120, 200, 200)  # its colour
    distractor_period_s: float = 2.0  # seconds for one left-to-right sweep
    sample_rate: int = 24000  # audio sample rate of the written tracks (Hz; valid for AAC, Opus, Vorbis, MP3)
    cue_band_hz: tuple[float, float] = (1500.0, 7500.0)  # pass band of the arousal cue noise
    cue_rms: float = 0.12  # cue RMS at a_t = 1
    cue_crest: float = 4.0  # the unit-RMS cue noise is clipped at +-cue_crest (so its peak <= cue_crest * cue_rms)
    cue_range_db: float = 20.0  # cue level span: a_t = 0 is this many dB below a_t = 1
    ramp_s: float = 0.01  # smoothing of level steps and note edges (avoids clicks)
    tone_lo_hz: float = 110.0  # neuroticism background tone at n = 0
    tone_octaves: float = 2.0  # ... and at n = 1 it is this many octaves higher
    tone_amp: float = 0.05  # background tone amplitude
    melody_notes_hz: tuple[float, ...] = (523.25, 587.33, 659.26, 783.99, 880.0, 1046.5, 1174.66, 1318.51)  # scale
    melody_len: int = 4  # notes per melody (looped)
    melody_note_s: tuple[float, float] = (0.18, 0.3)  # range of a song's note duration (s)
    melody_amp: float = 0.05  # melody amplitude
    flash_box: tuple[float, float, float, float] = (0.08, 0.36, -0.38, -0.28)  # synchrony flash bar: x0, x1, y0, y1
    # relative to the frame centre in units of the short side (right of and above the central square, inside the crop)
    flash_rgb: tuple[int, int, int] = (40, 90, 255)  # its colour (the bar is background-coloured when off)
    beat_band_hz: tuple[float, float] = (150.0, 700.0)  # pass band of the synchrony beat's noise bursts
    beat_per_s: int = 4  # bursts per beat second, at (i + 0.25) / beat_per_s seconds into it
    beat_decay_s: float = 0.04  # exponential decay time of one burst
    beat_len_s: float = 0.12  # length of one burst
    beat_peak: float = 0.25  # peak amplitude of a burst
    speech_peak: float = 0.12  # peak amplitude of the spoken transcript
    speech_start_s: float = 0.25  # speech onset
    speech_wpm: int = 170  # espeak-ng speaking rate
    recency_window_s: int = 15  # seconds that count for emotion (earlier ones weigh 0)
    recency_last_s: int = 3  # the last seconds that weigh most
    recency_early_weight: float = 1.0  # un-normalised weight of other seconds in the window
    recency_late_weight: float = 6.0  # un-normalised weight of the last seconds
    emotion_noise_sd: float = 0.05  # noise on the [1, 5] emotion scale
    sync_weight: float = 0.35  # arousal = 1 + 4 ((1 - sync_weight) recency part + sync_weight sync) + noise
    sync_seconds_per: int = 3  # k = max(1, W // sync_seconds_per) beat seconds and flash seconds per clip, W = window
    trait_base: float = 0.1  # trait = clip(trait_base + trait_span * x + noise, 0, 1)
    trait_span: float = 0.8  # see trait_base
    trait_noise_sd: float = 0.02  # noise on traits
    max_words: int = 4  # planted text words per trait: 0..max_words
    agreeableness_words: tuple[str, ...] = ("kind", "friendly", "warm", "gentle")  # drive agreeableness
    conscientiousness_words: tuple[str, ...] = ("plan", "careful", "organised", "deadline")  # drive conscientiousness
    filler_words: tuple[str, ...] = (
        "the", "a", "we", "you", "today", "talk", "about", "new", "idea", "and", "then", "look", "at", "some",
        "pictures", "from", "city", "morning", "video", "people", "think", "this", "is", "our", "team", "work", "on",
        "project", "with", "time", "river", "music", "story", "green", "house", "after", "lunch", "small", "garden",
        "street",
    )  # neutral vocabulary (none of it inflects a planted word)
    split_shares: tuple[float, float] = (0.6, 0.2)  # train, val shares; the rest is test
    videos_per_song: int = 4  # catalogue size n_songs = max(min_songs, n_videos // videos_per_song)
    min_songs: int = 3  # see videos_per_song
    song_choice_beta: float = 1.6  # P(video uses song j) ∝ exp(song_choice_beta * z_j), z_j ~ N(0, 1) latent popularity
    effect_base: float = 5.0  # song/content effects live in [effect_base, effect_base + effect_span] (log units)
    effect_span: float = 8.0  # see effect_base
    song_weight: float = 0.6  # p = song_weight * song_effect + (1 - song_weight) * content_effect + noise
    popularity_noise_sd: float = 0.1  # noise on p (log units)
    scrape_time: int = 1_700_000_000  # epoch seconds of the (synthetic) scrape
    age_days: tuple[float, float] = (2.0, 90.0)  # range of a post's age at scrape time
    share_rate: tuple[float, float] = (0.005, 0.03)  # shares / (plays + shares + comments)
    comment_rate: tuple[float, float] = (0.002, 0.02)  # comments / (plays + shares + comments)
    like_rate: tuple[float, float] = (0.05, 0.15)  # likes (diggCount) / plays
    variance_range: tuple[float, float] = (0.05, 0.35)  # LIRIS-ACCEDE valence/arousal variances
    rescrape_window_h: float = 120.0  # early re-scrapes are spread over a post's first hours (days 1-5: MTAF's trend)
    rescrape_jitter_h: float = 3.0  # a re-scrape lands up to this many hours before or after its slot
    growth_tau_h: tuple[float, float] = (24.0, 240.0)  # log-uniform range of a post's growth time constant τ (hours)
    rescrape_noise_sd: float = 0.05  # SD of the log-normal reading noise on a re-scrape's share of the final counts


_DESIGN = _Design()


@dataclass(frozen=True, kw_only=True)
class _Encoding:
    """How one container kind is written."""

    ext: str  # file extension
    muxer: str  # ffmpeg -f
    video_codec: str  # codec name as ffprobe reports it
    video_args: tuple[str, ...]  # ffmpeg video encoder options
    audio_codecs: tuple[tuple[str, tuple[str, ...]], ...]  # (ffprobe codec name, encoder options); one drawn per video


_ENCODINGS = {
    "mp4": _Encoding(ext=".mp4", muxer="mp4", video_codec="h264",
                     video_args=("-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p"),
                     audio_codecs=(("aac", ("-c:a", "aac", "-b:a", "64k")),)),
    "mkv": _Encoding(ext=".mkv", muxer="matroska", video_codec="h264",
                     video_args=("-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p"),
                     audio_codecs=(("opus", ("-c:a", "libopus", "-b:a", "48k")),
                                   ("vorbis", ("-c:a", "libvorbis", "-q:a", "4")))),
    "avi": _Encoding(ext=".avi", muxer="avi", video_codec="mpeg4",
                     video_args=("-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p"),
                     audio_codecs=(("mp3", ("-c:a", "libmp3lame", "-b:a", "64k")),)),
    "webm": _Encoding(ext=".webm", muxer="webm", video_codec="vp8",
                      # "good" not "realtime": libvpx's realtime mode adapts to wall-clock time, so under load the
                      # same frames encoded to different bytes (seen in CI); "good" is deterministic and still fast
                      # at these frame sizes
                      video_args=("-c:v", "libvpx", "-deadline", "good", "-cpu-used", "5", "-b:v", "400k",
                                  "-pix_fmt", "yuv420p"),
                      audio_codecs=(("vorbis", ("-c:a", "libvorbis", "-q:a", "4")),)),
}


@dataclass(frozen=True, kw_only=True)
class _Song:
    """One planted song."""

    index: int  # position in the song list (0 = most likely under the power law)
    song_id: str  # TikTok music.id
    title: str  # TikTok music.title
    notes_hz: tuple[float, ...]  # the looped melody
    note_s: float  # duration of one note (s)
    n_videos: int  # videos that use it (its degree in the song-video graph; 0 = in the catalogue, never used)
    popularity: float  # latent popularity z_j ~ N(0, 1)
    percentile: float  # Φ(z_j), in (0, 1)
    effect: float  # song_effect = effect_base + effect_span * percentile (log units)


@dataclass(frozen=True, kw_only=True)
class _VideoPlan:
    """Everything needed to render one video; the planted labels live in :attr:`row`."""

    name: str  # file name, e.g. syn_0003.mp4
    encoding: str  # key of _ENCODINGS
    audio_args: tuple[str, ...]  # encoder options of the drawn audio codec (empty without audio)
    width: int  # frame width (px)
    height: int  # frame height (px)
    fps: int  # frames per second
    n_frames: int  # frames in the video
    n_seconds: int  # whole seconds S
    has_audio: bool  # whether an audio stream is written
    visual_cue: tuple[float, ...]  # v_t, length S
    audio_cue: tuple[float, ...]  # a_t, length S
    beat: tuple[bool, ...]  # b_t: second t carries the synchrony beat, length S
    flash: tuple[bool, ...]  # f_t: second t shows the synchrony flash bar, length S
    extraversion_cue: float  # e
    tone_hz: float  # neuroticism background tone frequency
    cue_noise_seed: int  # seed of the arousal cue noise (drawn while planning, so rendering needs no shared RNG)
    background: tuple[int, int, int]  # RGB background
    transcript: str  # what is said (and written to the transcription pickles)
    song: _Song | None  # the song whose melody plays, if any
    row: dict[str, Any] = field(default_factory=dict)  # the ground-truth row (filled by _plan)


@dataclass(frozen=True, kw_only=True)
class SyntheticDataset:
    """What :func:`generate_synthetic` wrote."""

    out_dir: Path  # the dataset folder
    video_paths: tuple[Path, ...]  # one media file per video, in ground-truth row order
    ground_truth: pd.DataFrame  # one row per video (same content as ground_truth.parquet)
    files: dict[str, Path]  # role -> label / ground-truth file (see _label_files for the roles)


# ----------------------------------------------------------------------------------------------------------- planning

def _recency_weights(n_seconds: int, design: _Design) -> np.ndarray:
    """Normalised recency weights over a clip's whole seconds.

    ``w_t ∝ 0`` for ``t < S - window``, ``early`` for ``S - window <= t < S - last``, ``late`` for ``t >= S - last``;
    ``Σ w_t = 1``.

    Shapes:
        returns (S,) float64.
    """
    t = np.arange(n_seconds)
    w = np.where(t >= n_seconds - design.recency_last_s, design.recency_late_weight, design.recency_early_weight)
    w = np.where(t < n_seconds - design.recency_window_s, 0.0, w)
    return w / w.sum()


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _quota(rng: np.random.Generator, n: int, share: float, design: _Design, *,
           keep_one_out: bool = False) -> np.ndarray:
    """A shuffled boolean mask with ``round(share * n)`` True entries (at least one once ``n >= cover_from``)."""
    k = _round_half_up(share * n)
    if n >= design.cover_from:
        k = max(k, 1)
    if keep_one_out:
        k = min(k, n - 1)
    mask = np.zeros(n, dtype=bool)
    mask[:max(k, 0)] = True
    return rng.permutation(mask)


def _container_kinds(rng: np.random.Generator, n: int, design: _Design) -> list[str]:
    kinds, shares = zip(*design.containers)
    counts = [_round_half_up(s * n) for s in shares[1:]]
    if n >= design.cover_from:
        counts = [max(c, 1) for c in counts]
    counts = [min(c, n - 1) for c in counts]  # the first (mp4) keeps the remainder
    while sum(counts) > max(n - 1, 0) and any(counts):
        counts[int(np.argmax(counts))] -= 1
    labels = [kinds[0]] * (n - sum(counts)) + [k for k, c in zip(kinds[1:], counts) for _ in range(c)]
    return [labels[i] for i in rng.permutation(n)]


def _transcript(rng: np.random.Generator, k_agree: int, k_consc: int, design: _Design) -> str:
    """1-2 sentences of filler words with ``k_agree`` + ``k_consc`` planted words at random positions."""
    n_sent = int(rng.integers(1, 3))
    sentences = [list(rng.choice(design.filler_words, size=int(rng.integers(4, 8)))) for _ in range(n_sent)]
    planted = list(rng.choice(design.agreeableness_words, size=k_agree)) + \
        list(rng.choice(design.conscientiousness_words, size=k_consc))
    for word in planted:
        words = sentences[int(rng.integers(n_sent))]
        words.insert(int(rng.integers(len(words) + 1)), str(word))
    return " ".join(" ".join(map(str, s)).capitalize() + "." for s in sentences)


def _max_songs(design: _Design) -> int:
    """How many distinct melodies the scale allows (sequences of ``melody_len`` notes, not all the same note)."""
    return len(design.melody_notes_hz) ** design.melody_len - len(design.melody_notes_hz)


def _plan_songs(rng: np.random.Generator, n_videos: int, no_song: np.ndarray,
                design: _Design) -> tuple[list[_Song], list[int | None]]:
    """The song catalogue and each video's song index (``None`` = no song).

    Every catalogue song has a latent popularity ``z_j ~ N(0, 1)``; each video with a song picks song ``j`` with
    probability ``∝ exp(song_choice_beta · z_j)``, so popular songs are used by more videos (what makes the graph carry
    ``z``). Songs no video picked stay in the catalogue with ``n_videos = 0``.
    """
    n_songs = max(design.min_songs, n_videos // design.videos_per_song)
    if n_songs > _max_songs(design):
        raise ValueError(f"n_videos={n_videos}: the catalogue would need {n_songs} songs; expected at most "
                         f"{_max_songs(design) * design.videos_per_song} videos (distinct melodies run out)")
    z = rng.standard_normal(n_songs)
    probs = np.exp(design.song_choice_beta * (z - z.max()))
    probs /= probs.sum()
    with_song = np.flatnonzero(~no_song)
    picks = rng.choice(n_songs, size=len(with_song), p=probs)
    assignment: list[int | None] = [None] * n_videos
    for vid, j in zip(with_song, picks):
        assignment[int(vid)] = int(j)
    degrees = np.bincount(picks, minlength=n_songs)
    seen: set[tuple[int, ...]] = set()
    songs = []
    for j in range(n_songs):
        while True:
            seq = tuple(int(k) for k in rng.integers(0, len(design.melody_notes_hz), design.melody_len))
            if seq not in seen and len(set(seq)) > 1:
                break
        seen.add(seq)
        note_s = round(float(rng.uniform(*design.melody_note_s)), 2)
        percentile = 0.5 * (1.0 + math.erf(float(z[j]) / math.sqrt(2.0)))
        songs.append(_Song(index=j, song_id=f"syn_song_{j:03d}", title=f"Synthetic melody {j}",
                           notes_hz=tuple(design.melody_notes_hz[k] for k in seq), note_s=note_s,
                           n_videos=int(degrees[j]), popularity=float(z[j]), percentile=percentile,
                           effect=design.effect_base + design.effect_span * percentile))
    return songs, assignment


def _plan_sync(rng: np.random.Generator, n_sec: int, design: _Design) -> tuple[np.ndarray, np.ndarray, float]:
    """Beat seconds ``b``, flash seconds ``f`` and the synchrony ``m / k`` of one clip.

    Both cues fall inside the last ``W = min(S, recency_window_s)`` seconds, ``k = max(1, W // sync_seconds_per)``
    seconds each; the number of shared seconds ``m`` is uniform on ``max(0, 2k - W) .. k``. The per-clip totals
    (``k`` beat seconds, ``k`` flash seconds) depend only on ``S``, never on ``m``.

    Shapes:
        returns (S,) bool, (S,) bool, float in [0, 1].
    """
    window = min(n_sec, design.recency_window_s)
    k = max(1, window // design.sync_seconds_per)
    m = int(rng.integers(max(0, 2 * k - window), k + 1))
    eligible = np.arange(n_sec - window, n_sec)
    beat_at = rng.choice(eligible, size=k, replace=False)
    others = np.setdiff1d(eligible, beat_at)
    flash_at = np.concatenate([rng.choice(beat_at, size=m, replace=False),
                               rng.choice(others, size=k - m, replace=False)])
    beat, flash = np.zeros(n_sec, dtype=bool), np.zeros(n_sec, dtype=bool)
    beat[beat_at] = True
    flash[flash_at] = True
    return beat, flash, m / k


@dataclass(frozen=True, kw_only=True)
class _VideoDraws:
    """Every random draw of one video (:func:`_draw_video`); the labels are computed from these alone."""

    audio_codec: str  # ffprobe name of the drawn audio codec
    audio_args: tuple[str, ...]  # its encoder options
    fps: int  # frames per second
    n_frames: int  # frames in the video
    duration: float  # n_frames / fps (s)
    n_seconds: int  # whole seconds S
    visual: np.ndarray  # v_t, (S,)
    audio: np.ndarray  # a_t, (S,)
    extraversion: float  # e
    neuroticism: float  # n
    cue_noise_seed: int  # seed of the arousal cue noise
    background: tuple[int, int, int]  # RGB background
    k_agree: int  # agreeableness words in the transcript
    k_consc: int  # conscientiousness words in the transcript
    transcript: str  # what is said
    noise: dict[str, float]  # label -> noise draw
    age_s: int  # the post's age at the scrape (s)
    share_rate: float  # shares / (plays + shares + comments)
    comment_rate: float  # comments / (plays + shares + comments)
    like_rate: float  # likes / plays
    variances: np.ndarray  # (valence, arousal) annotation variances, (2,)
    beat: np.ndarray  # b_t, (S,) bool
    flash: np.ndarray  # f_t, (S,) bool
    sync: float  # m / k (0 when sync_weight is 0)


def _draw_video(rng: np.random.Generator, enc: _Encoding, min_duration: float, max_duration: float,
                design: _Design) -> _VideoDraws:
    """Draw every random quantity of one video, in the fixed order that makes a seed's dataset reproducible."""
    audio_codec, audio_args = enc.audio_codecs[int(rng.integers(len(enc.audio_codecs)))]
    fps = int(rng.choice(design.fps_choices))
    n_frames = max(1, _round_half_up(float(rng.uniform(min_duration, max_duration)) * fps))
    duration = n_frames / fps
    n_sec = max(1, int(math.floor(duration + 1e-9)))
    v = (rng.uniform() + rng.uniform(size=n_sec)) / 2  # per-video level + per-second part
    a = (rng.uniform() + rng.uniform(size=n_sec)) / 2
    e, n = float(rng.uniform()), float(rng.uniform())
    cue_noise_seed = int(rng.integers(2**63))
    background = tuple(int(x) for x in np.round(255 * rng.uniform(*design.background_range, size=3)))
    k_agree, k_consc = (int(k) for k in rng.integers(0, design.max_words + 1, size=2))
    transcript = _transcript(rng, k_agree, k_consc, design)
    noise = {"valence": float(rng.normal(0, design.emotion_noise_sd)),
             "arousal": float(rng.normal(0, design.emotion_noise_sd)),
             **{t: float(rng.normal(0, design.trait_noise_sd)) for t in _TRAITS},
             "popularity": float(rng.normal(0, design.popularity_noise_sd))}
    age_s = _round_half_up(float(rng.uniform(*design.age_days)) * 86400)
    share_rate, comment_rate, like_rate = (float(rng.uniform(*r)) for r in
                                           (design.share_rate, design.comment_rate, design.like_rate))
    variances = rng.uniform(*design.variance_range, size=2)
    beat, flash, sync = _plan_sync(rng, n_sec, design)  # drawn always: the other draws stay the same
    if design.sync_weight == 0:  # no synchrony plant: draw neither cue, so nothing but recency moves arousal
        beat, flash, sync = np.zeros_like(beat), np.zeros_like(flash), 0.0
    return _VideoDraws(audio_codec=audio_codec, audio_args=audio_args, fps=fps, n_frames=n_frames,
                       duration=duration, n_seconds=n_sec, visual=v, audio=a, extraversion=e, neuroticism=n,
                       cue_noise_seed=cue_noise_seed, background=background, k_agree=k_agree, k_consc=k_consc,
                       transcript=transcript, noise=noise, age_s=age_s, share_rate=share_rate,
                       comment_rate=comment_rate, like_rate=like_rate, variances=variances, beat=beat,
                       flash=flash, sync=sync)


def _plan_splits(rng: np.random.Generator, n_videos: int, design: _Design) -> np.ndarray:
    """Each video's split (``train`` / ``val`` / ``test``) by a seeded shuffle in the design's shares.

    Shapes:
        returns (n_videos,) object array of split names.
    """
    order = rng.permutation(n_videos)
    n_train = _round_half_up(design.split_shares[0] * n_videos)
    n_val = min(_round_half_up(design.split_shares[1] * n_videos), n_videos - n_train)
    split = np.empty(n_videos, dtype=object)
    split[order[:n_train]] = "train"
    split[order[n_train:n_train + n_val]] = "val"
    split[order[n_train + n_val:]] = "test"
    return split


def _emotion_labels(d: _VideoDraws, design: _Design) -> tuple[np.ndarray, dict[str, float], dict[str, float]]:
    """Recency weights ``w`` (S,), the planted valence / arousal components, and the clipped labels on [1, 5]."""
    w = _recency_weights(d.n_seconds, design)
    parts = {"valence_recency_part": 4 * float(w @ d.visual),
             "arousal_recency_part": 4 * (1 - design.sync_weight) * float(w @ d.audio),
             "arousal_sync_part": 4 * design.sync_weight * d.sync}
    emotion = {"valence": float(np.clip(1 + parts["valence_recency_part"] + d.noise["valence"], 1, 5)),
               "arousal": float(np.clip(1 + parts["arousal_recency_part"] + parts["arousal_sync_part"]
                                        + d.noise["arousal"], 1, 5))}
    return w, parts, emotion


def _trait_labels(d: _VideoDraws, design: _Design) -> dict[str, float]:
    """The five personality traits and ``interview`` (their mean), each in [0, 1]."""
    e, n = d.extraversion, d.neuroticism
    trait_x = {"extraversion": e, "neuroticism": n, "agreeableness": d.k_agree / design.max_words,
               "conscientiousness": d.k_consc / design.max_words, "openness": (e + n) / 2}
    traits = {t: float(np.clip(design.trait_base + design.trait_span * trait_x[t] + d.noise[t], 0, 1))
              for t in _TRAITS}
    traits["interview"] = float(np.mean([traits[t] for t in _TRAITS]))
    return traits


def _popularity_labels(d: _VideoDraws, song: _Song | None, design: _Design) -> dict[str, Any]:
    """Song and content effects, the planted popularity ``p`` and the TikTok counts that reproduce it."""
    # "original sound" videos carry no network information: they get the catalogue's median song effect
    song_effect = song.effect if song is not None else design.effect_base + 0.5 * design.effect_span
    content_effect = design.effect_base + design.effect_span * float(np.mean(d.visual))
    p = design.song_weight * song_effect + (1 - design.song_weight) * content_effect + d.noise["popularity"]
    create_time = design.scrape_time - d.age_s
    t_days = (design.scrape_time - create_time) / 86400.0
    total = max(0, _round_half_up(math.exp(p) * t_days) - 1)  # plays + shares + comments
    shares, comments = int(total * d.share_rate), int(total * d.comment_rate)
    plays = total - shares - comments
    return {"song_effect": song_effect, "content_effect": content_effect, "popularity": p,
            "create_time": create_time, "t_days": t_days, "play_count": plays, "share_count": shares,
            "comment_count": comments, "digg_count": int(plays * d.like_rate)}


def _ground_truth_row(d: _VideoDraws, *, name: str, split: str, kind: str, width: int, height: int,
                      portrait: bool, has_audio: bool, song: _Song | None, design: _Design) -> dict[str, Any]:
    """One video's ground-truth row: its format, cues, planted labels with their components, and TikTok counts."""
    w, parts, emotion = _emotion_labels(d, design)
    traits = _trait_labels(d, design)
    pop = _popularity_labels(d, song, design)
    return {
        "name": name, "video_id": Path(name).stem, "split": split, "container": kind,
        "video_codec": _ENCODINGS[kind].video_codec, "audio_codec": d.audio_codec if has_audio else None,
        "duration": d.duration, "n_frames": d.n_frames, "fps": d.fps, "width": width, "height": height,
        "orientation": "portrait" if portrait else "landscape", "has_audio": has_audio,
        "n_seconds": d.n_seconds, "visual_cue": d.visual.tolist(), "audio_cue": d.audio.tolist(),
        "recency_weights": w.tolist(), "sync_beat": d.beat.tolist(), "sync_flash": d.flash.tolist(),
        "sync_cue": d.sync, "extraversion_cue": d.extraversion, "neuroticism_cue": d.neuroticism,
        "neuroticism_tone_hz": design.tone_lo_hz * 2.0 ** (design.tone_octaves * d.neuroticism),
        "agreeableness_words": d.k_agree, "conscientiousness_words": d.k_consc, "transcript": d.transcript,
        "background_rgb": list(d.background),
        "song_id": song.song_id if song is not None else None,
        "song_popularity": song.popularity if song is not None else None,
        "song_effect": pop["song_effect"], "content_effect": pop["content_effect"],
        **emotion, **parts, **traits, "popularity": pop["popularity"],
        "popularity_network_part": design.song_weight * (pop["song_effect"] - design.effect_base),
        "popularity_content_part": (1 - design.song_weight) * (pop["content_effect"] - design.effect_base),
        **{f"noise_{k}": val for k, val in d.noise.items()},
        **{k: pop[k] for k in ("create_time", "t_days", "play_count", "share_count", "comment_count",
                               "digg_count")},
        "valence_variance": float(d.variances[0]), "arousal_variance": float(d.variances[1]),
    }


def _plan(n_videos: int, seed: int, min_duration: float, max_duration: float, size_scale: float,
          design: _Design) -> tuple[list[_VideoPlan], list[_Song]]:
    """Draw every random quantity of the dataset (in one fixed order) and compute the planted labels."""
    rng = np.random.default_rng(seed)
    kinds = _container_kinds(rng, n_videos, design)
    portrait = _quota(rng, n_videos, design.portrait_share, design, keep_one_out=True)
    no_audio = _quota(rng, n_videos, design.no_audio_share, design, keep_one_out=True)
    no_song = _quota(rng, n_videos, design.no_song_share, design, keep_one_out=True)
    songs, song_of = _plan_songs(rng, n_videos, no_song, design)
    split = _plan_splits(rng, n_videos, design)

    long_side = 2 * max(8, _round_half_up(design.base_width * size_scale / 2))
    short_side = 2 * max(8, _round_half_up(design.base_height * size_scale / 2))
    digits = max(4, len(str(n_videos - 1)))
    plans = []
    for i in range(n_videos):
        enc = _ENCODINGS[kinds[i]]
        d = _draw_video(rng, enc, min_duration, max_duration, design)
        song = songs[song_of[i]] if song_of[i] is not None else None
        width, height = (short_side, long_side) if portrait[i] else (long_side, short_side)
        name = f"syn_{i:0{digits}d}{enc.ext}"
        has_audio = not bool(no_audio[i])
        row = _ground_truth_row(d, name=name, split=str(split[i]), kind=kinds[i], width=width, height=height,
                                portrait=bool(portrait[i]), has_audio=has_audio, song=song, design=design)
        plans.append(_VideoPlan(
            name=name, encoding=kinds[i], audio_args=d.audio_args if has_audio else (), width=width,
            height=height, fps=d.fps, n_frames=d.n_frames, n_seconds=d.n_seconds, has_audio=has_audio,
            visual_cue=tuple(d.visual.tolist()), audio_cue=tuple(d.audio.tolist()), beat=tuple(d.beat.tolist()),
            flash=tuple(d.flash.tolist()), extraversion_cue=d.extraversion, tone_hz=row["neuroticism_tone_hz"],
            cue_noise_seed=d.cue_noise_seed, background=d.background, transcript=d.transcript, song=song,
            row=row))
    return plans, songs


#: second seed word of the re-scrape generator: its draws never shift the dataset's other draws
_RESCRAPE_STREAM = 0x7E5D
_COUNT_COLUMNS = ("play_count", "share_count", "comment_count", "digg_count")


def _plan_rescrapes(gt: pd.DataFrame, rescrapes: int, seed: int,
                    design: _Design) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The early re-scrapes of every post (module docstring, "Early popularity trend") and their ground-truth columns.

    Drawn from a generator of their own (``seed`` plus a fixed stream word), so a dataset with re-scrapes has the same
    videos, labels and final counts as one without. Post i (age ``A_i`` hours at the final scrape, growth constant
    ``τ_i``) is re-scraped at hours ``h_ij`` (slot ``window · j / K`` ± jitter, sorted, only those before ``A_i``)
    and shows the share ``s_ij = min(1, G_i(h_ij) / G_i(A_i) · e^{ε_ij})``, ``G_i(h) = 1 - e^{-h/τ_i}``, made
    non-decreasing over j, of each of its final counts (floored to integers).

    Shapes:
        → one row per re-scrape made: ``video_id``, ``round`` (1..K), ``scrape_time`` (epoch s), the four counts;
        a dict of ground-truth columns, one value per post (lists for the per-scrape ``rescrape_hours`` /
        ``rescrape_share``)
    """
    rng = np.random.default_rng([seed, _RESCRAPE_STREAM])
    n, k = len(gt), rescrapes
    age_h = gt["t_days"].to_numpy(dtype=np.float64) * 24.0
    lo, hi = np.log(design.growth_tau_h[0]), np.log(design.growth_tau_h[1])
    tau = np.exp(rng.uniform(lo, hi, size=n))
    slots = design.rescrape_window_h * np.arange(1, k + 1) / k
    jitter = rng.uniform(-design.rescrape_jitter_h, design.rescrape_jitter_h, size=(n, k))
    hours = np.sort(np.round(np.maximum(slots[None, :] + jitter, 1.0) * 3600.0) / 3600.0, axis=1)  # whole seconds
    noise = rng.normal(0.0, design.rescrape_noise_sd, size=(n, k))

    def growth(h: np.ndarray) -> np.ndarray:  # G_i(h) = 1 - exp(-h / τ_i), rows = posts
        return -np.expm1(-h / tau.reshape(-1, *([1] * (h.ndim - 1))))

    share = np.maximum.accumulate(np.minimum(1.0, growth(hours) / growth(age_h)[:, None] * np.exp(noise)), axis=1)
    made = hours < age_h[:, None]
    final = gt[list(_COUNT_COLUMNS)].to_numpy(dtype=np.float64)
    post, rnd = np.nonzero(made)
    rows = pd.DataFrame({"video_id": gt["video_id"].to_numpy()[post], "round": rnd + 1,
                         "scrape_time": gt["create_time"].to_numpy()[post] + np.round(hours[post, rnd] * 3600.0)})
    for c, col in enumerate(_COUNT_COLUMNS):
        rows[col] = np.floor(share[post, rnd] * final[post, c]).astype(np.int64)
    fav, comments, shares = gt["digg_count"], gt["comment_count"], gt["share_count"]
    y = 0.2 * fav + 0.3 * comments + 0.5 * shares  # MTAF eq. 1 at the final scrape (favourites = likes here)
    early = np.minimum(age_h, design.rescrape_window_h)
    label = np.log1p(y.to_numpy(dtype=np.float64))
    early_part = np.log1p(y.to_numpy(dtype=np.float64) * growth(early) / growth(age_h))
    columns = {"growth_tau_hours": tau, "rescrape_hours": [hours[i][made[i]].tolist() for i in range(n)],
               "rescrape_share": [share[i][made[i]].tolist() for i in range(n)], "mtaf_score": y.to_numpy(),
               "mtaf_label_log": label, "mtaf_early_part": early_part, "mtaf_late_growth_part": label - early_part}
    return rows, columns


# ---------------------------------------------------------------------------------------------------------- rendering

def _level(x: float, design: _Design) -> float:
    """Cue in [0, 1] -> pixel level in [0, 255]."""
    return 255.0 * (design.level_lo + (design.level_hi - design.level_lo) * x)


def _second_frame(plan: _VideoPlan, second: int, design: _Design) -> np.ndarray:
    """The static part of every frame in one second: background, top-left quadrant, central square, and the
    synchrony flash bar when ``plan.flash[second]``.

    Shapes:
        returns (H, W, 3) uint8.
    """
    h, w = plan.height, plan.width
    frame = np.empty((h, w, 3), dtype=np.uint8)
    frame[:] = plan.background
    frame[: h // 2, : w // 2] = np.round(_level(plan.extraversion_cue, design) * np.array(design.quadrant_rgb))
    half = design.centre_square * min(h, w) / 2
    y0, y1 = _round_half_up(h / 2 - half), _round_half_up(h / 2 + half)
    x0, x1 = _round_half_up(w / 2 - half), _round_half_up(w / 2 + half)
    frame[y0:y1, x0:x1] = round(_level(plan.visual_cue[second], design))
    if plan.flash[second]:
        bx0, bx1, by0, by1 = (_round_half_up(c + f * min(h, w)) for c, f in zip(
            (w / 2, w / 2, h / 2, h / 2), design.flash_box))
        frame[by0:by1, bx0:bx1] = design.flash_rgb
    return frame


def _frames(plan: _VideoPlan, design: _Design) -> Iterator[np.ndarray]:
    """Yield the video one second at a time (the last chunk may be shorter), with the moving nuisance square.

    Shapes:
        yields (T, H, W, 3) uint8 chunks, T <= fps; their T sum to ``plan.n_frames``.
    """
    h, w = plan.height, plan.width
    short = min(h, w)
    size = max(2, _round_half_up(design.distractor_size * short))
    y0 = _round_half_up(h / 2 + 0.3 * short)
    x_lo, x_hi = w / 2 - 0.4 * short, w / 2 + 0.4 * short - size
    for start in range(0, plan.n_frames, plan.fps):
        idx = np.arange(start, min(start + plan.fps, plan.n_frames))
        base = _second_frame(plan, min(start // plan.fps, plan.n_seconds - 1), design)
        chunk = np.repeat(base[None], len(idx), axis=0)
        phase = (idx / plan.fps % design.distractor_period_s) / design.distractor_period_s
        for k, x in enumerate(np.round(x_lo + (x_hi - x_lo) * phase).astype(int)):
            chunk[k, y0:y0 + size, x:x + size] = design.distractor_rgb
        yield chunk


def _speak(text: str, espeak: str, tmp: Path, design: _Design) -> np.ndarray:
    """Speak ``text`` with espeak-ng and resample to ``design.sample_rate``, peak-normalised to ``speech_peak``.

    Shapes:
        returns (n_samples,) float64.
    """
    wav = tmp / "speech.wav"
    # "--": the text is never read as an option, whatever it starts with
    res = subprocess.run([espeak, "-v", "en-us", "-s", str(design.speech_wpm), "-w", os.path.abspath(wav), "--",
                          text],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0 or not wav.is_file():
        raise RuntimeError(f"{espeak} failed (exit {res.returncode}) speaking {text!r}: {res.stderr.strip()[-500:]}")
    sr, x = scipy.io.wavfile.read(wav)
    x = x.astype(np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    g = math.gcd(int(sr), design.sample_rate)
    x = scipy.signal.resample_poly(x, design.sample_rate // g, int(sr) // g)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return x * (design.speech_peak / peak) if peak > 0 else x


def _beat_track(plan: _VideoPlan, n: int, design: _Design) -> np.ndarray:
    """The synchrony beat alone: ``beat_per_s`` decaying noise bursts in each beat second, 0 elsewhere.

    Shapes:
        returns (n,) float64.
    """
    sr = design.sample_rate
    length = _round_half_up(design.beat_len_s * sr)
    ramp = max(1, _round_half_up(design.ramp_s * sr))
    env = np.exp(-np.arange(length) / (design.beat_decay_s * sr))
    env[:ramp] *= np.linspace(0, 1, ramp)  # soft attack and release: no click outside the pass band
    env[-ramp:] *= np.linspace(1, 0, ramp)
    # order 8: the beat must stay out of the arousal cue's band (>= 1.5 kHz: about -50 dB there)
    sos = scipy.signal.butter(8, design.beat_band_hz, btype="bandpass", fs=sr, output="sos")
    rng = np.random.default_rng([plan.cue_noise_seed, 1])  # its own stream: the cue noise stays what it was
    out = np.zeros(n)
    for second in np.flatnonzero(plan.beat):
        for i in range(design.beat_per_s):
            start = _round_half_up((second + (i + 0.25) / design.beat_per_s) * sr)
            if start >= n:
                break
            burst = scipy.signal.sosfilt(sos, rng.standard_normal(length)) * env
            burst *= design.beat_peak / max(float(np.max(np.abs(burst))), 1e-12)
            part = burst[: n - start]
            out[start:start + part.size] += part
    return out


def _audio(plan: _VideoPlan, speech: np.ndarray | None, design: _Design) -> np.ndarray:
    """Mix the arousal cue noise, the background tone, the song melody, the synchrony beat and the speech.

    ``x(t) = A(a_{sec(t)}) z(t) + A_n sin(2π f_n t) + A_m melody(t) + beat(t) + speech(t - onset)`` with ``z``
    band-pass noise of unit RMS clipped at ±crest and ``A(a) = cue_rms · 10^(-range_db (1 - a) / 20)`` smoothed over
    ``ramp_s``; ``beat`` = in every beat second, ``beat_per_s`` bursts of band-pass noise (``beat_band_hz``) under an
    exponential decay, each scaled to the peak ``beat_peak``.

    Shapes:
        returns (n_samples,) float32 with n_samples = round(duration · sample_rate).
    """
    sr = design.sample_rate
    n = _round_half_up(plan.n_frames / plan.fps * sr)
    t = np.arange(n) / sr
    sec = np.minimum(np.arange(n) // sr, plan.n_seconds - 1)
    a = np.asarray(plan.audio_cue)[sec]
    ramp = max(1, _round_half_up(design.ramp_s * sr))
    env = uniform_filter1d(design.cue_rms * 10.0 ** (-design.cue_range_db * (1 - a) / 20), size=ramp, mode="nearest")
    sos = scipy.signal.butter(6, design.cue_band_hz, btype="bandpass", fs=sr, output="sos")
    z = scipy.signal.sosfilt(sos, np.random.default_rng(plan.cue_noise_seed).standard_normal(n))
    z = np.clip(z / max(float(np.std(z)), 1e-12), -design.cue_crest, design.cue_crest)
    x = env * z + design.tone_amp * np.sin(2 * np.pi * plan.tone_hz * t)
    if plan.song is not None:
        note_idx = (t // plan.song.note_s).astype(int)
        local = t - note_idx * plan.song.note_s
        freq = np.asarray(plan.song.notes_hz)[note_idx % len(plan.song.notes_hz)]
        fade = np.clip(np.minimum(local, plan.song.note_s - local) / design.ramp_s, 0, 1)
        x = x + design.melody_amp * fade * np.sin(2 * np.pi * freq * local)
    if any(plan.beat):
        x = x + _beat_track(plan, n, design)
    if speech is not None and speech.size:
        start = _round_half_up(design.speech_start_s * sr)
        part = speech[: max(0, n - start)].copy()
        tail = min(ramp * 2, part.size)
        if part.size < speech.size and tail:  # cut mid-word: fade out instead of clicking
            part[-tail:] *= np.linspace(1, 0, tail)
        x[start:start + part.size] += part
    assert np.max(np.abs(x)) <= 1.0, "mix levels must not clip"
    return x.astype(np.float32)


def _encode(plan: _VideoPlan, videos_dir: Path, ffmpeg: str, espeak: str | None, design: _Design) -> Path:
    """Render and encode one video to a hidden temporary file, then rename it into place."""
    enc = _ENCODINGS[plan.encoding]
    final = videos_dir / plan.name
    partial = videos_dir / f".{plan.name}.partial"
    with tempfile.TemporaryDirectory(prefix="vidpipe-syn-") as tmp_name:
        tmp = Path(tmp_name)
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{plan.width}x{plan.height}", "-r", str(plan.fps),
               "-i", "pipe:0"]
        if plan.has_audio:
            speech = _speak(plan.transcript, espeak, tmp, design) if espeak else None
            wav = tmp / "audio.wav"
            scipy.io.wavfile.write(wav, design.sample_rate, _audio(plan, speech, design))
            cmd += ["-i", "file:" + os.path.abspath(wav), "-map", "0:v:0", "-map", "1:a:0", *plan.audio_args]
        else:
            cmd += ["-map", "0:v:0", "-an"]
        cmd += [*enc.video_args, "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
                "-flags:a", "+bitexact", "-map_metadata", "-1", "-f", enc.muxer, "file:" + os.path.abspath(partial)]
        log = tmp / "ffmpeg.log"
        try:
            with log.open("wb") as err:
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
                try:
                    for chunk in _frames(plan, design):
                        proc.stdin.write(chunk.tobytes())
                except BrokenPipeError:
                    pass  # ffmpeg died: its exit code and log say why
                finally:
                    try:
                        proc.stdin.close()
                    except BrokenPipeError:
                        pass
                    rc = proc.wait()
            if rc != 0:
                raise RuntimeError(f"ffmpeg failed to encode {plan.name} (exit {rc}): "
                                   f"{log.read_text(errors='replace').strip()[-800:]}")
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
    return final


# -------------------------------------------------------------------------------------------------------- label files

def _label_files(out_dir: Path) -> dict[str, Path]:
    """Role -> path of every label / ground-truth file, in writing order (the last one marks completion)."""
    files = {}
    for tag in _FI_SPLIT_TAGS.values():
        files[f"annotation_{tag}"] = out_dir / f"annotation_{tag}.pkl"
        files[f"transcription_{tag}"] = out_dir / f"transcription_{tag}.pkl"
    files.update({
        "liris_ranking": out_dir / "ACCEDEranking.txt",
        "liris_sets": out_dir / "ACCEDEsets.txt",
        "tiktok_scrape": out_dir / "tiktok_scrape.json",
        "ground_truth_parquet": out_dir / "ground_truth.parquet",
        "ground_truth_json": out_dir / "ground_truth.json",
        "tiktok_posts": out_dir / "tiktok_posts.jsonl",
    })
    return files


#: folder of the early re-scrapes (``scrape_01.jsonl`` …, oldest first)
RESCRAPE_DIR = "tiktok_rescrapes"


def _rescrape_files(out_dir: Path, rescrapes: int) -> dict[str, Path]:
    """Role -> path of each early re-scrape file (written before ``tiktok_posts.jsonl``)."""
    return {f"tiktok_rescrape_{j:02d}": out_dir / RESCRAPE_DIR / f"scrape_{j:02d}.jsonl"
            for j in range(1, rescrapes + 1)}


def _atomic_write(path: Path, data: bytes) -> None:
    """Write under a hidden temporary name in the same folder, then rename (no fsync: guards against interruption,
    not power loss)."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _py2_pickle_bytes(obj: Any) -> bytes:
    # Imported here, not at module level: the adapter module owns the py2 format and the generator only borrows it.
    from features.sources.first_impressions import dump_py2_pickle

    buf = io.BytesIO()
    dump_py2_pickle(obj, buf)
    return buf.getvalue()


def _first_impressions_files(gt: pd.DataFrame) -> dict[str, bytes]:
    out = {}
    for split, tag in _FI_SPLIT_TAGS.items():
        part = gt[gt["split"] == split]
        # as in the official files: the five traits are Python floats, the interview scores numpy.float64 scalars
        ann = {t: dict(zip(part["name"], map(float, part[t]))) for t in _TRAITS}
        ann["interview"] = dict(zip(part["name"], part["interview"].to_numpy(np.float64)))
        out[f"annotation_{tag}"] = _py2_pickle_bytes(ann)
        out[f"transcription_{tag}"] = _py2_pickle_bytes(dict(zip(part["name"], part["transcript"])))
    return out


def _liris_files(gt: pd.DataFrame) -> dict[str, bytes]:
    v_rank = rankdata(gt["valence"], method="ordinal").astype(int) - 1  # 0-based, ties by id
    a_rank = rankdata(gt["arousal"], method="ordinal").astype(int) - 1
    ranking = ["id\tname\tvalenceRank\tarousalRank\tvalenceValue\tarousalValue\tvalenceVariance\tarousalVariance"]
    sets = ["id\tname\tset"]
    for i, r in enumerate(gt.itertuples(index=False)):
        ranking.append(f"{i}\t{r.name}\t{v_rank[i]}\t{a_rank[i]}\t{r.valence!r}\t{r.arousal!r}\t"
                       f"{r.valence_variance!r}\t{r.arousal_variance!r}")
        sets.append(f"{i}\t{r.name}\t{_LIRIS_SET_CODES[r.split]}")
    return {"liris_ranking": ("\n".join(ranking) + "\n").encode(), "liris_sets": ("\n".join(sets) + "\n").encode()}


def _tiktok_posts(gt: pd.DataFrame, songs: list[_Song], scrapes: pd.DataFrame | None = None) -> bytes:
    """TikTok JSON Lines: every post at the final scrape (its time in ``tiktok_scrape.json``), or, with ``scrapes``
    (rows of :func:`_plan_rescrapes`), the posts of one re-scrape with those counts and each record's own
    ``scrapeTime``, as a crawler that revisits posts at fixed ages writes them."""
    titles = {s.song_id: s.title for s in songs}
    by_id = gt.set_index("video_id", drop=False)
    rows = gt if scrapes is None else scrapes
    lines = []
    for r in rows.itertuples(index=False):
        v = by_id.loc[r.video_id]
        song = v.song_id if isinstance(v.song_id, str) else None  # pandas reads a missing id back as None or NaN
        rec = {"id": v.video_id, "createTime": int(v.create_time),
               "stats": {"playCount": int(r.play_count), "shareCount": int(r.share_count),
                         "commentCount": int(r.comment_count), "diggCount": int(r.digg_count)},
               "music": {"id": song or "", "title": titles[song] if song else "original sound"},
               "desc": f"synthetic clip {v.video_id} #vidpipe #synthetic", "video": {"duration": round(v.duration)}}
        if scrapes is not None:
            rec["scrapeTime"] = int(r.scrape_time)
        lines.append(json.dumps(rec))
    return ("\n".join(lines) + "\n").encode()


def _with_rescrapes(gt: pd.DataFrame, songs: list[_Song], out_dir: Path, rescrapes: int, seed: int,
                    design: _Design) -> tuple[pd.DataFrame, dict[str, Path], dict[str, bytes]]:
    """The ground truth with the re-scrape columns (:func:`_plan_rescrapes`), and the re-scrape files' paths and
    contents by role; ``gt`` itself and no files when ``rescrapes`` is 0."""
    if not rescrapes:
        return gt, {}, {}
    rows, columns = _plan_rescrapes(gt, rescrapes, seed, design)
    files = _rescrape_files(out_dir, rescrapes)
    contents = {role: _tiktok_posts(gt, songs, rows[rows["round"] == j])
                for j, role in enumerate(files, start=1)}
    return gt.assign(**columns), files, contents


def _labels_doc(design: _Design) -> dict[str, dict[str, Any]]:
    """Per label in ``ground_truth.json``: the modalities that carry it, its cue columns, where the cue is in the
    media and the formula of the label."""
    return {
        "valence": {"modality": ["visual"], "cue": "visual_cue",
                    "where": "grey level of the central square (side = centre_square x short side), per second",
                    "formula": "clip(1 + 4 * sum_t w_t * visual_cue_t + noise_valence, 1, 5)"},
        "arousal": {"modality": ["audio", "audio x visual per second"], "cue": ["audio_cue", "sync_cue"],
                    "where": "loudness of band-pass noise (cue_band_hz), "
                             "rms = cue_rms * 10^(-cue_range_db * (1 - a_t) / 20); plus the synchrony of the "
                             "beat (sync_beat) and the flash bar (sync_flash)",
                    "formula": "clip(1 + 4 * (1 - sync_weight) * sum_t w_t * audio_cue_t + 4 * sync_weight * "
                               "sync_cue + noise_arousal, 1, 5)",
                    "sync_cue": "m / k: the share of the k beat seconds that also show the flash (k beat and k "
                                "flash seconds per clip whatever m is; see 'synchrony')"},
        "extraversion": {"modality": ["visual"], "cue": "extraversion_cue",
                         "where": "brightness of the warm top-left quadrant (constant over the video)",
                         "formula": "clip(trait_base + trait_span * extraversion_cue + noise_extraversion, 0, 1)"},
        "neuroticism": {"modality": ["audio"], "cue": "neuroticism_cue",
                        "where": "pitch of the steady background tone, tone_lo_hz * 2^(tone_octaves * n)",
                        "formula": "clip(trait_base + trait_span * neuroticism_cue + noise_neuroticism, 0, 1)"},
        "agreeableness": {"modality": ["text"], "cue": "agreeableness_words",
                          "words": list(design.agreeableness_words),
                          "formula": "clip(trait_base + trait_span * agreeableness_words / max_words"
                                     " + noise_agreeableness, 0, 1)"},
        "conscientiousness": {"modality": ["text"], "cue": "conscientiousness_words",
                              "words": list(design.conscientiousness_words),
                              "formula": "clip(trait_base + trait_span * conscientiousness_words / max_words"
                                         " + noise_conscientiousness, 0, 1)"},
        "openness": {"modality": ["visual", "audio"], "cue": ["extraversion_cue", "neuroticism_cue"],
                     "formula": "clip(trait_base + trait_span * (extraversion_cue + neuroticism_cue) / 2"
                                " + noise_openness, 0, 1)"},
        "interview": {"modality": ["visual", "audio", "text"],
                      "formula": "mean(extraversion, neuroticism, agreeableness, conscientiousness, openness)"},
        "popularity": {"modality": ["graph", "visual"],
                       "formula": "song_weight * song_effect + (1 - song_weight) * content_effect"
                                  " + noise_popularity",
                       "song_effect": "effect_base + effect_span * Phi(z_j), z_j = the song's latent popularity "
                                      "(song_popularity); no song -> effect_base + effect_span / 2",
                       "song_choice": "P(video uses song j) ∝ exp(song_choice_beta * z_j)",
                       "content_effect": "effect_base + effect_span * mean_t(visual_cue_t)",
                       "tiktok": "log((playCount + shareCount + commentCount + 1) / t_days) = popularity up to "
                                 "integer rounding; t_days = (scrape_time - createTime) / 86400"},
    }


def _ground_truth_json(gt: pd.DataFrame, songs: list[_Song], params: dict[str, Any], design: _Design) -> bytes:
    """``ground_truth.json``: the generator's parameters, the splits, every label's rule, the synchrony and recency
    rules, the components' variance shares on this dataset, the songs and the design constants (UTF-8 JSON)."""
    doc = {
        "generator": _GENERATOR,
        "seed": params["seed"],
        "params": params,
        "splits": {s: gt.loc[gt["split"] == s, "video_id"].tolist() for s in ("train", "val", "test")},
        "seconds": "S = floor(duration) whole seconds carry one cue each; the sub-second tail repeats second S-1",
        "labels": _labels_doc(design),
        "synchrony": {
            "rule": "inside the last W = min(S, recency_window_s) seconds: k = max(1, W // sync_seconds_per) beat "
                    "seconds and k flash seconds; m of them shared, m uniform on max(0, 2k - W)..k; sync_cue = m / k",
            "beat": "beat_per_s decaying bursts of band-pass noise (beat_band_hz, peak beat_peak) in a beat second",
            "flash": "a flash_rgb bar at flash_box (relative to the centre, in short sides) in a flash second",
        },
        "components": _components(gt),
        **({"early_trend": _early_trend_doc(gt, params["rescrapes"])} if "rescrapes" in params else {}),
        "recency_weights": {
            "rule": "w_t ∝ 0 if t < S - recency_window_s; recency_late_weight if t >= S - recency_last_s; "
                    "else recency_early_weight; normalised to sum 1",
            "by_n_seconds": {str(s): _recency_weights(s, design).tolist() for s in sorted(set(gt["n_seconds"]))},
        },
        "songs": [asdict(s) for s in songs],
        "design": asdict(design),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False).encode()


#: per label: component column → (what can see it, what cannot); the docstring's table in machine-readable form
_VISIBILITY = {
    "valence": {"valence_recency_part": (
        "per-second vision (weighted to the last seconds); time-averaged vision sees most of it (mean level)",
        "audio, text, graph")},
    "arousal": {
        "arousal_recency_part": (
            "per-second audio (weighted to the last seconds); time-averaged audio sees most of it (mean level)",
            "vision, text, graph"),
        "arousal_sync_part": (
            "only a model that pairs audio and vision of the same second (per-clip totals of beats and flashes "
            "are the same whatever the synchrony)",
            "time-averaged features of any modality; one modality alone; graph, text")},
    "popularity": {
        "popularity_network_part": (
            "the song-video graph (a song's degree grows with its latent popularity); a model memorising a "
            "song's melody from training videos of the same song",
            "the video's own pixels; audio beyond the melody's identity; text"),
        "popularity_content_part": ("vision (mean level of the central square)", "graph, audio, text")},
}


def _components(gt: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per label and planted component: its column, its share of the label's variance on this dataset, what can and
    cannot see it (shares can sum to more or less than 1: components are independent only in expectation, and
    clipping to the label's range removes some variance)."""
    out: dict[str, dict[str, Any]] = {}
    for label, parts in _VISIBILITY.items():
        var = float(gt[label].var()) if len(gt) > 1 else 0.0
        out[label] = {}
        for column, (seen, unseen) in {**parts, f"noise_{label}": ("nothing", "everything")}.items():
            share = float(gt[column].var()) / var if var > 0 else float("nan")
            out[label][column] = {"variance_share": share if math.isfinite(share) else None,
                                  "seen_by": seen, "not_seen_by": unseen}
    return out


def _early_trend_doc(gt: pd.DataFrame, rescrapes: int) -> dict[str, Any]:
    """The re-scrape plant in ``ground_truth.json``: the rule, and the two parts of MTAF's label (log(1 + eq. 1) at
    the final scrape) with their shares of its variance on this dataset and what can see them."""
    var = float(gt["mtaf_label_log"].var()) if len(gt) > 1 else 0.0
    seen = {"mtaf_early_part": ("the early trend (its value at the window's end, or at the final scrape when that "
                                "comes first)", "nothing else directly; content and graph see the planted popularity "
                                "p it grows from"),
            "mtaf_late_growth_part": ("the trend's shape hints at it (τ_i sets how fast the series flattens); the "
                                      "post's age A_i, which no input carries", "the early trend's level")}
    parts = {}
    for column, (can, cannot) in seen.items():
        share = float(gt[column].var()) / var if var > 0 else float("nan")
        parts[column] = {"variance_share": share if math.isfinite(share) else None, "seen_by": can,
                         "not_seen_by": cannot}
    return {"rescrapes": rescrapes, "files": f"{RESCRAPE_DIR}/scrape_01.jsonl .. scrape_{rescrapes:02d}.jsonl",
            "rule": "post i re-scraped at hours h_ij = rescrape_window_h * j / K +- rescrape_jitter_h (only those "
                    "before its age A_i at the final scrape) showing floor(s_ij * final count) of each count, "
                    "s_ij = cummax_j min(1, G_i(h_ij) / G_i(A_i) * exp(eps_ij)), G_i(h) = 1 - exp(-h / tau_i), "
                    "tau_i log-uniform on growth_tau_h, eps_ij ~ N(0, rescrape_noise_sd)",
            "label": "mtaf_label_log = log(1 + 0.2 digg_count + 0.3 comment_count + 0.5 share_count) at the final "
                     "scrape = mtaf_early_part + mtaf_late_growth_part",
            "components": parts}


def _min_max(p: np.ndarray) -> np.ndarray:
    """(p - min p) / (max p - min p) over the whole generated dataset; a constant vector maps to 0.5."""
    lo, hi = float(p.min()), float(p.max())
    return np.full_like(p, 0.5, dtype=float) if hi == lo else (p - lo) / (hi - lo)


# ------------------------------------------------------------------------------------------------------------ public

def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r}: expected an integer >= {minimum}")
    return int(value)


def _check_float(name: str, value: Any, minimum: float, *, strict: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        raise ValueError(f"{name}={value!r}: expected a finite number {'>' if strict else '>='} {minimum}")
    return float(value)


def _design_with(sync_weight: float | None) -> _Design:
    """The design constants, with ``sync_weight`` (checked to lie in [0, 1]) when one is given."""
    if sync_weight is None:
        return _DESIGN
    weight = _check_float("sync_weight", sync_weight, 0.0)
    if weight > 1.0:
        raise ValueError(f"sync_weight={sync_weight!r}: expected a number in [0, 1]")
    return replace(_DESIGN, sync_weight=weight)


def _find_tools(speech: bool) -> tuple[str, str | None]:
    """Paths of ffmpeg (required) and of espeak-ng / espeak (``None`` without ``speech``, or warned once if missing)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg not found on PATH; install it (e.g. `apt-get install ffmpeg`) to generate videos")
    espeak = (shutil.which("espeak-ng") or shutil.which("espeak")) if speech else None
    if speech and espeak is None:
        warnings.warn("speech=True but neither espeak-ng nor espeak is on PATH: the videos will have no speech "
                      "(transcripts are still written)", stacklevel=3)
    return ffmpeg, espeak


def _clear_earlier_run(out: Path, plans: list[_VideoPlan]) -> tuple[Path, dict[str, Path]]:
    """Create ``out/videos``; remove an earlier run's label and re-scrape files, its ``syn_*`` videos this run does
    not write and its ``.partial`` files. Returns the videos folder and the label files by role."""
    videos_dir = out / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    files = _label_files(out)
    for path in [*files.values(), *(out / RESCRAPE_DIR).glob("scrape_*.jsonl")]:  # labels of an earlier run must
        path.unlink(missing_ok=True)  # never describe this run's videos
    names = {p.name for p in plans}
    for stale in videos_dir.iterdir():
        if (re.fullmatch(r"syn_\d+\.(mp4|mkv|avi|webm)", stale.name) and stale.name not in names) or \
                re.fullmatch(r"\..+\.partial", stale.name):
            stale.unlink()
    return videos_dir, files


def _encode_all(plans: list[_VideoPlan], videos_dir: Path, ffmpeg: str, espeak: str | None, design: _Design,
                workers: int) -> tuple[Path, ...]:
    """Encode every planned video on ``workers`` threads; the paths in plan order. The first failure cancels the
    encodes not yet started and is raised."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_encode, plan, videos_dir, ffmpeg, espeak, design) for plan in plans]
        try:
            return tuple(f.result() for f in futures)
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _write_labels(gt: pd.DataFrame, songs: list[_Song], out: Path, files: dict[str, Path], params: dict[str, Any],
                  rescrapes: int, design: _Design) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Write the label, re-scrape and ground-truth files (temporary name + rename), ``tiktok_posts.jsonl`` last.

    Returns the ground truth with its re-scrape columns and every written file by role, in writing order.
    """
    gt, rescrape_files, rescrape_contents = _with_rescrapes(gt, songs, out, rescrapes, params["seed"], design)
    if rescrapes:
        params = {**params, "rescrapes": rescrapes}
    # ground_truth.parquet is source data beside the label files (like them, read by tests and adapters), not a store
    # table, so it is written here rather than through features.store.
    parquet = io.BytesIO()
    gt.to_parquet(parquet, index=False)
    contents = {**_first_impressions_files(gt), **_liris_files(gt),
                "tiktok_scrape": json.dumps({"scrape_time": design.scrape_time}).encode(),
                "ground_truth_parquet": parquet.getvalue(),
                "ground_truth_json": _ground_truth_json(gt, songs, params, design),
                "tiktok_posts": _tiktok_posts(gt, songs), **rescrape_contents}
    files = {**{r: p for r, p in files.items() if r != "tiktok_posts"}, **rescrape_files,
             "tiktok_posts": files["tiktok_posts"]}
    for role, path in files.items():  # dict order = writing order; tiktok_posts.jsonl last
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, contents[role])
    return gt, files


def generate_synthetic(out_dir: str | os.PathLike[str], *, n_videos: int, seed: int = 0, workers: int = 2,
                       speech: bool = True, min_duration: float = 3.0, max_duration: float = 15.0,
                       size_scale: float = 1.0, sync_weight: float | None = None,
                       rescrapes: int = 0) -> SyntheticDataset:
    """Write a planted-truth synthetic dataset (videos + First Impressions, LIRIS-ACCEDE and TikTok labels).

    See the module docstring for the layout, the planted signals and their formulas. Existing label files in
    ``out_dir`` are removed first, and so are stale ``videos/syn_*`` files of an earlier run; nothing else is touched.

    Args:
        out_dir: folder to write into (created if needed).
        n_videos: number of videos (>= 1).
        seed: seed of every random draw; same seed -> same labels, cues and (on the same machine) bytes.
        workers: parallel ffmpeg encodes (threads, each driving a single-threaded ffmpeg).
        speech: speak the transcripts into the audio when espeak-ng / espeak is available (warns once if not).
        min_duration: shortest clip in seconds (>= 1, so every clip has a whole second).
        max_duration: longest clip in seconds (>= min_duration); durations are uniform in between, rounded to frames.
        size_scale: scales the 128x96 / 96x128 frame size (sides stay even, at least 16 px).
        sync_weight: share of the arousal score carried by the synchrony plant, in [0, 1] (default: the design's
            0.35); 0 draws no beat and no flash (``sync_cue`` recorded as 0) and leaves arousal to the recency plant
            alone, for experiments that isolate recency
            (tests/pipelines/test_compare.py::test_attention_recovers_planted_recency_through_the_flows).
        rescrapes: early re-scrapes per post K (>= 0), written to ``tiktok_rescrapes/scrape_01.jsonl`` … (module
            docstring, "Early popularity trend"): the scrape history of MTAF's early trend. 0 writes none.

    Returns:
        :class:`SyntheticDataset` with the video paths, the ground truth and the label files.

    Raises:
        ValueError: an argument out of range (named, with the value received).
        RuntimeError: ffmpeg (or espeak-ng) is missing or fails; no label file is written then.
    """
    n_videos = _check_int("n_videos", n_videos, 1)
    seed = _check_int("seed", seed, 0)
    workers = _check_int("workers", workers, 1)
    min_duration = _check_float("min_duration", min_duration, 1.0)
    max_duration = _check_float("max_duration", max_duration, min_duration)
    size_scale = _check_float("size_scale", size_scale, 0.0, strict=True)
    rescrapes = _check_int("rescrapes", rescrapes, 0)
    if not isinstance(speech, bool):
        raise ValueError(f"speech={speech!r}: expected True or False")
    design = _design_with(sync_weight)
    ffmpeg, espeak = _find_tools(speech)

    plans, songs = _plan(n_videos, seed, min_duration, max_duration, size_scale, design)
    out = Path(out_dir)
    videos_dir, files = _clear_earlier_run(out, plans)
    video_paths = _encode_all(plans, videos_dir, ffmpeg, espeak, design, workers)
    gt = pd.DataFrame.from_records([{**p.row, "spoken": p.has_audio and espeak is not None} for p in plans])
    gt["popularity_norm"] = _min_max(gt["popularity"].to_numpy())
    params = {"n_videos": n_videos, "seed": seed, "speech": speech, "min_duration": min_duration,
              "max_duration": max_duration, "size_scale": size_scale}
    gt, files = _write_labels(gt, songs, out, files, params, rescrapes, design)
    return SyntheticDataset(out_dir=out, video_paths=video_paths, ground_truth=gt, files=files)
