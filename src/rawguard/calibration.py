"""Logistic calibration of detector scores into probabilities of bona fide, and its reliability. Pure numpy.

A raw score ``s = logit[1] - logit[0]`` ranks trials well but is not a probability. Calibration fits
``P(bona fide | s) = sigmoid(scale * s + bias)`` on dev scores (Platt scaling): a monotone map, so
EER and every threshold-free metric are unchanged, and the probability can be read at face value
on data like dev (including dev's class proportions).

A weak Gaussian prior on the slope (a ridge penalty of ``ridge / 2 * scale_z**2`` on the slope of the
standardised scores, a hundredth of a trial) keeps the fit finite when dev is perfectly separated,
which is common for a good detector; plain maximum likelihood would then send ``scale`` to infinity.
With hundreds of dev trials its pull on a non-separable fit is negligible.
"""

from __future__ import annotations

import numpy as np

from rawguard.conventions import BONAFIDE, SPOOF

__all__ = ["CalibrationError", "fit_logistic", "fit_logistic_regression", "apply_calibration", "sigmoid", "reliability"]


class CalibrationError(ValueError):
    """Scores, labels or a calibration dict that cannot be used (names the field at fault)."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, elementwise (no overflow warnings for large ``|x|``)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    exp_x = np.exp(x[~pos])
    out[~pos] = exp_x / (1.0 + exp_x)
    return out


def _scores_and_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.size != labels.size:
        raise CalibrationError(f"scores and labels differ in length ({scores.size} vs {labels.size})")
    if not np.isfinite(scores).all():
        first = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise CalibrationError(f"scores: NaN or infinite value at index {first}")
    unknown = ~np.isin(labels, [BONAFIDE, SPOOF])
    if unknown.any():
        first = int(np.flatnonzero(unknown)[0])
        raise CalibrationError(f"labels: value {labels[first].item()!r} at index {first} is not {BONAFIDE} or {SPOOF}")
    return scores, labels == BONAFIDE


def fit_logistic(scores, labels, ridge: float = 0.01, max_iter: int = 100, tol: float = 1e-10) -> dict[str, float]:
    """Fit ``P(bona fide | score) = sigmoid(scale * score + bias)`` by Newton's method.

    Args:
        scores: ``[N]`` raw scores (higher = more bona fide).
        labels: ``[N]`` label ids, :data:`~rawguard.conventions.BONAFIDE` or ``SPOOF``.
        ridge: strength of the slope penalty (on standardised scores); > 0 keeps separable data finite.
        max_iter: Newton iterations at most (converges in ~5-10 on real scores).
        tol: stop when the parameter update is smaller than this.

    Returns:
        ``{"scale": float, "bias": float}``, the dict stored in a checkpoint's ``selection``;
        ``scale >= 0`` always (scores anti-correlated with bona fide on dev give ``scale = 0`` and
        the dev bona fide rate as a constant probability).

    Raises:
        CalibrationError: lengths differ, a score is NaN/inf, an unknown label, or one class is absent.
    """
    scores, is_bona = _scores_and_labels(scores, labels)
    n_bona = int(is_bona.sum())
    n_spoof = int(is_bona.size - n_bona)
    if n_bona == 0 or n_spoof == 0:
        raise CalibrationError(
            f"calibration needs both classes, got {n_bona} bona fide and {n_spoof} spoof scores"
        )
    target = is_bona.astype(np.float64)
    penalty = np.array([ridge, 0.0])  # the bias is not penalised
    # Work on standardised scores for a well-conditioned Hessian, map back at the end.
    centre = float(scores.mean())
    spread = float(scores.std()) or 1.0
    z = (scores - centre) / spread
    design = np.stack([z, np.ones_like(z)], axis=1)  # [N, 2]
    params = fit_logistic_regression(design, target, penalty, max_iter=max_iter, tol=tol)
    scale = params[0] / spread
    bias = params[1] - scale * centre
    if scale < 0:
        # Dev says higher scores are *less* bona fide (a detector no better than chance). A
        # decreasing map would contradict the score convention and the threshold decision, so the
        # best non-decreasing fit is used: a constant, dev's bona fide rate.
        rate = n_bona / (n_bona + n_spoof)
        return {"scale": 0.0, "bias": float(np.log(rate / (1 - rate)))}
    return {"scale": float(scale), "bias": float(bias)}


def fit_logistic_regression(design: np.ndarray, target: np.ndarray, penalty: np.ndarray,
                            max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Ridge-penalised logistic regression by damped Newton steps (the solver behind calibration and fusion).

    Args:
        design: ``[N, D]`` float64 features (the caller standardises them and appends a ones column).
        target: ``[N]`` float64, 1 for bona fide and 0 for spoof.
        penalty: ``[D]`` ridge strength per parameter (0 for the bias).
        max_iter: Newton iterations at most.
        tol: stop when the parameter update is smaller than this.

    Returns:
        ``[D]`` parameters ``w`` of ``P(bona fide) = sigmoid(design @ w)``.
    """
    params = np.zeros(design.shape[1])

    def loss(p: np.ndarray) -> float:
        logits = design @ p
        return float(np.sum(np.logaddexp(0, logits) - target * logits) + 0.5 * np.sum(penalty * p**2))

    current = loss(params)
    for _ in range(max_iter):
        prob = sigmoid(design @ params)
        grad = design.T @ (prob - target) + penalty * params
        hessian = (design * (prob * (1 - prob))[:, None]).T @ design + np.diag(penalty + 1e-12)
        step = np.linalg.solve(hessian, grad)
        # Backtracking keeps Newton monotone even from a far start.
        rate = 1.0
        while rate > 1e-8:
            candidate = params - rate * step
            value = loss(candidate)
            if value <= current:
                break
            rate /= 2
        params, current = candidate, value
        if np.max(np.abs(rate * step)) < tol:
            break
    return params


def apply_calibration(scores, calibration: dict) -> np.ndarray:
    """Probability of bona fide, ``sigmoid(scale * score + bias)``.

    Args:
        scores: ``[N]`` (or any shape) raw scores.
        calibration: ``{"scale", "bias"}`` as returned by :func:`fit_logistic`.

    Returns:
        float64 array of the same shape, values in [0, 1].
    """
    try:
        scale = float(calibration["scale"])
        bias = float(calibration["bias"])
    except (KeyError, TypeError, ValueError) as error:
        raise CalibrationError(f"calibration: expected a dict with numeric 'scale' and 'bias', got {calibration!r}") from error
    return sigmoid(scale * np.asarray(scores, dtype=np.float64) + bias)


def reliability(probs, labels, n_bins: int = 10) -> dict:
    """How well probabilities of bona fide match observed frequencies.

    Args:
        probs: ``[N]`` predicted probabilities of bona fide, in [0, 1].
        labels: ``[N]`` label ids.
        n_bins: equal-width probability bins for the reliability diagram and ECE.

    Returns:
        dict with ``ece`` (expected calibration error: count-weighted mean of
        ``|mean predicted - observed fraction|`` over bins), ``brier`` (mean squared error of the
        probability), ``n``, and ``bins``: list of ``{"lower", "upper", "count", "mean_prob",
        "frac_bonafide"}`` (empty bins have count 0 and NaN means).
    """
    probs, is_bona = _scores_and_labels(probs, labels)
    if probs.size == 0:
        raise CalibrationError("reliability: no probabilities given")
    if probs.min() < 0 or probs.max() > 1:
        raise CalibrationError(f"probs: values must be in [0, 1], got range [{probs.min():.4g}, {probs.max():.4g}]")
    if n_bins < 1:
        raise CalibrationError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, probs, side="right") - 1, 0, n_bins - 1)  # p = 1 goes to the last bin
    counts = np.bincount(which, minlength=n_bins)
    sum_prob = np.bincount(which, weights=probs, minlength=n_bins)
    sum_bona = np.bincount(which, weights=is_bona.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = sum_prob / counts
        frac_bona = sum_bona / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] * np.abs(mean_prob[filled] - frac_bona[filled])) / probs.size)
    bins = [
        {
            "lower": float(edges[i]),
            "upper": float(edges[i + 1]),
            "count": int(counts[i]),
            "mean_prob": float(mean_prob[i]),
            "frac_bonafide": float(frac_bona[i]),
        }
        for i in range(n_bins)
    ]
    return {"ece": ece, "brier": float(np.mean((probs - is_bona) ** 2)), "n": int(probs.size), "bins": bins}
