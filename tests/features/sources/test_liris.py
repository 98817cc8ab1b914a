"""features.sources.liris: the official files as distributed (tab-separated, CRLF or LF), partial downloads and the
two split choices (official sets, hashed 70/10/20)."""

from __future__ import annotations

from collections import Counter

import pytest

from features.sources import SourceError, load_source
from features.sources._common import hashed_split
from features.sources.liris import read_liris_accede

RANKING_HEADER = b"id\tname\tvalenceRank\tarousalRank\tvalenceValue\tarousalValue\tvalenceVariance\tarousalVariance"


def write_liris(folder, n: int, *, sets: bool = True, present: tuple[int, ...] = (), eol: bytes = b"\r\n"):
    """``ACCEDEranking.txt`` / ``ACCEDEsets.txt`` byte by byte as distributed: tab-separated, a header line, one clip
    per line named ``ACCEDE%05d.mp4``, values on the [1, 5] scale with six decimals, set codes 1 (learning),
    2 (validation), 0 (test); ``present`` clips get a (dummy) video file in ``data/``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [RANKING_HEADER]
    for i in range(n):
        valence, arousal = 1.0 + (i * 0.37) % 4.0, 1.0 + (i * 0.61) % 4.0
        rows.append(f"{i}\tACCEDE{i:05d}.mp4\t{i}\t{n - 1 - i}\t{valence:.6f}\t{arousal:.6f}\t0.118372\t0.086233"
                    .encode())
    (folder / "ACCEDEranking.txt").write_bytes(eol.join(rows) + eol)
    if sets:
        codes = [b"\t".join([str(i).encode(), f"ACCEDE{i:05d}.mp4".encode(), str((1, 2, 0)[i % 3]).encode()])
                 for i in range(n)]
        (folder / "ACCEDEsets.txt").write_bytes(eol.join([b"id\tname\tset", *codes]) + eol)
    (folder / "data").mkdir(exist_ok=True)
    for i in present:
        (folder / "data" / f"ACCEDE{i:05d}.mp4").write_bytes(b"\0" * 16)
    return folder


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_official_sets_are_the_default(tmp_path, eol):
    df = read_liris_accede(write_liris(tmp_path, 6, present=tuple(range(6)), eol=eol))
    assert df["split"].tolist() == ["train", "val", "test"] * 2
    assert df["video_id"].tolist() == [f"ACCEDE{i:05d}" for i in range(6)]
    assert df["valence_value"].tolist() == pytest.approx([1.0 + (i * 0.37) % 4.0 for i in range(6)], abs=1e-6)


def test_a_partial_download_keeps_every_listed_clip(tmp_path):
    df = read_liris_accede(write_liris(tmp_path, 20, present=(3, 11)))
    assert len(df) == 20
    have = df.dropna(subset=["source_path"])
    assert have["video_id"].tolist() == ["ACCEDE00003", "ACCEDE00011"]
    assert all(p.endswith(f"data/{v}.mp4") for v, p in zip(have["video_id"], have["source_path"]))


def test_hashed_split_is_seventy_ten_twenty_and_reproducible(tmp_path):
    write_liris(tmp_path, 2000)
    df = read_liris_accede(tmp_path, split="hashed")
    counts = Counter(df["split"])
    assert abs(counts["train"] / 2000 - 0.7) < 0.03 and abs(counts["val"] / 2000 - 0.1) < 0.02
    assert abs(counts["test"] / 2000 - 0.2) < 0.03
    assert df["split"].tolist() == [hashed_split(v) for v in df["video_id"]]
    official = read_liris_accede(tmp_path)
    assert (official["split"] != df["split"]).any()  # a different assignment, not the sets file renamed
    # a clip keeps its split when the list changes (here: the first 500 clips only)
    write_liris(tmp_path / "part", 500, sets=False)
    part = read_liris_accede(tmp_path / "part", split="hashed")
    assert part["split"].tolist() == df["split"].tolist()[:500]


def test_hashed_split_needs_no_sets_file(tmp_path):
    write_liris(tmp_path, 5, sets=False)
    assert len(read_liris_accede(tmp_path, split="hashed")) == 5
    with pytest.raises(SourceError, match="ACCEDEsets.txt"):
        read_liris_accede(tmp_path)


def test_split_option_through_load_source(tmp_path):
    write_liris(tmp_path, 30)
    manifest = load_source("liris-accede", tmp_path, split="hashed")
    assert manifest.videos["split"].tolist() == [hashed_split(f"ACCEDE{i:05d}") for i in range(30)]
    assert load_source("liris-accede", tmp_path).videos["split"].tolist() == ["train", "val", "test"] * 10


def test_unknown_split_names_the_argument(tmp_path):
    write_liris(tmp_path, 3)
    with pytest.raises(ValueError, match=r"split='random': expected one of \['official', 'hashed'\]"):
        read_liris_accede(tmp_path, split="random")
