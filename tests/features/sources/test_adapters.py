import io
import json
import math
import pickle
import subprocess

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.sources import SourceError, load_source
from features.sources.first_impressions import TRAITS, dump_py2_pickle, read_first_impressions, safe_load_pickle
from features.sources.liris import read_liris_accede
from features.sources.tiktok import normalise_popularity, popularity_score, read_tiktok

ALL = TRAITS + ("interview",)


def _fi(tmp_path, scores=None, split_dirs=False):
    videos = ["a.001.mp4", "b.002.mp4", "c.003.mp4"]
    splits = {"training": videos[:2], "test": videos[2:]}
    for tag, names in splits.items():
        folder = tmp_path / tag if split_dirs else tmp_path
        folder.mkdir(exist_ok=True)
        ann = {t: {n: (scores or {}).get((t, n), 0.5) for n in names} for t in ALL}
        with open(folder / f"annotation_{tag}.pkl", "wb") as fh:
            dump_py2_pickle(ann, fh)
        with open(folder / f"transcription_{tag}.pkl", "wb") as fh:
            dump_py2_pickle({n: f"hello caf\xe9 {n}" for n in names}, fh)
        for n in names:
            (folder / n).write_bytes(b"\x00")
    return tmp_path


@pytest.mark.parametrize("split_dirs", [False, True])
def test_first_impressions_reads_python2_pickles(tmp_path, split_dirs):
    df = read_first_impressions(_fi(tmp_path, {("openness", "b.002.mp4"): 0.25}, split_dirs))
    assert df["video_id"].tolist() == ["a.001", "b.002", "c.003"]
    assert df["split"].tolist() == ["train", "train", "test"]
    assert df.loc[1, "openness"] == 0.25 and df.loc[0, "transcript"] == "hello caf\xe9 a.001.mp4"
    assert all(p.endswith(".mp4") for p in df["source_path"])


class _Evil:
    def __reduce__(self):
        return (subprocess.call, (["touch", "/tmp/vidpipe-pwned"],))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    path = tmp_path / "annotation_training.pkl"
    path.write_bytes(pickle.dumps({"extraversion": _Evil()}, protocol=2))
    with pytest.raises(SourceError, match="refusing to load"):
        safe_load_pickle(path)
    with pytest.raises(SourceError, match="refusing to load"):
        read_first_impressions(tmp_path)


@pytest.mark.parametrize("bad,match", [
    (float("nan"), "finite number"), (1.5, r"\[0, 1\]"), ("x", "finite number"),
])
def test_first_impressions_bad_scores_name_file_and_row(tmp_path, bad, match):
    _fi(tmp_path, {("neuroticism", "a.001.mp4"): bad})
    with pytest.raises(SourceError, match=match) as err:
        read_first_impressions(tmp_path)
    assert "annotation_training.pkl" in str(err.value) and "a.001.mp4" in str(err.value)


def test_first_impressions_missing_trait_and_truncated(tmp_path):
    with open(tmp_path / "annotation_training.pkl", "wb") as fh:
        dump_py2_pickle({"extraversion": {"a.mp4": 0.1}}, fh)
    with pytest.raises(SourceError, match="missing trait"):
        read_first_impressions(tmp_path)
    buf = io.BytesIO()
    dump_py2_pickle({t: {"a.mp4": 0.1} for t in ALL}, buf)
    (tmp_path / "annotation_training.pkl").write_bytes(buf.getvalue()[:30])
    with pytest.raises(SourceError, match="cannot read"):
        read_first_impressions(tmp_path)


def _liris(tmp_path, values=((1.2, 4.5), (3.5, 2.0)), sets=(1, 0)):
    lines = ["id\tname\tvalenceRank\tarousalRank\tvalenceValue\tarousalValue\tvalenceVariance\tarousalVariance"]
    lines += [f"{i}\tACCEDE{i:05d}.mp4\t{i}\t{i}\t{v}\t{a}\t0.1\t0.1" for i, (v, a) in enumerate(values)]
    (tmp_path / "ACCEDEranking.txt").write_text("\n".join(lines) + "\n")
    s = ["id\tname\tset"] + [f"{i}\tACCEDE{i:05d}.mp4\t{c}" for i, c in enumerate(sets)]
    (tmp_path / "ACCEDEsets.txt").write_text("\n".join(s) + "\n")
    return tmp_path


def test_liris_labels_and_splits(tmp_path):
    df = read_liris_accede(_liris(tmp_path))
    assert df[["video_id", "split", "valence", "arousal"]].to_dict("records") == [
        {"video_id": "ACCEDE00000", "split": "train", "valence": 0.0, "arousal": 1.0},
        {"video_id": "ACCEDE00001", "split": "test", "valence": 1.0, "arousal": 0.0},
    ]
    assert read_liris_accede(tmp_path, threshold=1.0)["valence"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("values,sets,match", [
    (((9.0, 2.0),), (1,), "valenceValue"), ((("nan", 2.0),), (1,), "valenceValue"), (((2.0, 2.0),), (7,), "set"),
])
def test_liris_bad_rows(tmp_path, values, sets, match):
    with pytest.raises(SourceError, match=match):
        read_liris_accede(_liris(tmp_path, values, sets))


def _posts(tmp_path, records, scrape=1_700_000_000 + 10 * 86400):
    path = tmp_path / "tiktok_posts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (tmp_path / "tiktok_scrape.json").write_text(json.dumps({"scrape_time": scrape}))
    return path


def _post(i, plays, song="s1"):
    return {"id": f"v{i}", "createTime": 1_700_000_000, "stats": {"playCount": plays, "shareCount": 0,
            "commentCount": 0, "diggCount": 1}, "music": {"id": song, "title": "t"}, "desc": "#a b", "video": {"duration": 5}}


def test_tiktok_popularity_and_edges(tmp_path):
    videos, edges = read_tiktok(_posts(tmp_path, [_post(0, 99), _post(1, 9999), _post(2, 0, song="")]))
    assert videos["popularity_raw"].tolist() == pytest.approx([math.log(100 / 10), math.log(10000 / 10), math.log(1 / 10)])
    assert videos["popularity"].min() == 0 and videos["popularity"].max() == 1
    assert edges.to_dict("records") == [{"video_id": "v0", "song_id": "s1"}, {"video_id": "v1", "song_id": "s1"}]


@pytest.mark.parametrize("mutate,match", [
    (lambda r: r["stats"].update(playCount=-1), "playCount"),
    (lambda r: r.update(createTime="yesterday"), "createTime"),
    (lambda r: r.update(createTime=1_900_000_000), "before the scrape"),
])
def test_tiktok_bad_records(tmp_path, mutate, match):
    rec = _post(0, 5)
    mutate(rec)
    with pytest.raises(SourceError, match=match):
        read_tiktok(_posts(tmp_path, [rec]))


def test_tiktok_duplicate_ids_and_bad_json(tmp_path):
    with pytest.raises(SourceError, match="duplicate id"):
        read_tiktok(_posts(tmp_path, [_post(0, 1), _post(0, 2)]))
    (tmp_path / "tiktok_posts.jsonl").write_text("{not json\n")
    with pytest.raises(SourceError, match="line 1"):
        read_tiktok(tmp_path / "tiktok_posts.jsonl")


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 10**7), st.integers(0, 10**7), st.floats(1e-3, 1e4))
def test_popularity_formula_properties(plays, shares, comments, days):
    p = popularity_score(plays, shares, comments, days)
    assert math.isfinite(p)
    assert p == pytest.approx(math.log((plays + shares + comments + 1) / max(days, 1 / 24)))
    assert popularity_score(plays + 1, shares, comments, days) > p


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=1, max_size=30))
def test_normalisation_is_in_unit_interval_and_monotone(values):
    n = normalise_popularity(values)
    assert ((0 <= n) & (n <= 1)).all()
    order = sorted(range(len(values)), key=lambda i: values[i])
    assert all(n[order[i]] <= n[order[i + 1]] + 1e-12 for i in range(len(values) - 1))


def test_folder_source_and_unknown_kind(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ["a.mp4", "sub/b c.MKV", "notes.txt", ".hidden.mp4"]:
        (tmp_path / name).write_bytes(b"x")
    m = load_source("folder", tmp_path)
    assert m.videos["video_id"].tolist() == ["a", "b c"]
    assert set(m.videos["split"]) <= {"train", "val", "test"}
    assert m.videos["valence"].isna().all() and m.edges.empty
    with pytest.raises(ValueError, match="kind='youtube'"):
        load_source("youtube", tmp_path)


def test_folder_source_skips_symlinks_outside(tmp_path):
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"x")
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "in.mp4").write_bytes(b"x")
    (ds / "link.mp4").symlink_to(outside)
    assert load_source("folder", ds).videos["video_id"].tolist() == ["in"]


def test_training_ids_need_a_split_column_when_there_are_rows():
    from features.sources import training_ids

    manifest = pd.DataFrame({"video_id": ["a", "b", "c", "d"], "split": ["train", "test", "train", "val"]})
    assert training_ids(manifest) == {"a", "c"}
    assert training_ids(pd.DataFrame()) == set()  # a store's manifest before its first ingest: no rows, no columns
    with pytest.raises(ValueError, match=r"manifest has columns \['video_id'\]; expected a 'split' column"):
        training_ids(manifest[["video_id"]])
