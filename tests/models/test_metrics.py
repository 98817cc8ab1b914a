"""Tests of models/metrics.py: exact metric values on tiny arrays and the constant baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics import compute_metrics, constant_baseline


def test_emotion_accuracy_and_f1_per_dimension():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.4, 0.7], [0.1, 0.6], [0.6, 0.8]])
    m = compute_metrics("emotion", y, p)
    # valence: predicted [1,0,0,1] vs [1,1,0,0] → acc 0.5, precision 1/2, recall 1/2 → F1 0.5
    # arousal: predicted [0,1,1,1] vs [0,1,1,0] → acc 0.75, precision 2/3, recall 1 → F1 0.8
    assert m["accuracy_valence"] == 0.5 and m["f1_valence"] == 0.5
    assert m["accuracy_arousal"] == 0.75 and m["f1_arousal"] == pytest.approx(0.8)
    assert m["accuracy_mean"] == 0.625 and m["f1_mean"] == pytest.approx(0.65)


def test_personality_mean_accuracy_is_one_minus_mae():
    y = np.full((2, 5), 0.5)
    p = y + np.array([[0.1, 0.0, -0.2, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0, 0.4]])
    m = compute_metrics("personality", y, p)
    assert m["mean_accuracy_extraversion"] == pytest.approx(0.9)
    assert m["mean_accuracy_agreeableness"] == pytest.approx(0.9)
    assert m["mean_accuracy_openness"] == pytest.approx(0.8)
    assert m["mean_accuracy"] == pytest.approx(1 - 0.8 / 10)
    assert m["mae"] == pytest.approx(0.08) and m["mse"] == pytest.approx((0.01 * 2 + 0.04 + 0.16) / 10)
    assert set(m) >= {"r2", "ndcg@10"}


def test_popularity_metrics():
    y = np.array([0.1, 0.4, 0.2, 0.9])
    m = compute_metrics("popularity", y[:, None], np.array([0.0, 0.5, 0.3, 0.7]))  # same order → ρ = 1
    assert m["spearman"] == pytest.approx(1.0) and m["ndcg@10"] == pytest.approx(1.0)
    assert m["mae"] == pytest.approx((0.1 + 0.1 + 0.1 + 0.2) / 4)
    assert m["mse"] == pytest.approx((0.01 + 0.01 + 0.01 + 0.04) / 4)
    assert m["r2"] == pytest.approx(1 - 0.0175 / np.var(y))
    rev = compute_metrics("popularity", y, -y)
    assert rev["spearman"] == pytest.approx(-1.0) and rev["ndcg@10"] < 1.0


def test_constant_predictions_have_zero_spearman_not_nan():
    m = compute_metrics("popularity", np.array([0.1, 0.4, 0.2]), np.full(3, 0.3))
    assert m["spearman"] == 0.0 and all(math.isfinite(v) for v in m.values())


def test_constant_baseline():
    emo = constant_baseline("emotion", np.array([[1, 0], [1, 0], [0, 1]]))
    assert emo.value.tolist() == [1.0, 0.0]
    assert emo.predict(2).tolist() == [[1.0, 0.0], [1.0, 0.0]]
    pop = constant_baseline("popularity", np.array([0.2, 0.4]))
    assert pop.value.tolist() == pytest.approx([0.3]) and pop.predict(3).shape == (3, 1)
    pers = constant_baseline("personality", np.tile(np.linspace(0, 1, 5), (4, 1)))
    assert pers.value.tolist() == pytest.approx(np.linspace(0, 1, 5).tolist())


@pytest.mark.parametrize(
    "args,match",
    [
        (("mood", [[1, 0]], [[1, 0]]), "task='mood'"),
        (("emotion", [[1, 0, 1]], [[1, 0, 1]]), r"y_true has shape \(1, 3\)"),
        (("popularity", [0.1, 0.2], [0.1]), "same non-zero number"),
        (("popularity", [0.1, np.nan], [0.1, 0.2]), "NaN"),
    ],
)
def test_bad_input_raises_value_error(args, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(*args)


def test_metrics_and_baseline_of_a_target_subset():
    from models.metrics import compute_metrics, constant_baseline

    y, p = [[1.0], [0.0], [1.0], [1.0]], [[0.9], [0.2], [0.3], [0.8]]
    m = compute_metrics("emotion", y, p, targets=["arousal"])
    assert m == {"accuracy_arousal": 0.75, "f1_arousal": pytest.approx(0.8), "accuracy_mean": 0.75,
                 "f1_mean": pytest.approx(0.8)}
    assert constant_baseline("emotion", y, targets=["arousal"]).value.tolist() == [1.0]
    with pytest.raises(ValueError, match=r"expected \(N, 2\)"):
        compute_metrics("emotion", y, p)


# ------------------------------------------------------------------------------------------------ intervals


@pytest.mark.parametrize("task, k", [("emotion", 2), ("personality", 5), ("popularity", 1)])
def test_bootstrap_resamples_score_exactly_like_compute_metrics(task, k):
    from models.metrics import _resampled_metrics

    rng = np.random.default_rng(0)
    y = rng.uniform(size=(30, k))
    y = (y > 0.5).astype(float) if task == "emotion" else y
    p = np.clip(y + rng.normal(0, 0.3, size=y.shape), 0, 1)
    p[:3] = p[0]  # ties in the predictions (resamples repeat rows too)
    idx = rng.integers(0, 30, (25, 30))
    idx[0] = 0  # a resample of one repeated row: constant targets and predictions
    names = {"emotion": ("valence", "arousal"), "popularity": ("popularity",)}.get(
        task, ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness"))
    draws = _resampled_metrics(task, names, y, p, idx)
    for b in range(len(idx)):
        expected = compute_metrics(task, y[idx[b]], p[idx[b]])
        assert set(draws) == set(expected) - {"ndcg@10"}
        for name, values in draws.items():
            assert values[b] == pytest.approx(expected[name], abs=1e-12), (b, name)


def test_bootstrap_interval_brackets_the_estimate_and_pairs_differences():
    from models.metrics import bootstrap_intervals

    rng = np.random.default_rng(1)
    y = rng.uniform(size=(80, 1))
    good = y + rng.normal(0, 0.05, size=y.shape)
    weak = y + rng.normal(0, 0.5, size=y.shape)
    ci = bootstrap_intervals("popularity", y, good, reference=weak, n_boot=500, seed=0)
    point = compute_metrics("popularity", y, good)
    assert ci["spearman"][0] <= point["spearman"] <= ci["spearman"][1] and "ndcg@10" not in ci
    assert ci["delta_spearman"][0] > 0.2  # clearly better than the reference on the same resamples
    same = bootstrap_intervals("popularity", y, weak, reference=weak.copy(), n_boot=200)
    assert same["delta_spearman"] == (0.0, 0.0) and same["delta_mae"] == (0.0, 0.0)
    # width shrinks with more videos (about 1 / sqrt(N))
    big_y = rng.uniform(size=(800, 1))
    big = bootstrap_intervals("popularity", big_y, big_y + rng.normal(0, 0.5, size=big_y.shape), n_boot=300)
    small = bootstrap_intervals("popularity", y, weak, n_boot=300)
    assert np.diff(big["spearman"])[0] < np.diff(small["spearman"])[0] / 2
    assert bootstrap_intervals("popularity", y, good, n_boot=300, seed=3) == \
        bootstrap_intervals("popularity", y, good, n_boot=300, seed=3)  # seeded


def test_seed_interval_is_the_student_t_interval():
    from scipy import stats

    from models.metrics import seed_interval

    values = [0.61, 0.7, 0.66, 0.74]
    mean, lo, hi = seed_interval(values)
    ref = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values)) and (lo, hi) == pytest.approx(ref)
    m1, lo1, hi1 = seed_interval([0.5])
    assert m1 == 0.5 and np.isnan(lo1) and np.isnan(hi1)


@pytest.mark.parametrize("call, arg", [
    (lambda f: f["bootstrap_intervals"]("popularity", [0.1, 0.2], [0.1, 0.3], n_boot=1), "n_boot"),
    (lambda f: f["bootstrap_intervals"]("popularity", [0.1, 0.2], [0.1, 0.3], level=1.5), "level"),
    (lambda f: f["bootstrap_intervals"]("popularity", [0.1, 0.2], [0.1, 0.3], reference=[0.1]), "y_true"),
    (lambda f: f["bootstrap_intervals"]("popularity", [0.1], [0.1]), "y_true"),
    (lambda f: f["seed_interval"]([]), "values"),
    (lambda f: f["seed_interval"]([0.1, float("nan")]), "values"),
])
def test_interval_arguments_are_checked(call, arg):
    from models import metrics

    with pytest.raises(ValueError, match=rf"^{arg}"):
        call(vars(metrics))
