"""Dataset sources: each turns files on disk into one manifest (videos + song–video edges).

Every adapter returns the same canonical columns (missing labels are NaN, not guessed):

=================  ==========================================================================
``video_id``       the dataset's id (file stem); made path-safe by the store, never used as a path here
``source_path``    absolute path of the media file (``None`` when the labels list a video that is not on disk)
``split``          ``train`` / ``val`` / ``test``
labels             ``valence``, ``arousal`` (0/1) and ``*_value``; the five traits + ``interview``;
                   ``popularity`` (normalised) and ``popularity_raw``
``song_id``        the video's song (TikTok music id) or ``None``
``transcript``     the dataset's transcript, or ``None`` (then ASR runs in the ``transcripts`` stage)
=================  ==========================================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from features.sources._common import SourceError, find_media, hashed_split
from features.sources.first_impressions import TRAITS, read_first_impressions
from features.sources.liris import read_liris_accede
from features.sources.tiktok import read_tiktok

__all__ = ["Manifest", "SourceError", "SOURCE_KINDS", "LABEL_COLUMNS", "load_source", "read_folder", "read_synthetic",
           "read_synthetic_rescrapes", "dataset_splits", "training_ids"]

#: every label column any adapter may fill
LABEL_COLUMNS = ("valence", "arousal", "valence_value", "arousal_value", *TRAITS, "interview",
                 "popularity", "popularity_raw")


@dataclass(frozen=True)
class Manifest:
    """One ingest's result: a row per video plus the song–video edge list."""

    videos: pd.DataFrame  # one row per video, canonical columns (see module docstring)
    edges: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["video_id", "song_id"]))  # video→song
    #: earlier scrapes of the same posts, oldest first, each as the TikTok adapter reads a scrape; ingest records their
    #: counts in the scrape history before the manifest's own (the synthetic source's early re-scrapes)
    rescrapes: tuple[pd.DataFrame, ...] = ()


def dataset_splits(manifest: pd.DataFrame) -> pd.Series:
    """The split of every video of ``manifest`` (index as ``manifest``'s), the one the text vocabulary is built on
    (:func:`training_ids`) and every pack trains and tests with (:func:`features.packs.assign_splits`).

    The dataset's own ``split`` when every video has one of train / val / test and all three occur; otherwise (a
    dataset with two official sets, e.g. First Impressions without its test annotations, or a small hashed split
    that drew no validation video) a 70/10/20 split of the videos in ``video_id`` order permuted with seed 0, so it
    depends on the ids and splits only, never on row order, on a task's labelled subset or on a training seed.

    Raises:
        ValueError: ``manifest`` has rows but no ``split`` column (every adapter writes one).
    """
    n = len(manifest)
    if not n:
        return pd.Series(index=manifest.index, dtype=object)
    if "split" not in manifest.columns:
        raise ValueError(f"manifest has columns {list(manifest.columns)}; expected a 'split' column (train / val / "
                         "test per video, as every source adapter writes): re-ingest the dataset")
    split = manifest["split"]
    if split.isin(["train", "val", "test"]).all() and split.nunique() == 3:
        return split
    by_id = np.argsort(manifest["video_id"].astype(str).to_numpy(), kind="stable")
    order = by_id[np.random.default_rng(0).permutation(n)]
    labels = np.empty(n, dtype=object)
    labels[order[: int(0.7 * n)]] = "train"
    labels[order[int(0.7 * n): int(0.8 * n)]] = "val"
    labels[order[int(0.8 * n):]] = "test"
    return pd.Series(labels, index=manifest.index)


def training_ids(manifest: pd.DataFrame) -> set[str]:
    """The ids of ``manifest``'s training videos (:func:`dataset_splits`), e.g. the videos the text vocabulary is
    built on. A manifest without rows (a store before its first ingest, which has no columns either) has none.

    Raises:
        ValueError: ``manifest`` has rows but no ``split`` column (every adapter writes one).
    """
    if not len(manifest):
        return set()
    return set(manifest.loc[dataset_splits(manifest) == "train", "video_id"])


def _canonical(videos: pd.DataFrame, kind: str) -> pd.DataFrame:
    out = videos.copy()
    for col in ("source_path", "transcript", "song_id"):
        if col not in out.columns:
            out[col] = None
    for col in LABEL_COLUMNS:
        if col not in out.columns:
            out[col] = float("nan")
    out["source_kind"] = kind
    dupes = out["video_id"][out["video_id"].duplicated()].tolist()
    if dupes:
        raise SourceError(f"duplicate video_id(s) {dupes[:5]} in the {kind} source; ids must be unique")
    head = ["video_id", "source_path", "split", *LABEL_COLUMNS, "song_id", "transcript", "source_kind"]
    rest = [c for c in out.columns if c not in head]
    return out[head + rest].sort_values("video_id").reset_index(drop=True)


def _edges_from(videos: pd.DataFrame) -> pd.DataFrame:
    e = videos.loc[videos["song_id"].notna(), ["video_id", "song_id"]]
    return e.astype({"song_id": str}).reset_index(drop=True)


def read_folder(path: str | Path) -> pd.DataFrame:
    """Every media file under ``path`` (any container ffmpeg reads), no labels, split by hashed id (70/10/20)."""
    root = Path(path)
    if not root.is_dir():
        raise SourceError(f"path={str(root)!r}: expected a folder of video files")
    media = find_media(root)
    if not media:
        raise SourceError(f"path={str(root)!r}: no media files found (extensions: .mp4, .mkv, .avi, .webm, ...)")
    stems: dict[str, Path] = {}
    for name, p in media.items():
        vid = Path(name).stem
        if vid in stems:  # same stem, other container: keep the id unique by keeping the extension
            vid = name
        stems[vid] = p
    return pd.DataFrame({"video_id": list(stems), "source_path": [str(p.resolve()) for p in stems.values()],
                         "split": [hashed_split(v) for v in stems]})


def read_synthetic(path: str | Path) -> pd.DataFrame:
    """Read a generated synthetic dataset back **through the real adapters** and join them on ``video_id``.

    Splits come from the First Impressions files (the generator writes the same split in all three formats; a
    mismatch is an error, since it would mean the formats disagree).
    """
    root = Path(path)
    fi = read_first_impressions(root)
    li = read_liris_accede(root)
    tk, _ = read_tiktok(root / "tiktok_posts.jsonl")
    merged = fi.merge(li.drop(columns=["source_path"]), on="video_id", how="outer", suffixes=("", "_liris"))
    merged = merged.merge(tk.drop(columns=["source_path"]), on="video_id", how="outer", suffixes=("", "_tiktok"))
    bad = merged[(merged["split"] != merged["split_liris"])]
    if len(bad):
        raise SourceError(f"{root}: First Impressions and LIRIS-ACCEDE files disagree on the split of "
                          f"{bad['video_id'].tolist()[:5]}")
    merged = merged.drop(columns=["split_liris", "split_tiktok"])
    merged["song_id"] = merged["song_id"].astype(object).where(merged["song_id"].notna(), None)
    return merged


def read_synthetic_rescrapes(path: str | Path) -> tuple[pd.DataFrame, ...]:
    """The early re-scrapes of a generated synthetic dataset (``tiktok_rescrapes/scrape_*.jsonl``, oldest first),
    each read by the TikTok adapter as a real re-scrape's dump is; empty when it was generated without them."""
    from features.sources.synthetic import RESCRAPE_DIR

    return tuple(read_tiktok(f)[0] for f in sorted((Path(path) / RESCRAPE_DIR).glob("scrape_*.jsonl")))


def _synthetic(path: Path | None, *, videos: int = 100, seed: int = 0, speech: bool = True,
               workers: int = 2, min_duration: float = 3.0, max_duration: float = 15.0,
               sync_weight: float | None = None, rescrapes: int = 0,
               **_: Any) -> tuple[pd.DataFrame, None, tuple[pd.DataFrame, ...]]:
    from features.sources.synthetic import generate_synthetic  # heavy: ffmpeg pipelines

    if path is None:
        raise ValueError("path=None: the synthetic source needs a folder to generate into")
    stamp = path / "generated.json"
    wanted = {"videos": videos, "seed": seed, "speech": speech, "min_duration": min_duration,
              "max_duration": max_duration}
    if sync_weight is not None:  # recorded only when set, so stores generated with the default design stay valid
        wanted["sync_weight"] = sync_weight
    if rescrapes:
        wanted["rescrapes"] = rescrapes
    if not stamp.exists() or json.loads(stamp.read_text()) != wanted:
        generate_synthetic(path, n_videos=videos, seed=seed, speech=speech, workers=workers,
                           min_duration=min_duration, max_duration=max_duration, sync_weight=sync_weight,
                           rescrapes=rescrapes)
        stamp.write_text(json.dumps(wanted))
    return read_synthetic(path), None, read_synthetic_rescrapes(path)


#: kind → reader returning the videos, or (videos, edges or None[, earlier scrapes])
_READERS: dict[str, Callable[..., pd.DataFrame | tuple[Any, ...]]] = {
    "folder": lambda path, **_: read_folder(path),
    "first-impressions": lambda path, **_: read_first_impressions(path),
    "liris-accede": lambda path, threshold=None, split="official", **_: read_liris_accede(path, threshold=threshold,
                                                                                            split=split),
    "tiktok": lambda path, scrape_time=None, columns=None, **_: read_tiktok(path, scrape_time=scrape_time,
                                                                            columns=columns),
    "synthetic": lambda path, **kw: _synthetic(path, **kw),
}
SOURCE_KINDS = tuple(_READERS)


def load_source(kind: str, path: str | Path | None, **options: Any) -> Manifest:
    """Read a dataset of ``kind`` at ``path`` into a :class:`Manifest`.

    Raises:
        ValueError: unknown ``kind`` (the known kinds are listed).
        SourceError: the files are not in the kind's format (file and row named).
    """
    if kind not in _READERS:
        raise ValueError(f"kind={kind!r}: expected one of {list(SOURCE_KINDS)}")
    result = _READERS[kind](Path(path) if path is not None else None, **options)
    videos, edges, *rest = result if isinstance(result, tuple) else (result, None)
    videos = _canonical(videos, kind)
    return Manifest(videos=videos, edges=edges if edges is not None else _edges_from(videos),
                    rescrapes=tuple(rest[0]) if rest else ())
