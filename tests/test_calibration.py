"""Logistic calibration and its reliability measures."""

from __future__ import annotations

import numpy as np
import pytest

from rawguard.calibration import CalibrationError, apply_calibration, fit_logistic, reliability, sigmoid
from rawguard.conventions import BONAFIDE, SPOOF


def gaussian_scores(n_bona: int, n_spoof: int, seed: int = 0):
    """Bona fide ~ N(+2, 1), spoof ~ N(-2, 1): the true log-likelihood ratio is 4 * score."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(2, 1, n_bona), rng.normal(-2, 1, n_spoof)])
    labels = np.concatenate([np.full(n_bona, BONAFIDE), np.full(n_spoof, SPOOF)])
    return scores, labels


def test_recovers_the_true_posterior():
    scores, labels = gaussian_scores(20_000, 40_000)
    calibration = fit_logistic(scores, labels)
    # Posterior log-odds = LLR + log prior odds = 4 s + log(1/2).
    assert calibration["scale"] == pytest.approx(4.0, rel=0.05)
    assert calibration["bias"] == pytest.approx(np.log(0.5), abs=0.05)
    probs = apply_calibration(scores, calibration)
    assert reliability(probs, labels)["ece"] < 0.01


def test_separable_scores_give_a_finite_steep_fit():
    calibration = fit_logistic([1.0, 2.0, 3.0, -1.0, -2.0], [BONAFIDE, BONAFIDE, BONAFIDE, SPOOF, SPOOF])
    assert np.isfinite(calibration["scale"]) and calibration["scale"] > 1
    probs = apply_calibration([3.0, -2.0], calibration)
    assert probs[0] > 0.95 and probs[1] < 0.05


def test_anti_correlated_scores_give_a_constant_probability():
    scores, labels = gaussian_scores(300, 600, seed=4)
    calibration = fit_logistic(-scores, labels)  # a detector that has the classes backwards
    assert calibration["scale"] == 0.0
    np.testing.assert_allclose(apply_calibration([-5.0, 0.0, 5.0], calibration), 1 / 3)


def test_calibration_is_monotone_and_fixes_a_shifted_scale():
    scores, labels = gaussian_scores(2000, 2000, seed=1)
    shifted = 0.1 * scores + 3.0  # an overconfident, biased detector's raw scores
    probs_raw = sigmoid(shifted)
    probs = apply_calibration(shifted, fit_logistic(shifted, labels))
    assert np.all(np.diff(probs[np.argsort(shifted)]) >= 0)
    assert reliability(probs, labels)["ece"] < 0.5 * reliability(probs_raw, labels)["ece"]


def test_reliability_bins_and_brier():
    probs = np.array([0.05, 0.15, 0.95, 1.0, 0.55])
    labels = np.array([SPOOF, BONAFIDE, BONAFIDE, BONAFIDE, SPOOF])
    result = reliability(probs, labels, n_bins=10)
    assert result["n"] == 5
    assert [b["count"] for b in result["bins"]] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert result["bins"][9]["frac_bonafide"] == 1.0 and result["bins"][9]["mean_prob"] == pytest.approx(0.975)
    expected_ece = (0.05 + 0.85 + 0.55 + 2 * 0.025) / 5
    assert result["ece"] == pytest.approx(expected_ece)
    assert result["brier"] == pytest.approx(np.mean((probs - (labels == BONAFIDE)) ** 2))


def test_sigmoid_is_stable_for_large_values():
    with np.errstate(over="raise", invalid="raise"):
        values = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0])


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [BONAFIDE, BONAFIDE], "needs both classes, got 2 bona fide and 0 spoof"),
        ([0.1, np.nan], [BONAFIDE, SPOOF], "scores: NaN or infinite value at index 1"),
        ([0.1, 0.2], [BONAFIDE, 7], "labels: value 7 at index 1"),
        ([0.1], [BONAFIDE, SPOOF], "differ in length"),
    ],
)
def test_bad_input_is_rejected(scores, labels, message):
    with pytest.raises(CalibrationError, match=message):
        fit_logistic(scores, labels)


def test_bad_probabilities_and_calibration_dicts():
    with pytest.raises(CalibrationError, match=r"probs: values must be in \[0, 1\]"):
        reliability([0.5, 1.5], [BONAFIDE, SPOOF])
    with pytest.raises(CalibrationError, match="'scale' and 'bias'"):
        apply_calibration([0.0], {"scale": 1.0})
