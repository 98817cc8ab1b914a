"""Tensor packs: the cached, model-ready arrays a training flow reads (one HDF5 file per selection).

:func:`build_pack` gathers, for every video of a dataset with a label for the task, the modality arrays a model reads
(keys and shapes in docs/ARCHITECTURE.md) from the store, and writes them through :meth:`Store.write_pack` under a
fingerprint of (the selection, the task, every per-video stage fingerprint used, the labels). Repeated runs reuse it.

Vision stays ``uint8`` in the pack (4× smaller; converted to float in the loader). A video without a stage output gets
zeros **and** a False mask — never zeros that look like data.

Shapes (N videos in the pack):
    vision_seg (N, S, T, 3, 64, 64) uint8 · vision_seg_mask (N, S)
    audio_seg (N, S, 3, n_mfcc, F) float32 · audio_seg_mask (N, S)
    vision (N, T, 3, H, W) uint8 · vision_mask (N, T)
    audio (N, n_mfcc, F) float32 · audio_mask (N,)
    text (N, V) float32 · text_mask (N,)
    graph (N, D) float32 · graph_mask (N,)
    meta (N, D) float32 · meta_mask (N,)
    cached pretrained-encoder vectors (features.embed; stages embed_vision / embed_audio / embed_text):
    vision_seg_emb (N, S, T, D_v) float32 · vision_seg_emb_mask (N, S)
    vision_emb (N, T, D_v) float32 · vision_emb_mask (N, T)   (the ``vision_profile`` frames)
    audio_seg_emb, audio_emb (N, S, D_a) float32 · masks (N, S)
    text_emb (N, L, D_t) float32 · text_emb_mask (N, L)   (token vectors)
    target (N, K) float32 · video_id (N,) str · split (N,) str
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd

from features.fingerprint import fingerprint
from features.store import Store

__all__ = ["PACK_VERSION", "TASK_TARGETS", "META_COLUMNS", "pack_fingerprint", "build_pack", "assign_splits",
           "mtaf_popularity"]

PACK_VERSION = 1
#: label columns of each task, in the order models predict them
TASK_TARGETS = {
    "emotion": ("valence", "arousal"),
    "personality": ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness"),
    "popularity": ("popularity",),
    "popularity_mtaf": ("popularity_mtaf",),  # MTAF eq. 1, computed from the manifest's counts (mtaf_popularity)
}
#: metadata-table columns that form the ``meta`` modality (MTAF's content-agnostic features; counts are log(1 + n);
#: a column a dataset lacks is nan and becomes the training mean, i.e. 0 after standardising)
META_COLUMNS = ("duration", "width", "height", "aspect", "fps", "has_audio", "upload_hour", "upload_weekday",
                "desc_words", "hashtags", "caption_chars", "log_author_followers", "log_author_following",
                "log_author_hearts", "log_author_videos", "verified")
_STAGE_OF = {"vision_seg": "frames", "vision": "frames", "audio_seg": "audio", "audio": "audio", "text": "text",
             "meta": "metadata", "vision_seg_emb": "embed_vision", "vision_emb": "embed_vision",
             "audio_seg_emb": "embed_audio", "audio_emb": "embed_audio", "text_emb": "embed_text",
             "egemaps": "audio"}


def assign_splits(manifest: pd.DataFrame, *, seed: int = 0) -> pd.Series:
    """The dataset's own split when it has train/val/test, otherwise a seeded 70/10/20 split."""
    split = manifest["split"] if "split" in manifest.columns else pd.Series(index=manifest.index, dtype=object)
    if split.notna().all() and {"train", "val", "test"} <= set(split):
        return split
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(manifest))
    n = len(manifest)
    labels = np.empty(n, dtype=object)
    labels[order[: int(0.7 * n)]] = "train"
    labels[order[int(0.7 * n): int(0.8 * n)]] = "val"
    labels[order[int(0.8 * n):]] = "test"
    return pd.Series(labels, index=manifest.index)


def mtaf_popularity(manifest: pd.DataFrame) -> pd.Series:
    """MTAF's popularity score (paper 003 eq. 1), y = 0.2·favourites + 0.3·comments + 0.5·shares, as a label in [0, 1].

    Favourites are the manifest's ``collect_count`` (TikTok's "favorites") where the dataset has it, else its
    ``digg_count`` (likes). The paper regresses y on its own scale; vidpipe's models end in a sigmoid, so the label is
    ``log(1 + y)`` min-max normalised over the videos that have all three counts (the others get nan: no label).

    Raises:
        ValueError: the manifest lacks comment / share counts or both favourite columns.
    """
    fav = next((c for c in ("collect_count", "digg_count")
                if c in manifest.columns and manifest[c].notna().any()), None)
    missing = [c for c in ("comment_count", "share_count") if c not in manifest.columns]
    if fav is None or missing:
        raise ValueError(f"task='popularity_mtaf' needs favourite (collect_count or digg_count), comment_count and "
                         f"share_count columns; this dataset lacks {missing or ['collect_count/digg_count']} "
                         "(the TikTok adapter keeps them)")
    counts = manifest[[fav, "comment_count", "share_count"]].astype("float64")
    y = np.log1p(0.2 * counts[fav] + 0.3 * counts["comment_count"] + 0.5 * counts["share_count"])
    span = y.max() - y.min()
    return (y - y.min()) / span if span > 0 else y * 0.0


def _labelled(manifest: pd.DataFrame, task: str) -> pd.DataFrame:
    if task not in TASK_TARGETS:
        raise ValueError(f"task={task!r}: expected one of {sorted(TASK_TARGETS)}")
    if task == "popularity_mtaf" and "popularity_mtaf" not in manifest.columns:
        manifest = manifest.assign(popularity_mtaf=mtaf_popularity(manifest))
    cols = list(TASK_TARGETS[task])
    missing = [c for c in cols if c not in manifest.columns]
    if missing:
        raise ValueError(f"task={task!r} needs label column(s) {missing}, which this dataset does not have")
    return manifest[manifest[cols].notna().all(axis=1)].sort_values("video_id").reset_index(drop=True)


def pack_fingerprint(store: Store, inputs: Sequence[str], task: str, *, vision_profile: str = "uniform",
                     split_seed: int = 0) -> str:
    """Fingerprint of the pack a selection would produce, from the store's current state (no array reads)."""
    manifest = _labelled(store.manifest(), task)
    ids = list(manifest["video_id"])
    parts = [fingerprint("labels", 1, manifest[["video_id", *TASK_TARGETS[task], "split"]].astype(str).values.tolist())]
    for key in sorted(set(inputs)):
        if key == "graph":
            parts.append(store.artifact_fingerprint("graph") or "no-graph")
            continue
        stage = _STAGE_OF[key]
        fps = store.fingerprints(stage)
        parts.append(fingerprint("stage-state", 1, stage, [fps.get(v, "missing") for v in ids] or ["empty"]))
        if key == "text":
            parts.append(store.artifact_fingerprint("vocabulary") or "no-vocabulary")
    return fingerprint("pack", PACK_VERSION, {"inputs": sorted(set(inputs)), "task": task,
                                              "vision_profile": vision_profile, "split_seed": split_seed}, parts)


def _frames_chw(frames: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(frames, -1, -3))  # (..., H, W, 3) -> (..., 3, H, W)


def _fill_embeddings(inputs, ids, entries, out, first, fill, store: Store, vision_profile: str) -> None:
    """The ``*_emb`` keys of a pack from the embedding stages' outputs (one checkpoint's width for all videos; a
    video whose output has another shape is treated as missing)."""
    def per_video(stage: str, array: str, mask: str, shape: tuple[int, ...], per_segment: bool = False):
        """Getter of (vectors, mask) for ``fill``; ``per_segment`` regroups (S·T, D) frames into (S, T, D) and their
        validity into "the segment has a real frame" (S,)."""
        def get(vid):
            o = out(stage, vid)
            if o is None or array not in o:
                return None
            x, m = o[array], o[mask]
            if per_segment:
                if x.size != int(np.prod(shape)):
                    return None
                x, m = x.reshape(shape), m.reshape(shape[0], -1).any(axis=1)
            return (x, m) if x.shape == shape else None
        return get

    if "vision_seg_emb" in inputs:
        got = first("embed_vision", lambda o: o["per_second"].shape if "per_second" in o else None)
        if got is None:
            raise ValueError("input 'vision_seg_emb' needs embed_vision's per_second frames: add the per_second "
                             "profile to the extraction profiles")
        n, dim = got
        s_count = store.entry("embed_vision", next(v for v in ids if v in entries["embed_vision"])).params.get(
            "n_segments", 15)
        if n % s_count:
            raise ValueError(f"embed_vision's per_second output has {n} frames, not a multiple of its "
                             f"n_segments={s_count}: re-extract embed_vision with --refresh")
        shape = (s_count, n // s_count, dim)
        fill("vision_seg_emb", per_video("embed_vision", "per_second", "per_second_valid", shape, per_segment=True),
             shape, np.float32, (s_count,))
    if "vision_emb" in inputs:
        shape = first("embed_vision", lambda o: o[vision_profile].shape if vision_profile in o else None)
        if shape is None:
            raise ValueError(f"vision_profile={vision_profile!r} was not embedded: add it to the extraction profiles")
        fill("vision_emb", per_video("embed_vision", vision_profile, f"{vision_profile}_valid", shape),
             shape, np.float32, shape[:1])
    for key in ("audio_seg_emb", "audio_emb"):
        if key in inputs:
            shape = first("embed_audio", lambda o: o["segments"].shape)
            fill(key, per_video("embed_audio", "segments", "segments_mask", shape), shape, np.float32, shape[:1])
    if "text_emb" in inputs:
        shape = first("embed_text", lambda o: o["tokens"].shape)
        fill("text_emb", per_video("embed_text", "tokens", "tokens_mask", shape), shape, np.float32, shape[:1])


def build_pack(store: Store, inputs: Sequence[str], task: str, *, vision_profile: str = "uniform",
               split_seed: int = 0, refresh: bool = False) -> tuple[str, bool]:
    """Materialise (or reuse) the pack for ``inputs`` × ``task``; returns ``(fingerprint, reused)``.

    Raises:
        ValueError: unknown input key or task, no labelled videos, or a required stage was never extracted.
    """
    unknown = sorted(set(inputs) - set(_STAGE_OF) - {"graph"})
    if unknown:
        raise ValueError(f"inputs: unknown modality key(s) {unknown}; expected some of {sorted([*_STAGE_OF, 'graph'])}")
    fp = pack_fingerprint(store, inputs, task, vision_profile=vision_profile, split_seed=split_seed)
    if store.pack_path(fp).exists() and not refresh:
        return fp, True
    manifest = _labelled(store.manifest(), task)
    if manifest.empty:
        raise ValueError(f"task={task!r}: no video in {store.dataset!r} has its labels {list(TASK_TARGETS[task])}")
    manifest = manifest.assign(split=assign_splits(manifest, seed=split_seed).to_numpy())
    ids = list(manifest["video_id"])
    n = len(ids)
    arrays: dict[str, Any] = {
        "video_id": np.array(ids, dtype=object),
        "split": np.array(manifest["split"].tolist(), dtype=object),
        "target": manifest[list(TASK_TARGETS[task])].to_numpy(np.float32),
    }
    needed_stages = {_STAGE_OF[k] for k in inputs if k != "graph"}
    for stage in needed_stages:
        if not store.entries(stage):
            model = f" --{stage.split('_', 1)[1]}-model PATH" if stage.startswith("embed_") else ""
            raise ValueError(f"inputs {sorted(inputs)} need the {stage!r} stage, which has no outputs in "
                             f"{store.dataset!r}: run `vidpipe extract {store.dataset} --stage {stage}{model}` first")
    entries = {stage: store.entries(stage) for stage in needed_stages}
    cache: dict[tuple[str, str], dict] = {}

    def out(stage: str, vid: str) -> dict | None:
        if vid not in entries[stage]:
            return None
        if (stage, vid) not in cache:
            cache[(stage, vid)] = store.read(stage, vid)
        return cache[(stage, vid)]

    def fill(key: str, per_video, shape: tuple[int, ...], dtype, mask_shape: tuple[int, ...]) -> None:
        data = np.zeros((n, *shape), dtype=dtype)
        mask = np.zeros((n, *mask_shape), dtype=bool)
        for i, vid in enumerate(ids):
            got = per_video(vid)
            if got is not None:
                data[i], mask[i] = got
        arrays[key], arrays[f"{key}_mask"] = data, mask

    def first(stage: str, fn):
        for vid in ids:
            o = out(stage, vid)
            if o is not None:
                return fn(o)
        raise ValueError(f"no video has a {stage!r} output usable for this pack")

    if "vision_seg" in inputs:
        fr_shape = first("frames", lambda o: o["per_second"].shape)  # (S*T, H, W, 3)
        seg = first("frames", lambda o: len(o["per_second_times"]))
        s_count = store.entry("frames", next(v for v in ids if v in entries["frames"])).params.get("n_segments", 15)
        t_count = seg // s_count

        def vs(vid):
            o = out("frames", vid)
            if o is None:
                return None
            f = _frames_chw(o["per_second"]).reshape(s_count, t_count, 3, *fr_shape[1:3])
            return f, o["per_second_valid"].reshape(s_count, t_count).any(axis=1)
        fill("vision_seg", vs, (s_count, t_count, 3, *fr_shape[1:3]), np.uint8, (s_count,))
    if "vision" in inputs:
        key = vision_profile
        shape = first("frames", lambda o: o[key].shape if key in o else None)
        if shape is None:
            raise ValueError(f"vision_profile={vision_profile!r} was not extracted: add it to the extraction profiles")

        def v(vid):
            o = out("frames", vid)
            return None if o is None or key not in o else (_frames_chw(o[key]), o[f"{key}_valid"])
        fill("vision", v, (shape[0], 3, shape[1], shape[2]), np.uint8, (shape[0],))
    if "audio_seg" in inputs:
        shape = first("audio", lambda o: o["segments"].shape)

        def a(vid):
            o = out("audio", vid)
            if o is None or o["segments"].shape != shape:
                return None
            return o["segments"], o["segments_mask"]
        fill("audio_seg", a, shape, np.float32, (shape[0],))
    if "audio" in inputs:
        shape = first("audio", lambda o: o["clip"].shape)

        def ac(vid):
            o = out("audio", vid)
            return None if o is None or o["clip"].shape != shape else (o["clip"], bool(o["clip_valid"]))
        fill("audio", ac, shape, np.float32, ())
    if "text" in inputs:
        width = first("text", lambda o: o["bow"].shape[0])

        def t(vid):
            o = out("text", vid)
            return None if o is None else (o["bow"], o.get("n_tokens", 0) > 0)
        fill("text", t, (width,), np.float32, ())
    _fill_embeddings(inputs, ids, entries, out, first, fill, store, vision_profile)
    if "graph" in inputs:
        if store.artifact_fingerprint("graph") is None:
            raise ValueError(f"input 'graph' needs `vidpipe pretrain-graph {store.dataset}` first")
        emb, meta = store.read_artifact("graph")
        index = {v: i for i, v in enumerate(meta["video_ids"])}
        width = emb["embedding"].shape[1]
        fill("graph", lambda vid: (emb["embedding"][index[vid]], True) if vid in index else None,
             (width,), np.float32, ())
    if "meta" in inputs:
        table = store.table("metadata").set_index("video_id").reindex(ids)
        x = table.reindex(columns=list(META_COLUMNS)).astype(float).to_numpy()  # older tables lack newer columns
        train = (manifest["split"] == "train").to_numpy()
        with warnings.catch_warnings():  # a column no video has (e.g. follower counts outside TikTok) is all nan
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(x[train], axis=0) if train.any() else np.nanmean(x, axis=0)
            std = np.nanstd(x[train], axis=0) if train.any() else np.nanstd(x, axis=0)
        z = (x - mean) / np.where(std > 0, std, 1.0)
        arrays["meta"] = np.nan_to_num(z, nan=0.0).astype(np.float32)
        arrays["meta_mask"] = ~np.isnan(x).all(axis=1)
    if "egemaps" in inputs:
        # the 88 eGeMAPS functionals (audio stage with egemaps=True), z-scored per functional on the training
        # videos that have them: their raw scales differ by orders of magnitude (semitones, dB, jitter ratios)
        if not any("egemaps" in (out("audio", v) or {}) for v in ids):
            raise ValueError(f"input 'egemaps' needs the eGeMAPS functionals: run `vidpipe extract {store.dataset} "
                             "--stage audio --egemaps` (needs the opensmile package)")

        def eg(vid):
            o = out("audio", vid)
            return None if o is None or "egemaps" not in o else (o["egemaps"], bool(o["egemaps_valid"]))
        fill("egemaps", eg, (88,), np.float32, ())
        x, ok = arrays["egemaps"], arrays["egemaps_mask"]
        train = ok & (manifest["split"] == "train").to_numpy()
        ref = x[train] if train.any() else x[ok]
        if len(ref):
            mean, std = ref.mean(axis=0), ref.std(axis=0)
            arrays["egemaps"] = np.where(ok[:, None], (x - mean) / np.where(std > 0, std, 1.0), 0.0).astype(np.float32)
    store.write_pack(fp, arrays, {"task": task, "inputs": sorted(set(inputs)), "n": n,
                                  "vision_profile": vision_profile, "targets": list(TASK_TARGETS[task])})
    return fp, False
