"""Atomic file writes: a reader sees the old content or the new one, never a half-written file.

Local paths are written to a temporary sibling (``.tmp-<random>.part`` for bytes, ``.tmp-<random><suffix>`` for
writers that need the suffix; a crash leaves a name :meth:`features.store.Store.gc` recognises and that no
``*.json`` / ``*.parquet`` listing picks up as a record), flushed and fsynced, then renamed over the target (``os.replace`` is
atomic on POSIX). Object stores (an fsspec filesystem that is not local) get one PUT, which is atomic there.

:func:`atomic_write` takes the bytes; :func:`atomic_file` hands a writer that needs a real path (h5py, matplotlib,
ffmpeg) the temporary path and renames it into place when the block ends without an error.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_write", "atomic_file", "is_local"]


def is_local(fs: Any) -> bool:
    """Whether the fsspec filesystem ``fs`` writes through the OS (its protocols include ``file``)."""
    protocol = getattr(fs, "protocol", "file")
    return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))


def _fsync_dir(folder: str) -> None:
    """Persist a rename: fsync the folder that holds the new name (not possible on every platform)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, fs: Any = None, fsync: bool = True) -> None:
    """Write ``data`` (``str`` is UTF-8 encoded) to ``path`` atomically, creating its parent folder.

    Args:
        fs: an fsspec filesystem; ``None`` or a local one writes through the OS (temporary sibling + fsync + rename),
            any other gets one ``pipe_file`` (a single PUT).
        fsync: flush the file to disk before the rename; ``False`` only for caches, whose loss is harmless.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes or str, got {type(data).__name__}")
    if fs is not None and not is_local(fs):
        fs.pipe_file(str(path), bytes(data))
        return
    with atomic_file(path, fsync=fsync, keep_suffix=False) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, fsync: bool = True, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary local path beside ``path``; when the block ends, fsync it and rename it to ``path``.

    The temporary keeps ``path``'s suffix when ``keep_suffix`` (writers such as matplotlib choose the format by it),
    else ends in ``.part``. If the block raises, the temporary is removed and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{uuid.uuid4().hex}{final.suffix if keep_suffix else '.part'}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, final)
        if fsync:
            _fsync_dir(str(final.parent))
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
