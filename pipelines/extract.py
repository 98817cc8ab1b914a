"""Stage ``extract``: probe, frames, audio/MFCC, transcripts, text and metadata for every ingested video.

Plan → run → report:

1. **Plan** (no decoding): for each video, the content digest of its file (memoised on stat) and, chained from it, the
   expected fingerprint of every stage (see :func:`plan_fingerprints`). A stage runs for a video only when its
   committed fingerprint differs — so a rerun with nothing changed decodes nothing — or when ``refresh``. A video whose
   last failure has the same fingerprint is not retried (a corrupt file stays corrupt) unless ``refresh``. A video
   whose source file is missing (a partial download) is not planned at all: it gets one failure record of the
   pseudo-stage :data:`SOURCE_STAGE` (written once, cleared when the file is back) and no per-stage record or work.
2. **Run**: videos go to Prefect tasks in batches (``batch_size`` videos per task, to keep Prefect's per-task overhead
   small), ``workers`` at a time. Inside a batch each video runs its stages in order, sharing the probe result and
   the decoded PCM; each (stage, video) is committed to the store on its own and any exception becomes a recorded
   failure, so one bad video never fails the run.
3. The ``text`` stage then builds the vocabulary on the training split's transcripts (a fingerprinted artifact) and
   writes a bag-of-words vector per video. Videos removed from the manifest have their outputs dropped.

Pretrained-encoder stages (:mod:`features.embed`; each runs when its encoder path is set): ``embed_vision`` and
``embed_audio`` run in the per-video pass. ``embed_vision`` samples the frames stage's instants (same profiles, segments
and frame counts) in its own decode at the encoder's input size: the frames stage keeps 64² frames, too small for 224²
encoders, and decoding both sizes in one ffmpeg pass would make the frames stage's pixels depend on whether an encoder
is configured. ``embed_audio`` reads the PCM the audio stage decodes (one decode per video) and resamples it to the
encoder's rate. ``embed_text`` runs after the pass over the committed transcripts, batched across videos.

Stage versions live in :data:`STAGE_VERSIONS`: bump one when its output changes for the same inputs, and exactly that
stage (and what depends on it) is recomputed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Callable, Literal, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field
from threadpoolctl import threadpool_limits

from features.fingerprint import DigestCache, fingerprint, fingerprinter
from features.store import IndexRecord, Store, StoreError
from pipelines._common import markdown_table, progress, publish_markdown, publish_table, store_for
from pipelines.stages import EMBED_STAGES, SOURCE_STAGE, STAGES

__all__ = ["extract_features", "ExtractConfig", "STAGES", "STAGE_VERSIONS", "plan_fingerprints", "plan_extraction",
           "recorded_config", "SOURCE_STAGE", "EMBED_STAGES", "nothing_to_extract"]

#: code version of each stage's output — bump when the output changes for the same inputs
STAGE_VERSIONS = {"probe": 1, "frames": 1, "audio": 2, "transcripts": 1, "metadata": 2, "text": 2, "vocabulary": 2,
                  "embed_vision": 1, "embed_audio": 1, "embed_text": 1}
# run inside the per-video batch; "text" needs the vocabulary first, "embed_text" reads the committed transcripts
_PER_VIDEO = (*STAGES[:-1], "embed_vision", "embed_audio")


class ExtractConfig(BaseModel):
    """Parameters of the extraction stages (validated; every field changes the output of the stages named)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profiles: tuple[Literal["per_second", "uniform", "uniform_224"], ...] = ("per_second", "uniform")  # frames
    n_segments: Annotated[int, Field(ge=1, le=600)] = 15  # frames/audio: 1-second segments kept (Sec2Sec: 15)
    frames_per_segment: Annotated[int, Field(ge=1, le=30)] = 1  # frames: m frames per 1-s segment
    n_frames: Annotated[int, Field(ge=1, le=1000)] = 100  # frames: N uniform frames (MCAT: 100)
    keyframes: bool = False  # frames: take samples from the nearest keyframe (fast, approximate timestamps)
    fast_decode: bool = True  # frames: skip the video decoder's deblocking filter (features.video.extract_frames)
    sample_rate: Literal[16000, 44100] = 16000  # audio: PCM rate
    n_mfcc: Annotated[int, Field(ge=4, le=128)] = 20  # audio: MFCC coefficients
    audio_feature: Literal["mfcc", "logmel"] = "mfcc"  # audio: per-segment feature
    clip_seconds: Annotated[float, Field(gt=0, le=600)] = 15.0  # audio: seconds the whole-clip MFCC matrix covers
    clip_frames: Optional[Annotated[int, Field(ge=8, le=60_000)]] = None  # audio: exact F of that matrix (overrides
    #   clip_seconds); None: clip_seconds at the 10 ms hop, e.g. 1,500 frames for the papers' 15-s clips
    egemaps: bool = False  # audio: also the 88 eGeMAPS functionals of the clip (paper 004; needs opensmile)
    asr: Literal["pocketsphinx", "whisper", "none"] = "pocketsphinx"  # transcripts: when the dataset has none
    asr_model_path: Optional[str] = None  # transcripts: local weights for the whisper backend
    min_token_count: Annotated[int, Field(ge=1)] = 1  # text: keep words seen this often in training transcripts
    max_vocab: Optional[Annotated[int, Field(ge=1)]] = 5000  # text: vocabulary size cap
    timeout: Annotated[float, Field(gt=0, le=86_400)] = 300.0  # seconds allowed per decode call
    max_pixels: Annotated[int, Field(ge=64 * 64)] = 8192 * 8192  # probe: refuse larger frames (bomb guard)
    vision_model: Optional[str] = None  # embed_vision: local Hugging Face image model directory (CLIP, ViT, DINOv2…)
    audio_model: Optional[str] = None  # embed_audio: local waveform model directory (wav2vec 2.0, HuBERT, WavLM…)
    text_model: Optional[str] = None  # embed_text: local text model / sentence-transformers directory or GloVe file
    vision_patch_tokens: bool = False  # embed_vision: also store each frame's patch tokens (float16)
    text_max_tokens: Annotated[int, Field(ge=1, le=4096)] = 64  # embed_text: L, token vectors kept per transcript
    embed_batch_size: Annotated[int, Field(ge=1, le=4096)] = 32  # embed_*: items per forward pass (same output)
    embed_device: Literal["auto", "cpu", "cuda"] = "auto"  # embed_*: where encoders run (bf16 autocast on CUDA)

    def stage_params(self, stage: str) -> dict[str, Any]:
        """The parameters that change ``stage``'s output (and only those: others must not invalidate it)."""
        p = self.model_dump()
        keys = {
            "probe": ["max_pixels"],
            "frames": ["profiles", "n_segments", "frames_per_segment", "n_frames", "keyframes", "fast_decode"],
            "audio": ["sample_rate", "n_mfcc", "audio_feature", "clip_seconds", "clip_frames", "n_segments",
                      "egemaps"],
            "transcripts": ["asr", "asr_model_path"],
            "metadata": [],
            "text": ["min_token_count", "max_vocab"],
            "embed_vision": ["profiles", "n_segments", "frames_per_segment", "n_frames", "keyframes", "fast_decode",
                             "vision_patch_tokens"],
            "embed_audio": ["sample_rate", "n_segments"],
            "embed_text": ["n_segments", "text_max_tokens"],
        }[stage]
        out = {k: p[k] for k in keys}
        if stage in EMBED_STAGES:
            # the checkpoint's content (weights, config, preprocessing, vocabulary), not its path
            kind = stage.split("_", 1)[1]
            path = p[f"{kind}_model"]
            out[f"{kind}_weights"] = None if path is None else _encoder_digest(path, f"{kind}_model")
        return out


def _encoder_digest(path: str, arg: str) -> str:
    from features.embed import encoder_digest

    return encoder_digest(path, arg=arg)


# ---------------------------------------------------------------------------------------------------- planning
def recorded_config(entries_by_stage: Mapping[str, Mapping[str, IndexRecord]]) -> ExtractConfig:
    """The extraction parameters the store's outputs were computed with (most common per stage), else defaults.

    Each index record keeps the parameters that change its stage's output, so together they rebuild the
    :class:`ExtractConfig` of the last extraction; fields no stage records (``timeout``) keep their defaults.
    ``entries_by_stage``: stage → :meth:`Store.entries` (used by ``refresh`` and by ``compare``'s feature ablations).
    """
    fields = set(ExtractConfig.model_fields)
    merged: dict[str, Any] = {}
    for stage in STAGES:
        entries = entries_by_stage.get(stage)
        if not entries:
            continue
        common = Counter(json.dumps(r.params, sort_keys=True) for r in entries.values()).most_common(1)
        for k, v in json.loads(common[0][0]).items():
            if k in fields:
                merged.setdefault(k, v)
    return ExtractConfig(**merged)


#: the TikTok adapter's uploader counts (manifest columns), log-scaled into the metadata record as ``log_<column>``
_UPLOADER_COLUMNS = ("author_followers", "author_following", "author_hearts", "author_videos")


def _row_digest(row: dict, columns: Sequence[str]) -> str:
    return fingerprint("row", 1, {c: (None if pd.isna(row.get(c)) else row.get(c)) for c in columns
                                  if not isinstance(row.get(c), (list, dict, np.ndarray))})


_META_COLUMNS = ("create_time", "desc", "duration_meta", "song_id", *_UPLOADER_COLUMNS, "author_verified",
                 "hashtag_count", "caption_length")


@functools.lru_cache(maxsize=256)
def _keyer(stage: str, version: int, cfg: Optional[ExtractConfig] = None,
           fixed: tuple[tuple[str, Any], ...] = ()) -> Callable[[Sequence[str]], str]:
    """``fingerprint(stage, version, params, ·)`` with ``params`` = ``cfg.stage_params(stage)`` (or ``fixed``) hashed
    once per configuration instead of once per video: planning 1,000 videos spent most of its time rendering the
    same parameters' canonical JSON. Same keys as :func:`fingerprint`."""
    return fingerprinter(stage, version, cfg.stage_params(stage) if cfg is not None else dict(fixed))


def plan_fingerprints(row: dict, content_digest: str, cfg: ExtractConfig) -> dict[str, str]:
    """Expected fingerprint of each per-video stage, chained from the file's content digest.

    ``probe ← content``; ``frames, audio ← probe``; ``transcripts ← dataset transcript text, or probe (ASR)``;
    ``metadata ← probe + the manifest's metadata columns``. ``text`` is planned after the vocabulary exists.
    ``embed_vision, embed_audio ← probe`` (+ the encoder's weight digest), planned only when their model is set;
    ``embed_text`` is planned from the committed transcripts (:func:`_embed_text_stage`).
    """
    fps: dict[str, str] = {}
    fps["probe"] = _keyer("probe", STAGE_VERSIONS["probe"], cfg)([content_digest])
    for stage in ("frames", "audio"):
        fps[stage] = _keyer(stage, STAGE_VERSIONS[stage], cfg)([fps["probe"]])
    text = row.get("transcript")
    if isinstance(text, str):
        fps["transcripts"] = _keyer("transcripts", STAGE_VERSIONS["transcripts"], None, (("source", "dataset"),))(
            [fingerprint("text", 0, text)])
    else:
        fps["transcripts"] = _keyer("transcripts", STAGE_VERSIONS["transcripts"], cfg)([fps["probe"]])
    fps["metadata"] = _keyer("metadata", STAGE_VERSIONS["metadata"])([fps["probe"], _row_digest(row, _META_COLUMNS)])
    for stage, model in (("embed_vision", cfg.vision_model), ("embed_audio", cfg.audio_model)):
        if model is not None:
            fps[stage] = _embed_keyer(stage, cfg)([fps["probe"]])
    return fps


def _embed_keyer(stage: str, cfg: ExtractConfig) -> Callable[[Sequence[str]], str]:
    """:func:`_keyer` for an embedding stage: its parameters include the checkpoint's digest, which can change while
    ``cfg`` stays equal (new weights at the same path), so they are part of the memo key."""
    params = cfg.stage_params(stage)
    return _keyer(stage, STAGE_VERSIONS[stage], None,
                  tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())))


def plan_extraction(store: Store, manifest: pd.DataFrame, cfg: ExtractConfig, stages: Sequence[str],
                    refresh: bool = False) -> tuple[list[dict], dict[str, dict[str, int]], int]:
    """Decide, without decoding anything, which (video, stage) pairs must run.

    Returns ``(items, counts, hashed)``: one ``{"row", "todo", "fps"}`` item per video with work to do, per-stage
    ``{"skipped", "failed"}`` counts for the rest (``failed`` = a known failure with the same fingerprint, not
    retried unless ``refresh``), and how many files had to be (re-)hashed. The digest memo is saved to the store.
    Videos whose source file is missing or unreadable are left out of all three (:func:`extract_features` records
    them as missing sources).
    """
    wanted = [s for s in _PER_VIDEO if s in stages]
    digests = DigestCache(store.read_table("digests", missing_ok=True).to_dict("records"))
    have = {s: store.fingerprints(s) for s in wanted}
    counts = {s: {"skipped": 0, "failed": 0} for s in wanted}
    items = []
    for row in manifest.to_dict("records"):
        row = {k: (None if not isinstance(v, (list, dict, np.ndarray)) and pd.isna(v) else v) for k, v in row.items()}
        path = row.get("source_path")
        try:
            digest = digests.digest(path) if path else None
        except OSError:
            digest = None
        if digest is None:
            continue
        fps = plan_fingerprints(row, digest, cfg)
        todo = []
        for stage in wanted:
            if have[stage].get(row["video_id"]) == fps[stage] and not refresh:
                counts[stage]["skipped"] += 1
                continue
            fail = store.failure(stage, row["video_id"])
            if fail and fail.get("fingerprint") == fps[stage] and not refresh:
                counts[stage]["failed"] += 1
                continue
            todo.append(stage)
        if todo:
            items.append({"row": row, "todo": todo, "fps": fps})
    if digests.hashed:
        store.write_table("digests", pd.DataFrame(digests.to_records(),
                                                  columns=["path", "size", "mtime_ns", "inode", "digest"]))
    return items, counts, digests.hashed


_RECORD_THREADS = 8  # missing-source records written at once


def _missing_message(video_id: str, path: Any) -> str:
    if not isinstance(path, str) or not path:
        return (f"source file missing: {video_id} (the dataset lists it but its folder has no such file; download it, "
                "then re-ingest)")
    return f"source file missing: {os.path.basename(path)} (not a readable file at {path!r}; restore it or re-ingest)"


def _record_missing_sources(store: Store, manifest: pd.DataFrame, *, prune: bool) -> list[str]:
    """Keep exactly one :data:`SOURCE_STAGE` failure per manifest video whose source file is missing.

    A record is written only when it is new or its message changed (a rerun writes nothing), and the per-stage
    failure records such a video may hold from extractions that worked on it (stages without an output) are removed
    with it. Videos whose file is back lose their record; with ``prune`` (the whole manifest was planned) so do videos
    no longer in the manifest. Returns the missing video ids, sorted.
    """
    from pipelines.ingest import missing_sources

    missing = set(missing_sources(manifest))
    fails = store.failures()
    source_fails = fails[fails["stage"] == SOURCE_STAGE]
    recorded = dict(zip(source_fails["video_id"], source_fails["error"]))
    paths = dict(zip(manifest["video_id"], manifest["source_path"])) if "source_path" in manifest.columns else {}
    per_stage = fails[fails["stage"].isin((*STAGES, *EMBED_STAGES)) & fails["video_id"].isin(missing)]
    stale = per_stage.groupby("video_id")["stage"].agg(list).to_dict() if len(per_stage) else {}
    new = {vid: error for vid in sorted(missing)
           if recorded.get(vid) != (error := _missing_message(vid, paths.get(vid)))}

    def record(vid: str) -> None:
        store.record_failure(SOURCE_STAGE, vid, new[vid], fingerprint=fingerprint(SOURCE_STAGE, 1, new[vid]))
        for stage in stale.get(vid, []):
            if store.entry(stage, vid) is None:
                store.drop(stage, vid)

    # each record is one small durable write that mostly waits on the disk (fsync): a few at a time overlap
    with ThreadPoolExecutor(max_workers=_RECORD_THREADS) as pool:
        list(pool.map(record, new))
    current = set(manifest["video_id"])
    for vid in recorded:
        if vid not in missing and (vid in current or prune):
            store.drop(SOURCE_STAGE, vid)
    return sorted(missing)


# ---------------------------------------------------------------------------------------------------- per video
def _profiles(cfg: ExtractConfig) -> list:
    from features.video import PER_SECOND, UNIFORM, UNIFORM_224

    base = {"per_second": PER_SECOND, "uniform": UNIFORM, "uniform_224": UNIFORM_224}
    out = []
    for name in cfg.profiles:
        prof = base[name]
        if name == "per_second":
            prof = dataclasses.replace(prof, n_segments=cfg.n_segments, frames_per_segment=cfg.frames_per_segment,
                                       keyframes=cfg.keyframes)
        elif name == "uniform":
            prof = dataclasses.replace(prof, n_frames=cfg.n_frames, keyframes=cfg.keyframes)
        else:
            prof = dataclasses.replace(prof, keyframes=cfg.keyframes)
        out.append(prof)
    return out


def _require_opensmile() -> None:
    """Refuse ``egemaps=True`` before any work when openSMILE is missing (instead of one failure per video)."""
    try:
        import opensmile  # noqa: F401
    except ImportError:
        raise ValueError("egemaps=True: the eGeMAPS functionals need the optional 'opensmile' package; install it "
                         "with pip install opensmile (or pip install 'vidpipe[egemaps]'), or leave --egemaps off") from None


def _audio_params(cfg: ExtractConfig):
    """The :class:`features.audio.AudioParams` of ``cfg``; the clip matrix spans ``clip_seconds`` unless
    ``clip_frames`` fixes its F."""
    from features.audio import AudioParams, clip_frames_for

    base = AudioParams(sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_segments=cfg.n_segments, feature=cfg.audio_feature)
    frames = cfg.clip_frames if cfg.clip_frames is not None else clip_frames_for(cfg.clip_seconds, base)
    return dataclasses.replace(base, clip_frames=frames)


def _log_count(value: Any) -> float:
    """log(1 + count) of a manifest count (MTAF log-scales its counts); nan when the dataset does not have it."""
    if value is None or isinstance(value, bool) or pd.isna(value):
        return float("nan")
    return float(np.log1p(max(float(value), 0.0)))


def _metadata_record(row: dict, probe_rec: dict) -> dict[str, Any]:
    """Content-agnostic features known at upload time (MTAF Table 1): geometry, duration, timing, caption, and —
    from whichever manifest columns the dataset has (the TikTok adapter keeps them) — the uploader's log-scaled
    follower / following / like / video counts, the verified flag, the hashtag count and the caption length.
    A dataset without an uploader column gets nan there (the pack builder turns nan into the training mean)."""
    created = row.get("create_time")
    ts = pd.Timestamp(created, unit="s", tz="UTC") if created is not None and not pd.isna(created) else None
    desc = row.get("desc") if isinstance(row.get("desc"), str) else ""
    w, h = probe_rec.get("display_width") or 0, probe_rec.get("display_height") or 0
    return {
        "duration": float(probe_rec.get("duration") or 0.0),
        "width": int(w), "height": int(h),
        "aspect": float(w / h) if h else 0.0,
        "fps": float(probe_rec.get("fps") or 0.0),
        "has_audio": bool(probe_rec.get("has_audio")),
        "upload_hour": int(ts.hour) if ts is not None else -1,
        "upload_weekday": int(ts.weekday()) if ts is not None else -1,
        "desc_words": len(desc.split()),
        "hashtags": int(row["hashtag_count"]) if _present(row.get("hashtag_count")) else desc.count("#"),
        "caption_chars": int(row["caption_length"]) if _present(row.get("caption_length")) else len(desc),
        "has_song": isinstance(row.get("song_id"), str),
        **{f"log_{c}": _log_count(row.get(c)) for c in _UPLOADER_COLUMNS},
        "verified": float(bool(row["author_verified"])) if _present(row.get("author_verified")) else float("nan"),
    }


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and value is not pd.NA


def _process_video(store: Store, row: dict, todo: list[str], fps: dict[str, str], cfg: ExtractConfig,
                   asr_cache: dict) -> dict[str, str]:
    """Run the stages in ``todo`` for one video; returns stage → "done" | "failed" | "skipped"."""
    from features.audio import clip_mfcc, egemaps, load_audio, segment_features
    from features.probe import ProbeInfo, probe
    from features.video import extract_frames, extract_frames_and_audio

    vid, path = row["video_id"], row.get("source_path")
    status: dict[str, str] = {}
    info: ProbeInfo | None = None
    pcm: dict[str, Any] = {}

    def commit(stage: str, fn) -> None:
        t0 = time.perf_counter()
        try:
            arrays, record = fn()
        except Exception as exc:  # noqa: BLE001 - every failure is recorded per video, never raised
            store.record_failure(stage, vid, _describe(exc), fingerprint=fps[stage])
            status[stage] = "failed"
            return
        store.write(stage, vid, fps[stage], version=STAGE_VERSIONS[stage], arrays=arrays, record=record,
                    params=cfg.stage_params(stage), seconds=time.perf_counter() - t0)
        status[stage] = "done"

    def get_info() -> ProbeInfo:
        nonlocal info
        if info is None:
            if not path or not os.path.isfile(path):
                raise FileNotFoundError(f"source file missing: {path!r} (re-ingest, or restore the file)")
            info = probe(path, timeout=min(cfg.timeout, 60.0), max_pixels=cfg.max_pixels)
        return info

    def get_pcm(sr: int):
        if sr not in pcm:
            pcm[sr] = load_audio(path, get_info(), sr=sr, timeout=cfg.timeout)
        return pcm[sr]

    if "probe" in todo:
        commit("probe", lambda: (None, get_info().to_record()))
        if status["probe"] == "failed":
            for stage in todo[1:]:
                if stage in ("frames", "audio", "metadata", "embed_vision", "embed_audio") \
                        or not isinstance(row.get("transcript"), str):
                    store.record_failure(stage, vid, "skipped: probe failed (see the probe failure)",
                                         fingerprint=fps[stage])
                    status[stage] = "failed"
            todo = [s for s in todo if s not in status]

    if "frames" in todo:
        # PCM this video will need: the audio stage's rate, or 16 kHz for speech recognition.
        asr_needed = "transcripts" in todo and not isinstance(row.get("transcript"), str) and cfg.asr != "none"
        sr_wanted = cfg.sample_rate if "audio" in todo or "embed_audio" in todo else 16000 if asr_needed else None

        def frames():
            if sr_wanted is not None and sr_wanted not in pcm:
                # One decode pass for frames and audio when the frames' ffmpeg decodes the whole video anyway;
                # otherwise y is None and get_pcm decodes the audio on its own.
                results, y = extract_frames_and_audio(path, get_info(), _profiles(cfg), sr=sr_wanted,
                                                      timeout=cfg.timeout, fast_decode=cfg.fast_decode)
                if y is not None:
                    pcm[sr_wanted] = y
            else:
                results = extract_frames(path, get_info(), _profiles(cfg), timeout=cfg.timeout,
                                         fast_decode=cfg.fast_decode)
            arrays = {}
            for name, res in results.items():
                arrays[name] = res.frames
                arrays[f"{name}_valid"] = res.valid
                arrays[f"{name}_times"] = res.times.astype(np.float32)
            warnings = sorted({w for r in results.values() for w in getattr(r, "warnings", ())})
            return arrays, {"profiles": list(results), "valid_frames": {k: int(r.valid.sum()) for k, r in results.items()},
                            "warnings": warnings}  # e.g. corrupt packets: decoded what could be, recorded here
        commit("frames", frames)

    if "audio" in todo:
        def audio():
            params = _audio_params(cfg)
            y = get_pcm(params.sr)
            seg, mask = segment_features(y, params)  # y None (no track) → zeros of the right shape, mask False
            clip, valid = clip_mfcc(y, params)
            arrays = {"segments": seg, "segments_mask": mask, "clip": clip, "clip_valid": np.array(bool(valid))}
            if cfg.egemaps:  # no track or silence: zeros and a False flag, like the clip matrix
                arrays["egemaps"] = egemaps(y, params.sr) if valid else np.zeros(88, dtype=np.float32)
                arrays["egemaps_valid"] = np.array(bool(valid))
            return (arrays,
                    {"has_audio": y is not None, "silent": not bool(valid), "samples": 0 if y is None else int(len(y))})
        commit("audio", audio)

    if "transcripts" in todo:
        def transcripts():
            text = row.get("transcript")
            if isinstance(text, str):
                return None, {"text": text, "source": "dataset", "words": []}
            if cfg.asr == "none":
                return None, {"text": "", "source": "none", "words": []}
            y = get_pcm(16000)
            if y is None:
                return None, {"text": "", "source": f"asr:{cfg.asr}:no-audio", "words": []}
            backend = asr_cache.get("backend")
            if backend is None:
                from features.transcribe import get_backend
                opts = {"model_path": cfg.asr_model_path} if cfg.asr == "whisper" else {}
                backend = asr_cache["backend"] = get_backend(cfg.asr, **opts)
            tr = backend.transcribe(y, 16000)
            return None, {"text": tr.text, "source": tr.source, "words": [list(w) for w in tr.words]}
        commit("transcripts", transcripts)

    if "metadata" in todo:
        commit("metadata", lambda: (None, _metadata_record(row, get_info().to_record())))

    if "embed_vision" in todo:
        def embed_vision():
            from features.embed import load_vision_encoder

            enc = load_vision_encoder(cfg.vision_model, device=cfg.embed_device, batch_size=cfg.embed_batch_size)
            results = extract_frames(path, get_info(), _embed_profiles(cfg, enc.preprocessing), timeout=cfg.timeout,
                                     fast_decode=cfg.fast_decode)
            arrays = {}
            for name, res in results.items():
                vectors, patches = enc.embed(res.frames, res.valid, patches=cfg.vision_patch_tokens)
                arrays[name], arrays[f"{name}_valid"] = vectors, res.valid
                arrays[f"{name}_times"] = res.times.astype(np.float32)
                if patches is not None:
                    arrays[f"{name}_patches"] = patches
            return arrays, {"model": cfg.vision_model, "encoder": enc.kind, "dim": enc.dim,
                            "image_size": enc.preprocessing.crop, "profiles": list(results),
                            "valid_frames": {k: int(r.valid.sum()) for k, r in results.items()}}
        commit("embed_vision", embed_vision)

    if "embed_audio" in todo:
        def embed_audio():
            from features.embed import load_audio_encoder

            enc = load_audio_encoder(cfg.audio_model, device=cfg.embed_device, batch_size=cfg.embed_batch_size)
            y = get_pcm(cfg.sample_rate)  # the audio stage's PCM, resampled to the encoder's rate inside embed()
            vectors, mask = enc.embed(y, cfg.sample_rate, cfg.n_segments)
            return ({"segments": vectors, "segments_mask": mask},
                    {"model": cfg.audio_model, "encoder": enc.kind, "dim": enc.dim,
                     "sampling_rate": enc.sampling_rate, "has_audio": y is not None})
        commit("embed_audio", embed_audio)
    return status


def _embed_profiles(cfg: ExtractConfig, pre) -> list:
    """The frames stage's profiles (same names and instants) at the vision encoder's input geometry."""
    return [dataclasses.replace(p, size=pre.crop, short_side=pre.short_side) for p in _profiles(cfg)]


def _describe(exc: BaseException) -> str:
    msg = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, (ValueError, FileNotFoundError, TimeoutError)):
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
        msg = f"{type(exc).__name__}: {msg}{where}"
    return msg


@task(cache_policy=NONE, persist_result=False, name="extract-batch")
def extract_batch(root: Optional[str], dataset: str, items: list[dict], cfg: dict) -> dict[str, dict[str, int]]:
    """Extract one batch of videos. ``items``: ``{"row", "todo", "fps"}`` per video. Returns per-stage counts."""
    store = store_for(root, dataset)
    config = ExtractConfig(**cfg)
    counts: dict[str, dict[str, int]] = {s: {"done": 0, "failed": 0} for s in _PER_VIDEO}
    asr_cache: dict = {}
    for item in items:
        for stage, state in _process_video(store, item["row"], item["todo"], item["fps"], config, asr_cache).items():
            counts[stage][state] = counts[stage].get(state, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------------- text stage
def _text_plan(store: Store, manifest: pd.DataFrame, cfg: ExtractConfig, refresh: bool,
               transcripts: Mapping[str, IndexRecord]) -> tuple[list[str], str, list[tuple[str, str]], int]:
    """``(train_ids, vocabulary fingerprint, [(video, text fingerprint) to write], skipped)`` of the text stage."""
    ids = [v for v in manifest["video_id"] if v in transcripts]
    train = set(manifest.loc[manifest["split"] == "train", "video_id"])
    train_ids = sorted(v for v in ids if v in train)
    vocab_fp = fingerprint("vocabulary", STAGE_VERSIONS["vocabulary"], cfg.stage_params("text"),
                           [fingerprint("text", 0, transcripts[v].record.get("text", "")) for v in train_ids]
                           or ["empty"])
    have = store.fingerprints("text")
    text_key = _keyer("text", STAGE_VERSIONS["text"], cfg)
    todo, skipped = [], 0
    for v in ids:
        fp = text_key([vocab_fp, transcripts[v].fingerprint])
        if have.get(v) == fp and not refresh:
            skipped += 1
        else:
            todo.append((v, fp))
    return train_ids, vocab_fp, todo, skipped


def _text_stage(store: Store, manifest: pd.DataFrame, cfg: ExtractConfig, refresh: bool) -> dict[str, int]:
    transcripts = store.entries("transcripts")
    # The vocabulary is keyed on the training transcripts' *text*, not on their fingerprints: re-extracting 1 % of
    # the videos re-keys their transcripts even when the text comes out the same, and keying the vocabulary on those
    # fingerprints would rebuild it and so re-key every video's bag of words. Per-video text keys chain from the
    # transcripts' fingerprints, so a transcripts / probe / vocabulary version bump recomputes text.
    train_ids, vocab_fp, todo, skipped = _text_plan(store, manifest, cfg, refresh, transcripts)
    counts = {"done": 0, "failed": 0, "skipped": skipped}
    if store.artifact_fingerprint("vocabulary") != vocab_fp or refresh:
        from features.text import build_vocabulary, tokenize

        vocab = build_vocabulary([tokenize(transcripts[v].record.get("text", "")) for v in train_ids],
                                 min_count=cfg.min_token_count, max_size=cfg.max_vocab)
        store.write_artifact("vocabulary", vocab_fp, meta={"tokens": list(vocab.tokens), "train_videos": len(train_ids)})
    if not todo:  # nothing to write: skip loading the vocabulary and the tokenizer (NLTK's import takes seconds)
        return counts
    from features.text import Vocabulary, bag_of_words, tokenize

    _, meta = store.read_artifact("vocabulary", vocab_fp)
    vocab = Vocabulary(tokens=tuple(meta["tokens"]))
    for v, fp in todo:
        try:
            tokens = tokenize(transcripts[v].record.get("text", ""))
            bow = bag_of_words(tokens, vocab)
            store.write("text", v, fp, version=STAGE_VERSIONS["text"], arrays={"bow": bow},
                        record={"n_tokens": len(tokens), "n_known": int((bow > 0).sum())},
                        params=cfg.stage_params("text"))
            counts["done"] += 1
        except Exception as exc:  # noqa: BLE001
            store.record_failure("text", v, _describe(exc), fingerprint=fp)
            counts["failed"] += 1
    return counts


def _embed_text_stage(store: Store, manifest: pd.DataFrame, cfg: ExtractConfig, refresh: bool) -> dict[str, int]:
    """``embed_text`` for every video with a committed transcript: keyed on (the transcript's fingerprint, the text
    encoder's digest, ``text_max_tokens``, ``n_segments``); transcripts are encoded ``embed_batch_size`` at a time."""
    from features.embed import load_text_encoder

    transcripts = store.entries("transcripts")
    key = _embed_keyer("embed_text", cfg)
    have = store.fingerprints("embed_text")
    counts = {"done": 0, "failed": 0, "skipped": 0}
    todo = []
    for v in manifest["video_id"]:
        if v not in transcripts:
            continue
        fp = key([transcripts[v].fingerprint])
        fail = store.failure("embed_text", v)
        if not refresh and (have.get(v) == fp or (fail and fail.get("fingerprint") == fp)):
            counts["skipped" if have.get(v) == fp else "failed"] += 1
            continue
        todo.append((v, fp))
    if not todo:
        return counts
    enc = load_text_encoder(cfg.text_model, max_tokens=cfg.text_max_tokens, device=cfg.embed_device,
                            batch_size=cfg.embed_batch_size)
    params = cfg.stage_params("embed_text")
    for start in range(0, len(todo), cfg.embed_batch_size):
        chunk = todo[start:start + cfg.embed_batch_size]
        recs = [transcripts[v].record for v, _ in chunk]
        t0 = time.perf_counter()
        try:
            outs = enc.embed([r.get("text") or "" for r in recs], [r.get("words") or [] for r in recs],
                             n_segments=cfg.n_segments)
        except Exception as exc:  # noqa: BLE001 - recorded per video, never raised
            for v, fp in chunk:
                store.record_failure("embed_text", v, _describe(exc), fingerprint=fp)
                counts["failed"] += 1
            continue
        seconds = (time.perf_counter() - t0) / len(chunk)
        for (v, fp), arrays in zip(chunk, outs):
            store.write("embed_text", v, fp, version=STAGE_VERSIONS["embed_text"], arrays=arrays,
                        record={"model": cfg.text_model, "encoder": enc.kind, "dim": enc.dim,
                                "n_tokens": int(arrays["tokens_mask"].sum()),
                                "timed_seconds": int(arrays["per_second_mask"].sum())},
                        params=params, seconds=seconds)
            counts["done"] += 1
    return counts


def _task_runner(workers: int, dask_address: str | None, dask_workers: int | None):
    """Threads by default (the work is in ffmpeg subprocesses and NumPy); Dask for scale-out."""
    if dask_address is None and dask_workers is None:
        return ThreadPoolTaskRunner(max_workers=workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ValueError("dask_address/dask_workers need the dask extra: pip install 'vidpipe[dask]'") from exc
    if dask_address is not None:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1, "processes": True,
                                          "host": "127.0.0.1", "dashboard_address": None})


def _wanted_stages(stages: Optional[Sequence[str]], cfg: ExtractConfig) -> list[str]:
    """The stages to run, in dependency order; refuses an ``embed_*`` stage without a usable encoder path.

    Default: every core stage plus the ``embed_*`` stage of each encoder configured. ``embed_text`` brings
    ``transcripts`` (its input; skipped where up to date)."""
    order = (*STAGES, *EMBED_STAGES)
    if stages is None:
        wanted = [s for s in order if s in STAGES or getattr(cfg, f"{s.split('_', 1)[1]}_model") is not None]
    else:
        asked = set(stages) | ({"transcripts"} if "embed_text" in stages else set())
        wanted = [s for s in order if s in asked]
    for stage in wanted:
        if stage in EMBED_STAGES:
            arg = f"{stage.split('_', 1)[1]}_model"
            if getattr(cfg, arg) is None:
                raise ValueError(f"stages: {stage!r} needs {arg}=PATH (CLI: --{arg.replace('_', '-')} PATH), a local "
                                 "encoder checkpoint; see README 'Using pretrained encoders'")
            cfg.stage_params(stage)  # a missing or empty checkpoint fails here, before any work
    return wanted


def nothing_to_extract(dataset: str, root: Optional[str] = None, stages: Optional[Sequence[str]] = None,
                       config: Optional[ExtractConfig] = None) -> Optional[dict]:
    """What :func:`extract_features` would return when a run would change nothing — decided without Prefect (no flow
    run, no temporary API server) and without writing — or ``None`` when a run might do anything.

    The CLI asks this first when no Prefect server is configured, so a rerun with nothing to do answers at once. It
    is conservative: ``None`` whenever the flow could write (a new, changed or removed video, a missing source file,
    the vocabulary or a bag of words out of date, encoders or eGeMAPS configured, a stage name the flow would refuse,
    a store held by another writer). The flow's final compaction and table consolidation are not repeated (a run that
    changes nothing has nothing to fold in).

    Raises:
        ValueError / StoreError: as the flow does, for a bad dataset name, a missing store or an empty manifest.
    """
    t0 = time.perf_counter()
    cfg = config or ExtractConfig()
    if stages is not None and not set(stages) <= set(STAGES):
        return None
    if cfg.egemaps or any(getattr(cfg, f"{kind}_model") is not None for kind in ("vision", "audio", "text")):
        return None
    wanted = _wanted_stages(stages, cfg)
    store = store_for(root, dataset)
    manifest = store.manifest()
    if manifest.empty:
        raise ValueError(f"dataset={dataset!r}: the manifest is empty: run `vidpipe ingest {dataset} ...` first")
    from pipelines.ingest import missing_sources

    current = set(manifest["video_id"])
    if any(set(store.entries(s)) - current for s in (*STAGES, *EMBED_STAGES)) or missing_sources(manifest):
        return None
    fails = store.failures()
    if len(fails) and (fails["stage"] == SOURCE_STAGE).any():
        return None
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(store.lock(wait=False))
        except StoreError:
            return None  # another writer: the flow waits for it
        items, planned, _ = plan_extraction(store, manifest, cfg, wanted)
        if items:
            return None
        summary = {s: {"done": 0, "skipped": 0, "failed": 0, **planned.get(s, {})} for s in wanted}
        if "text" in wanted:
            full = store.manifest()
            _, vocab_fp, todo, skipped = _text_plan(store, full, cfg, False, store.entries("transcripts"))
            if todo or store.artifact_fingerprint("vocabulary") != vocab_fp:
                return None
            summary["text"] = {"done": 0, "failed": 0, "skipped": skipped}
    fails = fails[fails["video_id"].isin(current) & (fails["stage"] != SOURCE_STAGE)] if len(fails) else fails
    return {"dataset": dataset, "videos": int(len(manifest)), "stages": summary,
            "failed_videos": len(set(fails["video_id"])) if len(fails) else 0, "missing_sources": 0,
            "missing_examples": [], "removed": 0, "seconds": round(time.perf_counter() - t0, 3)}


# ---------------------------------------------------------------------------------------------------- the flow
@flow(name="extract-features", validate_parameters=True)
def extract_features(
    dataset: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")],
    root: Optional[str] = None,
    stages: Optional[list[Literal["probe", "frames", "audio", "transcripts", "metadata", "text", "embed_vision",
                                  "embed_audio", "embed_text"]]] = None,
    refresh: bool = False,
    config: Optional[ExtractConfig] = None,
    vision_model: Optional[str] = None,
    audio_model: Optional[str] = None,
    text_model: Optional[str] = None,
    workers: Optional[Annotated[int, Field(ge=1, le=256)]] = None,
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 8,
    video_ids: Optional[list[str]] = None,
    dask_address: Optional[str] = None,
    dask_workers: Optional[Annotated[int, Field(ge=1, le=1024)]] = None,
) -> dict:
    """Turn every ingested video into cached features, recomputing only what changed.

    Args:
        dataset: the store's name.
        root: data root (path or fsspec URL).
        stages: run only these stages (default: all, in dependency order, the ``embed_*`` ones for each encoder
            given). Other stages' caches are untouched (``frames``/``audio``/``embed_vision``/``embed_audio`` re-probe
            the file in memory when they run; ``text`` needs ``transcripts``; ``embed_text`` brings ``transcripts``).
        refresh: recompute even when fingerprints match (and retry videos that failed before).
        config: stage parameters (:class:`ExtractConfig`).
        vision_model, audio_model, text_model: local encoder paths for ``embed_vision`` / ``embed_audio`` /
            ``embed_text`` (override the same fields of ``config``); never downloaded.
        workers: videos processed in parallel (default: CPU count).
        batch_size: videos per Prefect task.
        video_ids: restrict to these videos (default: the whole manifest).
        dask_address: run the batches on an existing Dask cluster (``tcp://scheduler:8786``); its workers must see
            the same data root and media paths (a shared filesystem or an object-store root).
        dask_workers: start a local Dask cluster of this many single-threaded worker processes (bound to 127.0.0.1).

    Returns:
        ``{"dataset", "videos", "stages": {stage: {"done", "skipped", "failed"}}, "failed_videos", "missing_sources",
        "missing_examples", "removed", "seconds"}``: ``missing_sources`` counts the videos whose file is missing (each
        has one ``source`` failure record and is in no stage count; ``missing_examples`` names up to five);
        ``failed_videos`` counts the others that failed at least one stage.
    """
    t0 = time.perf_counter()
    cfg = config or ExtractConfig()
    models = {k: v for k, v in (("vision_model", vision_model), ("audio_model", audio_model),
                                ("text_model", text_model)) if v is not None}
    if models:
        cfg = cfg.model_copy(update=models)
    store = store_for(root, dataset)
    logger = get_run_logger()
    wanted = _wanted_stages(stages, cfg)
    if cfg.egemaps and "audio" in wanted:
        _require_opensmile()
    manifest = store.manifest()
    if manifest.empty:
        raise ValueError(f"dataset={dataset!r}: the manifest is empty: run `vidpipe ingest {dataset} ...` first")
    if video_ids is not None:
        unknown = sorted(set(video_ids) - set(manifest["video_id"]))
        if unknown:
            raise ValueError(f"video_ids: {unknown[:5]} are not in the manifest of {dataset!r}")
        manifest = manifest[manifest["video_id"].isin(video_ids)]
    summary: dict[str, dict[str, int]] = {s: {"done": 0, "skipped": 0, "failed": 0} for s in wanted}

    with store.lock():
        # removed videos: drop their outputs from the index
        removed = 0
        if video_ids is None:
            current = set(manifest["video_id"])
            for stage in (*STAGES, *EMBED_STAGES):
                for vid in set(store.entries(stage)) - current:
                    store.drop(stage, vid)
                    removed += 1

        # missing source files: one record per video, no per-stage work
        missing = _record_missing_sources(store, manifest, prune=video_ids is None)
        if missing:
            logger.warning("extract %s: %d videos have no source file (e.g. %s); recorded as missing, not extracted",
                           dataset, len(missing), ", ".join(missing[:5]))

        # plan
        items, planned, hashed = plan_extraction(store, manifest, cfg, wanted, refresh)
        for stage, counts in planned.items():
            summary[stage].update(counts)
        logger.info("extract %s: %d videos to process, %d files hashed", dataset, len(items), hashed)

        # run
        if items:
            n_workers = workers or os.cpu_count() or 1
            batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
            # OpenBLAS called from several threads at once can livelock inside exec_blas (seen here with librosa's
            # mel einsum in two extraction threads); videos are the unit of parallelism, so BLAS runs single-threaded
            # while the batches run. threadpool_limits is process-wide and restored afterwards.
            with progress(f"extract {dataset}", len(items)) as bar, threadpool_limits(limits=1, user_api="blas"), \
                    _task_runner(n_workers, dask_address, dask_workers) as runner:
                futures = {runner.submit(extract_batch, parameters={"root": root, "dataset": dataset, "items": b,
                                                                   "cfg": cfg.model_dump()}): len(b)
                           for b in batches}
                for fut in as_completed(futures):
                    for stage, c in fut.result().items():
                        if stage in summary:
                            summary[stage]["done"] += c.get("done", 0)
                            summary[stage]["failed"] += c.get("failed", 0)
                    bar.advance(futures[fut])

        if "text" in wanted:
            # the vocabulary is built on the whole training split, even when only some videos were extracted
            summary["text"] = _text_stage(store, store.manifest(), cfg, refresh)
        if "embed_text" in wanted:
            summary["embed_text"] = _embed_text_stage(store, manifest, cfg, refresh)
        # fold this run's per-video commits into the compacted layer (a few shards; see features.compaction)
        compaction = store.compact(locked=True)
        if compaction["folded"] or compaction["dropped"]:
            logger.info("extract %s: compacted %d outputs (%d dropped) into generation %d", dataset,
                        compaction["folded"], compaction["dropped"], compaction["generation"])
        store.consolidate([s for s in wanted if s != "text"] + (["text"] if "text" in wanted else []))

    all_fails = store.failures()
    fails = all_fails[all_fails["video_id"].isin(manifest["video_id"]) & (all_fails["stage"] != SOURCE_STAGE)]
    failed_videos = sorted(set(fails["video_id"]))
    result = {"dataset": dataset, "videos": int(len(manifest)), "stages": summary,
              "failed_videos": len(failed_videos), "missing_sources": len(missing), "missing_examples": missing[:5],
              "removed": removed, "seconds": round(time.perf_counter() - t0, 3)}
    rows = [{"stage": s, **c} for s, c in summary.items()]
    publish_table(f"{dataset}-extract-summary", rows, f"extraction of {dataset}: done / skipped / failed per stage")
    if failed_videos:
        publish_markdown(f"{dataset}-extract-failures", markdown_table(fails.head(200).to_dict("records")),
                         f"{len(failed_videos)} videos failed at least one stage")
        logger.warning("extract %s: %d videos failed at least one stage (see `vidpipe inspect %s`)",
                       dataset, len(failed_videos), dataset)
    return result


