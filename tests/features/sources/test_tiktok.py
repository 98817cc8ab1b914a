"""TikTok shapes as scrapers write them (fixtures in ``tiktok_fixtures.py``), read into one manifest layout."""

import json
import math
from datetime import datetime, timezone

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import open_store
from features.sources import SourceError, load_source
from features.sources.tiktok import read_tiktok
from features.sources.tiktok_shapes import CSV_FIELDS, parse_columns, track_song_id
from tests.features.sources import tiktok_fixtures as fx

SCRAPE = fx.SCRAPE


def _write(folder, name, text, *, scrape=SCRAPE):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    if scrape is not None:
        (folder / "tiktok_scrape.json").write_text(json.dumps({"scrape_time": scrape}))
    return path


def _by_id(videos):
    return videos.set_index("video_id").sort_index()


def _age(created, scrape=SCRAPE):
    return (scrape - created) / 86400


def test_tiktokapi_itemstruct_array(tmp_path):
    videos, edges = read_tiktok(_write(tmp_path, "videos.json", fx.ITEMSTRUCT_ARRAY))
    v = _by_id(videos)
    a = v.loc["7261234567890123456"]
    # statsV2's string counts win over the stale numeric stats (10500 vs 10400 plays, 213 vs 200 collects)
    assert (a.play_count, a.share_count, a.comment_count, a.digg_count, a.collect_count) == (10500, 12, 34, 1200, 213)
    assert a.popularity_raw == pytest.approx(math.log((10500 + 12 + 34 + 1) / _age(1690656555)))
    assert a.desc == "Sunset vibes \U0001f305 #fyp #travel" and a.caption_length == 27
    assert json.loads(a.hashtag_list) == ["fyp", "travel"] and a.hashtag_count == 2
    assert (a.song_id, a.song_title, a.song_artist) == (
        "6952235736812750850", "Cứ Chill Thôi", "Chillies & Suni Hạ Linh")
    assert (a.author, a.author_followers, a.author_following, a.author_hearts, a.author_videos) == (
        "wander.lust", 50300, 120, 1300000, 210)
    assert a.author_verified == True  # noqa: E712 - a nullable boolean cell
    assert a.duration_meta == 15 and a.post_shape == "json-array"
    b = v.loc["7262000000000000001"]  # createTime as a string; no music at all
    assert b.create_time == 1690700000 and b.song_id is None and b.collect_count == 0
    assert b.author_verified == False and json.loads(b.hashtag_list) == []  # noqa: E712
    assert edges.to_dict("records") == [{"video_id": "7261234567890123456", "song_id": "6952235736812750850"}]


@pytest.mark.parametrize("wrap", [
    lambda items: '{"cursor":"1758331327601","extra":{"fatal_item_ids":[],"now":1760940141000},"hasMore":true,'
                  '"itemList":' + items + ',"statusCode":0}',
    lambda items: '{"data":{"cursor":"1758331327601","hasMore":true,"itemList":' + items + '}}',
])
def test_item_list_responses(tmp_path, wrap):
    videos, edges = read_tiktok(_write(tmp_path, "page1.json", wrap(fx.ITEMSTRUCT_ARRAY)))
    assert sorted(videos["video_id"]) == ["7261234567890123456", "7262000000000000001"]
    assert set(videos["post_shape"]) == {"item-list"} and len(edges) == 1


def test_tiktok_scraper_collector(tmp_path):
    videos, edges = read_tiktok(_write(tmp_path, "user_kikakiim.json", fx.COLLECTOR))
    v = _by_id(videos)
    a = v.loc["7006694664724122881"]
    assert (a.play_count, a.share_count, a.comment_count, a.digg_count) == (17300000, 9114, 19100, 2500000)
    assert pd.isna(a.collect_count) and a.duration_meta == 11 and a.post_shape == "collector"
    assert (a.author, a.author_followers, a.author_following, a.author_hearts, a.author_videos, a.author_verified) == (
        "kikakiim", 24100000, 89, 628900000, 829, False)
    assert a.song_title == "Cứ Chill Thôi (DJ TuSo & LEA Remix)" and a.desc.startswith("Inst: kikakim\U0001f90d")
    assert json.loads(a.hashtag_list) == ["dance", "xuhuong"]
    b = v.loc["7006000000000000002"]  # empty musicId: kept, no edge; empty caption
    assert b.song_id is None and b.caption_length == 0 and b.author_verified == True  # noqa: E712
    assert edges["video_id"].tolist() == ["7006694664724122881"]


def test_apify_export_with_string_counts_and_iso_times(tmp_path):
    videos, edges = read_tiktok(_write(tmp_path, "dataset_tiktok-scraper.json", fx.APIFY_ARRAY))
    v = _by_id(videos)
    a, b = v.loc["7261000000000000011"], v.loc["7261000000000000012"]
    assert a.create_time == 1690656555 and (a.play_count, a.collect_count, a.author_followers) == (210000, 213, 88200)
    iso = datetime(2023, 7, 30, 8, tzinfo=timezone.utc).timestamp()
    assert b.create_time == iso and b.age_days == pytest.approx(_age(iso))
    assert set(edges["song_id"]) == {"7261000000000000999"} and len(edges) == 2


@pytest.mark.parametrize("name,text", [
    ("sigi_state.json", fx.SIGI_STATE),
    ("sigi_envelope.json", '{"SIGI_STATE": ' + fx.SIGI_STATE + "}"),
    ("page.html", '<!DOCTYPE html><html><head><script id="SIGI_STATE" type="application/json">' + fx.SIGI_STATE
     + '</script><script id="SSR" type="application/json">{}</script></head><body></body></html>'),
])
def test_web_page_item_module(tmp_path, name, text):
    videos, edges = read_tiktok(_write(tmp_path, name, text))
    a = videos.iloc[0]
    assert a.video_id == "7250000000000000001" and a.post_shape == "item-module"
    # ItemModule names the author by handle; UserModule holds the profile (verified) and authorStats the counts
    assert (a.author, a.author_verified, a.author_followers, a.author_hearts) == ("dj.kuro", True, 9000, 120000)
    assert a.create_time == 1688000000 and a.play_count == 30500 and json.loads(a.hashtag_list) == ["edm"]
    assert edges.to_dict("records") == [{"video_id": "7250000000000000001", "song_id": "7100000000000000042"}]


@pytest.mark.parametrize("name,text", [
    ("rehydration.json", fx.REHYDRATION),
    ("envelope.json", '{"__UNIVERSAL_DATA_FOR_REHYDRATION__": ' + fx.REHYDRATION + "}"),
    ("video.html", '<html><body><script id="__UNIVERSAL_DATA_FOR_REHYDRATION__" type="application/json">'
     + fx.REHYDRATION + "</script></body></html>"),
    ("detail.json", '{"itemInfo": ' + json.dumps(json.loads(fx.REHYDRATION)["__DEFAULT_SCOPE__"][
        "webapp.video-detail"]["itemInfo"]) + ', "statusCode": 0}'),
])
def test_web_page_rehydration_and_item_detail(tmp_path, name, text):
    videos, _ = read_tiktok(_write(tmp_path, name, text))
    a = videos.iloc[0]
    assert a.video_id == "7350000000000000077" and a.desc == "caf\xe9 morning \u2615 #coffee"
    assert (a.play_count, a.collect_count, a.author_followers, a.author_verified) == (1800, 5, 230, False)


def test_folder_of_post_files_of_several_shapes(tmp_path):
    _write(tmp_path, "posts/7300000000000000005.json", fx.PAGE_POST)
    _write(tmp_path, "posts/rehydration.json", fx.REHYDRATION)
    _write(tmp_path, "pages/kuro.html", '<script id="SIGI_STATE" type="application/json">' + fx.SIGI_STATE
           + "</script>")
    (tmp_path / "posts" / "7300000000000000005.mp4").write_bytes(b"\x00")
    (tmp_path / "notes.txt").write_text("not a post")
    m = load_source("tiktok", tmp_path)
    v = _by_id(m.videos)
    assert list(v.index) == ["7250000000000000001", "7300000000000000005", "7350000000000000077"]
    assert v.loc["7300000000000000005", "post_shape"] == "post"
    assert v.loc["7300000000000000005", "source_path"] == str(tmp_path / "posts" / "7300000000000000005.mp4")
    assert v["source_path"].isna().sum() == 2
    assert len(m.edges) == 3 and m.videos["popularity"].between(0, 1).all()


def test_ytdlp_info_json_folder(tmp_path):
    a_id, b_id, c_id = "7261234500000000001", "7261234500000000002", "7261234500000000003"
    _write(tmp_path, f"{a_id}.info.json", fx.YTDLP_A, scrape=None)
    _write(tmp_path, f"take two [{b_id}].info.json", fx.YTDLP_B, scrape=None)
    _write(tmp_path, f"{c_id}.info.json", fx.YTDLP_C, scrape=None)
    _write(tmp_path, "mika.moves [6800000000000000009].info.json", fx.YTDLP_PLAYLIST, scrape=None)
    (tmp_path / f"{a_id}.mp4").write_bytes(b"\x00")
    (tmp_path / f"take two [{b_id}].mp4").write_bytes(b"\x00")
    videos, edges = read_tiktok(tmp_path)  # no sidecar: yt-dlp's `epoch` is the scrape time
    v = _by_id(videos)
    assert list(v.index) == [a_id, b_id, c_id] and set(v["post_shape"]) == {"yt-dlp"}
    a = v.loc[a_id]
    assert a.popularity_raw == pytest.approx(math.log((250000 + 800 + 410 + 1) / ((1716000000 - 1715000000) / 86400)))
    assert (a.digg_count, a.author, a.author_followers, a.duration_meta) == (31000, "mika.moves", 120000, 14)
    assert json.loads(a.hashtag_list) == ["dance", "fyp"]  # yt-dlp has no tag list for TikTok: from the caption
    assert a.source_path == str(tmp_path / f"{a_id}.mp4")
    assert v.loc[b_id, "source_path"] == str(tmp_path / f"take two [{b_id}].mp4")
    # no music id: the song is track + artists, the same after normalising case and spaces
    song = track_song_id("Espresso", ["Sabrina Carpenter"])
    assert song.startswith("ta:") and v.loc[a_id, "song_id"] == v.loc[b_id, "song_id"] == song
    assert v.loc[c_id, "song_id"] is None and v.loc[c_id, "source_path"] is None  # generic "original sound"
    assert edges["video_id"].tolist() == [a_id, b_id]


def test_track_song_id_is_stable_and_normalised():
    ref = track_song_id("Espresso", ["Sabrina Carpenter"])
    assert ref == "ta:" + "%016x" % int(ref[3:], 16) and len(ref) == 19
    assert track_song_id(" ESPRESSO ", "Sabrina  Carpenter") == ref
    assert track_song_id("Espresso", ["A", "B"]) == track_song_id("espresso", "B & A") != ref
    assert track_song_id("Original Sound", None) is None and track_song_id("", ["x"]) is None
    assert track_song_id("original sound", ["Chef Mia"]) is not None
    assert ref == "ta:94d124011b28d56b"  # the id is part of the stored dataset: it must not drift between versions


def test_tiktok_scraper_csv_found_by_column_names(tmp_path):
    videos, edges = read_tiktok(_write(tmp_path, "posts.csv", fx.SCRAPER_CSV))
    v = _by_id(videos)
    assert list(v.index) == ["7006000000000000002", "7006694664724122881"]  # 19-digit ids kept exact, as text
    a = v.loc["7006694664724122881"]
    assert a.desc == 'Inst: kikakim\U0001f90d, "quoted" #dance' and a.author_verified == False  # noqa: E712
    assert (a.play_count, a.author_followers, a.duration_meta) == (17300000, 24100000, 11)
    assert json.loads(a.hashtag_list) == ["dance"] and a.post_shape == "csv"
    b = v.loc["7006000000000000002"]
    assert b.song_id is None and b.desc is None and b.caption_length == 0
    assert edges["song_id"].tolist() == ["6952235736812750850"]


def test_custom_csv_needs_and_takes_a_column_mapping(tmp_path):
    path = _write(tmp_path, "export.csv", fx.CUSTOM_CSV, scrape=None)
    with pytest.raises(SourceError, match="no column found for \\['id', 'create_time', 'plays'\\]") as err:
        read_tiktok(path, scrape_time=1_730_000_000)
    assert "Video ID" in str(err.value) and "--columns" in str(err.value)
    videos, edges = read_tiktok(path, scrape_time=1_730_000_000,
                                columns="id=Video ID, create_time=Posted,plays=Views,diggs=Likes,song_id=Sound ID")
    v = _by_id(videos)
    assert v.loc["7400000000000000001", "create_time"] == datetime(2024, 7, 1, 12, tzinfo=timezone.utc).timestamp()
    assert v.loc["7400000000000000002", "create_time"] == datetime(2024, 7, 2, 8, 30, tzinfo=timezone.utc).timestamp()
    first = v.loc["7400000000000000001"]
    assert first["desc"] == "été ☀️ #summer" and first["digg_count"] == 900
    assert edges.to_dict("records") == [{"video_id": "7400000000000000001", "song_id": "7100000000000000042"}]
    with pytest.raises(SourceError, match="'plays' to 'Plays'.*not a column"):
        read_tiktok(path, scrape_time=1_730_000_000, columns="id=Video ID,create_time=Posted,plays=Plays")


def test_parse_columns_errors_name_the_value():
    assert parse_columns({"plays": "Views"}) == {"plays": "Views"}
    with pytest.raises(ValueError, match="columns='plays'.*no '='"):
        parse_columns("plays")
    with pytest.raises(ValueError, match="unknown field 'views'") as err:
        parse_columns("views=Views")
    assert all(name in str(err.value) for name in CSV_FIELDS)
    with pytest.raises(ValueError, match="mapped twice"):
        parse_columns("id=a,id=b")


def test_columns_for_a_source_without_csv_is_refused(tmp_path):
    path = _write(tmp_path, "videos.json", fx.ITEMSTRUCT_ARRAY)
    with pytest.raises(ValueError, match="columns='plays=Views'.*no .csv file"):
        read_tiktok(path, columns="plays=Views")


@pytest.mark.parametrize("text,found", [
    ('{"data": {"videos": []}, "cursor": 0}', "keys \\['videos'\\]"),
    ('{"code": 0, "msg": "success", "cursor": 0}', "keys \\['code', 'msg', 'cursor'\\]"),
    ('"just a string"', "a JSON str"),
    ("<html><body>Please wait...</body></html>", "without a SIGI_STATE"),
    ('{"__DEFAULT_SCOPE__": {"webapp.user-detail": {"userInfo": {}}}}', "webapp.user-detail"),
])
def test_no_shape_fits_names_the_shapes_and_what_was_found(tmp_path, text, found):
    path = _write(tmp_path, "mystery.json", text)
    with pytest.raises(SourceError, match=found) as err:
        read_tiktok(path)
    msg = str(err.value)
    assert "mystery.json" in msg and "no TikTok post shape fits" in msg
    assert all(s in msg for s in ("JSON Lines", "collector", "ItemModule", "yt-dlp", "CSV"))


def test_record_of_no_known_layout_names_file_and_row(tmp_path):
    path = _write(tmp_path, "a.json", '[{"id": "1", "createTime": 1, "stats": {"playCount": 1, "shareCount": 0, '
                                      '"commentCount": 0}}, {"id": "2", "likes": 5}]')
    with pytest.raises(SourceError, match="a.json: row 2: .*no known post layout.*'likes'"):
        read_tiktok(path)


@pytest.mark.parametrize("mutate,match", [
    (lambda r: r.update(playCount="1.2M"), "column 'playCount': got '1.2M'"),
    (lambda r: r.pop("shareCount"), "column 'shareCount': got '<missing>'"),
    (lambda r: r.update(createTime="last week"), "createTime"),
    (lambda r: r["musicMeta"].update(musicId=["x"]), "musicMeta.musicId"),
])
def test_bad_flat_records_name_the_field(tmp_path, mutate, match):
    doc = json.loads(fx.COLLECTOR)
    mutate(doc["collector"][1])
    with pytest.raises(SourceError, match=match) as err:
        read_tiktok(_write(tmp_path, "c.json", json.dumps(doc)))
    assert "row 2" in str(err.value)


def test_duplicate_ids_across_files_are_named(tmp_path):
    _write(tmp_path, "a.json", fx.PAGE_POST)
    _write(tmp_path, "b.json", fx.PAGE_POST)
    with pytest.raises(SourceError, match="b.json: row 1: duplicate id '7300000000000000005' "
                                          "\\(first in .*a.json, row 1"):
        read_tiktok(tmp_path)


def test_pretty_printed_document_under_a_jsonl_name_and_jsonl_under_a_json_name(tmp_path):
    assert read_tiktok(_write(tmp_path, "one.jsonl", fx.PAGE_POST))[0]["video_id"].tolist() == ["7300000000000000005"]
    lines = "\n".join(json.dumps(r) for r in json.loads(fx.APIFY_ARRAY)) + "\n"
    videos, _ = read_tiktok(_write(tmp_path / "b", "export.json", lines))
    assert videos["post_shape"].tolist() == ["jsonl", "jsonl"]


def test_manifest_columns_round_trip_through_the_store(tmp_path):
    src = tmp_path / "src"
    _write(src, "videos.json", fx.ITEMSTRUCT_ARRAY)
    _write(src, "user.json", fx.COLLECTOR)
    m = load_source("tiktok", src)
    store = open_store(tmp_path / "root", "tk", create=True)
    store.write_manifest(m.videos, m.edges)
    back = store.manifest()
    def cells(df):  # text comes back as pandas' str dtype (missing = NaN): compare the values, missing as None
        return df.astype(object).where(df.notna(), None)

    pd.testing.assert_frame_equal(cells(back), cells(m.videos), check_dtype=False)
    assert list(back.columns) == list(m.videos.columns)
    assert str(back["author_followers"].dtype) == "Int64" and str(back["author_verified"].dtype) == "boolean"
    row = back.set_index("video_id").loc["7006694664724122881"]
    assert json.loads(row["hashtag_list"]) == ["dance", "xuhuong"] and row["author_hearts"] == 628900000


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**20), st.floats(allow_nan=True), st.text(max_size=4),
                  st.sampled_from(["12", "1.2M", "2023-07-29T18:49:15Z", "", "original sound"]))
_value = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(
    st.sampled_from(["id", "name", "musicId", "playCount", "title"]), inner, max_size=2), max_leaves=4)
_keys = ["id", "createTime", "createTimeISO", "timestamp", "epoch", "stats", "statsV2", "playCount", "shareCount",
         "commentCount", "view_count", "repost_count", "comment_count", "musicMeta", "authorMeta", "authorStats",
         "music", "track", "artists", "hashtags", "challenges", "text", "desc", "collector", "ItemModule", "itemList",
         "aweme_id", "statistics", "aweme_list", "create_time"]


@settings(max_examples=80, deadline=None)
@given(st.one_of(st.lists(st.dictionaries(st.sampled_from(_keys), _value, max_size=8), max_size=3),
                 st.dictionaries(st.sampled_from(_keys), _value, max_size=8)))
def test_any_json_document_is_read_or_refused_naming_the_file(tmp_path_factory, doc):
    folder = tmp_path_factory.mktemp("shape")
    path = _write(folder, "scrape.json", json.dumps(doc))
    try:
        videos, edges = read_tiktok(path)
    except SourceError as exc:
        assert "scrape.json" in str(exc)
        return
    assert videos["video_id"].is_unique and videos["popularity"].between(0, 1).all()
    assert set(edges["video_id"]) <= set(videos["video_id"])


def test_page_with_both_scripts_reads_the_one_holding_posts(tmp_path):
    page = ('<html><script id="SIGI_STATE" type="application/json">{"AppContext": {}, "SEOState": {}}</script>'
            '<script id="__UNIVERSAL_DATA_FOR_REHYDRATION__" type="application/json">' + fx.REHYDRATION
            + "</script></html>")
    videos, _ = read_tiktok(_write(tmp_path, "both.html", page))
    assert videos["video_id"].tolist() == ["7350000000000000077"] and videos["post_shape"].tolist() == ["rehydration"]


def test_mobile_app_api_aweme_list(tmp_path):
    videos, edges = read_tiktok(_write(tmp_path, "aweme.json", fx.APP_AWEME_LIST))
    a = videos.iloc[0]
    assert (a.video_id, a.post_shape, a.create_time) == ("6901762673936059654", "aweme", 1607000000)
    assert (a.play_count, a.share_count, a.comment_count, a.digg_count, a.collect_count) == (4000, 5, 12, 300, 9)
    assert a.duration_meta == pytest.approx(13.651)  # the app counts milliseconds
    assert (a.author, a.author_followers, a.author_hearts, a.author_videos) == ("ren.loops", 1200, 45000, 88)
    assert a.author_verified == False and json.loads(a.hashtag_list) == ["fyp"]  # noqa: E712
    assert edges.to_dict("records") == [{"video_id": "6901762673936059654", "song_id": "6767362751674189825"}]
    detail = json.dumps({"status_code": 0, "aweme_detail": json.loads(fx.APP_AWEME_LIST)["aweme_list"][0]})
    assert read_tiktok(_write(tmp_path / "d", "detail.json", detail))[0]["video_id"].tolist() == ["6901762673936059654"]


def test_csv_in_a_legacy_encoding_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes("id,createTime,playCount,shareCount,commentCount,text\n1,1690000000,5,0,0,caf\xe9\n"
                     .encode("cp1252"))
    with pytest.raises(SourceError, match="export.csv: not a readable CSV export \\(expected UTF-8"):
        read_tiktok(path, scrape_time=SCRAPE)


def test_json_lines_with_crlf_and_a_raw_line_separator_in_a_caption(tmp_path):
    post = json.loads(fx.PAGE_POST)
    lines = [json.dumps({**post, "desc": "one\u2028two"}, ensure_ascii=False),  # JSON allows a raw U+2028
             json.dumps({**post, "id": "7300000000000000006"}, ensure_ascii=False)]
    for name in ("posts.jsonl", "posts.json"):
        videos, _ = read_tiktok(_write(tmp_path / name, name, "\r\n".join(lines) + "\r\n"))
        assert videos["desc"].tolist()[0] == "one\u2028two" and len(videos) == 2


def test_apify_csv_with_slash_columns_and_numbered_hashtags(tmp_path):
    videos, edges = read_tiktok(_write(tmp_path, "dataset.csv", fx.APIFY_CSV))
    v = _by_id(videos)
    a = v.loc["7261000000000000011"]
    assert (a.play_count, a.collect_count, a.author_followers, a.author_hearts, a.duration_meta) == (
        210000, 213, 88200, 2400000, 23)
    assert a.create_time == datetime(2023, 7, 29, 18, 49, 15, tzinfo=timezone.utc).timestamp()
    assert json.loads(a.hashtag_list) == ["foodtok", "easyrecipe"]
    assert json.loads(v.loc["7261000000000000012", "hashtag_list"]) == []
    assert set(edges["song_id"]) == {"7261000000000000999"} and len(edges) == 2
