"""Helpers shared by the dataset adapters: media discovery, split hashing, error formatting."""

from __future__ import annotations

import hashlib
import reprlib
from pathlib import Path
from typing import Any

__all__ = ["SourceError", "MEDIA_EXTENSIONS", "find_media", "hashed_split", "label_error"]

#: Extensions the ``folder`` adapter and the label adapters treat as media (anything ffmpeg reads; lower-case).
MEDIA_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".3gp", ".ogv", ".asf", ".vob", ".dv", ".y4m", ".h264", ".264", ".gif", ".apng",
})


class SourceError(ValueError):
    """A dataset's files cannot be read as the adapter's format; the message names the file (and row)."""


def label_error(path: Path, row: Any, column: str, value: Any, expected: str) -> SourceError:
    """Build the error for one bad label cell, naming file, row, column, value and what was expected.

    The value is shown with :func:`reprlib.repr` (bounded length and depth): a hostile value, e.g. an unpickled list
    that holds itself ten times per level, must not make the error message itself hang or exhaust memory.
    """
    return SourceError(f"{path}: row {reprlib.repr(row)}, column {column!r}: got {reprlib.repr(value)}, "
                       f"expected {expected}")


def find_media(root: Path, *, follow_outside: bool = False) -> dict[str, Path]:
    """Map file name → path for every media file under ``root`` (recursive, sorted, deterministic).

    Symlinks that resolve outside ``root`` are skipped unless ``follow_outside`` (a scraped folder must not make
    vidpipe read arbitrary files). When two files share a name, the first in sorted path order wins.
    """
    root = Path(root)
    real_root = root.resolve()
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in MEDIA_EXTENSIONS or path.name.startswith("."):
            continue
        if not follow_outside:
            try:
                path.resolve().relative_to(real_root)
            except ValueError:
                continue
        if path.is_file():
            found.setdefault(path.name, path)
    return found


def hashed_split(video_id: str, *, val: float = 0.1, test: float = 0.2, salt: str = "vidpipe") -> str:
    """Deterministic split from a hash of the id: the same id always lands in the same split (70/10/20 default)."""
    if not (0 <= val and 0 <= test and val + test < 1):
        raise ValueError(f"val={val}, test={test}: expected non-negative shares summing to less than 1")
    h = int.from_bytes(hashlib.blake2b(f"{salt}:{video_id}".encode(), digest_size=8).digest(), "big") / 2**64
    return "test" if h < test else "val" if h < test + val else "train"
