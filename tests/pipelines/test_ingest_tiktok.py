"""``vidpipe ingest --source tiktok``: the ``--columns`` mapping of a CSV export, end to end through the flow."""

import json

import pytest

from features import open_store
from pipelines.cli import main
from tests.features.sources import tiktok_fixtures as fx

MAPPING = "id=Video ID,create_time=Posted,plays=Views,diggs=Likes,song_id=Sound ID"


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    return exit_.value.code or 0, capsys.readouterr()


def test_cli_ingests_a_csv_export_with_a_column_mapping(root, tmp_path, prefect_harness, capsys):
    csv = tmp_path / "export.csv"
    csv.write_bytes(fx.CUSTOM_CSV.encode("utf-8"))
    code, out = _cli(["ingest", "tk", "--source", "tiktok", str(csv), "--columns", MAPPING, "--scrape-time",
                      "1730000000", "--root", str(root), "--json"], capsys)
    assert code == 0, out.err
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert (summary["videos"], summary["edges"], summary["songs"]) == (2, 1, 1)
    store = open_store(root, "tk")
    assert store.source_info()["options"] == {"scrape_time": 1730000000.0, "columns": MAPPING}  # refresh reuses it
    m = store.manifest().set_index("video_id")
    assert m.loc["7400000000000000001", "digg_count"] == 900 and m["popularity"].between(0, 1).all()


@pytest.mark.parametrize("extra,message", [
    (["--columns", "views=Views"], "unknown field 'views'"),
    (["--columns", "plays"], "no '='"),
])
def test_cli_bad_columns_is_a_one_line_error(root, tmp_path, prefect_harness, capsys, extra, message):
    csv = tmp_path / "export.csv"
    csv.write_bytes(fx.CUSTOM_CSV.encode("utf-8"))
    code, out = _cli(["ingest", "tk", "--source", "tiktok", str(csv), "--scrape-time", "1730000000", "--root",
                      str(root), *extra], capsys)
    assert code == 2 and message in out.err and "columns=" in out.err
    assert "Traceback" not in out.err + out.out


def test_columns_with_another_source_is_refused(root, tmp_path, prefect_harness):
    from flows import ingest

    with pytest.raises(ValueError, match="columns='plays=Views': only the tiktok source"):
        ingest(dataset="x", source="folder", root=str(root), path=str(tmp_path), columns="plays=Views")
