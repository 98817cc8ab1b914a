"""Tests of pipelines/reproduce.py: the shipped presets, their parameter counts, and quick end-to-end runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from features import open_store
from pipelines.cli import main
from pipelines.reproduce import (count_parameters, list_presets, load_preset, paper_size_parameters, reproduce,
                                 row_overrides)
from tests.pipelines.conftest import DATASET

PRESETS = list_presets()


def test_there_is_a_preset_per_paper_table():
    assert {"sec2sec-liris-tables-2.3-2.4", "sec2sec-liris-table-2.5", "sec2sec-fi-icassp-table-2",
            "mcat-fi-tables-3.2-3.3", "mcat-fi-table-3.4", "van-tiktok-table-4.2", "van-tiktok-table-4.3",
            "mtaf-tables-2-3", "mtaf-table-4", "siamese-fi-tables-1-2"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_complete_and_every_row_builds_at_paper_and_quick_sizes(name):
    p = load_preset(name)
    assert p.title and p.paper and p.departures and p.metric_definitions
    assert all(d.get("setting") and d.get("why") for d in p.departures)
    for row in p.rows:
        assert row.paper, f"{row.label}: no paper numbers"
        assert count_parameters(row.model, p.task, row_overrides(p, row)) > 0
        quick = row_overrides(p, row, quick=True)
        assert count_parameters(row.model, p.task, quick) < 5_000_000, f"{row.label}: --quick is not small"
        if "heads" in row.overrides:
            assert quick["heads"] == row.overrides["heads"] and quick["dim"] % quick["heads"] == 0


def test_paper_parameter_counts_are_matched_or_explained_from_the_papers_text():
    checked = 0
    for name in PRESETS:
        p = load_preset(name)
        for row in p.rows:
            if row.paper_params is None:
                continue
            checked += 1
            ours = paper_size_parameters(p, row)
            if abs(ours - row.paper_params) <= 0.01 * row.paper_params:
                continue
            assert len(row.params_note) > 80, f"{name} / {row.label}: {ours:,} vs {row.paper_params:,}, unexplained"
            if row.params_reading is not None:
                assert abs(row.params_reading - row.paper_params) <= 0.01 * row.paper_params, (name, row.label)
    assert checked >= 4
    mcat = next(r for r in load_preset("mcat-fi-tables-3.2-3.3").rows if r.model == "mcat")
    # Table 3.3's 845,959,433 is one FC over 100 frames × (64/2)² patches × l = 16 → d = 512, plus the rest
    assert mcat.params_reading == 100 * (64 // 2) ** 2 * 16 * 512 + 512


@pytest.mark.parametrize("text, match", [
    ("[preset]\ntitle='t'\npaper='p'\ntask='emotion'\ndataset='d'\nmetrics=['accuracy_mean']\n", "rows"),
    ("[preset]\ntitle='t'\npaper='p'\ntask='mood'\ndataset='d'\nmetrics=[]\n", "task='mood'"),
    ("[preset]\ntitle='t'\npaper='p'\ntask='emotion'\ndataset='d'\nmetrics=['accuracy_mean']\n"
     "[[rows]]\nlabel='x'\nmodel='nope'\n", "model='nope'"),
    ("[preset]\ntitle='t'\npaper='p'\ntask='emotion'\ndataset='d'\nmetrics=['accuracy_mean']\n"
     "[extract]\nclip_seconds=-1\n[[rows]]\nlabel='x'\nmodel='sec2sec'\n", r"\[extract\]"),
    ("[preset]\ntitle='t'\npaper='p'\ntask='emotion'\ndataset='d'\nmetrics=['accuracy_mean']\n"
     "[train]\nlearning_rate=1\n[[rows]]\nlabel='x'\nmodel='sec2sec'\n", "learning_rate"),
    ("[preset\n", "not valid TOML"),
])
def test_bad_presets_are_refused_naming_the_field(tmp_path, text, match):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_preset(str(path))
    with pytest.raises(ValueError, match="no such preset"):
        load_preset("table-9.9")


def test_cli_lists_presets(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", "--list", "--json"])
    assert exit_.value.code in (0, None)
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["preset"] for r in listed] == PRESETS and all(r["reproduces"] for r in listed)


def test_quick_reproduction_writes_the_papers_table_beside_vidpipes(synthetic_copy, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", "mcat-fi-table-3.4", DATASET, "--quick", "--root", str(synthetic_copy), "--device", "cpu",
              "--json"])
    assert exit_.value.code in (0, None)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["label"] for r in result["rows"]] == ["With positional encoding", "Without positional encoding"]
    assert all(r["epochs_run"] == 1 and "mean_accuracy_openness" in r["metrics"] for r in result["rows"])
    text = open(result["report"], encoding="utf-8").read()
    assert "0.902" in text and "0.901" in text  # the paper's extraversion numbers, beside vidpipe's
    assert "Metric definitions" in text and "departs from the paper" in text and "eq. 3.5" in text
    runs = open_store(synthetic_copy, DATASET).runs()
    assert {r["run_id"] for r in result["rows"]} <= set(runs["run_id"])
    assert {c["hierarchical_pe"] for c in runs["config"]} >= {"split", "none"}


def test_quick_mtaf_table_4_trains_on_the_synthetic_rescrapes(synthetic_copy):
    """MTAF Table 4 end to end: the synthetic dataset's re-scrapes (ingested into the scrape history) give every post
    an early trend, the trend rows read it (and only it, for Bi-GRU / Bi-LSTM), the fourth row does without."""
    result = reproduce(preset="mtaf-table-4", dataset=DATASET, root=str(synthetic_copy), quick=True, device="cpu")
    assert [r["label"] for r in result["rows"]][:3] == ["Bi-GRU", "Bi-LSTM", "MTAF"]
    store = open_store(synthetic_copy, DATASET)
    runs = store.runs().set_index("run_id")
    inputs = [runs.loc[r["run_id"], "modalities"] for r in result["rows"]]
    assert inputs == [["early_trend"], ["early_trend"], ["vision", "audio", "text", "meta", "early_trend"],
                      ["vision", "audio", "text", "meta"]]
    assert [runs.loc[r["run_id"], "config"]["trend_rnn"] for r in result["rows"][:2]] == ["gru", "lstm"]
    arrays, _ = store.read_pack(runs.loc[result["rows"][0]["run_id"], "pack"])
    assert arrays["early_trend"].shape[1] == 5 and arrays["early_trend_mask"].all()  # every post was re-scraped
    for row in result["rows"]:
        assert {"mae", "mse", "r2", "spearman", "ndcg@10"} <= set(row["metrics"]) and row["epochs_run"] == 1
    text = open(result["report"], encoding="utf-8").read()
    assert "0.455" in text and "0.439" in text and "0.083" in text  # Table 4's MAE column, beside vidpipe's
    assert "early-trend series" in text and "trend_len = 5" in text


def test_a_trend_preset_on_a_dataset_scraped_once_is_flagged(root):
    from features.store import Store
    from pipelines.reproduce import _lacks_scrape_history

    store = Store(str(root), "once")
    table_4, tables_2_3 = load_preset("mtaf-table-4"), load_preset("mtaf-tables-2-3")
    assert _lacks_scrape_history(store, table_4, quick=True) and not _lacks_scrape_history(store, tables_2_3, True)
    snap = {"create_time": 0.0, "play_count": 10, "digg_count": 1, "comment_count": 1, "share_count": 1}
    with store.lock():
        store.append_scrape_history(pd.DataFrame([{"video_id": "a", "scrape_time": 3600.0, **snap}]))
    assert _lacks_scrape_history(store, table_4, quick=True)
    with store.lock():
        store.append_scrape_history(pd.DataFrame([{"video_id": "a", "scrape_time": 7200.0, **snap}]))
    assert not _lacks_scrape_history(store, table_4, quick=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_runs_end_to_end_in_quick_mode(synthetic_copy, name):
    if "egemaps" in json.dumps(load_preset(name).extract):
        pytest.importorskip("opensmile")
    result = reproduce(preset=name, dataset=DATASET, root=str(synthetic_copy), quick=True, device="cpu")
    p = load_preset(name)
    assert len(result["rows"]) == len(p.rows)
    for row in result["rows"]:
        assert set(p.metrics) - {"efficiency_per_minute"} <= set(row["metrics"]), row["label"]
    if p.graph:
        assert result["graph"]["test_mse"] is not None
