"""Tensor packs: the cached, model-ready arrays a training flow reads (one HDF5 file per selection).

:func:`build_pack` gathers, for every video of a dataset with a label for the task, the modality arrays a model reads
(keys and shapes in docs/ARCHITECTURE.md) from the store, and writes them through :meth:`Store.write_pack` under a
fingerprint of (the selection, the task, every per-video stage fingerprint used, the labels and each video's split).
Repeated runs reuse it, whatever their training seed.

Vision stays ``uint8`` in the pack (4× smaller; converted to float in the loader). A video without a stage output gets
zeros **and** a False mask — never zeros that look like data.

Shapes (N videos in the pack):
    vision_seg (N, S, T, 3, 64, 64) uint8 · vision_seg_mask (N, S)
    audio_seg (N, S, 3, n_mfcc, F) float32 · audio_seg_mask (N, S)
    vision (N, T, 3, H, W) uint8 · vision_mask (N, T)
    audio (N, n_mfcc, F) float32 · audio_mask (N, F)   (MFCC frame holds audio; False on a short clip's padding)
    text (N, V) float32 · text_mask (N,)
    graph (N, D) float32 · graph_mask (N,)
    meta (N, D) float32 · meta_mask (N,)
    early_trend (N, T_e) float32 · early_trend_mask (N,)   (MTAF's early popularity series, features.trend)
    cached pretrained-encoder vectors (features.embed; stages embed_vision / embed_audio / embed_text):
    vision_seg_emb (N, S, T, D_v) float32 · vision_seg_emb_mask (N, S)
    vision_emb (N, T, D_v) float32 · vision_emb_mask (N, T)   (the ``vision_profile`` frames)
    audio_seg_emb, audio_emb (N, S, D_a) float32 · masks (N, S)
    text_emb (N, L, D_t) float32 · text_emb_mask (N, L)   (token vectors)
    text_sentence_emb (N, D_t) float32 · text_sentence_emb_mask (N,)   (the transcript's sentence vector)
    target (N, K) float32 · video_id (N,) str · split (N,) str
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd

from features.fingerprint import fingerprint
from features.metadata import META_COLUMNS
from features.schema import GRAPH_ARTIFACT, VOCABULARY_ARTIFACT, schema
from features.store import Store
from features.trend import (TREND_HOURS, TREND_VERSION, early_trend, favourite_column, history_digest,
                            mtaf_score)
from names import EARLY_TREND, MODALITIES, TASK_TARGETS

__all__ = ["PACK_VERSION", "TASK_TARGETS", "META_COLUMNS", "pack_fingerprint", "build_pack", "assign_splits",
           "labelled_videos",
           "mtaf_popularity", "standardize", "node_features", "NODE_META_COLUMNS"]

PACK_VERSION = 3  # code version of a pack's layout: bump when its arrays change for the same inputs
_STAGE_OF = {"vision_seg": "frames", "vision": "frames", "audio_seg": "audio", "audio": "audio", "text": "text",
             "meta": "metadata", "vision_seg_emb": "embed_vision", "vision_emb": "embed_vision",
             "audio_seg_emb": "embed_audio", "audio_emb": "embed_audio", "text_emb": "embed_text",
             "text_sentence_emb": "embed_text",
             "egemaps": "audio"}
#: inputs read from a dataset-level artifact or table instead of a per-video stage
_NOT_STAGES = (GRAPH_ARTIFACT, EARLY_TREND)
# the per-video arrays read here, by their declarations in features.schema (a renamed array fails at import)
_FRAMES, _AUDIO, _TEXT = schema("frames"), schema("audio"), schema("text")
_EMB_VISION, _EMB_AUDIO, _EMB_TEXT = schema("embed_vision"), schema("embed_audio"), schema("embed_text")


def assign_splits(manifest: pd.DataFrame, labelled: pd.DataFrame) -> pd.Series:
    """The split of each of ``labelled``'s videos (index as ``labelled``'s): :func:`features.sources.dataset_splits`
    of the whole ``manifest``, the split the text vocabulary's training videos come from, so a pack never validates or
    tests on a video the vocabulary was built on, whichever subset a task labels."""
    from features.sources import dataset_splits  # the adapters' package, loaded when a pack is built

    splits = pd.Series(dataset_splits(manifest).to_numpy(), index=manifest["video_id"].to_numpy())
    return pd.Series(splits.reindex(labelled["video_id"].to_numpy()).to_numpy(), index=labelled.index)


def mtaf_popularity(manifest: pd.DataFrame) -> pd.Series:
    """MTAF's popularity score (paper 003 eq. 1), y = 0.2·favourites + 0.3·comments + 0.5·shares, as a label in [0, 1].

    Favourites are the manifest's ``collect_count`` (TikTok's "favorites") where the dataset has it, else its
    ``digg_count`` (likes). The paper regresses y on its own scale; vidpipe's models end in a sigmoid, so the label is
    ``log(1 + y)`` min-max normalised over the videos that have all three counts (the others get nan: no label).

    Raises:
        ValueError: the manifest lacks comment / share counts or both favourite columns.
    """
    fav = favourite_column(manifest)
    missing = [c for c in ("comment_count", "share_count") if c not in manifest.columns]
    if fav is None or missing:
        raise ValueError(f"task='popularity_mtaf' needs favourite (collect_count or digg_count), comment_count and "
                         f"share_count columns; this dataset lacks {missing or ['collect_count/digg_count']} "
                         "(the TikTok adapter keeps them)")
    counts = manifest[[fav, "comment_count", "share_count"]].astype("float64")
    y = np.log1p(mtaf_score(counts[fav], counts["comment_count"], counts["share_count"]))
    span = y.max() - y.min()
    return (y - y.min()) / span if span > 0 else y * 0.0


def labelled_videos(manifest: pd.DataFrame, task: str) -> pd.DataFrame:
    """The manifest rows with every label of ``task`` (MTAF's popularity computed from the counts where the manifest
    has no such column), sorted by video id.

    Raises:
        ValueError: an unknown task, or a dataset without the task's label columns.
    """
    if task not in TASK_TARGETS:
        raise ValueError(f"task={task!r}: expected one of {sorted(TASK_TARGETS)}")
    if task == "popularity_mtaf" and "popularity_mtaf" not in manifest.columns:
        manifest = manifest.assign(popularity_mtaf=mtaf_popularity(manifest))
    cols = list(TASK_TARGETS[task])
    missing = [c for c in cols if c not in manifest.columns]
    if missing:
        raise ValueError(f"task={task!r} needs label column(s) {missing}, which this dataset does not have")
    return manifest[manifest[cols].notna().all(axis=1)].sort_values("video_id").reset_index(drop=True)


def _labelled_with_splits(full: pd.DataFrame, task: str) -> pd.DataFrame:
    """The :func:`labelled_videos` of the whole manifest ``full`` for ``task``, each with its ``split``
    (:func:`assign_splits`)."""
    labelled = labelled_videos(full, task)
    return labelled.assign(split=assign_splits(full, labelled).to_numpy())


def pack_fingerprint(store: Store, inputs: Sequence[str], task: str, *, vision_profile: str = "uniform") -> str:
    """Fingerprint of the pack a selection would produce, from the store's current state (no array reads).

    It holds no training seed: a pack's split is the dataset's own (:func:`assign_splits`), so every seed of a
    selection reads the same pack."""
    manifest = _labelled_with_splits(store.manifest(), task)
    ids = list(manifest["video_id"])
    parts = [fingerprint("labels", 1, manifest[["video_id", *TASK_TARGETS[task], "split"]].astype(str).values.tolist())]
    for key in sorted(set(inputs)):
        if key == GRAPH_ARTIFACT:
            parts.append(store.artifact_fingerprint(GRAPH_ARTIFACT) or "no-graph")
            continue
        if key == EARLY_TREND:
            parts.append(fingerprint(EARLY_TREND, TREND_VERSION, {"hours": TREND_HOURS},
                                     [history_digest(store.scrape_history(), ids)]))
            continue
        stage = _STAGE_OF[key]
        fps = store.fingerprints(stage)
        parts.append(fingerprint("stage-state", 1, stage, [fps.get(v, "missing") for v in ids] or ["empty"]))
        if key == "text":
            parts.append(store.artifact_fingerprint(VOCABULARY_ARTIFACT) or "no-vocabulary")
    return fingerprint("pack", PACK_VERSION, {"inputs": sorted(set(inputs)), "task": task,
                                              "vision_profile": vision_profile}, parts)


def standardize(x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Z-score each column, ``z = (x − μ) / σ`` with μ and σ the nan-ignoring mean and standard deviation over
    ``rows`` (a boolean mask; all rows when None, e.g. the training videos); a column with σ = 0 is only centred, and
    nan (a missing value, or a column with no value in ``rows``) becomes 0, the reference mean.

    Shapes:
        x: (N, D); rows: (N,) bool; returns (N, D) float32
    """
    ref = x if rows is None else x[rows]
    with warnings.catch_warnings():  # an all-nan column has no mean: its z is nan, then 0
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(ref, axis=0), np.nanstd(ref, axis=0)
    return np.nan_to_num((x - mean) / np.where(std > 0, std, 1.0), nan=0.0).astype(np.float32)


#: metadata fields that feed the graph's video nodes (``node_features(kind="metadata")``): the first ten of
#: :data:`META_COLUMNS` (geometry, timing, caption words, hashtags), not the caption length or the uploader's counts
NODE_META_COLUMNS = META_COLUMNS[:10]


def node_features(store: Store, video_ids: list[str], kind: str) -> tuple[np.ndarray | None, list[str]]:
    """Video node features of the song–video graph from cached stages, standardised; returns ``(features or None,
    input fingerprints)``.

    ``none``: no features (the encoder sees a constant and learns from structure, plus learned song embeddings);
    ``metadata``: the :data:`NODE_META_COLUMNS` of the ``metadata`` table; ``audio``: the audio stage's whole-clip
    matrix averaged over time. Videos without the stage get zeros (after :func:`standardize`: the mean), and the
    choice is part of the fingerprint.

    Shapes:
        returns (|V_video|, D) float32 or None

    Raises:
        ValueError: an unknown ``kind``, or ``metadata`` before the metadata stage ran.
    """
    if kind == "none":
        return None, []
    if kind == "metadata":
        table = store.table("metadata")
        if table.empty:
            raise ValueError("node features 'metadata' need the metadata stage: run "
                             f"`vidpipe extract {store.dataset}` first")
        t = table.set_index("video_id").reindex(video_ids)
        x = t[list(NODE_META_COLUMNS)].astype(float).to_numpy()
        fps = [str(f) for f in t["fingerprint"].fillna("missing")]
    elif kind == "audio":
        entries, clip = store.entries("audio"), _AUDIO.name("clip")
        rows, fps = [], []
        for v in video_ids:
            if v in entries and entries[v].record.get("has_audio"):
                rows.append(store.read("audio", v)[clip].mean(axis=1))
                fps.append(entries[v].fingerprint)
            else:
                rows.append(None)
                fps.append("missing")
        width = next((len(r) for r in rows if r is not None), 1)
        x = np.stack([r if r is not None else np.full(width, np.nan) for r in rows])
    else:
        raise ValueError(f"features={kind!r}: expected one of 'none', 'metadata', 'audio'")
    return standardize(x), [fingerprint("node-features", 1, kind, fps)]


def _frames_chw(frames: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(frames, -1, -3))  # (..., H, W, 3) -> (..., 3, H, W)


def _fill_embeddings(g: _Gather, inputs: Sequence[str], vision_profile: str) -> None:
    """The ``*_emb`` keys of a pack from the embedding stages' outputs (one checkpoint's width for all videos; a
    video whose output has another shape is treated as missing)."""
    def per_video(stage: str, array: str, mask: str, shape: tuple[int, ...], per_segment: bool = False):
        """Getter of (vectors, mask) for ``g.fill``; ``per_segment`` regroups (S·T, D) frames into (S, T, D) and their
        validity into "the segment has a real frame" (S,)."""
        def get(vid):
            o = g.out(stage, vid)
            if o is None or array not in o:
                return None
            x, m = o[array], o[mask]
            if per_segment:
                if x.size != int(np.prod(shape)):
                    return None
                x, m = x.reshape(shape), m.reshape(shape[0], -1).any(axis=1)
            return (x, m) if x.shape == shape else None
        return get

    seg_vectors, seg_valid = (_EMB_VISION.name(a, "per_second") for a in ("{profile}", "{profile}_valid"))
    if "vision_seg_emb" in inputs:
        got = g.first("embed_vision", lambda o: o[seg_vectors].shape if seg_vectors in o else None)
        if got is None:
            raise ValueError("input 'vision_seg_emb' needs embed_vision's per_second frames: add the per_second "
                             "profile to the extraction profiles")
        n, dim = got
        s_count = g.store.entry("embed_vision", next(v for v in g.ids if v in g.entries["embed_vision"])).params.get(
            "n_segments", 15)
        if n % s_count:
            raise ValueError(f"embed_vision's per_second output has {n} frames, not a multiple of its "
                             f"n_segments={s_count}: re-extract embed_vision with --refresh")
        shape = (s_count, n // s_count, dim)
        g.fill("vision_seg_emb", per_video("embed_vision", seg_vectors, seg_valid, shape, per_segment=True),
             shape, np.float32, (s_count,))
    if "vision_emb" in inputs:
        vectors, valid = (_EMB_VISION.name(a, vision_profile) for a in ("{profile}", "{profile}_valid"))
        shape = g.first("embed_vision", lambda o: o[vectors].shape if vectors in o else None)
        if shape is None:
            raise ValueError(f"vision_profile={vision_profile!r} was not embedded: add it to the extraction profiles")
        g.fill("vision_emb", per_video("embed_vision", vectors, valid, shape), shape, np.float32, shape[:1])
    segments, segments_mask = _EMB_AUDIO.name("segments"), _EMB_AUDIO.name("segments_mask")
    for key in ("audio_seg_emb", "audio_emb"):
        if key in inputs:
            shape = g.first("embed_audio", lambda o: o[segments].shape)
            g.fill(key, per_video("embed_audio", segments, segments_mask, shape), shape, np.float32, shape[:1])
    if "text_emb" in inputs:
        tokens, tokens_mask = _EMB_TEXT.name("tokens"), _EMB_TEXT.name("tokens_mask")
        shape = g.first("embed_text", lambda o: o[tokens].shape)
        g.fill("text_emb", per_video("embed_text", tokens, tokens_mask, shape), shape, np.float32, shape[:1])
    if "text_sentence_emb" in inputs:
        sentence, sentence_valid = _EMB_TEXT.name("sentence"), _EMB_TEXT.name("sentence_valid")
        shape = g.first("embed_text", lambda o: o[sentence].shape)
        g.fill("text_sentence_emb", per_video("embed_text", sentence, sentence_valid, shape), shape, np.float32, ())


class _Gather:
    """What the steps of :func:`build_pack` share: the videos of the pack, the stage outputs they read (each stage's
    outputs fetched at once, on first use) and the arrays collected so far."""

    def __init__(self, store: Store, ids: list[str], stages: set[str]) -> None:
        self.store, self.ids = store, ids
        self.entries = {stage: store.entries(stage) for stage in stages}
        self.arrays: dict[str, Any] = {}
        self._cache: dict[tuple[str, str], dict] = {}

    def out(self, stage: str, vid: str) -> dict | None:
        """``vid``'s output of ``stage``, or None when it has none."""
        if vid not in self.entries[stage]:
            return None
        if (stage, vid) not in self._cache:  # every output of the stage at once (whole shard rows, Store.read_many)
            got = self.store.read_many(stage, [w for w in self.ids if w in self.entries[stage]])
            self._cache.update(((stage, v), o) for v, o in got.items())
        return self._cache[(stage, vid)]

    def fill(self, key: str, per_video, shape: tuple[int, ...], dtype, mask_shape: tuple[int, ...]) -> None:
        """``arrays[key]`` (N, *shape) and its mask (N, *mask_shape) from ``per_video(vid) → (value, mask) | None``;
        a video without a value gets zeros and a False mask."""
        data = np.zeros((len(self.ids), *shape), dtype=dtype)
        mask = np.zeros((len(self.ids), *mask_shape), dtype=bool)
        for i, vid in enumerate(self.ids):
            got = per_video(vid)
            if got is not None:
                data[i], mask[i] = got
        self.arrays[key], self.arrays[f"{key}_mask"] = data, mask

    def first(self, stage: str, fn):
        """``fn`` of the first video's output of ``stage`` (the pack's geometry comes from it)."""
        for vid in self.ids:
            o = self.out(stage, vid)
            if o is not None:
                return fn(o)
        raise ValueError(f"no video has a {stage!r} output usable for this pack")


def _fill_frames(g: _Gather, inputs: Sequence[str], vision_profile: str) -> None:
    """``vision_seg`` (N, S, T, 3, H, W) and ``vision`` (N, T, 3, H, W), uint8, from the frames stage."""
    if "vision_seg" in inputs:
        frames, frames_valid, frames_times = (_FRAMES.name(a, "per_second")
                                              for a in ("{profile}", "{profile}_valid", "{profile}_times"))
        fr_shape = g.first("frames", lambda o: o[frames].shape)  # (S*T, H, W, 3)
        seg = g.first("frames", lambda o: len(o[frames_times]))
        s_count = g.store.entry("frames", next(v for v in g.ids if v in g.entries["frames"])).params.get(
            "n_segments", 15)
        t_count = seg // s_count

        def per_second_frames(vid):
            o = g.out("frames", vid)
            if o is None:
                return None
            f = _frames_chw(o[frames]).reshape(s_count, t_count, 3, *fr_shape[1:3])
            return f, o[frames_valid].reshape(s_count, t_count).any(axis=1)
        g.fill("vision_seg", per_second_frames, (s_count, t_count, 3, *fr_shape[1:3]), np.uint8, (s_count,))
    if "vision" in inputs:
        profile, profile_valid = (_FRAMES.name(a, vision_profile) for a in ("{profile}", "{profile}_valid"))
        shape = g.first("frames", lambda o: o[profile].shape if profile in o else None)
        if shape is None:
            raise ValueError(f"vision_profile={vision_profile!r} was not extracted: add it to the extraction profiles")

        def profile_frames(vid):
            o = g.out("frames", vid)
            return None if o is None or profile not in o else (_frames_chw(o[profile]), o[profile_valid])
        g.fill("vision", profile_frames, (shape[0], 3, shape[1], shape[2]), np.uint8, (shape[0],))


def _fill_audio(g: _Gather, inputs: Sequence[str]) -> None:
    """``audio_seg`` (N, S, 3, C, F) and ``audio`` (N, C, F) with its per-frame mask (N, F), from the audio stage."""
    if "audio_seg" in inputs:
        segments, segments_mask = _AUDIO.name("segments"), _AUDIO.name("segments_mask")
        shape = g.first("audio", lambda o: o[segments].shape)

        def audio_segments(vid):
            o = g.out("audio", vid)
            if o is None or o[segments].shape != shape:
                return None
            return o[segments], o[segments_mask]
        g.fill("audio_seg", audio_segments, shape, np.float32, (shape[0],))
    if "audio" in inputs:
        clip, clip_valid, clip_frame_valid = (_AUDIO.name(a) for a in ("clip", "clip_valid", "clip_frame_valid"))
        shape = g.first("audio", lambda o: o[clip].shape)

        def audio_clip(vid):
            o = g.out("audio", vid)
            if o is None or o[clip].shape != shape:
                return None
            # per-frame validity (False on the padding of a short clip); outputs without it: the clip's one flag
            frames = o.get(clip_frame_valid)
            return o[clip], np.full(shape[1], bool(o[clip_valid])) if frames is None else frames
        g.fill("audio", audio_clip, shape, np.float32, (shape[1],))


def _fill_text(g: _Gather, inputs: Sequence[str]) -> None:
    """``text`` (N, V): the bag of words; its mask says the transcript has a token."""
    if "text" in inputs:
        bow = _TEXT.name("bow")
        width = g.first("text", lambda o: o[bow].shape[0])

        def bag_of_words(vid):
            o = g.out("text", vid)
            return None if o is None else (o[bow], o.get("n_tokens", 0) > 0)
        g.fill("text", bag_of_words, (width,), np.float32, ())


def _fill_dataset_level(g: _Gather, inputs: Sequence[str]) -> None:
    """``graph`` (N, D) from the GAT artifact and ``early_trend`` (N, T_e) from the scrape history."""
    if GRAPH_ARTIFACT in inputs:
        if g.store.artifact_fingerprint(GRAPH_ARTIFACT) is None:
            raise ValueError(f"input 'graph' needs `vidpipe pretrain-graph {g.store.dataset}` first")
        emb, meta = g.store.read_artifact(GRAPH_ARTIFACT)
        index = {v: i for i, v in enumerate(meta["video_ids"])}
        width = emb["embedding"].shape[1]
        g.fill("graph", lambda vid: (emb["embedding"][index[vid]], True) if vid in index else None,
               (width,), np.float32, ())
    if EARLY_TREND in inputs:
        history = g.store.scrape_history()
        if history.empty:
            raise ValueError(f"input {EARLY_TREND!r} needs a scrape history: ingest a TikTok scrape of "
                             f"{g.store.dataset!r}, then `vidpipe refresh {g.store.dataset}` after each re-scrape")
        g.arrays[EARLY_TREND], g.arrays[f"{EARLY_TREND}_mask"] = early_trend(history, g.ids)


def _fill_standardised(g: _Gather, inputs: Sequence[str], train: np.ndarray) -> None:
    """``meta`` (N, D) and ``egemaps`` (N, 88), z-scored on the training videos (:func:`standardize`)."""
    if "meta" in inputs:
        table = g.store.table("metadata").set_index("video_id").reindex(g.ids)
        x = table.reindex(columns=list(META_COLUMNS)).astype(float).to_numpy()  # older tables lack newer columns
        # a column no video has (e.g. follower counts outside TikTok) is all nan: zeros after standardize
        g.arrays["meta"] = standardize(x, train if train.any() else None)
        g.arrays["meta_mask"] = ~np.isnan(x).all(axis=1)
    if "egemaps" in inputs:
        # the 88 eGeMAPS functionals (audio stage with egemaps=True), z-scored per functional on the training
        # videos that have them: their raw scales differ by orders of magnitude (semitones, dB, jitter ratios)
        egemaps, egemaps_valid = _AUDIO.name("egemaps"), _AUDIO.name("egemaps_valid")
        if not any(egemaps in (g.out("audio", v) or {}) for v in g.ids):
            raise ValueError(f"input 'egemaps' needs the eGeMAPS functionals: run `vidpipe extract {g.store.dataset} "
                             "--stage audio --egemaps` (needs the opensmile package)")

        def functionals(vid):
            o = g.out("audio", vid)
            return None if o is None or egemaps not in o else (o[egemaps], bool(o[egemaps_valid]))
        g.fill("egemaps", functionals, (88,), np.float32, ())
        ok = g.arrays["egemaps_mask"]
        rows = ok & train if (ok & train).any() else ok
        g.arrays["egemaps"] = np.where(ok[:, None], standardize(g.arrays["egemaps"], rows), 0.0).astype(np.float32)


def build_pack(store: Store, inputs: Sequence[str], task: str, *, vision_profile: str = "uniform",
               refresh: bool = False) -> tuple[str, bool]:
    """Materialise (or reuse) the pack for ``inputs`` × ``task``; returns ``(fingerprint, reused)``.

    Raises:
        ValueError: unknown input key or task, no labelled videos, or a required stage was never extracted.
    """
    unknown = sorted(set(inputs) - set(MODALITIES))
    if unknown:
        raise ValueError(f"inputs: unknown modality key(s) {unknown}; expected some of {sorted(MODALITIES)}")
    fp = pack_fingerprint(store, inputs, task, vision_profile=vision_profile)
    if store.has_pack(fp) and not refresh:
        return fp, True
    manifest = _labelled_with_splits(store.manifest(), task)
    if manifest.empty:
        raise ValueError(f"task={task!r}: no video in {store.dataset!r} has its labels {list(TASK_TARGETS[task])}")
    ids = list(manifest["video_id"])
    needed_stages = {_STAGE_OF[k] for k in inputs if k not in _NOT_STAGES}
    for stage in needed_stages:
        if not store.entries(stage):
            model = f" --{stage.split('_', 1)[1]}-model PATH" if stage.startswith("embed_") else ""
            raise ValueError(f"inputs {sorted(inputs)} need the {stage!r} stage, which has no outputs in "
                             f"{store.dataset!r}: run `vidpipe extract {store.dataset} --stage {stage}{model}` first")
    g = _Gather(store, ids, needed_stages)
    g.arrays.update(video_id=np.array(ids, dtype=object), split=np.array(manifest["split"].tolist(), dtype=object),
                    target=manifest[list(TASK_TARGETS[task])].to_numpy(np.float32))
    _fill_frames(g, inputs, vision_profile)
    _fill_audio(g, inputs)
    _fill_text(g, inputs)
    _fill_embeddings(g, inputs, vision_profile)
    _fill_dataset_level(g, inputs)
    _fill_standardised(g, inputs, (manifest["split"] == "train").to_numpy())
    store.write_pack(fp, g.arrays, {"task": task, "inputs": sorted(set(inputs)), "n": len(ids),
                                    "vision_profile": vision_profile, "targets": list(TASK_TARGETS[task])})
    return fp, False
