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
