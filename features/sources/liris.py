"""LIRIS-ACCEDE adapter (induced emotion: valence / arousal).

Files (as distributed with the LIRIS-ACCEDE "discrete" set):

- ``ACCEDEranking.txt``: tab-separated, header ``id name valenceRank arousalRank valenceValue arousalValue
  valenceVariance arousalVariance``; ``name`` is the video file name, values lie on the dataset's [1, 5] scale;
- ``ACCEDEsets.txt``: tab-separated, header ``id name set`` with LIRIS-ACCEDE's convention 1 = learning (train),
  2 = validation, 0 = test.

Splits: ``split="official"`` (the default) takes ``ACCEDEsets.txt``; ``split="hashed"`` ignores it (it need not exist)
and puts each clip in train / val / test by a hash of its id, 70 / 10 / 20 as in the papers that re-split
LIRIS-ACCEDE (:func:`features.sources._common.hashed_split`: reproducible, and a clip keeps its split when others are
added or removed).

Binary labels (what Sec2Sec predicts) are ``value > threshold``; the default threshold is the middle of the value scale
(3.0 on [1, 5]) — the dissertation thresholds at the scale's midpoint rather than the sample median, which keeps labels
stable when the dataset is refreshed. The continuous values are kept as ``valence_value`` / ``arousal_value``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from features.sources._common import SourceError, find_media, hashed_split, label_error

__all__ = ["RANKING_COLUMNS", "SETS_COLUMNS", "SET_CODES", "SPLITS", "read_liris_accede"]

RANKING_COLUMNS = ("id", "name", "valenceRank", "arousalRank", "valenceValue", "arousalValue",
                   "valenceVariance", "arousalVariance")
SETS_COLUMNS = ("id", "name", "set")
#: LIRIS-ACCEDE ``set`` code → vidpipe split
SET_CODES = {1: "train", 2: "val", 0: "test"}
#: how ``read_liris_accede`` assigns splits: the official sets file, or a 70/10/20 hash of the video id
SPLITS = ("official", "hashed")
_SCALE = (1.0, 5.0)


def _read_tsv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise SourceError(f"{path}: not a tab-separated file with header {list(columns)}: {exc}") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SourceError(f"{path}: missing column(s) {missing}; expected header {list(columns)}")
    dupes = df["name"][df["name"].duplicated()].tolist()
    if dupes:
        raise SourceError(f"{path}: duplicate video name(s) {dupes[:5]}; each video must appear once")
    return df


def read_liris_accede(path: str | Path, *, threshold: float | None = None, split: str = "official") -> pd.DataFrame:
    """Parse a LIRIS-ACCEDE folder into manifest rows.

    Every clip the ranking lists becomes a row, whether or not its video file is on disk (a partial download):
    ``source_path`` is ``None`` for the clips without a file, and the ingest flow reports them.

    Args:
        path: folder holding ``ACCEDEranking.txt``, ``ACCEDEsets.txt`` and the videos (searched recursively).
        threshold: a value strictly above it is "high" (label 1). ``None`` → middle of the [1, 5] scale (3.0).
        split: ``"official"`` (``ACCEDEsets.txt``: 1 train, 2 validation, 0 test) or ``"hashed"`` (70/10/20 by a
            hash of the video id; ``ACCEDEsets.txt`` is not read).

    Returns:
        DataFrame with ``video_id``, ``source_path``, ``split``, ``valence``, ``arousal`` (0/1 floats),
        ``valence_value``, ``arousal_value``.

    Raises:
        ValueError: ``threshold`` off the scale or ``split`` not one of :data:`SPLITS`.
        SourceError: a file or column is missing, a value is not a finite number in [1, 5], a set code is unknown, or a
            video has a ranking but no set (file and row named).
    """
    root = Path(path)
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {list(SPLITS)}")
    if threshold is None:
        threshold = sum(_SCALE) / 2
    if not _SCALE[0] <= threshold <= _SCALE[1]:
        raise ValueError(f"threshold={threshold}: expected a value on LIRIS-ACCEDE's scale {list(_SCALE)}")
    rank_path = next(iter(sorted(root.rglob("ACCEDEranking.txt"))), None)
    sets_path = next(iter(sorted(root.rglob("ACCEDEsets.txt"))), None) if split == "official" else None
    if rank_path is None or (split == "official" and sets_path is None):
        wanted = "ACCEDEranking.txt and ACCEDEsets.txt" if split == "official" else "ACCEDEranking.txt"
        raise SourceError(f"path={str(root)!r}: expected {wanted} (searched recursively)")
    ranking = _read_tsv(rank_path, RANKING_COLUMNS)
    split_of: dict[str, str] = {}
    sets = _read_tsv(sets_path, SETS_COLUMNS) if sets_path is not None else pd.DataFrame(columns=SETS_COLUMNS)
    for i, row in sets.iterrows():
        try:
            code = int(row["set"])
        except ValueError:
            code = None
        if code not in SET_CODES:
            raise label_error(sets_path, i + 2, "set", row["set"], f"one of {sorted(SET_CODES)}")
        split_of[row["name"]] = SET_CODES[code]
    media = find_media(root)
    records = []
    for i, row in ranking.iterrows():
        values = {}
        for col in ("valenceValue", "arousalValue"):
            try:
                v = float(row[col])
            except ValueError:
                v = math.nan
            if not (math.isfinite(v) and _SCALE[0] <= v <= _SCALE[1]):
                raise label_error(rank_path, i + 2, col, row[col], f"a finite number in {list(_SCALE)}")
            values[col] = v
        name = row["name"]
        video_id = Path(name).stem
        if split == "hashed":
            clip_split = hashed_split(video_id)
        elif name in split_of:
            clip_split = split_of[name]
        else:
            raise SourceError(f"{rank_path}: row {i + 2}: video {name!r} has no entry in {sets_path}")
        records.append({
            "video_id": video_id,
            "source_path": str(media[name]) if name in media else None,
            "split": clip_split,
            "valence": float(values["valenceValue"] > threshold),
            "arousal": float(values["arousalValue"] > threshold),
            "valence_value": values["valenceValue"],
            "arousal_value": values["arousalValue"],
        })
    return pd.DataFrame.from_records(records)
