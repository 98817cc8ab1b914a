"""Stage ``extract``: probe, frames, audio/MFCC, transcripts, text and metadata for every ingested video.

Plan → run → report:

1. **Plan** (no decoding): for each video, the content digest of its file (memoised on stat) and, chained from it, the
   expected fingerprint of every stage (see :func:`plan_fingerprints`). A stage runs for a video only when its
   committed fingerprint differs — so a rerun with nothing changed decodes nothing — or when ``refresh``. A video whose
   last failure has the same fingerprint is not retried (a corrupt file stays corrupt) unless ``refresh``.
2. **Run**: videos go to Prefect tasks in batches (``batch_size`` videos per task, to keep Prefect's per-task overhead
   small), ``workers`` at a time. Inside a batch each video runs its stages in order, sharing the probe result and
   the decoded PCM; each (stage, video) is committed to the store on its own and any exception becomes a recorded
   failure, so one bad video never fails the run.
3. The ``text`` stage then builds the vocabulary on the training split's transcripts (a fingerprinted artifact) and
   writes a bag-of-words vector per video. Videos removed from the manifest have their outputs dropped.

Stage versions live in :data:`STAGE_VERSIONS`: bump one when its output changes for the same inputs, and exactly that
stage (and what depends on it) is recomputed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
import traceback
from collections import Counter
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
from features.store import IndexRecord, Store
from pipelines._common import markdown_table, progress, publish_markdown, publish_table, store_for

__all__ = ["extract_features", "ExtractConfig", "STAGES", "STAGE_VERSIONS", "plan_fingerprints", "plan_extraction",
           "recorded_config"]

#: stages in dependency order
STAGES = ("probe", "frames", "audio", "transcripts", "metadata", "text")
#: code version of each stage's output — bump when the output changes for the same inputs
STAGE_VERSIONS = {"probe": 1, "frames": 1, "audio": 1, "transcripts": 1, "metadata": 1, "text": 1, "vocabulary": 1}
_PER_VIDEO = STAGES[:-1]  # run inside the per-video batch; "text" needs the vocabulary first


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
    clip_frames: Annotated[int, Field(ge=8, le=10_000)] = 256  # audio: F of the whole-clip MFCC matrix
    asr: Literal["pocketsphinx", "whisper", "none"] = "pocketsphinx"  # transcripts: when the dataset has none
    asr_model_path: Optional[str] = None  # transcripts: local weights for the whisper backend
    min_token_count: Annotated[int, Field(ge=1)] = 1  # text: keep words seen this often in training transcripts
    max_vocab: Optional[Annotated[int, Field(ge=1)]] = 5000  # text: vocabulary size cap
    timeout: Annotated[float, Field(gt=0, le=86_400)] = 300.0  # seconds allowed per decode call
    max_pixels: Annotated[int, Field(ge=64 * 64)] = 8192 * 8192  # probe: refuse larger frames (bomb guard)

    def stage_params(self, stage: str) -> dict[str, Any]:
        """The parameters that change ``stage``'s output (and only those: others must not invalidate it)."""
        p = self.model_dump()
        keys = {
            "probe": ["max_pixels"],
            "frames": ["profiles", "n_segments", "frames_per_segment", "n_frames", "keyframes", "fast_decode"],
            "audio": ["sample_rate", "n_mfcc", "audio_feature", "clip_frames", "n_segments"],
            "transcripts": ["asr", "asr_model_path"],
            "metadata": [],
            "text": ["min_token_count", "max_vocab"],
        }[stage]
        return {k: p[k] for k in keys}


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


def _row_digest(row: dict, columns: Sequence[str]) -> str:
    return fingerprint("row", 1, {c: (None if pd.isna(row.get(c)) else row.get(c)) for c in columns
                                  if not isinstance(row.get(c), (list, dict, np.ndarray))})


_META_COLUMNS = ("create_time", "desc", "duration_meta", "song_id")


@functools.lru_cache(maxsize=256)
def _keyer(stage: str, version: int, cfg: Optional[ExtractConfig] = None,
           fixed: tuple[tuple[str, Any], ...] = ()) -> Callable[[Sequence[str]], str]:
    """``fingerprint(stage, version, params, ·)`` with ``params`` = ``cfg.stage_params(stage)`` (or ``fixed``) hashed
    once per configuration instead of once per video: planning 1,000 videos spent most of its time rendering the
    same parameters' canonical JSON (issue 9). Same keys as :func:`fingerprint`."""
    return fingerprinter(stage, version, cfg.stage_params(stage) if cfg is not None else dict(fixed))


def plan_fingerprints(row: dict, content_digest: str, cfg: ExtractConfig) -> dict[str, str]:
    """Expected fingerprint of each per-video stage, chained from the file's content digest.

    ``probe ← content``; ``frames, audio ← probe``; ``transcripts ← dataset transcript text, or probe (ASR)``;
    ``metadata ← probe + the manifest's metadata columns``. ``text`` is planned after the vocabulary exists.
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
    return fps


def plan_extraction(store: Store, manifest: pd.DataFrame, cfg: ExtractConfig, stages: Sequence[str],
                    refresh: bool = False) -> tuple[list[dict], dict[str, dict[str, int]], int]:
    """Decide, without decoding anything, which (video, stage) pairs must run.

    Returns ``(items, counts, hashed)``: one ``{"row", "todo", "fps"}`` item per video with work to do, per-stage
    ``{"skipped", "failed"}`` counts for the rest (``failed`` = a known failure with the same fingerprint, not
    retried unless ``refresh``), and how many files had to be (re-)hashed. The digest memo is saved to the store.
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
        fps = plan_fingerprints(row, digest or f"missing:{path}", cfg)
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


def _audio_params(cfg: ExtractConfig):
    from features.audio import AudioParams

    return AudioParams(sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_segments=cfg.n_segments, feature=cfg.audio_feature,
                       clip_frames=cfg.clip_frames)


def _metadata_record(row: dict, probe_rec: dict) -> dict[str, Any]:
    """Content-agnostic features known at upload time (MTAF): geometry, duration, timing, caption."""
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
        "hashtags": desc.count("#"),
        "has_song": isinstance(row.get("song_id"), str),
    }


def _process_video(store: Store, row: dict, todo: list[str], fps: dict[str, str], cfg: ExtractConfig,
                   asr_cache: dict) -> dict[str, str]:
    """Run the stages in ``todo`` for one video; returns stage → "done" | "failed" | "skipped"."""
    from features.audio import clip_mfcc, load_audio, segment_features
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
                if stage in ("frames", "audio", "metadata") or not isinstance(row.get("transcript"), str):
                    store.record_failure(stage, vid, "skipped: probe failed (see the probe failure)",
                                         fingerprint=fps[stage])
                    status[stage] = "failed"
            todo = [s for s in todo if s not in status]

    if "frames" in todo:
        # PCM this video will need: the audio stage's rate, or 16 kHz for speech recognition.
        asr_needed = "transcripts" in todo and not isinstance(row.get("transcript"), str) and cfg.asr != "none"
        sr_wanted = cfg.sample_rate if "audio" in todo else 16000 if asr_needed else None

        def frames():
            if sr_wanted is not None and sr_wanted not in pcm:
                # One decode pass for frames and audio when the frames' ffmpeg decodes the whole video anyway
                # (issue 9); otherwise y is None and get_pcm decodes the audio on its own, as before.
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
            return ({"segments": seg, "segments_mask": mask, "clip": clip, "clip_valid": np.array(bool(valid))},
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
    return status


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
def _text_stage(store: Store, manifest: pd.DataFrame, cfg: ExtractConfig, refresh: bool) -> dict[str, int]:
    from features.text import bag_of_words, build_vocabulary, tokenize

    transcripts = store.entries("transcripts")
    ids = [v for v in manifest["video_id"] if v in transcripts]
    train = set(manifest.loc[manifest["split"] == "train", "video_id"])
    train_ids = sorted(v for v in ids if v in train)
    # The vocabulary is keyed on the training transcripts' *text*, not on their fingerprints (issue 9): re-extracting
    # 1 % of the videos re-keys their transcripts even when the text comes out the same, and keying the vocabulary on
    # those fingerprints rebuilt it and so re-keyed every video's bag of words. Per-video text keys still chain from
    # the transcripts' fingerprints, so a transcripts / probe / vocabulary version bump recomputes text as before.
    vocab_fp = fingerprint("vocabulary", STAGE_VERSIONS["vocabulary"], cfg.stage_params("text"),
                           [fingerprint("text", 0, transcripts[v].record.get("text", "")) for v in train_ids]
                           or ["empty"])
    counts = {"done": 0, "failed": 0, "skipped": 0}
    if store.artifact_fingerprint("vocabulary") != vocab_fp or refresh:
        vocab = build_vocabulary([tokenize(transcripts[v].record.get("text", "")) for v in train_ids],
                                 min_count=cfg.min_token_count, max_size=cfg.max_vocab)
        store.write_artifact("vocabulary", vocab_fp, meta={"tokens": list(vocab.tokens), "train_videos": len(train_ids)})
    _, meta = store.read_artifact("vocabulary", vocab_fp)
    from features.text import Vocabulary

    vocab = Vocabulary(tokens=tuple(meta["tokens"]))
    have = store.fingerprints("text")
    text_key = _keyer("text", STAGE_VERSIONS["text"], cfg)
    for v in ids:
        fp = text_key([vocab_fp, transcripts[v].fingerprint])
        if have.get(v) == fp and not refresh:
            counts["skipped"] += 1
            continue
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


# ---------------------------------------------------------------------------------------------------- the flow
@flow(name="extract-features", validate_parameters=True)
def extract_features(
    dataset: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")],
    root: Optional[str] = None,
    stages: Optional[list[Literal["probe", "frames", "audio", "transcripts", "metadata", "text"]]] = None,
    refresh: bool = False,
    config: Optional[ExtractConfig] = None,
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
        stages: run only these stages (default: all, in dependency order). Other stages' caches are untouched
            (``frames``/``audio`` re-probe the file in memory when they run; ``text`` needs ``transcripts``).
        refresh: recompute even when fingerprints match (and retry videos that failed before).
        config: stage parameters (:class:`ExtractConfig`).
        workers: videos processed in parallel (default: CPU count).
        batch_size: videos per Prefect task.
        video_ids: restrict to these videos (default: the whole manifest).
        dask_address: run the batches on an existing Dask cluster (``tcp://scheduler:8786``); its workers must see
            the same data root and media paths (a shared filesystem or an object-store root).
        dask_workers: start a local Dask cluster of this many single-threaded worker processes (bound to 127.0.0.1).

    Returns:
        ``{"dataset", "videos", "stages": {stage: {"done", "skipped", "failed"}}, "failed_videos", "removed",
        "seconds"}``.
    """
    t0 = time.perf_counter()
    cfg = config or ExtractConfig()
    store = store_for(root, dataset)
    logger = get_run_logger()
    wanted = [s for s in STAGES if stages is None or s in stages]
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
            for stage in STAGES:
                for vid in set(store.entries(stage)) - current:
                    store.drop(stage, vid)
                    removed += 1

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
        store.consolidate([s for s in wanted if s != "text"] + (["text"] if "text" in wanted else []))

    failed_videos = sorted(set(store.failures().query("video_id in @manifest.video_id")["video_id"]))
    result = {"dataset": dataset, "videos": int(len(manifest)), "stages": summary,
              "failed_videos": len(failed_videos), "removed": removed, "seconds": round(time.perf_counter() - t0, 3)}
    rows = [{"stage": s, **c} for s, c in summary.items()]
    publish_table(f"{dataset}-extract-summary", rows, f"extraction of {dataset}: done / skipped / failed per stage")
    if failed_videos:
        fails = store.failures()
        publish_markdown(f"{dataset}-extract-failures", markdown_table(fails.head(200).to_dict("records")),
                         f"{len(failed_videos)} videos failed at least one stage")
        logger.warning("extract %s: %d videos failed at least one stage (see `vidpipe inspect %s`)",
                       dataset, len(failed_videos), dataset)
    return result


