"""Unpack a dataset's (nested, possibly password-protected) zip archives into the folder layout ingest reads.

ChaLearn First Impressions V2 ships its videos as zips of zips (``train-1.zip`` … holding ``training80_01.zip`` …
holding the ``.mp4`` files) and its annotations and transcripts as zips of pickles; some of them are encrypted with
ZipCrypto (the legacy "traditional PKWARE" encryption that Python's :mod:`zipfile` reads). :func:`unpack_archives`
walks a file or folder for ``*.zip``, descends into zip members that are themselves zips, and writes every media file
(:data:`~features.sources._common.MEDIA_EXTENSIONS`) and label file (:data:`LABEL_EXTENSIONS`) to::

    DEST/<folder of the zip, relative to SRC>/<zip name without .zip>/<member folders>/<nested zip name>/.../<file>

so ``vidpipe ingest NAME --source first-impressions DEST`` finds them (adapters search recursively, by file name).

It is resumable and safe to interrupt:

* a file is written under a hidden temporary name beside its target and renamed into place once complete (size and
  CRC-32 checked), so a target that exists is complete; a member whose target exists with the member's size is
  skipped;
* a nested zip is copied to ``DEST/.vidpipe-unpack/`` (reading a compressed member needs sequential access), unpacked,
  and then deleted; once all its files are in place it is recorded in ``DEST/.vidpipe-unpack/done.json`` (with its
  CRC-32, size and the files it produced), so a rerun skips it without copying it again — unless one of those files
  has since gone missing or changed size.

Member names are untrusted: ``..``, absolute paths and drive prefixes never leave ``DEST`` (``..`` is refused), and
names that start with ``-`` are kept as they are (every tool later receives absolute ``file:`` paths).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from features.sources._common import MEDIA_EXTENSIONS, SourceError
from features.sources.tiktok_shapes import POST_FILE_SUFFIXES

__all__ = ["ArchiveError", "LABEL_EXTENSIONS", "UnpackReport", "unpack_archives"]

#: non-media files an archive member may be that the dataset adapters read (annotation / transcript pickles, ranking
#: and set lists, scraper dumps)
LABEL_EXTENSIONS = frozenset({".pkl", ".txt", *POST_FILE_SUFFIXES})
_STATE_DIR = ".vidpipe-unpack"
_LEDGER = "done.json"
_LEDGER_FORMAT = "vidpipe.unpack-ledger/1"
_COPY_CHUNK = 1 << 20
_SPACE_MARGIN = 64 << 20  # bytes left free on DEST after a member is written
_PROGRESS_EVERY = 100  # files between two progress lines inside one archive


class ArchiveError(SourceError):
    """An archive cannot be unpacked (missing or wrong password, corrupt data, unsupported method, no space); the
    message names the archive (outer > nested) and the member."""


@dataclass
class UnpackReport:
    """What :func:`unpack_archives` did."""

    dest: str  # the destination folder (absolute)
    archives: int = 0  # zip files opened, outer and nested
    archives_skipped: int = 0  # nested zips skipped because a previous run unpacked them completely
    extracted: int = 0  # files written
    skipped: int = 0  # files already in place with the right size
    ignored: int = 0  # members that are neither media nor label files (folders, read-me's, __MACOSX, ...)
    bytes_written: int = 0  # bytes of the files written
    files: list[str] = field(default_factory=list)  # every file in place (written or skipped), relative to dest

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the file list is reduced to its count)."""
        out = asdict(self)
        out["files"] = len(self.files)
        return out


@dataclass
class _Ctx:
    """State of one :func:`unpack_archives` call."""

    dest: Path
    passwords: tuple[bytes, ...]
    progress: Callable[[str], None]
    max_depth: int
    report: UnpackReport
    ledger: dict[str, Any]


def unpack_archives(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    passwords: Sequence[str | bytes] = (),
    progress: Callable[[str], None] | None = None,
    max_depth: int = 4,
) -> UnpackReport:
    """Unpack every zip under ``src`` (and the zips inside them) into ``dest``; see the module docstring for the layout.

    Args:
        src: a ``.zip`` file, or a folder searched recursively for ``*.zip`` (sorted, deterministic).
        dest: destination folder (created); must not be inside ``src`` when ``src`` is a folder.
        passwords: passwords to try, in order, on each encrypted member (First Impressions uses different passwords
            for different archives). ``str`` passwords are UTF-8 encoded.
        progress: called with one line of text per archive (and every 100 files within one); ``None`` = silent.
        max_depth: how deep zips may nest (1 = no nested zips); deeper ones are refused.

    Returns:
        An :class:`UnpackReport` (counts, and every file in place relative to ``dest``).

    Raises:
        ValueError: a bad argument (named, with the value received and what was expected).
        ArchiveError: an encrypted member and no password or only wrong ones, corrupt data, an unsupported
            compression or encryption method, a member name that climbs out with ``..``, or too little free space.
    """
    src_path, dest_path = Path(src), Path(dest)
    if not src_path.exists():
        raise ValueError(f"src={os.fspath(src)!r}: no such file or folder; expected a .zip file or a folder of zips")
    if src_path.is_file() and not zipfile.is_zipfile(src_path):
        raise ValueError(f"src={os.fspath(src)!r}: not a zip archive; expected a .zip file or a folder of zips")
    if not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < 1:
        raise ValueError(f"max_depth={max_depth!r}: expected an int >= 1")
    if isinstance(passwords, (str, bytes)):
        raise ValueError(f"passwords={passwords!r}: expected a sequence of passwords, not one string")
    pw = tuple(p.encode("utf-8") if isinstance(p, str) else p for p in passwords)
    if not all(isinstance(p, bytes) and p for p in pw):
        raise ValueError(f"passwords: expected non-empty str or bytes values, got {[type(p).__name__ for p in pw]}")
    if dest_path.exists() and not dest_path.is_dir():
        raise ValueError(f"dest={os.fspath(dest)!r}: exists and is not a folder")
    src_abs, dest_abs = src_path.resolve(), dest_path.resolve()
    if src_path.is_dir() and (dest_abs == src_abs or src_abs in dest_abs.parents):
        raise ValueError(f"dest={os.fspath(dest)!r}: is inside src={os.fspath(src)!r}; unpack to a folder outside it")
    zips = [src_path] if src_path.is_file() else sorted(
        p for p in src_path.rglob("*") if p.suffix.lower() == ".zip" and p.is_file() and not p.name.startswith("."))
    if not zips:
        raise ValueError(f"src={os.fspath(src)!r}: no .zip files found (searched recursively)")
    (dest_abs / _STATE_DIR).mkdir(parents=True, exist_ok=True)
    ctx = _Ctx(dest=dest_abs, passwords=pw, progress=progress or (lambda _msg: None), max_depth=max_depth,
               report=UnpackReport(dest=str(dest_abs)), ledger=_read_ledger(dest_abs))
    for path in zips:
        rel = PurePosixPath(*path.relative_to(src_path).parts) if src_path.is_dir() else PurePosixPath(path.name)
        out_dir = rel.parent / _stem(rel.name)
        try:
            with zipfile.ZipFile(path) as zf:
                _unpack_zip(ctx, zf, label=os.fspath(path), out_dir=out_dir, depth=1)
        except zipfile.BadZipFile as exc:
            raise ArchiveError(f"{os.fspath(path)}: not a readable zip archive ({exc})") from exc
    return ctx.report


def _stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".zip") else name


def _member_parts(info: zipfile.ZipInfo, label: str) -> tuple[str, ...] | None:
    """The member's path as safe components, or ``None`` for entries that are never unpacked (folders, macOS
    resource forks, hidden files)."""
    if info.is_dir():
        return None
    parts = tuple(p for p in info.filename.replace("\\", "/").split("/") if p not in ("", "."))
    if ".." in parts:
        raise ArchiveError(f"{label}: member {info.filename!r} climbs out of its folder with '..'; refusing it")
    if not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
        return None
    return parts


def _unpack_zip(ctx: _Ctx, zf: zipfile.ZipFile, *, label: str, out_dir: PurePosixPath, depth: int) -> list[str]:
    """Unpack one open archive into ``ctx.dest / out_dir``; returns the files it put in place (relative to dest)."""
    ctx.report.archives += 1
    infos = zf.infolist()
    ctx.progress(f"{label}: {len(infos)} entries")
    extracted, skipped = ctx.report.extracted, ctx.report.skipped
    placed: list[str] = []
    done_here = 0
    for info in infos:
        parts = _member_parts(info, label)
        suffix = PurePosixPath(parts[-1]).suffix.lower() if parts else ""
        if parts is None or (suffix != ".zip" and suffix not in MEDIA_EXTENSIONS and suffix not in LABEL_EXTENSIONS):
            ctx.report.ignored += 1
            continue
        target_rel = out_dir.joinpath(*parts[:-1])
        if suffix == ".zip":
            if depth >= ctx.max_depth:
                raise ArchiveError(f"{label} > {info.filename}: zips nested deeper than {ctx.max_depth} levels; "
                                   "refusing (dataset archives nest two levels; deeper nesting is a zip bomb's trick)")
            placed += _unpack_nested(ctx, zf, info, label=label, out_dir=target_rel / _stem(parts[-1]), depth=depth)
        else:
            placed.append(_extract_member(ctx, zf, info, label=label, rel=target_rel / parts[-1]))
        done_here += 1
        if done_here % _PROGRESS_EVERY == 0:
            ctx.progress(f"{label}: {done_here} / {len(infos)}")
    ctx.progress(f"{label}: done ({ctx.report.extracted - extracted} files written, "
                 f"{ctx.report.skipped - skipped} already in place)")
    return placed




def _unpack_nested(ctx: _Ctx, zf: zipfile.ZipFile, info: zipfile.ZipInfo, *, label: str, out_dir: PurePosixPath,
                   depth: int) -> list[str]:
    """Unpack a zip stored inside ``zf``: skipped when the ledger says a previous run put all its files in place.

    The ledger key is the nested zip's output folder (relative to dest), which does not depend on how ``src`` was
    spelled.
    """
    where = f"{label} > {info.filename}"
    key = out_dir.as_posix()
    entry = ctx.ledger["archives"].get(key)
    if (entry is not None and entry.get("crc") == info.CRC and entry.get("size") == info.file_size
            and _all_in_place(ctx.dest, entry.get("files", []))):
        ctx.report.archives_skipped += 1
        ctx.report.skipped += len(entry["files"])
        ctx.report.files += [f for f, _ in entry["files"]]
        ctx.progress(f"{where}: already unpacked ({len(entry['files'])} files), skipped")
        return [f for f, _ in entry["files"]]
    _check_space(ctx, info, where)
    name = hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()
    tmp = ctx.dest / _STATE_DIR / f"nested-{name}.zip"
    try:
        _copy_member(ctx, zf, info, tmp, label=label)
        try:
            with zipfile.ZipFile(tmp) as inner:
                placed = _unpack_zip(ctx, inner, label=where, out_dir=out_dir, depth=depth + 1)
        except zipfile.BadZipFile as exc:
            raise ArchiveError(f"{where}: not a readable zip archive ({exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    ctx.ledger["archives"][key] = {"crc": info.CRC, "size": info.file_size,
                                   "files": [[f, (ctx.dest / f).stat().st_size] for f in placed]}
    _write_ledger(ctx.dest, ctx.ledger)
    return placed


def _all_in_place(dest: Path, files: Iterable[Sequence[Any]]) -> bool:
    try:
        return all((dest / rel).stat().st_size == size for rel, size in files)
    except (OSError, TypeError, ValueError):
        return False


def _extract_member(ctx: _Ctx, zf: zipfile.ZipFile, info: zipfile.ZipInfo, *, label: str,
                    rel: PurePosixPath) -> str:
    """Put one file in place (or skip it when it already is); returns its path relative to dest."""
    target = ctx.dest / rel
    rel_s = rel.as_posix()
    ctx.report.files.append(rel_s)
    try:
        if target.stat().st_size == info.file_size:
            ctx.report.skipped += 1
            return rel_s
    except FileNotFoundError:
        pass
    _check_space(ctx, info, f"{label} > {info.filename}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.partial"
    try:
        _copy_member(ctx, zf, info, tmp, label=label)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    ctx.report.extracted += 1
    ctx.report.bytes_written += info.file_size
    return rel_s


def _check_space(ctx: _Ctx, info: zipfile.ZipInfo, where: str) -> None:
    free = shutil.disk_usage(ctx.dest).free
    if free < info.file_size + _SPACE_MARGIN:
        raise ArchiveError(f"{where}: needs {info.file_size / 1e6:.1f} MB but only {free / 1e6:.1f} MB are free in "
                           f"{ctx.dest}; free some space and rerun (finished files are kept)")


def _copy_member(ctx: _Ctx, zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: Path, *, label: str) -> None:
    """Write member ``info`` to ``out`` in full (CRC-32 and size checked), trying each password on an encrypted one.

    A wrong ZipCrypto password is usually caught by the one-byte check in the member's encryption header, but 1 in 256
    wrong passwords pass it and only fail the CRC at the end: both count as "wrong password" and the next one is tried.
    """
    where = f"{label} > {info.filename}"
    encrypted = bool(info.flag_bits & 0x1)
    if encrypted and not ctx.passwords:
        raise ArchiveError(f"{where}: the member is encrypted; give its password with --archive-password")
    for pwd in ctx.passwords if encrypted else (None,):
        try:
            with zf.open(info, pwd=pwd) as reader, out.open("wb") as writer:
                written = _copy(reader, writer)
        except RuntimeError as exc:  # zipfile: "Bad password for file ..."
            if encrypted and "password" in str(exc).lower():
                continue
            raise ArchiveError(f"{where}: {exc}") from exc
        except NotImplementedError as exc:  # e.g. AES (method 99), which zipfile cannot decrypt
            raise ArchiveError(f"{where}: {exc} (compression method {info.compress_type}); unpack this archive "
                               "with 7z or unzip, then point vidpipe at the files") from exc
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            if encrypted:
                continue  # most likely a wrong password that passed the check byte
            raise ArchiveError(f"{where}: corrupt data ({exc}); download the archive again") from exc
        if written != info.file_size:
            raise ArchiveError(f"{where}: wrote {written} bytes, the archive says {info.file_size}")
        return
    n = len(ctx.passwords)
    raise ArchiveError(f"{where}: wrong password (tried {n} password{'s' if n != 1 else ''} given with "
                       "--archive-password), or corrupt encrypted data")


def _copy(reader: IO[bytes], writer: IO[bytes]) -> int:
    total = 0
    while chunk := reader.read(_COPY_CHUNK):
        writer.write(chunk)
        total += len(chunk)
    return total


def _read_ledger(dest: Path) -> dict[str, Any]:
    """The record of nested archives unpacked completely by earlier runs (a damaged or foreign file counts as
    empty: the ledger only ever lets work be skipped, never be wrong, since every file in it is re-checked)."""
    try:
        doc = json.loads((dest / _STATE_DIR / _LEDGER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"format": _LEDGER_FORMAT, "archives": {}}
    if not isinstance(doc, dict) or doc.get("format") != _LEDGER_FORMAT or not isinstance(doc.get("archives"), dict):
        return {"format": _LEDGER_FORMAT, "archives": {}}
    return doc


def _write_ledger(dest: Path, ledger: dict[str, Any]) -> None:
    path = dest / _STATE_DIR / _LEDGER
    tmp = path.with_name(f".{_LEDGER}.partial")
    tmp.write_text(json.dumps(ledger, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
