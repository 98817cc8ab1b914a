"""features.sources.archives: nested and ZipCrypto-encrypted zips as ChaLearn distributes them, unpacked for ingest."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest

from features.sources import SourceError
from features.sources.archives import ArchiveError, unpack_archives
from features.sources.first_impressions import TRAITS, dump_py2_pickle, read_first_impressions


# ------------------------------------------------------------------------------------------ ZipCrypto zip writer
def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


class _ZipCrypto:
    """PKWARE APPNOTE 6.1: "traditional" encryption, three 32-bit keys updated with every plaintext byte."""

    def __init__(self, password: bytes) -> None:
        self.k = [0x12345678, 0x23456789, 0x34567890]
        for b in password:
            self._update(b)

    def _update(self, b: int) -> None:
        k0 = _CRC[(self.k[0] ^ b) & 0xFF] ^ (self.k[0] >> 8)
        k1 = ((self.k[1] + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        k2 = _CRC[(self.k[2] ^ (k1 >> 24)) & 0xFF] ^ (self.k[2] >> 8)
        self.k = [k0, k1, k2]

    def encrypt(self, data: bytes) -> bytes:
        out = bytearray()
        for b in data:
            t = (self.k[2] | 2) & 0xFFFF
            out.append(b ^ (((t * (t ^ 1)) >> 8) & 0xFF))
            self._update(b)
        return bytes(out)


def encrypted_zip(members: dict[str, bytes], password: bytes, *, deflate: bool = True) -> bytes:
    """A zip whose members are all ZipCrypto-encrypted (general purpose flag bit 0), laid out per APPNOTE 4.3:
    local file header + 12-byte encryption header + data for each member, then the central directory and its end
    record. No data descriptors, so the header's check byte is the CRC's high byte."""
    out, central = bytearray(), bytearray()
    dos_time, dos_date = 0x6000, 0x5821  # 12:00:00, 2024-01-01
    for i, (name, data) in enumerate(members.items()):
        crc = zlib.crc32(data)
        payload = data
        method = 0
        if deflate:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload, method = c.compress(data) + c.flush(), 8
        header = bytes((i * 37 + j * 11) & 0xFF for j in range(11)) + bytes([crc >> 24])
        body = _ZipCrypto(password).encrypt(header + payload)
        raw_name = name.encode("utf-8")
        offset = len(out)
        fields = struct.pack("<HHHHHIIIHH", 20, 0x0001, method, dos_time, dos_date, crc, len(body), len(data),
                             len(raw_name), 0)
        out += b"PK\x03\x04" + fields + raw_name + body
        central += (b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHII", 0, 0, 0, 0, offset)
                    + raw_name)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(out), 0)
    return bytes(out + central + end)


def plain_zip(members: dict[str, bytes], *, stored: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ fixtures
VIDEOS = {
    "training80_01.zip": {"-6otZ7M-Mro.003.mp4": b"\x00\x01video-a" * 50, "J4GQm9j0JZ0.003.mp4": b"video-b" * 70},
    "training80_02.zip": {"zz_BjRfemTo.001.mp4": b"video-c" * 30},
}


def _annotation(names) -> bytes:
    buf = io.BytesIO()
    dump_py2_pickle({t: {n: 0.5 for n in names} for t in (*TRAITS, "interview")}, buf)
    return buf.getvalue()


def _chalearn(tmp_path: Path, password: bytes | None = None) -> Path:
    """``src/train-1.zip`` holding the ``training80_NN.zip`` inner zips (stored, as the outer zips store them), and
    ``src/train-annotation.zip`` holding ``annotation_training.pkl`` (encrypted when ``password``)."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    inner = {name: plain_zip(files) for name, files in VIDEOS.items()}
    (src / "train-1.zip").write_bytes(plain_zip(inner, stored=True))
    names = [n for files in VIDEOS.values() for n in files]
    ann = {"annotation_training.pkl": _annotation(names)}
    (src / "train-annotation.zip").write_bytes(encrypted_zip(ann, password) if password else plain_zip(ann))
    return src


def test_zipcrypto_writer_is_read_by_pythons_zipfile_and_unzip(tmp_path):
    path = tmp_path / "e.zip"
    path.write_bytes(encrypted_zip({"a.txt": b"hello " * 100, "b.mp4": b"\x00" * 10}, b"s3cret"))
    with zipfile.ZipFile(path) as zf:
        assert all(i.flag_bits & 1 for i in zf.infolist())
        assert zf.read("a.txt", pwd=b"s3cret") == b"hello " * 100
        with pytest.raises(RuntimeError, match="password"):
            zf.read("a.txt")
    if shutil.which("unzip"):  # an independent reader of the format, when installed
        res = subprocess.run(["unzip", "-t", "-P", "s3cret", str(path)], capture_output=True, text=True)
        assert res.returncode == 0 and "No errors detected" in res.stdout


def test_nested_archives_unpack_into_the_layout_ingest_reads(tmp_path):
    src = _chalearn(tmp_path)
    lines: list[str] = []
    report = unpack_archives(src, tmp_path / "dest", progress=lines.append)
    dest = tmp_path / "dest"
    assert (dest / "train-1/training80_01/-6otZ7M-Mro.003.mp4").read_bytes() == VIDEOS["training80_01.zip"][
        "-6otZ7M-Mro.003.mp4"]
    assert (dest / "train-1/training80_02/zz_BjRfemTo.001.mp4").is_file()
    assert (dest / "train-annotation/annotation_training.pkl").is_file()
    assert (report.archives, report.extracted, report.skipped, report.archives_skipped) == (4, 4, 0, 0)
    assert report.bytes_written == sum(len(b) for f in VIDEOS.values() for b in f.values()) + len(
        _annotation([n for f in VIDEOS.values() for n in f]))
    assert any("train-1.zip > training80_01.zip" in line for line in lines)
    assert not [p for p in dest.rglob("*") if p.name.endswith(".partial") or p.name.startswith("nested-")]
    df = read_first_impressions(dest)  # what `vidpipe ingest --source first-impressions DEST` reads
    assert df["source_path"].notna().all() and len(df) == 3


def test_rerun_skips_everything_and_repairs_what_is_missing(tmp_path):
    src = _chalearn(tmp_path)
    dest = tmp_path / "dest"
    unpack_archives(src, dest)
    again = unpack_archives(src, dest)
    assert (again.extracted, again.archives_skipped, again.skipped) == (0, 2, 4)
    assert again.archives == 2  # only the outer zips were opened; the nested ones were not copied again
    victim = dest / "train-1/training80_01/J4GQm9j0JZ0.003.mp4"
    victim.write_bytes(b"half")  # an interrupted copy made by another tool: wrong size
    (dest / "train-1/training80_02/zz_BjRfemTo.001.mp4").unlink()
    third = unpack_archives(src, dest)
    assert third.extracted == 2 and victim.read_bytes() == VIDEOS["training80_01.zip"]["J4GQm9j0JZ0.003.mp4"]
    assert third.archives_skipped == 0 and third.archives == 4


def test_interrupted_copy_leaves_no_partial_target(tmp_path, monkeypatch):
    src = _chalearn(tmp_path)
    dest = tmp_path / "dest"
    import features.sources.archives as archives

    calls = {"n": 0}
    real = archives._copy

    def failing(reader, writer):
        calls["n"] += 1
        if calls["n"] == 3:  # outer → nested copy, first video, then fail on the second video
            writer.write(reader.read(5))
            raise KeyboardInterrupt
        return real(reader, writer)

    monkeypatch.setattr(archives, "_copy", failing)
    with pytest.raises(KeyboardInterrupt):
        unpack_archives(src, dest)
    monkeypatch.undo()
    files = sorted(p.name for p in dest.rglob("*.mp4"))
    assert files == ["-6otZ7M-Mro.003.mp4"]  # the interrupted one is not there under its real name
    report = unpack_archives(src, dest)
    assert (report.extracted, report.skipped) == (3, 1)


def test_encrypted_archive_needs_the_right_password(tmp_path):
    src = _chalearn(tmp_path, password=b"chalearn-pw")
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError, match=r"train-annotation\.zip > annotation_training\.pkl: the member is "
                                           r"encrypted; give its password with --archive-password"):
        unpack_archives(src, dest)
    with pytest.raises(ArchiveError, match=r"train-annotation\.zip > annotation_training\.pkl: wrong password "
                                           r"\(tried 2 passwords"):
        unpack_archives(src, dest, passwords=["nope", "also-wrong"])
    assert not (dest / "train-annotation/annotation_training.pkl").exists()
    report = unpack_archives(src, dest, passwords=["other-archive-pw", "chalearn-pw"])
    assert (dest / "train-annotation/annotation_training.pkl").read_bytes() == _annotation(
        [n for f in VIDEOS.values() for n in f])
    assert report.extracted == 1 and report.skipped == 3


def test_wrong_password_that_passes_the_check_byte_is_still_refused(tmp_path):
    data = b"x" * 1000
    good = b"right"
    path = tmp_path / "src" / "e.zip"
    path.parent.mkdir()
    path.write_bytes(encrypted_zip({"a.txt": data}, good, deflate=False))
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("a.txt")
    # find a wrong password whose decrypted check byte matches (about 1 in 256)
    raw = path.read_bytes()
    enc_header = raw[30 + len("a.txt"):30 + len("a.txt") + 12]
    for i in range(5000):
        cand = f"w{i}".encode()
        z = _ZipCrypto(cand)
        plain = bytearray()
        for b in enc_header:
            t = (z.k[2] | 2) & 0xFFFF
            p = b ^ (((t * (t ^ 1)) >> 8) & 0xFF)
            z._update(p)
            plain.append(p)
        if plain[11] == info.CRC >> 24:
            break
    else:
        pytest.fail("no candidate found")
    with pytest.raises(ArchiveError, match="wrong password"):
        unpack_archives(path, tmp_path / "dest", passwords=[cand.decode()])
    assert unpack_archives(path, tmp_path / "dest", passwords=[cand.decode(), "right"]).extracted == 1
    assert (tmp_path / "dest/e/a.txt").read_bytes() == data


@pytest.mark.skipif(shutil.which("zip") is None, reason="the zip CLI is not installed")
def test_archive_made_by_the_zip_tool_with_a_password(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "-abc.003.mp4").write_bytes(b"v" * 300)
    src = tmp_path / "src"
    src.mkdir()
    subprocess.run(["zip", "-q", "-P", "pw", str(src / "test-1.zip"), "--", "-abc.003.mp4"], cwd=work, check=True)
    report = unpack_archives(src, tmp_path / "dest", passwords=["pw"])
    assert report.extracted == 1 and (tmp_path / "dest/test-1/-abc.003.mp4").read_bytes() == b"v" * 300


def test_hostile_member_names(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.zip").write_bytes(plain_zip({"/abs/x.mp4": b"1", "dir\\y.mp4": b"2", "__MACOSX/._x.mp4": b"3",
                                           "notes.doc": b"4", ".hidden.mp4": b"5"}))
    report = unpack_archives(src, tmp_path / "dest")
    got = sorted(p.relative_to(tmp_path / "dest").as_posix() for p in (tmp_path / "dest").rglob("*") if p.is_file()
                 and ".vidpipe-unpack" not in p.parts)
    assert got == ["a/abs/x.mp4", "a/dir/y.mp4"] and report.ignored == 3
    (src / "a.zip").write_bytes(plain_zip({"../../escape.mp4": b"1"}))
    with pytest.raises(ArchiveError, match=r"a\.zip: member '\.\./\.\./escape\.mp4' climbs out"):
        unpack_archives(src, tmp_path / "dest2")
    assert not (tmp_path / "escape.mp4").exists()


def test_nesting_depth_is_bounded(tmp_path):
    blob = plain_zip({"v.mp4": b"x"})
    for level in range(5):
        blob = plain_zip({f"l{level}.zip": blob})
    src = tmp_path / "src"
    src.mkdir()
    (src / "top.zip").write_bytes(blob)
    with pytest.raises(ArchiveError, match="nested deeper than 4 levels"):
        unpack_archives(src, tmp_path / "dest")
    assert unpack_archives(src, tmp_path / "dest", max_depth=7).extracted == 1


def test_corrupt_member_is_named(tmp_path):
    raw = bytearray(plain_zip({"v.mp4": b"abcdefgh" * 200}, stored=True))
    raw[40:48] = b"XXXXXXXX"  # inside the stored data: CRC mismatch
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.zip").write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match=r"a\.zip > v\.mp4: corrupt data"):
        unpack_archives(src, tmp_path / "dest")
    assert not list((tmp_path / "dest").rglob("*.mp4"))


@pytest.mark.parametrize("kwargs,match", [
    ({"src": "missing"}, "src='.*missing': no such file"),
    ({"src": "notzip"}, "not a zip archive"),
    ({"src": "empty"}, "no .zip files found"),
    ({"max_depth": 0}, "max_depth=0"),
    ({"passwords": "pw"}, "not one string"),
    ({"dest": "src/inner"}, "is inside src"),
])
def test_bad_arguments_name_themselves(tmp_path, kwargs, match):
    src = _chalearn(tmp_path)
    (tmp_path / "notzip").write_bytes(b"hello")
    (tmp_path / "empty").mkdir()
    args = {"src": src, "dest": tmp_path / "dest", **kwargs}
    args["src"] = tmp_path / args["src"] if isinstance(args["src"], str) else args["src"]
    args["dest"] = tmp_path / args["dest"] if isinstance(args["dest"], str) else args["dest"]
    with pytest.raises(ValueError, match=match):
        unpack_archives(args.pop("src"), args.pop("dest"), **args)


def test_cli_unpack(tmp_path, capsys):
    from pipelines.cli import main

    src = _chalearn(tmp_path, password=b"pw")
    dest = tmp_path / "dest"
    with pytest.raises(SystemExit) as exit_:
        main(["unpack", str(src), str(dest), "--json"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "annotation_training.pkl" in err and "--archive-password" in err
    assert len([ln for ln in err.splitlines() if "error" in ln]) == 1
    pw_file = tmp_path / "pw.txt"
    pw_file.write_text("wrong\npw\n")
    with pytest.raises(SystemExit) as exit_:
        main(["unpack", str(src), str(dest), "--archive-password-file", str(pw_file), "--json"])
    assert exit_.value.code in (0, None)
    captured = capsys.readouterr()
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert out["extracted"] == 1 and out["skipped"] == 3 and out["files"] == 4
    assert "train-1.zip" in captured.err  # progress on stderr
    with pytest.raises(SystemExit) as exit_:
        main(["unpack", str(src), str(dest), "--archive-password", "pw", "--json"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["skipped"] == 4
    assert os.path.isdir(dest / ".vidpipe-unpack")


def test_ingesting_the_zips_themselves_points_to_unpack(tmp_path):
    src = _chalearn(tmp_path)
    with pytest.raises(SourceError, match=r"holds 2 \.zip archive\(s\): unpack them first with `vidpipe unpack"):
        read_first_impressions(src)
