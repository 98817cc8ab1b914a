"""analyze-outcomes end to end: a trained run's predicted traits joined with a generated outcome table whose effect is
known (the sign and significance are recovered), tables + scree plot + report written, the CLI's JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import open_store
from pipelines.cli import main
from tests.pipelines.conftest import DATASET

TRAITS = ["extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness"]


@pytest.fixture
def trained(synthetic_copy):
    from pipelines.train import run_training

    store = open_store(synthetic_copy, DATASET)
    run = run_training(store, "late-fusion", "personality", epochs=3, overrides={"dim": 16, "heads": 2}, device="cpu",
                       run_id="lf-personality")
    return synthetic_copy, run


def _outcomes(preds: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """admitted ~ Bernoulli(logistic(2.5 z)), z = the standardised predicted extraversion; age and a category are
    controls without effect; two rows name videos that do not exist."""
    rng = np.random.default_rng(seed)
    z = (preds["extraversion"] - preds["extraversion"].mean()) / preds["extraversion"].std()
    admitted = (rng.random(len(preds)) < 1 / (1 + np.exp(-2.5 * z))).astype(int)
    table = pd.DataFrame({"video_id": preds["video_id"], "admitted": admitted,
                          "age": rng.integers(21, 40, len(preds)).astype(float),
                          "track": rng.choice(["a", "b"], len(preds))})
    extra = pd.DataFrame({"video_id": ["ghost-1", "ghost-2"], "admitted": [0, 1], "age": [30.0, 31.0],
                          "track": ["a", "b"]})
    return pd.concat([table, extra], ignore_index=True)


def test_analyze_outcomes_recovers_a_known_effect(trained, tmp_path):
    from flows import analyze_outcomes
    from pipelines.analyze import predict_run

    root, run = trained
    store = open_store(root, DATASET)
    preds, record = predict_run(store, run["run_id"])
    assert list(preds.columns) == ["video_id", "split", *TRAITS] and len(preds) == 36
    assert record["model"] == "late-fusion" and preds[TRAITS].to_numpy().std(axis=0).min() > 0
    path = tmp_path / "admit.csv"
    _outcomes(preds).to_csv(path, index=False)
    with pytest.warns(UserWarning, match="2 of 38 outcome rows"):
        res = analyze_outcomes(dataset=DATASET, run_id=run["run_id"], outcomes=str(path), outcome="admitted",
                               controls=["age", "track"], root=str(root), n_iter=20)
    assert res["n"] == 36 and res["traits"] == TRAITS
    assert [r["coef"] for r in res["regressions"] if r["predictor"] == "(controls only)"] == [None, None]  # no NaN
    regs = pd.DataFrame(res["regressions"]).set_index(["link", "predictor"])
    for link in ("logit", "probit"):
        effect = regs.loc[(link, "extraversion")]
        assert effect["coef"] > 0 and effect["p"] < 0.05 and effect["stars"] in ("**", "***"), effect
        assert effect["pseudo_r2"] > regs.loc[(link, "(controls only)"), "pseudo_r2"]
    assert set(res["vif"]) == set(TRAITS) and 0 < res["kmo"] < 1 and res["n_factors"] >= 0
    for name in res["tables"]:
        assert len(store.read_table(name)) > 0
    report = Path(res["report"])
    assert report.is_file() and (report.parent / f"outcomes-{run['run_id']}-scree.png").is_file()
    assert "extraversion" in report.read_text()


def test_predictions_rebuild_a_deleted_pack_under_the_runs_fingerprint(trained):
    """Packs are a cache: predict_run rebuilds a deleted one under the fingerprint the run trained on (no "features
    changed" warning) and predicts the same."""
    import warnings

    from pipelines.analyze import predict_run

    root, run = trained
    store = open_store(root, DATASET)
    before, _ = predict_run(store, run["run_id"])
    Path(root, DATASET, "packs", f"{run['pack']}.h5").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        after, _ = predict_run(store, run["run_id"])
    assert store.has_pack(run["pack"]) and not [w for w in caught if "changed since" in str(w.message)]
    pd.testing.assert_frame_equal(after, before)


def test_cli_json_and_clear_errors(trained, tmp_path, capsys):
    from flows import analyze_outcomes
    from pipelines.analyze import predict_run

    root, run = trained
    preds, _ = predict_run(open_store(root, DATASET), run["run_id"])
    path = tmp_path / "admit.parquet"
    _outcomes(preds).to_parquet(path)
    with pytest.raises(SystemExit) as exit_:
        main(["analyze-outcomes", DATASET, "--run", run["run_id"], "--outcomes", str(path), "--outcome", "admitted",
              "--controls", "age", "--n-iter", "10", "--root", str(root), "--json"])
    assert exit_.value.code in (0, None)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["run_id"] == run["run_id"] and {r["link"] for r in out["regressions"]} == {"logit", "probit"}
    with pytest.raises(ValueError, match="run='nope'"):
        analyze_outcomes(dataset=DATASET, run_id="nope", outcomes=str(path), outcome="admitted", root=str(root))
    with pytest.raises(ValueError, match="lacks column"):
        analyze_outcomes(dataset=DATASET, run_id=run["run_id"], outcomes=str(path), outcome="hired", root=str(root))
    clash = tmp_path / "clash.csv"
    _outcomes(preds).assign(openness=1.0).to_csv(clash, index=False)
    with pytest.raises(ValueError, match="openness"):
        analyze_outcomes(dataset=DATASET, run_id=run["run_id"], outcomes=str(clash), outcome="admitted",
                         root=str(root))
