"""Per-video extraction as one pure function: a manifest row, the stages to run and their parameters in; each stage's
arrays and record (or the reason it failed) out. No store access, no fingerprints: :mod:`pipelines.extract` plans,
calls :func:`iter_extract_video` and commits what it yields; the benchmarks call :func:`extract_video`.

Inside one video the stages share the probe result and the decoded PCM: the frames stage decodes the audio in the
same ffmpeg pass when the audio, embed_audio or speech-recognition work needs it. Every output is checked against its
declaration in :mod:`features.schema` before it is yielded (a mismatch is that stage's failure).

``embed_vision`` and ``embed_audio`` are a row preparation (decode, face crops, resampling: :class:`EmbedRows`) and an
encoder pass over those rows. :func:`extract_video` runs both for the one video; the flow asks
:func:`iter_extract_video` to ``defer`` the encoder pass and batches the rows of many videos
(:mod:`features.batching`), then completes each video with :func:`finish_embed`.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from typing import Annotated, Any, Iterator, Literal, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from features.metadata import metadata_record
from features.schema import EMBED_STAGES, STAGES, schema

__all__ = ["ExtractConfig", "StageOutput", "StageFailure", "PER_VIDEO_STAGES", "extract_video", "iter_extract_video",
           "checked_output", "audio_params", "frame_profiles", "describe_error", "require_opensmile", "EmbedRows",
           "EMBED_ROWS", "embed_rows_encoder", "finish_embed"]

#: the stages :func:`extract_video` runs (``text`` needs the dataset's vocabulary, ``embed_text`` batches transcripts
#: across videos: both run in the flow)
PER_VIDEO_STAGES = (*(s for s in STAGES if s != "text"), *(s for s in EMBED_STAGES if s != "embed_text"))
#: stages that need the probe result (``transcripts`` needs it only for speech recognition)
_NEED_PROBE = ("frames", "audio", "metadata", "embed_vision", "embed_audio")


class ExtractConfig(BaseModel):
    """Parameters of the extraction stages (validated). Each field changes the output of the stages named, except
    ``timeout``, ``embed_device`` (within float tolerance) and the fields marked "same output"
    (:meth:`stage_params` lists what enters each fingerprint)."""

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
    audio_model: Optional[str] = None  # embed_audio: local audio model directory (wav2vec 2.0…, AST, CLAP, Whisper)
    text_model: Optional[str] = None  # embed_text: local text model / sentence-transformers directory or GloVe file
    vision_patch_tokens: bool = False  # embed_vision: also store each frame's patch tokens (float16)
    vision_faces: Optional[str] = None  # embed_vision: embed the largest face of each frame, masking frames without
    #   one: "haar" (OpenCV's bundled cascade) or a local detector file (YuNet .onnx, cascade .xml; features.embed)
    text_max_tokens: Annotated[int, Field(ge=1, le=4096)] = 64  # embed_text: L, token vectors kept per transcript
    embed_batch_size: Annotated[int, Field(ge=1, le=4096)] = 32  # embed_*: items per forward pass (same output)
    embed_device: Literal["auto", "cpu", "cuda"] = "auto"  # embed_*: where encoders run (bf16 autocast on CUDA)
    embed_queue_items: Annotated[int, Field(ge=1, le=4096)] = 4  # embed_*: videos' rows waiting for an encoder, all
    #   worker threads of a process together (memory bound; same output)
    embed_queue_mb: Annotated[int, Field(ge=1, le=1 << 20)] = 256  # embed_*: MiB of those rows (a larger video is
    #   admitted alone; same output)
    embed_batch_wait: Annotated[float, Field(gt=0, le=60)] = 0.1  # embed_*: seconds a partly filled encoder batch
    #   waits for more rows while some worker is still decoding (features.batching.SharedBatcher; same output)

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
        if stage == "text":  # what tokenize() returns: a bump re-keys the vocabulary and every bag of words
            from features import text  # read at call time (the module loads NLTK only when it tokenises)

            out["tokenizer_version"] = text.TOKENIZER_VERSION
        if stage in EMBED_STAGES:
            # the checkpoint's content (weights, config, preprocessing, vocabulary), not its path
            kind = stage.split("_", 1)[1]
            path = p[f"{kind}_model"]
            out[f"{kind}_weights"] = None if path is None else _encoder_digest(path, f"{kind}_model")
        if stage == "embed_audio" and p["audio_model"] is not None:
            from features.embed import audio_preprocessing_params  # which filterbank code the extractor runs

            out.update(audio_preprocessing_params(p["audio_model"]))
        if stage == "embed_vision" and p["vision_faces"] is not None:
            # only when set, so whole-frame outputs keep their fingerprints
            from features.embed import face_detector_digest

            out["vision_faces"] = p["vision_faces"]
            out["faces_weights"] = face_detector_digest(p["vision_faces"])
        return out


def _encoder_digest(path: str, arg: str) -> str:
    from features.embed import encoder_digest  # loads the encoder machinery only when an encoder is configured

    return encoder_digest(path, arg=arg)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageOutput:
    """What one stage computed for one video (arrays and record as declared in :mod:`features.schema`)."""

    arrays: Optional[dict[str, np.ndarray]]  # None for record-only stages (probe, transcripts, metadata)
    record: dict[str, Any]
    seconds: float  # wall time of the stage's own work


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageFailure:
    """Why one stage failed for one video (:func:`describe_error` of the exception)."""

    error: str


def frame_profiles(cfg: ExtractConfig) -> list:
    """The :class:`features.video.FrameProfile` of each of ``cfg.profiles``, with ``cfg``'s counts and keyframe mode."""
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


def _embed_profiles(cfg: ExtractConfig, pre) -> list:
    """The frames stage's profiles (same names and instants) at the vision encoder's input geometry."""
    return [dataclasses.replace(p, size=pre.crop, short_side=pre.short_side) for p in frame_profiles(cfg)]


def audio_params(cfg: ExtractConfig):
    """The :class:`features.audio.AudioParams` of ``cfg``; the clip matrix spans ``clip_seconds`` unless
    ``clip_frames`` fixes its F."""
    from features.audio import AudioParams, clip_frames_for

    base = AudioParams(sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_segments=cfg.n_segments, feature=cfg.audio_feature)
    frames = cfg.clip_frames if cfg.clip_frames is not None else clip_frames_for(cfg.clip_seconds, base)
    return dataclasses.replace(base, clip_frames=frames)


def require_opensmile() -> None:
    """Refuse ``egemaps=True`` before any work when openSMILE is missing (instead of one failure per video)."""
    try:
        import opensmile  # noqa: F401
    except ImportError:
        raise ValueError("egemaps=True: the eGeMAPS functionals need the optional 'opensmile' package; install it "
                         "with pip install opensmile (or pip install 'vidpipe[egemaps]'), or leave --egemaps off"
                         ) from None


def describe_error(exc: BaseException) -> str:
    """The one-line failure message recorded for ``exc``: the message of an expected error (bad input, missing
    file, timeout), else its type, message and the file:line it was raised at."""
    msg = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, (ValueError, FileNotFoundError, TimeoutError)):
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
        msg = f"{type(exc).__name__}: {msg}{where}"
    return msg


def checked_output(stage: str, arrays: Optional[dict[str, np.ndarray]], record: dict[str, Any],
                   seconds: float = 0.0) -> StageOutput | StageFailure:
    """``stage``'s output if it matches its declaration in :mod:`features.schema`, else a failure saying how not."""
    try:
        schema(stage).check(arrays, record)
    except ValueError as exc:
        return StageFailure(error=describe_error(exc))
    return StageOutput(arrays=arrays, record=record, seconds=seconds)


class _Video:
    """One video's shared inputs, decoded at most once: the probe result and the PCM at each rate."""

    def __init__(self, row: dict, cfg: ExtractConfig) -> None:
        self.row, self.cfg, self.path = row, cfg, row.get("source_path")
        self.pcm: dict[int, Any] = {}
        self._info = None

    def info(self):
        from features.probe import probe

        if self._info is None:
            if not self.path or not os.path.isfile(self.path):
                raise FileNotFoundError(f"source file missing: {self.path!r} (re-ingest, or restore the file)")
            self._info = probe(self.path, timeout=min(self.cfg.timeout, 60.0), max_pixels=self.cfg.max_pixels)
        return self._info

    def audio(self, sr: int):
        from features.audio import load_audio

        if sr not in self.pcm:
            self.pcm[sr] = load_audio(self.path, self.info(), sr=sr, timeout=self.cfg.timeout)
        return self.pcm[sr]

    def has_dataset_transcript(self) -> bool:
        return isinstance(self.row.get("transcript"), str)


def _probe(v: _Video, todo: Sequence[str], asr_cache: dict):
    return None, v.info().to_record()


def _frame_arrays(results: dict) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the profile fields of the frames-like stages from :func:`features.video.extract_frames`."""
    sch = schema("frames")
    arrays: dict[str, np.ndarray] = {}
    for name, res in results.items():
        arrays[sch.name("{profile}", name)] = res.frames
        arrays[sch.name("{profile}_valid", name)] = res.valid
        arrays[sch.name("{profile}_times", name)] = res.times.astype(np.float32)
    return arrays, {"profiles": list(results), "valid_frames": {k: int(r.valid.sum()) for k, r in results.items()}}


def _frames(v: _Video, todo: Sequence[str], asr_cache: dict):
    from features.video import extract_frames, extract_frames_and_audio

    cfg = v.cfg
    # PCM this video will need: the audio stage's rate, or 16 kHz for speech recognition.
    asr_needed = "transcripts" in todo and not v.has_dataset_transcript() and cfg.asr != "none"
    sr_wanted = cfg.sample_rate if "audio" in todo or "embed_audio" in todo else 16000 if asr_needed else None
    if sr_wanted is not None and sr_wanted not in v.pcm:
        # One decode pass for frames and audio when the frames' ffmpeg decodes the whole video anyway; otherwise
        # y is None and _Video.audio decodes the audio on its own.
        results, y = extract_frames_and_audio(v.path, v.info(), frame_profiles(cfg), sr=sr_wanted,
                                              timeout=cfg.timeout, fast_decode=cfg.fast_decode)
        if y is not None:
            v.pcm[sr_wanted] = y
    else:
        results = extract_frames(v.path, v.info(), frame_profiles(cfg), timeout=cfg.timeout,
                                 fast_decode=cfg.fast_decode)
    arrays, record = _frame_arrays(results)
    # e.g. corrupt packets: decoded what could be, recorded here
    record["warnings"] = sorted({w for r in results.values() for w in getattr(r, "warnings", ())})
    return arrays, record


def _audio(v: _Video, todo: Sequence[str], asr_cache: dict):
    from features.audio import clip_matrix, egemaps, segment_features

    params = audio_params(v.cfg)
    y = v.audio(params.sr)
    seg, mask = segment_features(y, params)  # y None (no track) → zeros of the right shape, mask False
    clip, frame_valid = clip_matrix(y, params)
    valid = bool(frame_valid.any())
    arrays = {"segments": seg, "segments_mask": mask, "clip": clip, "clip_valid": np.array(valid),
              "clip_frame_valid": frame_valid}
    if v.cfg.egemaps:  # no track or silence: zeros and a False flag, like the clip matrix
        arrays["egemaps"] = egemaps(y, params.sr) if valid else np.zeros(88, dtype=np.float32)
        arrays["egemaps_valid"] = np.array(valid)
    return arrays, {"has_audio": y is not None, "silent": not bool(valid), "samples": 0 if y is None else int(len(y))}


def _transcripts(v: _Video, todo: Sequence[str], asr_cache: dict):
    cfg, text = v.cfg, v.row.get("transcript")
    if isinstance(text, str):
        return None, {"text": text, "source": "dataset", "words": []}
    if cfg.asr == "none":
        return None, {"text": "", "source": "none", "words": []}
    y = v.audio(16000)
    if y is None:
        return None, {"text": "", "source": f"asr:{cfg.asr}:no-audio", "words": []}
    backend = asr_cache.get("backend")
    if backend is None:
        from features.transcribe import get_backend

        opts = {"model_path": cfg.asr_model_path} if cfg.asr == "whisper" else {}
        backend = asr_cache["backend"] = get_backend(cfg.asr, **opts)
    tr = backend.transcribe(y, 16000)
    return None, {"text": tr.text, "source": tr.source, "words": [list(w) for w in tr.words]}


def _metadata(v: _Video, todo: Sequence[str], asr_cache: dict):
    return None, metadata_record(v.row, v.info().to_record())


@dataclasses.dataclass(frozen=True, kw_only=True)
class EmbedRows:
    """An embedding stage's work for one video up to its encoder: the encoder's input rows, and the rest of the
    stage's output. :func:`finish_embed` completes it from the encoder's outputs for those rows (the flow batches the
    rows of many videos with :mod:`features.batching`; :func:`extract_video` runs them on their own)."""

    stage: str  # "embed_vision" or "embed_audio"
    rows: np.ndarray  # (N, crop, crop, 3) uint8 frames of every profile in row order, or (S, rate) float32 segments
    valid: np.ndarray  # (N,) bool: the rows the encoder sees (the others' vectors are zeros)
    arrays: dict[str, np.ndarray]  # the stage's arrays other than the encoder's (validity, times, face boxes)
    record: dict[str, Any]
    profiles: tuple[tuple[str, int], ...] = ()  # embed_vision: (profile, frames) in row order
    seconds: float = 0.0  # time spent decoding and preparing the rows

    def detached(self) -> "EmbedRows":
        """This job without its input rows (:func:`finish_embed` does not read them), so that holding it until the
        encoder is done does not hold the frames."""
        return dataclasses.replace(self, rows=np.empty((0, *self.rows.shape[1:]), self.rows.dtype),
                                   valid=np.zeros(0, bool))


def embed_rows_encoder(stage: str, cfg: ExtractConfig):
    """The encoder of ``stage`` (loaded once per checkpoint) as a :class:`features.batching.RowEncoder`."""
    if stage == "embed_vision":
        from features.embed import load_vision_encoder

        enc = load_vision_encoder(cfg.vision_model, device=cfg.embed_device, batch_size=cfg.embed_batch_size)
        return enc.rows(patches=cfg.vision_patch_tokens)
    if stage == "embed_audio":
        from features.embed import load_audio_encoder

        return load_audio_encoder(cfg.audio_model, device=cfg.embed_device, batch_size=cfg.embed_batch_size).rows()
    raise ValueError(f"stage={stage!r}: expected 'embed_vision' or 'embed_audio'")


def _embed_arrays(job: EmbedRows, outputs: Sequence[np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The stage's arrays and record from ``job`` and the encoder's outputs for its rows (vectors, [patch tokens])."""
    arrays = dict(job.arrays)
    if job.stage == "embed_audio":
        from features.embed import audio_seconds  # rows of one second, or Whisper's windows → seconds

        arrays["segments"] = audio_seconds(outputs[0], arrays["segments_mask"])
        return arrays, job.record
    sch = schema("embed_vision")
    start = 0
    for name, n in job.profiles:
        arrays[sch.name("{profile}", name)] = outputs[0][start:start + n]
        if len(outputs) > 1:
            arrays[sch.name("{profile}_patches", name)] = outputs[1][start:start + n]
        start += n
    return arrays, job.record


def finish_embed(job: EmbedRows, outputs: Sequence[np.ndarray], seconds: float = 0.0) -> StageOutput | StageFailure:
    """``job``'s stage output from the encoder's outputs for its rows (``seconds``: its share of encoder time),
    checked against the stage's declaration."""
    return checked_output(job.stage, *_embed_arrays(job, outputs), job.seconds + seconds)


def _vision_rows(v: _Video, todo: Sequence[str], asr_cache: dict) -> EmbedRows:
    from features.embed import load_vision_encoder
    from features.video import extract_frames

    cfg = v.cfg
    enc = load_vision_encoder(cfg.vision_model, device=cfg.embed_device, batch_size=cfg.embed_batch_size)
    pre = enc.preprocessing
    detector = None
    profiles = _embed_profiles(cfg, pre)
    if cfg.vision_faces is not None:
        from features.embed import face_crops, load_face_detector

        detector = load_face_detector(cfg.vision_faces)
        side = max(2 * pre.crop, pre.short_side)  # faces are searched at twice the encoder's input size
        profiles = [dataclasses.replace(p, size=side, short_side=side) for p in profiles]
    results = extract_frames(v.path, v.info(), profiles, timeout=cfg.timeout, fast_decode=cfg.fast_decode)
    sch = schema("embed_vision")
    boxes = {}
    if detector is not None:
        for name, res in results.items():
            crops, found, boxes[name] = face_crops(res.frames, res.valid, detector, pre.crop)
            results[name] = dataclasses.replace(res, frames=crops, valid=res.valid & found,
                                                times=np.where(found, res.times, np.nan).astype(res.times.dtype))
    arrays, profile_fields = _frame_arrays(results)
    for name in results:
        del arrays[sch.name("{profile}", name)]  # the frames are the rows; the encoder's vectors take their name
        if name in boxes:
            arrays[sch.name("{profile}_face_box", name)] = boxes[name]
    record = {"model": cfg.vision_model, "encoder": enc.kind, "dim": enc.dim, "image_size": pre.crop, **profile_fields}
    if detector is not None:
        record["face_detector"] = detector.name
    empty = np.zeros((0, pre.crop, pre.crop, 3), np.uint8)
    return EmbedRows(stage="embed_vision", rows=np.concatenate([empty, *(r.frames for r in results.values())]),
                     valid=np.concatenate([np.zeros(0, bool), *(r.valid for r in results.values())]),
                     arrays=arrays, record=record, profiles=tuple((k, len(r.frames)) for k, r in results.items()))


def _audio_rows(v: _Video, todo: Sequence[str], asr_cache: dict) -> EmbedRows:
    from features.embed import load_audio_encoder

    cfg = v.cfg
    enc = load_audio_encoder(cfg.audio_model, device=cfg.embed_device, batch_size=cfg.embed_batch_size)
    y = v.audio(cfg.sample_rate)  # the audio stage's PCM, resampled to the encoder's rate
    segments, mask = enc.segments(y, cfg.sample_rate, cfg.n_segments)
    return EmbedRows(stage="embed_audio", rows=segments, valid=enc.row_valid(mask), arrays={"segments_mask": mask},
                     record={"model": cfg.audio_model, "encoder": enc.kind, "dim": enc.dim,
                             "sampling_rate": enc.sampling_rate, "has_audio": y is not None})


def _embedded(prepare):
    """A stage runner that prepares one video's rows and runs its encoder on them alone."""

    def run(v: _Video, todo: Sequence[str], asr_cache: dict):
        from features.batching import encode_rows

        job = prepare(v, todo, asr_cache)
        return _embed_arrays(job, encode_rows(embed_rows_encoder(job.stage, v.cfg), job.rows, job.valid))

    return run


#: embedding stages whose encoder work the flow batches across videos: stage → its row preparation
EMBED_ROWS = {"embed_vision": _vision_rows, "embed_audio": _audio_rows}
_embed_vision, _embed_audio = _embedded(_vision_rows), _embedded(_audio_rows)


_RUNNERS = {"probe": _probe, "frames": _frames, "audio": _audio, "transcripts": _transcripts,
            "metadata": _metadata, "embed_vision": _embed_vision, "embed_audio": _embed_audio}


def iter_extract_video(row: dict, stages: Sequence[str], cfg: ExtractConfig, *, asr_cache: Optional[dict] = None,
                       defer: Sequence[str] = ()) -> Iterator[tuple[str, StageOutput | StageFailure | EmbedRows]]:
    """Run ``stages`` for the video of manifest ``row`` (its ``source_path``, ``transcript`` and metadata columns),
    in :data:`PER_VIDEO_STAGES` order, yielding ``(stage, output or failure)`` as each finishes.

    Any exception of a stage becomes its :class:`StageFailure`; when ``probe`` is asked for and fails, every later
    stage that needs the probe fails with "skipped: probe failed" without running. ``asr_cache`` keeps the speech
    recogniser loaded across the videos of a batch (a dict owned by the caller). A stage in ``defer`` (some of
    :data:`EMBED_ROWS`) stops before its encoder: it yields its :class:`EmbedRows` (or its failure), which the caller
    completes with :func:`finish_embed`.

    Raises:
        ValueError: a stage that is not a per-video stage, or a deferred stage without row preparation.
    """
    unknown = [s for s in stages if s not in PER_VIDEO_STAGES]
    if unknown:
        raise ValueError(f"stages: {unknown} are not per-video stages; expected some of {list(PER_VIDEO_STAGES)}")
    if not set(defer) <= set(EMBED_ROWS):
        raise ValueError(f"defer={list(defer)}: expected some of {list(EMBED_ROWS)}")
    video = _Video(row, cfg)
    cache = {} if asr_cache is None else asr_cache
    todo = [s for s in PER_VIDEO_STAGES if s in stages]
    probe_failed = False
    for stage in todo:
        if probe_failed and (stage in _NEED_PROBE or not video.has_dataset_transcript()):
            yield stage, StageFailure(error="skipped: probe failed (see the probe failure)")
            continue
        t0 = time.perf_counter()
        try:
            if stage in defer:
                job = EMBED_ROWS[stage](video, todo, cache)
            else:
                arrays, record = _RUNNERS[stage](video, todo, cache)
        except Exception as exc:  # noqa: BLE001 - every failure is reported per video, never raised
            result: StageOutput | StageFailure | EmbedRows = StageFailure(error=describe_error(exc))
        else:
            result = dataclasses.replace(job, seconds=time.perf_counter() - t0) if stage in defer \
                else checked_output(stage, arrays, record, time.perf_counter() - t0)
        probe_failed = stage == "probe" and isinstance(result, StageFailure)
        yield stage, result


def extract_video(row: dict, stages: Sequence[str], cfg: ExtractConfig, *,
                  asr_cache: Optional[dict] = None) -> dict[str, StageOutput | StageFailure]:
    """:func:`iter_extract_video` collected: stage → its output or failure, in stage order."""
    return dict(iter_extract_video(row, stages, cfg, asr_cache=asr_cache))
