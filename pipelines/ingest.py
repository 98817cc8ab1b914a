"""Stage ``ingest``: read a dataset's files (or generate the synthetic one) into the store's manifest.

Flow :func:`ingest` → tasks ``load`` (adapter, pure) and ``commit`` (store write). Re-ingesting reports which videos
were added, removed or changed (by source path, labels or transcript); feature stages decide what to recompute from
their own fingerprints, so re-ingesting never invalidates features by itself.

Videos the labels list but whose file is not on disk (a partial download) stay in the manifest with no source path;
ingest counts them and names a few (:func:`missing_sources`), and extraction records one failure per such video
instead of working on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from stat import S_ISREG
from typing import Annotated, Any, Literal, Optional, Sequence

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from pydantic import Field

from features.fingerprint import given_stats, path_stats
from features.sources import Manifest, load_source
from features.store import Store
from features.trend import restated_snapshots, scrape_snapshots
from pipelines.flow_io import DatasetName, publish_table, store_for

__all__ = ["ingest", "SourceKind", "SplitKind", "default_source_path", "manifest_diff", "missing_sources",
           "record_manifest", "source_stats"]

SourceKind = Literal["folder", "first-impressions", "liris-accede", "tiktok", "synthetic"]
SplitKind = Literal["official", "hashed"]
#: how many missing videos the ingest summary names
MISSING_EXAMPLES = 5


def default_source_path(store: Store) -> Path:
    """Where ``--source synthetic`` generates media when no path is given: ``<root>/_sources/<dataset>``."""
    if store.local:
        return Path(store.path).parent / "_sources" / store.dataset
    return store.local_dir("_sources")


@task(cache_policy=NONE, persist_result=False)
def _load(kind: str, path: Optional[str], options: dict) -> Manifest:
    return load_source(kind, path, **options)


def _source_paths(videos: pd.DataFrame) -> list[Any]:
    return videos["source_path"].tolist() if "source_path" in videos.columns else [None] * len(videos)


def source_stats(videos: pd.DataFrame) -> list[Optional[os.stat_result]]:
    """``os.stat`` of each video's ``source_path`` in manifest order, ``None`` where there is no file
    (:func:`features.fingerprint.path_stats`): one pass that :func:`missing_sources` and the extraction plan's memo
    key (:func:`features.fingerprint.stat_digest`) share."""
    return path_stats(_source_paths(videos))


def missing_sources(videos: pd.DataFrame, stats: Optional[Sequence[Optional[os.stat_result]]] = None) -> list[str]:
    """Video ids (in manifest order) whose ``source_path`` is empty or is not an existing, readable file.

    ``stats``: :func:`source_stats` of the same ``videos``, already taken; then no file is stat-ed again. Whether a
    regular file is readable stays an ``os.access`` call per file: a stat's mode bits cannot answer it exactly (ACLs,
    root, network file systems).

    Raises:
        ValueError: ``stats`` does not hold one entry per video.
    """
    paths = _source_paths(videos)
    stats = given_stats(paths, stats, expected="source_stats(videos)")
    gone = [not (isinstance(p, str) and p and st is not None and S_ISREG(st.st_mode) and os.access(p, os.R_OK))
            for p, st in zip(paths, stats)]
    return videos.loc[gone, "video_id"].astype(str).tolist()


def _as_text(df: pd.DataFrame) -> pd.DataFrame:
    """Cells as comparable text, with every kind of missing value (None, NaN, NA) the same."""
    return df.astype(object).where(df.notna(), "<missing>").astype(str)


def manifest_diff(old: pd.DataFrame, new: pd.DataFrame) -> dict[str, list[str]]:
    """Video ids ``added``, ``removed`` and ``changed`` (any cell of a column both manifests have) from ``old`` to
    ``new``; missing values of every kind compare equal. Used by ``ingest`` (its summary) and ``refresh`` (its plan)."""
    old_ids = set(old["video_id"]) if "video_id" in old.columns else set()
    new_ids = set(new["video_id"])
    common = sorted(old_ids & new_ids)
    changed: list[str] = []
    if common:
        o, n = old.set_index("video_id"), new.set_index("video_id")
        cols = [c for c in n.columns if c in o.columns]
        a, b = _as_text(o.loc[common, cols]), _as_text(n.loc[common, cols])
        changed = sorted(a.index[(a != b).any(axis=1)])
    return {"added": sorted(new_ids - old_ids), "removed": sorted(old_ids - new_ids), "changed": changed}


@task(cache_policy=NONE, persist_result=False)
def _commit(root: Optional[str], dataset: str, manifest: Manifest, source: dict) -> tuple[dict, int, list[str]]:
    """Write the manifest and add the scrape's count snapshots to the scrape history (TikTok; MTAF's early trend) —
    first those of the manifest's earlier scrapes (``Manifest.rescrapes``, oldest first), each as if re-ingested in
    turn; returns the manifest diff, how many snapshots are new and the posts whose counts restate a recorded scrape
    time (:func:`features.trend.restated_snapshots`)."""
    store = store_for(root, dataset, create=True)
    scrapes = [s for s in map(scrape_snapshots, (*manifest.rescrapes, manifest.videos)) if len(s)]
    restated: set[str] = set()
    with store.lock():
        diff = manifest_diff(store.manifest(), manifest.videos)
        store.write_manifest(manifest.videos, manifest.edges, source=source)
        if not scrapes:
            return diff, 0, []
        history = store.scrape_history()  # read once: each scrape is checked against the history and those before it
        for snapshots in scrapes:
            restated |= set(restated_snapshots(history, snapshots))
            history = pd.concat([history, snapshots], ignore_index=True) if len(history) else snapshots
        new = store.append_scrape_history(pd.concat(scrapes, ignore_index=True))
    return diff, new, sorted(restated)


def record_manifest(dataset: str, root: Optional[str], manifest: Manifest, source: dict) -> dict:
    """Write ``manifest``, read from ``source`` (``{"kind", "path", "options"}``, recorded for ``refresh``), to the
    store with its scrape snapshots; warn of restated scrape times and of listed videos without a file. Returns the
    summary :func:`ingest` returns. ``refresh`` passes the manifest its plan read, so the source is read once."""
    diff, snapshots, restated = _commit(root, dataset, manifest, source)
    summary = {"dataset": dataset, "videos": len(manifest.videos), "edges": len(manifest.edges),
               "songs": int(manifest.edges["song_id"].nunique()) if len(manifest.edges) else 0,
               **{k: len(v) for k, v in diff.items()}, "snapshots": snapshots}
    if restated:
        get_run_logger().warning(
            "ingest %s: %d posts (e.g. %s) were already recorded at the same scrape time with other counts, so the "
            "scrape time is probably stale; their new counts replace the old ones in the scrape history. A re-scrape "
            "needs its own time: the records' scrapeTime / yt-dlp's epoch, or a new tiktok_scrape.json beside the "
            "posts (a --scrape-time given at ingest is reused by refresh)",
            dataset, len(restated), ", ".join(restated[:MISSING_EXAMPLES]))
    missing = missing_sources(manifest.videos)
    summary["missing_files"] = len(missing)
    summary["missing_examples"] = missing[:MISSING_EXAMPLES]
    if missing:
        get_run_logger().warning(
            "ingest %s: %d of %d listed videos have no file under %s (e.g. %s); extraction records them as missing "
            "sources and skips them until the files are there and the dataset is re-ingested",
            dataset, len(missing), len(manifest.videos), source.get("path"), ", ".join(missing[:MISSING_EXAMPLES]))
    publish_table(f"{dataset}-ingest", [{**summary, "missing_examples": ", ".join(summary["missing_examples"])}],
                  f"ingest of {dataset} from {source['kind']}")
    return summary


@flow(name="ingest", validate_parameters=True)
def ingest(
    dataset: DatasetName,
    source: SourceKind,
    path: Optional[str] = None,
    root: Optional[str] = None,
    videos: Annotated[int, Field(ge=1, le=100_000)] = 100,
    seed: int = 0,
    threshold: Optional[float] = None,
    split: SplitKind = "official",
    scrape_time: Optional[float] = None,
    columns: Optional[str] = None,
    speech: bool = True,
    min_duration: Annotated[float, Field(ge=1, le=600)] = 3.0,
    max_duration: Annotated[float, Field(ge=1, le=600)] = 15.0,
    sync_weight: Optional[Annotated[float, Field(ge=0, le=1)]] = None,
    rescrapes: Annotated[int, Field(ge=0, le=48)] = 0,
) -> dict:
    """Record a dataset's manifest (one row per video: id, source path, split, labels, metadata) in its store.

    Args:
        dataset: the store's name under the root.
        source: adapter kind (``folder``, ``first-impressions``, ``liris-accede``, ``tiktok``, ``synthetic``).
        path: the dataset folder (for tiktok also a single post file: JSON, JSON Lines, CSV, saved page). For
            ``synthetic`` defaults to ``<root>/_sources/<dataset>``.
        videos, seed, speech, min_duration, max_duration: synthetic only — how many videos, the seed, speak
            transcripts with espeak-ng, clip length range in seconds. Regenerated only when these change.
        sync_weight: synthetic only — share of arousal carried by the synchrony plant (default: the generator's
            design); 0 isolates the recency plant.
        rescrapes: synthetic only — early re-scrapes of every post to generate (:mod:`features.sources.synthetic`,
            "Early popularity trend"); their counts enter the scrape history, the input of MTAF's early trend.
        threshold: liris-accede only — high/low threshold on the [1, 5] scale (default 3.0).
        split: liris-accede only — ``official`` (``ACCEDEsets.txt``) or ``hashed`` (70/10/20 by a hash of the id).
        scrape_time: tiktok only — epoch seconds of the scrape when the files do not record it.
        columns: tiktok CSV exports only — ``"FIELD=COLUMN,..."`` naming the column of each canonical field
            (:data:`features.sources.tiktok_shapes.CSV_FIELDS`), e.g. ``"id=video_id,plays=views"``.

    Returns:
        ``{"dataset", "videos", "edges", "songs", "added", "removed", "changed", "snapshots", "missing_files",
        "missing_examples"}``: added / removed / changed are counts; ``snapshots`` counts the posts whose counts at
        this scrape time were not yet in the scrape history (tiktok and synthetic, re-scrapes included: each
        scrape's counts are kept there, the input of MTAF's early trend, :mod:`features.trend`); ``missing_files``
        counts the listed videos that have no file on disk and ``missing_examples`` names up to five of them.

    Raises:
        ValueError: no ``path`` for a source that needs one, ``split="hashed"`` for a source other than
            liris-accede, or ``rescrapes`` for a source other than synthetic.
    """
    if split != "official" and source != "liris-accede":
        raise ValueError(f"split={split!r}: only the liris-accede source has a choice of split; the {source!r} "
                         "source uses its own (leave --split out)")
    if columns is not None and source != "tiktok":
        raise ValueError(f"columns={columns!r}: only the tiktok source reads CSV exports with a column mapping")
    if rescrapes and source != "synthetic":
        raise ValueError(f"rescrapes={rescrapes!r}: only the synthetic source generates re-scrapes; a real dataset's "
                         "re-scrapes are ingested one by one (`vidpipe refresh` after each new scrape)")
    store = store_for(root, dataset, create=True)
    if path is None:
        if source != "synthetic":
            raise ValueError(f"path=None: the {source!r} source needs the dataset's folder (or file)")
        path = str(default_source_path(store))
    options = ({"videos": videos, "seed": seed, "speech": speech, "min_duration": min_duration,
                "max_duration": max_duration} if source == "synthetic" else {})
    if source == "synthetic" and sync_weight is not None:
        options["sync_weight"] = sync_weight
    if rescrapes:
        options["rescrapes"] = rescrapes
    if source == "liris-accede":
        options["threshold"] = threshold
        options["split"] = split
    if source == "tiktok":
        options["scrape_time"] = scrape_time
        if columns is not None:
            options["columns"] = columns
    return record_manifest(dataset, root, _load(source, path, options),
                           {"kind": source, "path": path, "options": options})
