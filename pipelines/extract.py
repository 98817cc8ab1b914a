"""Stage ``extract``: probe, frames, audio/MFCC, transcripts, text and metadata for every ingested video.

Plan → run → report:

1. **Plan** (no decoding): for each video, the content digest of its file (memoised on stat) and, chained from it, the
   expected fingerprint of every stage (see :func:`plan_fingerprints`). A stage runs for a video only when its
   committed fingerprint differs — so a rerun with nothing changed decodes nothing — or when ``refresh``. A video whose
   last failure has the same fingerprint is not retried (a corrupt file stays corrupt) unless ``refresh``. A video
   whose source file is missing (a partial download) is not planned at all: it gets one failure record of the
   pseudo-stage :data:`SOURCE_STAGE` (written once, cleared when the file is back) and no per-stage record or work.
   A plan with nothing to do (and a text stage with nothing to write) is memoised in the store under a key of
   everything it reads, so a rerun with nothing changed is a stat per file and a few reads (:func:`plan_extraction`).
2. **Run**: videos go to Prefect tasks in batches (``batch_size`` videos per task, to keep Prefect's per-task overhead
   small), ``workers`` at a time. Inside a batch each video goes through the pure per-video function
   :func:`features.extract_video.iter_extract_video` (its stages in order, sharing the probe result and the decoded
   PCM, each output checked against :mod:`features.schema`); each (stage, video) is committed to the store on its own
   and any exception becomes a recorded failure, so one bad video never fails the run.
3. The ``text`` stage then builds the vocabulary on the training split's transcripts (a fingerprinted artifact) and
   writes a bag-of-words vector per video. Videos removed from the manifest have their outputs dropped.

Pretrained-encoder stages (:mod:`features.embed`; each runs when its encoder path is set): ``embed_vision`` and
``embed_audio`` run in the per-video pass. ``embed_vision`` samples the frames stage's instants (same profiles, segments
and frame counts) in its own decode at the encoder's input size: the frames stage keeps 64² frames, too small for 224²
encoders, and decoding both sizes in one ffmpeg pass would make the frames stage's pixels depend on whether an encoder
is configured. ``embed_audio`` reads the PCM the audio stage decodes (one decode per video) and resamples it to the
encoder's rate. The rows of both go to the process's shared batcher of their encoder
(:func:`features.batching.shared_batcher`), which fills encoder batches with the rows of every worker thread's videos
in a thread of its own while the workers decode the next videos; each video is still committed on its own, by the
worker that extracted it. ``embed_text`` runs after the pass over the committed transcripts, batched across videos.

Stage versions live in :data:`STAGE_VERSIONS`: bump one when its output changes for the same inputs, and exactly that
stage (and what depends on it) is recomputed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
import warnings
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Annotated, Any, Callable, Iterable, Literal, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field
from threadpoolctl import threadpool_limits

from features.batching import RowEncoder, RowItem, shared_batcher
from features.extract_video import (EMBED_ROWS, PER_VIDEO_STAGES, EmbedRows, ExtractConfig, StageFailure, StageOutput,
                                    checked_output, describe_error, embed_rows_encoder, finish_embed,
                                    iter_extract_video, require_opensmile)
from features.fingerprint import DigestCache, fingerprint, fingerprinter, frame_digest, stat_digest
from features.metadata import MANIFEST_COLUMNS
from features.schema import EMBED_STAGES, SOURCE_STAGE, STAGES, VOCABULARY_ARTIFACT, schema
from features.store import IndexRecord, Store, StoreError
from pipelines.flow_io import DatasetName, markdown_table, progress, publish_markdown, publish_table, store_for

__all__ = ["extract_features", "ExtractConfig", "STAGES", "STAGE_VERSIONS", "plan_fingerprints", "plan_extraction",
           "extract_items", "plan_embed_text", "recorded_config", "usable_encoders", "SOURCE_STAGE", "EMBED_STAGES",
           "nothing_to_extract"]

#: code version of each stage's output — bump when the output changes for the same inputs
STAGE_VERSIONS = {"probe": 2, "frames": 2, "audio": 4, "transcripts": 1, "metadata": 2, "text": 2, "vocabulary": 2,
                  "embed_vision": 1, "embed_audio": 1, "embed_text": 1}


# ---------------------------------------------------------------------------------------------------- planning
def recorded_config(entries_by_stage: Mapping[str, Mapping[str, IndexRecord]]) -> ExtractConfig:
    """The extraction parameters the store's outputs were computed with (most common per stage), else defaults.

    Each index record keeps the parameters that change its stage's output, so together they rebuild the
    :class:`ExtractConfig` of the last extraction; fields no stage records (``timeout``) keep their defaults. An
    ``embed_*`` stage also gives its encoder's path (``vision_model`` …, from its records' ``model``), so the
    checkpoint's current weights can be compared with those its outputs were computed from.
    ``entries_by_stage``: stage → :meth:`Store.entries` (used by ``refresh`` and by ``compare``'s feature ablations).
    """
    fields = set(ExtractConfig.model_fields)
    merged: dict[str, Any] = {}
    for stage in (*STAGES, *EMBED_STAGES):
        entries = entries_by_stage.get(stage)
        if not entries:
            continue
        common = Counter(json.dumps(r.params, sort_keys=True) for r in entries.values()).most_common(1)
        for k, v in json.loads(common[0][0]).items():
            if k in fields:
                merged.setdefault(k, v)
        if stage in EMBED_STAGES:
            models = Counter(r.record.get("model") for r in entries.values() if r.record.get("model"))
            if models:
                merged.setdefault(f"{stage.split('_', 1)[1]}_model", models.most_common(1)[0][0])
    return ExtractConfig(**merged)


_NESTED = (list, dict, np.ndarray)


def _na_to_none(value: Any) -> Any:
    """``None`` for a missing scalar (NaN, NaT, ``pd.NA``), else ``value`` (nested values are returned as they are)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or isinstance(value, _NESTED):
        return value
    return None if pd.isna(value) else value


def _row_digest(row: dict, columns: Sequence[str]) -> str:
    return fingerprint("row", 1, {c: _na_to_none(row.get(c)) for c in columns
                                  if not isinstance(row.get(c), _NESTED)})


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
    fps["metadata"] = _keyer("metadata", STAGE_VERSIONS["metadata"])([fps["probe"], _row_digest(row, MANIFEST_COLUMNS)])
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
                    refresh: bool = False, *, stats: Optional[Sequence[Optional[os.stat_result]]] = None
                    ) -> tuple[list[dict], dict[str, dict[str, int]], int]:
    """Decide, without decoding anything, which (video, stage) pairs must run.

    Returns ``(items, counts, hashed)``: one ``{"row", "todo", "fps"}`` item per video with work to do, per-stage
    ``{"skipped", "failed"}`` counts for the rest (``failed`` = a known failure with the same fingerprint, not
    retried unless ``refresh``), and how many files had to be (re-)hashed. The digest memo is saved to the store.
    Videos whose source file is missing or unreadable are left out of all three (:func:`extract_features` records
    them as missing sources).

    A plan with nothing to do is memoised in the store (``cache/plan.json``) under :func:`_plan_key`; the next plan
    with the same key (same manifest, source files, stage parameters, stage versions and index) returns its counts
    after a stat of each file and a few reads, without a fingerprint per video. ``refresh`` skips the memo.
    ``stats``: the source files' stats already taken (:func:`pipelines.ingest.source_stats` of ``manifest``), which
    the memo's key then uses instead of a stat of its own.
    """
    wanted = [s for s in PER_VIDEO_STAGES if s in stages]
    key = None if refresh else _plan_key(store, manifest, cfg, wanted, stats)
    memo = store.read_memo(_PLAN_MEMO) if key is not None else None
    if memo is not None and memo.get("key") == key and isinstance(memo.get("counts"), dict):
        return [], memo["counts"], 0
    items, counts, hashed = _plan_videos(store, manifest, cfg, wanted, refresh)
    if key is not None and not items:
        store.write_memo(_PLAN_MEMO, {"key": key, "counts": counts})
    return items, counts, hashed


#: ``cache/plan.json``: the last plan with nothing to do, under :func:`_plan_key`
_PLAN_MEMO = "plan"
#: part of the plan memo's key: bump when planning decides otherwise for the same manifest, files, config and index
_PLAN_MEMO_VERSION = 1


def _plan_key(store: Store, manifest: pd.DataFrame, cfg: ExtractConfig, wanted: Sequence[str],
              stats: Optional[Sequence[Optional[os.stat_result]]] = None) -> Optional[str]:
    """What a plan of ``wanted`` decides from, as one key (``None``: the manifest cannot be digested, no memo).

    The manifest's rows (:func:`features.fingerprint.frame_digest`), every source file's size, mtime and inode (what
    the content-digest memo trusts; :func:`features.fingerprint.stat_digest`), the parameters of ``probe`` and of the
    planned stages (``cfg.stage_params``, with the encoders' weight digests: exactly what enters the planned
    fingerprints, all chained from ``probe``'s), the stage versions, and the committed index and failure records of
    the planned stages (:meth:`Store.view_key`, :meth:`Store.failures_key`). Any change to one of them gives another
    key; a field no planned fingerprint reads (queue sizes, batch size, device, timeout) keeps it. ``stats``: the
    source files' stats in manifest order, when the caller took them already."""
    frame = frame_digest(manifest)
    if frame is None:
        return None
    paths = manifest["source_path"] if "source_path" in manifest.columns else [None] * len(manifest)
    params = {s: cfg.stage_params(s) for s in dict.fromkeys(("probe", *wanted))}
    try:
        keyer = fingerprinter("extract-plan", _PLAN_MEMO_VERSION, {"params": params, "versions": STAGE_VERSIONS,
                                                                  "stages": list(wanted)})
    except TypeError:  # a parameter that cannot be rendered: no memo
        return None
    return keyer([frame, stat_digest(paths, stats), *(store.view_key(s) for s in wanted), store.failures_key()])


def _plan_videos(store: Store, manifest: pd.DataFrame, cfg: ExtractConfig, wanted: Sequence[str], refresh: bool
                 ) -> tuple[list[dict], dict[str, dict[str, int]], int]:
    """:func:`plan_extraction` video by video: each file's content digest, each stage's fingerprint, compared with
    the committed one and the recorded failure."""
    digests = DigestCache(store.read_table("digests", missing_ok=True).to_dict("records"))
    have = {s: store.fingerprints(s) for s in wanted}
    counts = {s: {"skipped": 0, "failed": 0} for s in wanted}
    items = []
    for row in manifest.to_dict("records"):
        row = {k: _na_to_none(v) for k, v in row.items()}
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
    if digests.hashed and not store.read_only:  # a dry run keeps the memo in memory only
        store.write_table("digests", pd.DataFrame(digests.to_records(),
                                                  columns=["path", "size", "mtime_ns", "inode", "digest"]))
    return items, counts, digests.hashed


_RECORD_THREADS = 8  # missing-source records written at once


def _missing_message(video_id: str, path: Any) -> str:
    if not isinstance(path, str) or not path:
        return (f"source file missing: {video_id} (the dataset lists it but its folder has no such file; download it, "
                "then re-ingest)")
    return f"source file missing: {os.path.basename(path)} (not a readable file at {path!r}; restore it or re-ingest)"


def _record_missing_sources(store: Store, manifest: pd.DataFrame, *, prune: bool,
                            stats: Optional[Sequence[Optional[os.stat_result]]] = None) -> list[str]:
    """Keep exactly one :data:`SOURCE_STAGE` failure per manifest video whose source file is missing.

    A record is written only when it is new or its message changed (a rerun writes nothing), and the per-stage
    failure records such a video may hold from extractions that worked on it (stages without an output) are removed
    with it. Videos whose file is back lose their record; with ``prune`` (the whole manifest was planned) so do videos
    no longer in the manifest. ``stats``: :func:`pipelines.ingest.source_stats` of ``manifest``, already taken.
    Returns the missing video ids, sorted.
    """
    from pipelines.ingest import missing_sources

    missing = set(missing_sources(manifest, stats))
    fails = store.failures()
    source_fails = fails[fails["stage"] == SOURCE_STAGE]
    recorded = dict(zip(source_fails["video_id"], source_fails["error"]))
    paths = dict(zip(manifest["video_id"].tolist(), manifest["source_path"].tolist())) \
        if missing and "source_path" in manifest.columns else {}
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
    current = set(manifest["video_id"].tolist())
    for vid in recorded:
        if vid not in missing and (vid in current or prune):
            store.drop(SOURCE_STAGE, vid)
    return sorted(missing)


# ---------------------------------------------------------------------------------------------------- per video
def _commit(store: Store, stage: str, vid: str, fp: str, result: StageOutput | StageFailure,
            cfg: ExtractConfig) -> str:
    """Commit one stage's output (or record its failure) for one video; returns "done" or "failed"."""
    if isinstance(result, StageFailure):
        store.record_failure(stage, vid, result.error, fingerprint=fp)
        return "failed"
    store.write(stage, vid, fp, version=STAGE_VERSIONS[stage], arrays=result.arrays, record=result.record,
                params=cfg.stage_params(stage), seconds=result.seconds)
    return "done"


def extract_items(store: Store, items: Sequence[dict], cfg: ExtractConfig) -> dict[str, dict[str, int]]:
    """Run and commit the planned per-video stages of ``items`` (``{"row", "todo", "fps"}`` each, from
    :func:`plan_extraction`); returns per-stage ``{"done", "failed"}`` counts.

    Each video runs through :func:`features.extract_video.iter_extract_video`, one after the other; each stage is
    committed as soon as it finishes, so a crash loses at most the stage in progress. ``embed_vision`` and
    ``embed_audio`` hand their rows to the process's shared batcher of their encoder
    (:func:`features.batching.shared_batcher`): the rows of this call's videos and of every other worker thread's
    fill the same encoder batches, run in the batcher's thread while this one decodes the next video, through one
    queue of at most ``cfg.embed_queue_items`` videos and ``cfg.embed_queue_mb`` MiB. Each video's embedding is
    committed here, with its own fingerprint, once its rows are done; an encoder error on a video's rows fails that
    video only."""
    counts: dict[str, dict[str, int]] = {s: {"done": 0, "failed": 0} for s in PER_VIDEO_STAGES}
    asr_cache: dict = {}  # the speech recogniser, loaded once per call
    lanes = _embed_lanes(items, cfg)
    pending: dict[Future, tuple[str, str, str, EmbedRows]] = {}  # future → (stage, video, fingerprint, job)

    def commit(futures: Iterable[Future]) -> None:
        for fut in futures:
            stage, vid, fp, job = pending.pop(fut)
            res = fut.result()
            result = StageFailure(error=describe_error(res.error)) if res.error is not None \
                else finish_embed(job, res.outputs, res.seconds)
            counts[stage][_commit(store, stage, vid, fp, result, cfg)] += 1

    # leaving the block (also on an error) closes the clients: their queued rows are dropped, and the batcher's
    # thread ends with its last client
    with contextlib.ExitStack() as held:
        clients = {stage: held.enter_context(shared_batcher(key, enc, lane=stage, max_items=cfg.embed_queue_items,
                                                            max_bytes=cfg.embed_queue_mb << 20,
                                                            max_wait=cfg.embed_batch_wait))
                   for stage, (key, enc) in lanes.items()}
        for item in items:
            vid = item["row"]["video_id"]
            for stage, result in iter_extract_video(item["row"], item["todo"], cfg, asr_cache=asr_cache,
                                                    defer=tuple(lanes)):
                if isinstance(result, EmbedRows):
                    fut = clients[stage].submit(RowItem(key=vid, rows=result.rows, valid=result.valid, lane=stage))
                    pending[fut] = (stage, vid, item["fps"][stage], result.detached())
                else:
                    counts[stage][_commit(store, stage, vid, item["fps"][stage], result, cfg)] += 1
                commit([f for f in pending if f.done()])
        for client in clients.values():
            client.pause()  # nothing more from this thread: partial batches stop waiting for it
        while pending:
            commit(wait(pending, return_when=FIRST_COMPLETED).done)
    return counts


def _embed_lanes(items: Sequence[dict], cfg: ExtractConfig) -> dict[str, tuple[tuple, RowEncoder]]:
    """The encoder of each embedding stage some of ``items`` run, with the key its shared batcher goes by (the
    checkpoint's content digest, device, batch size and outputs: every worker thread with an equal key shares one).
    A stage whose encoder does not load is left out: it then runs per video, where the load error becomes each
    video's recorded failure."""
    lanes = {}
    for stage in EMBED_ROWS:
        if any(stage in item["todo"] for item in items):
            try:
                kind = stage.split("_", 1)[1]
                key = (stage, getattr(cfg, f"{kind}_model"), cfg.stage_params(stage)[f"{kind}_weights"],
                       cfg.embed_device, cfg.embed_batch_size, stage == "embed_vision" and cfg.vision_patch_tokens)
                lanes[stage] = (key, embed_rows_encoder(stage, cfg))
            except Exception:  # noqa: BLE001 - recorded per video by the per-video path
                continue
    return lanes


@task(cache_policy=NONE, persist_result=False, name="extract-batch")
def extract_batch(root: Optional[str], dataset: str, items: list[dict], cfg: dict) -> dict[str, dict[str, int]]:
    """Extract one batch of videos (:func:`extract_items` in a Prefect task). Returns per-stage counts."""
    return extract_items(store_for(root, dataset), items, ExtractConfig(**cfg))


# ---------------------------------------------------------------------------------------------------- text stage
def _text_plan(store: Store, manifest: pd.DataFrame, cfg: ExtractConfig, refresh: bool
               ) -> tuple[list[str], str, list[tuple[str, str]], int, str]:
    """``(train_ids, vocabulary fingerprint, [(video, text fingerprint) to write], skipped, inputs key)`` of the text
    stage.

    The vocabulary's fingerprint hashes the training transcripts' text, so it needs their records; the current
    vocabulary's meta keeps the ``inputs`` key it was built from (:func:`_vocabulary_inputs`: the training
    transcripts' committed outputs and the text parameters), and when the key is unchanged its fingerprint is
    taken without parsing a record. Per-video keys need only the transcripts' fingerprints (index columns).
    """
    from features.sources import training_ids  # the source adapters' package, only where a text stage runs

    transcripts = store.fingerprints("transcripts")
    ids = [v for v in manifest["video_id"].tolist() if v in transcripts]
    train = training_ids(manifest)
    train_ids = sorted(v for v in ids if v in train)
    inputs = _vocabulary_inputs(store, train_ids, cfg)
    vocab_fp = store.artifact_fingerprint(VOCABULARY_ARTIFACT)
    if vocab_fp is None or _artifact_meta(store, VOCABULARY_ARTIFACT, vocab_fp).get("inputs") != inputs:
        records = store.entries("transcripts")
        vocab_fp = fingerprint(VOCABULARY_ARTIFACT, STAGE_VERSIONS["vocabulary"], cfg.stage_params("text"),
                               [fingerprint("text", 0, records[v].record.get("text", "")) for v in train_ids]
                               or ["empty"])
    have = store.fingerprints("text")
    text_key = _keyer("text", STAGE_VERSIONS["text"], cfg)
    todo, skipped = [], 0
    for v in ids:
        fp = text_key([vocab_fp, transcripts[v]])
        if have.get(v) == fp and not refresh:
            skipped += 1
        else:
            todo.append((v, fp))
    return train_ids, vocab_fp, todo, skipped, inputs


def _vocabulary_inputs(store: Store, train_ids: Sequence[str], cfg: ExtractConfig) -> str:
    """What the vocabulary's fingerprint is computed from, as one key: the committed transcripts of ``train_ids``
    (:meth:`Store.commit_digest`: equal digests, the same records and so the same text) and the text parameters."""
    return fingerprint(f"{VOCABULARY_ARTIFACT}-inputs", STAGE_VERSIONS["vocabulary"], cfg.stage_params("text"),
                       [store.commit_digest("transcripts", train_ids)])


def _artifact_meta(store: Store, name: str, fp: str) -> dict:
    """The meta of artifact ``name`` at ``fp`` ({} when it is missing)."""
    try:
        return store.read_artifact(name, fp)[1]
    except KeyError:
        return {}


#: ``cache/text-plan.json``: the last text stage with nothing to write, under :func:`_text_memo_key`
_TEXT_MEMO = "text-plan"


def _text_memo_key(store: Store, manifest: pd.DataFrame, cfg: ExtractConfig) -> Optional[str]:
    """What the text stage decides from, as one key (``None``: no memo): the manifest's ids and splits, the committed
    transcripts and bags of words (:meth:`Store.view_key`), the current vocabulary, the text parameters and the
    stage versions (the plan memo's version included)."""
    cols = [c for c in ("video_id", "split") if c in manifest.columns]
    frame = frame_digest(manifest[cols])
    if frame is None:
        return None
    return fingerprint("text-plan", _PLAN_MEMO_VERSION, {"params": cfg.stage_params("text"), "versions": {
        s: STAGE_VERSIONS[s] for s in ("text", "vocabulary")}}, [frame, store.view_key("transcripts"),
        store.view_key("text"), store.artifact_fingerprint(VOCABULARY_ARTIFACT) or "none"])


def _text_memo(store: Store, key: Optional[str]) -> Optional[int]:
    """How many videos the memoised text stage skipped, when its memo holds ``key``; else ``None``."""
    memo = store.read_memo(_TEXT_MEMO) if key is not None else None
    if memo is None or memo.get("key") != key or not isinstance(memo.get("skipped"), int):
        return None
    return memo["skipped"]


def _text_stage(store: Store, manifest: pd.DataFrame, cfg: ExtractConfig, refresh: bool) -> dict[str, int]:
    # The vocabulary is keyed on the training transcripts' *text*, not on their fingerprints: re-extracting 1 % of
    # the videos re-keys their transcripts even when the text comes out the same, and keying the vocabulary on those
    # fingerprints would rebuild it and so re-key every video's bag of words. Per-video text keys chain from the
    # transcripts' fingerprints, so a transcripts / probe / vocabulary version bump recomputes text.
    # A run with nothing to write is memoised (cache/text-plan.json) under _text_memo_key.
    key = None if refresh else _text_memo_key(store, manifest, cfg)
    memo = _text_memo(store, key)
    if memo is not None:
        return {"done": 0, "failed": 0, "skipped": memo}
    train_ids, vocab_fp, todo, skipped, inputs = _text_plan(store, manifest, cfg, refresh)
    counts = {"done": 0, "failed": 0, "skipped": skipped}
    rebuild = store.artifact_fingerprint(VOCABULARY_ARTIFACT) != vocab_fp or refresh
    meta: dict = {}
    if not rebuild:
        meta = _artifact_meta(store, VOCABULARY_ARTIFACT, vocab_fp)
        if meta.get("inputs") != inputs:  # the same vocabulary from other records: keep the key for the next plan
            store.update_artifact_meta(VOCABULARY_ARTIFACT, vocab_fp, {"inputs": inputs})
        if not todo:
            # nothing to write: skip parsing the records, loading the vocabulary and the tokenizer (NLTK's import
            # takes seconds), and remember it for the next run with the same inputs
            if key is not None:
                store.write_memo(_TEXT_MEMO, {"key": key, "skipped": skipped})
            return counts
    from features.text import Vocabulary, bag_of_words, build_vocabulary, tokenize

    transcripts = store.entries("transcripts")
    if rebuild:
        vocab = build_vocabulary([tokenize(transcripts[v].record.get("text", "")) for v in train_ids],
                                 min_count=cfg.min_token_count, max_size=cfg.max_vocab)
        store.write_artifact(VOCABULARY_ARTIFACT, vocab_fp,
                             meta={"tokens": list(vocab.tokens), "train_videos": len(train_ids), "inputs": inputs})
    else:  # the meta read above: the same vocabulary, no second read
        vocab = Vocabulary(tokens=tuple(meta["tokens"]))
    for v, fp in todo:
        try:
            tokens = tokenize(transcripts[v].record.get("text", ""))
            bow = bag_of_words(tokens, vocab)
            result = checked_output("text", {"bow": bow}, {"n_tokens": len(tokens), "n_known": int((bow > 0).sum())})
        except Exception as exc:  # noqa: BLE001 - recorded per video, never raised
            result = StageFailure(error=describe_error(exc))
        counts[_commit(store, "text", v, fp, result, cfg)] += 1
    return counts


def usable_encoders(cfg: ExtractConfig, embed_stages: Sequence[str], who: str
                    ) -> tuple[ExtractConfig, dict[str, str]]:
    """``cfg`` without the encoders that cannot be used, and ``{stage: why}`` for the ``embed_*`` stages left as they
    are: no encoder path recorded or given, or the path no longer exists (its outputs are kept, not recomputed).
    ``who`` names the caller in the warning (``refresh``, ``compare``)."""
    kept: dict[str, str] = {}
    drop: dict[str, None] = {}
    for stage in embed_stages:
        arg = f"{stage.split('_', 1)[1]}_model"
        path = getattr(cfg, arg)
        if path is None:
            kept[stage] = f"no {arg} recorded or given"
        elif not os.path.exists(path):
            kept[stage] = f"{arg}={path!r} no longer exists (give {arg} in the config to recompute it)"
            drop[arg] = None
    if kept:
        warnings.warn(f"{who} leaves " + "; ".join(f"{s} as it is: {why}" for s, why in kept.items()), stacklevel=2)
    return (cfg.model_copy(update=drop) if drop else cfg), kept


def plan_embed_text(store: Store, video_ids: Sequence[str], cfg: ExtractConfig, *, refresh: bool = False,
                    transcripts: Optional[Mapping[str, str]] = None) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Which of ``video_ids`` ``embed_text`` must (re)compute: ``([(video_id, fingerprint)], {"done": 0, "failed",
    "skipped"})``. The key is (the transcript's fingerprint, the text encoder's digest, ``text_max_tokens``,
    ``n_segments``); a video without a committed transcript is left out. ``transcripts`` (video id → transcript
    fingerprint) overrides the committed ones, for planning ahead of a transcripts rerun."""
    if transcripts is None:
        transcripts = store.fingerprints("transcripts")
    key = _embed_keyer("embed_text", cfg)
    have = store.fingerprints("embed_text")
    counts = {"done": 0, "failed": 0, "skipped": 0}
    todo = []
    for v in video_ids:
        if v not in transcripts:
            continue
        fp = key([transcripts[v]])
        fail = store.failure("embed_text", v)
        if not refresh and (have.get(v) == fp or (fail and fail.get("fingerprint") == fp)):
            counts["skipped" if have.get(v) == fp else "failed"] += 1
            continue
        todo.append((v, fp))
    return todo, counts


def _embed_text_stage(store: Store, manifest: pd.DataFrame, cfg: ExtractConfig, refresh: bool) -> dict[str, int]:
    """``embed_text`` for every video with a committed transcript: keyed on (the transcript's fingerprint, the text
    encoder's digest, ``text_max_tokens``, ``n_segments``); transcripts are encoded ``embed_batch_size`` at a time."""
    from features.embed import load_text_encoder

    transcripts = store.entries("transcripts")
    todo, counts = plan_embed_text(store, manifest["video_id"], cfg, refresh=refresh)
    if not todo:
        return counts
    enc = load_text_encoder(cfg.text_model, max_tokens=cfg.text_max_tokens, device=cfg.embed_device,
                            batch_size=cfg.embed_batch_size)
    for start in range(0, len(todo), cfg.embed_batch_size):
        chunk = todo[start:start + cfg.embed_batch_size]
        recs = [transcripts[v].record for v, _ in chunk]
        t0 = time.perf_counter()
        try:
            outs = enc.embed([r.get("text") or "" for r in recs], [r.get("words") or [] for r in recs],
                             n_segments=cfg.n_segments)
        except Exception as exc:  # noqa: BLE001 - recorded per video, never raised
            for v, fp in chunk:
                counts[_commit(store, "embed_text", v, fp, StageFailure(error=describe_error(exc)), cfg)] += 1
            continue
        seconds = (time.perf_counter() - t0) / len(chunk)
        sch = schema("embed_text")
        for (v, fp), arrays in zip(chunk, outs):
            record = {"model": cfg.text_model, "encoder": enc.kind, "dim": enc.dim,
                      "n_tokens": int(arrays[sch.name("tokens_mask")].sum()),
                      "timed_seconds": int(arrays[sch.name("per_second_mask")].sum())}
            counts[_commit(store, "embed_text", v, fp, checked_output("embed_text", arrays, record, seconds), cfg)] += 1
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
    from pipelines.ingest import missing_sources, source_stats

    current = set(manifest["video_id"].tolist())
    if any(set(store.fingerprints(s)) - current for s in (*STAGES, *EMBED_STAGES)):
        return None
    stats = source_stats(manifest)  # one stat per source file, for the missing-file check and the plan memo's key
    if missing_sources(manifest, stats):
        return None
    fails = store.failures()
    if len(fails) and (fails["stage"] == SOURCE_STAGE).any():
        return None
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(store.lock(wait=False))
        except StoreError:
            return None  # another writer: the flow waits for it
        items, planned, _ = plan_extraction(store, manifest, cfg, wanted, stats=stats)
        if items:
            return None
        summary = {s: {"done": 0, "skipped": 0, "failed": 0, **planned.get(s, {})} for s in wanted}
        if "text" in wanted:
            skipped = _text_memo(store, _text_memo_key(store, manifest, cfg))
            if skipped is None:
                _, vocab_fp, todo, skipped, _ = _text_plan(store, manifest, cfg, False)
                if todo or store.artifact_fingerprint(VOCABULARY_ARTIFACT) != vocab_fp:
                    return None
            summary["text"] = {"done": 0, "failed": 0, "skipped": skipped}
    fails = fails[fails["video_id"].isin(current) & (fails["stage"] != SOURCE_STAGE)] if len(fails) else fails
    return {"dataset": dataset, "videos": int(len(manifest)), "stages": summary,
            "failed_videos": len(set(fails["video_id"])) if len(fails) else 0, "missing_sources": 0,
            "missing_examples": [], "removed": 0, "seconds": round(time.perf_counter() - t0, 3)}


# ---------------------------------------------------------------------------------------------------- the flow
@flow(name="extract-features", validate_parameters=True)
def extract_features(
    dataset: DatasetName,
    root: Optional[str] = None,
    stages: Optional[list[Literal[(*STAGES, *EMBED_STAGES)]]] = None,
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
        require_opensmile()
    manifest = _flow_manifest(store, dataset, video_ids)
    summary: dict[str, dict[str, int]] = {s: {"done": 0, "skipped": 0, "failed": 0} for s in wanted}

    with store.lock():
        removed = _drop_removed(store, manifest) if video_ids is None else 0

        # missing source files: one record per video, no per-stage work (one stat per file, shared with the plan)
        from pipelines.ingest import source_stats

        stats = source_stats(manifest)
        missing = _record_missing_sources(store, manifest, prune=video_ids is None, stats=stats)
        if missing:
            logger.warning("extract %s: %d videos have no source file (e.g. %s); recorded as missing, not extracted",
                           dataset, len(missing), ", ".join(missing[:5]))

        # plan
        items, planned, hashed = plan_extraction(store, manifest, cfg, wanted, refresh, stats=stats)
        for stage, counts in planned.items():
            summary[stage].update(counts)
        logger.info("extract %s: %d videos to process, %d files hashed", dataset, len(items), hashed)

        if items:
            _run_batches(items, summary, root=root, dataset=dataset, cfg=cfg, workers=workers, batch_size=batch_size,
                         dask_address=dask_address, dask_workers=dask_workers)

        if "text" in wanted:
            # the vocabulary is built on the whole training split, even when only some videos were extracted
            summary["text"] = _text_stage(store, manifest if video_ids is None else store.manifest(), cfg, refresh)
        if "embed_text" in wanted:
            summary["embed_text"] = _embed_text_stage(store, manifest, cfg, refresh)
        _compact_and_consolidate(store, dataset, wanted)

    return _report(store, dataset, manifest, summary, missing=missing, removed=removed, t0=t0)


def _flow_manifest(store: Store, dataset: str, video_ids: Optional[Sequence[str]]) -> pd.DataFrame:
    """The manifest rows :func:`extract_features` works on (all, or those of ``video_ids``).

    Raises:
        ValueError: an empty manifest, or a video id it does not hold.
    """
    manifest = store.manifest()
    if manifest.empty:
        raise ValueError(f"dataset={dataset!r}: the manifest is empty: run `vidpipe ingest {dataset} ...` first")
    if video_ids is not None:
        unknown = sorted(set(video_ids) - set(manifest["video_id"]))
        if unknown:
            raise ValueError(f"video_ids: {unknown[:5]} are not in the manifest of {dataset!r}")
        manifest = manifest[manifest["video_id"].isin(video_ids)]
    return manifest


def _drop_removed(store: Store, manifest: pd.DataFrame) -> int:
    """Drop the outputs of videos no longer in ``manifest`` from the index; returns how many outputs."""
    removed = 0
    current = set(manifest["video_id"].tolist())
    for stage in (*STAGES, *EMBED_STAGES):
        for vid in set(store.fingerprints(stage)) - current:  # index columns: no record parsed
            store.drop(stage, vid)
            removed += 1
    return removed


def _run_batches(items: list[dict], summary: dict[str, dict[str, int]], *, root: Optional[str], dataset: str,
                 cfg: ExtractConfig, workers: Optional[int], batch_size: int, dask_address: Optional[str],
                 dask_workers: Optional[int]) -> None:
    """Run the planned ``items`` as Prefect tasks of ``batch_size`` videos, ``workers`` at a time; adds their
    per-stage done / failed counts to ``summary``."""
    n_workers = workers or os.cpu_count() or 1
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    # OpenBLAS called from several threads at once can livelock inside exec_blas (seen here with librosa's mel
    # einsum in two extraction threads); videos are the unit of parallelism, so BLAS runs single-threaded while the
    # batches run. threadpool_limits is process-wide and restored afterwards.
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


def _compact_and_consolidate(store: Store, dataset: str, wanted: Sequence[str]) -> None:
    """Fold the run's per-video commits into the compacted layer (a few shards; see :mod:`features.compaction`), then
    bring the ``wanted`` stages' tables up to date. The caller holds the store's lock."""
    compaction = store.compact(locked=True)
    if compaction["folded"] or compaction["dropped"]:
        get_run_logger().info("extract %s: compacted %d outputs (%d dropped) into generation %d", dataset,
                              compaction["folded"], compaction["dropped"], compaction["generation"])
    store.consolidate([s for s in wanted if s != "text"] + (["text"] if "text" in wanted else []))


def _report(store: Store, dataset: str, manifest: pd.DataFrame, summary: dict[str, dict[str, int]], *,
            missing: list[str], removed: int, t0: float) -> dict:
    """:func:`extract_features`'s result; publishes the summary table (and the failures, when any) as artifacts."""
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
        get_run_logger().warning("extract %s: %d videos failed at least one stage (see `vidpipe inspect %s`)",
                                 dataset, len(failed_videos), dataset)
    return result


