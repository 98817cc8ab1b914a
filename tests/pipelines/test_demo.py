"""pipelines/demo.py: the mechanism lines (which planted mechanism each headline model recovered) and the demo end to
end through the CLI (slow)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.demo import _partial_rho, _rho, mechanism_lines


def test_rho_interval_is_fisher_z():
    rng = np.random.default_rng(0)
    a = rng.normal(size=40)
    b = a + rng.normal(size=40)
    r, lo, hi = _rho(a, b)
    half = 1.96 / math.sqrt(37)
    assert (lo, hi) == pytest.approx((math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)))
    assert lo < r < hi and lo > 0
    assert _rho(a, np.zeros(40)) == (0.0, pytest.approx(float("nan"), nan_ok=True), pytest.approx(float("nan"),
                                                                                               nan_ok=True))
    assert math.isnan(_rho(a[:3], b[:3])[1])  # too few pairs for an interval


def test_partial_rho_removes_what_the_control_explains():
    rng = np.random.default_rng(0)
    control = rng.normal(size=200)
    target = control + 0.2 * rng.normal(size=200)  # correlated with the prediction only through the control
    prediction = control + 0.2 * rng.normal(size=200)
    assert _rho(prediction, target)[0] > 0.8
    r, lo, hi = _partial_rho(prediction, target, control)
    assert lo < 0 < hi and abs(r) < 0.15
    own = rng.normal(size=200)  # a part of the target the control does not carry, which the prediction follows
    r, lo, _ = _partial_rho(prediction + own, target + own, control)
    assert r > 0.5 and lo > 0.3
    half = 1.96 / math.sqrt(200 - 4)
    assert lo == pytest.approx(math.tanh(math.atanh(r) - half))
    assert math.isnan(_partial_rho(prediction[:4], target[:4], control[:4])[1])  # too few pairs for an interval


def test_lines_for_personality_and_graph_without_runs():
    shares = {"extraversion": {"vision": 0.7, "audio": 0.2, "text": 0.1},
              "neuroticism": {"vision": 0.5, "audio": 0.4, "text": 0.1},  # planted audio: a miss
              "agreeableness": {"vision": 0.1, "audio": 0.1, "text": 0.8},
              "conscientiousness": {"vision": 0.2, "audio": 0.1, "text": 0.7},
              "openness": {"vision": 0.3, "audio": 0.6, "text": 0.1}}  # planted vision + audio: a hit
    comparison = {"tables": {}, "interpretation": {"personality": {"modality_share": shares}}}
    lines = mechanism_lines(None, None, comparison, [0.8, 0.85, 0.9, 0.82], n_edges=400)
    assert lines["personality"] == ("mcat modality importance: largest attribution share on the planted modality "
                                    "for 4/5 traits (extraversion, agreeableness, conscientiousness, openness)")
    assert lines["graph"].startswith("GAT link prediction test AUC 0.842 [0.773, 0.912] over 4 link splits") and "above chance" in lines["graph"]
    chance = mechanism_lines(None, None, {"tables": {}}, [0.45, 0.6, 0.5], n_edges=114)["graph"]
    assert "not distinguishable from chance" in chance and "114 song links" in chance and "about 11 test" in chance
    assert set(mechanism_lines(None, None, {"tables": {}}, [], n_edges=0)) == set()


@pytest.mark.slow
def test_demo_end_to_end_prints_intervals_and_mechanism_lines(tmp_path, prefect_harness, capsys):
    """40 videos, 1 epoch: checks the wiring (every task's table with intervals, the GAT interval over 8 link splits,
    one mechanism line per task, the per-stage time table), not learning. About 4 min on a loaded 2-core machine."""
    from pipelines.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--root", str(tmp_path / "root"), "--videos", "40", "--epochs", "1"])
    assert exit_.value.code in (0, None)
    out = capsys.readouterr().out
    assert "95% CI" in out and "over 8 link splits" in out
    for name in ("emotion", "personality", "popularity", "graph"):
        assert f"planted mechanism, {name}:" in out, out
    assert "sec2sec synchrony ρ" in out and "van network effect ρ" in out
    stages = out[out.index("time per stage"):]
    for stage in ("ingest", "extract", "pretrain-graph", "compare", "of which training", "graph-seeds (7 GATs",
                  "mechanism lines", "total"):
        assert stage in stages, stages
