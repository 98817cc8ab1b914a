"""LIRIS-ACCEDE adapter (induced emotion: valence / arousal).

Files (as distributed with the LIRIS-ACCEDE "discrete" set):

- ``ACCEDEranking.txt``: tab-separated, header ``id name valenceRank arousalRank valenceValue arousalValue
  valenceVariance arousalVariance``; ``name`` is the video file name, values lie on the dataset's [1, 5] scale;
- ``ACCEDEsets.txt``: tab-separated, header ``id name set`` with LIRIS-ACCEDE's convention 1 = learning (train),
  2 = validation, 0 = test.

Binary labels (what Sec2Sec predicts) are ``value > threshold``; the default threshold is the middle of the value scale
(3.0 on [1, 5]) — the dissertation thresholds at the scale's midpoint rather than the sample median, which keeps labels
stable when the dataset is refreshed. The continuous values are kept as ``valence_value`` / ``arousal_value``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from features.sources._common import SourceError, find_media, label_error

__all__ = ["RANKING_COLUMNS", "SETS_COLUMNS", "SET_CODES", "read_liris_accede"]

RANKING_COLUMNS = ("id", "name", "valenceRank", "arousalRank", "valenceValue", "arousalValue",
                   "valenceVariance", "arousalVariance")
SETS_COLUMNS = ("id", "name", "set")
#: LIRIS-ACCEDE ``set`` code → vidpipe split
SET_CODES = {1: "train", 2: "val", 0: "test"}
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


def read_liris_accede(path: str | Path, *, threshold: float | None = None) -> pd.DataFrame:
    """Parse a LIRIS-ACCEDE folder into manifest rows.

    Args:
        path: folder holding ``ACCEDEranking.txt``, ``ACCEDEsets.txt`` and the videos (searched recursively).
        threshold: a value strictly above it is "high" (label 1). ``None`` → middle of the [1, 5] scale (3.0).

    Returns:
        DataFrame with ``video_id``, ``source_path``, ``split``, ``valence``, ``arousal`` (0/1 floats),
        ``valence_value``, ``arousal_value``.

    Raises:
        SourceError: a file or column is missing, a value is not a finite number in [1, 5], a set code is unknown, or a
            video has a ranking but no set (file and row named).
    """
    root = Path(path)
    if threshold is None:
        threshold = sum(_SCALE) / 2
    if not _SCALE[0] <= threshold <= _SCALE[1]:
        raise ValueError(f"threshold={threshold}: expected a value on LIRIS-ACCEDE's scale {list(_SCALE)}")
    rank_path = next(iter(sorted(root.rglob("ACCEDEranking.txt"))), None)
    sets_path = next(iter(sorted(root.rglob("ACCEDEsets.txt"))), None)
    if rank_path is None or sets_path is None:
        raise SourceError(f"path={str(root)!r}: expected ACCEDEranking.txt and ACCEDEsets.txt (searched recursively)")
    ranking = _read_tsv(rank_path, RANKING_COLUMNS)
    sets = _read_tsv(sets_path, SETS_COLUMNS)
    split_of: dict[str, str] = {}
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
        if name not in split_of:
            raise SourceError(f"{rank_path}: row {i + 2}: video {name!r} has no entry in {sets_path}")
        records.append({
            "video_id": Path(name).stem,
            "source_path": str(media[name]) if name in media else None,
            "split": split_of[name],
            "valence": float(values["valenceValue"] > threshold),
            "arousal": float(values["arousalValue"] > threshold),
            "valence_value": values["valenceValue"],
            "arousal_value": values["arousalValue"],
        })
    return pd.DataFrame.from_records(records)
