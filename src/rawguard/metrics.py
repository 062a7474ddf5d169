"""Spoofing-countermeasure metrics: EER, DET curve, min t-DCF, minDCF / actDCF, Cllr. Pure numpy.

Scores follow :mod:`rawguard.conventions`: higher = more bona fide. Every rate is a function of a
threshold ``t`` with the official ASVspoof convention used by the DET curve:

- miss rate / false rejection rate ``FRR(t)`` = fraction of bona fide scores ``<= t`` (rejected),
- false acceptance rate ``FAR(t)`` = fraction of spoof scores ``> t`` (accepted),

so a trial is accepted as bona fide when ``score > t``. Thresholds are the sorted scores themselves
plus one point below the lowest score (nothing rejected), exactly as in the ASVspoof 2019 / 5
evaluation packages.

Ties: the official packages evaluate a point after *every* sorted score, even inside a run of equal
scores, which produces operating points no threshold can realise (and e.g. an EER of 100 % when every
score is equal). rawguard evaluates only after the last score of each run of equal values — the
points a real threshold can reach. Without ties across the classes the two definitions are
identical, and on the ASVspoof 2019 LA reference score files (``../shared/metrics``) they agree with
``expected.json``.

Everything is one ``argsort`` plus cumulative sums: ``O(n log n)``, ~0.2 s for 10^6 scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MetricsError",
    "DetCurve",
    "LEGACY_COST_MODEL",
    "DcfCost",
    "ASVSPOOF5_DCF",
    "ASVSPOOF5_ASV_RATES",
    "det_curve",
    "compute_eer",
    "asv_error_rates",
    "tdcf_curve",
    "min_tdcf_legacy",
    "min_tdcf_asvspoof5",
    "min_dcf",
    "act_dcf",
    "cllr",
    "per_attack_eer",
    "summarize",
]


class MetricsError(ValueError):
    """Scores cannot be evaluated: empty class, NaN/inf, wrong shape, or invalid cost model."""


LEGACY_COST_MODEL: dict[str, float] = {
    "Pspoof": 0.05,
    "Ptar": (1 - 0.05) * 0.99,  # 0.9405
    "Pnon": (1 - 0.05) * 0.01,  # 0.0095
    "Cmiss_asv": 1.0,
    "Cfa_asv": 10.0,
    "Cmiss_cm": 1.0,
    "Cfa_cm": 10.0,
}
"""ASVspoof 2019 t-DCF cost model ("legacy" t-DCF, Kinnunen et al. 2018), also used by ASVspoof 5."""



@dataclass(frozen=True)
class DcfCost:
    """Detection cost parameters of a stand-alone CM: spoof prior and the two error costs."""

    p_spoof: float = 0.05
    c_miss: float = 1.0  # cost of rejecting a bona fide trial
    c_fa: float = 10.0  # cost of accepting a spoof

    def __post_init__(self) -> None:
        if not 0 < self.p_spoof < 1 or self.c_miss <= 0 or self.c_fa <= 0:
            raise MetricsError(f"DCF parameters need 0 < p_spoof < 1 and positive costs, got {self}")

    @property
    def normaliser(self) -> float:
        """Cost of the better of the two trivial systems (accept all / reject all)."""
        return min(self.c_miss * (1 - self.p_spoof), self.c_fa * self.p_spoof)


ASVSPOOF5_DCF = DcfCost(p_spoof=0.05, c_miss=1.0, c_fa=10.0)
"""ASVspoof 5 track 1 (stand-alone CM) detection cost parameters."""

ASVSPOOF5_ASV_RATES: dict[str, float] = {
    "Pfa_asv": 0.01881016557566423,
    "Pmiss_asv": 0.01880141010575793,
    "Pfa_spoof_asv": 0.4607082907604729,
}
"""ASV error rates of the ASVspoof 5 organisers' ASV system, fixed in its min t-DCF (track 2)."""


@dataclass(frozen=True)
class DetCurve:
    """Operating points of a detector, one per reachable threshold (ascending).

    Attributes:
        frr: ``[K]`` fraction of bona fide scores ``<= threshold`` (miss rate), ascending.
        far: ``[K]`` fraction of spoof scores ``> threshold`` (false acceptance), descending.
        thresholds: ``[K]`` thresholds; the first is below every score (``min - 0.001`` as in
            the official code), the others are distinct score values.
    """

    frr: np.ndarray
    far: np.ndarray
    thresholds: np.ndarray


def _as_scores(values, name: str) -> np.ndarray:
    """Validate one class's scores: 1-D, non-empty, finite; returned as float64."""
    array = np.asarray(values)
    if array.ndim != 1:
        array = array.reshape(-1) if array.ndim == 0 else array
    if array.ndim != 1:
        raise MetricsError(f"{name}: expected a 1-D array of scores, got shape {array.shape}")
    if array.size == 0:
        raise MetricsError(f"{name}: no scores (both classes are needed to compute an error rate)")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise MetricsError(f"{name}: scores must be real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise MetricsError(
            f"{name}: {int(bad.sum())} score(s) are NaN or infinite (first at index {first}: {array[first]})"
        )
    return array


def det_curve(bonafide_scores, spoof_scores) -> DetCurve:
    """False rejection / false acceptance rates at every reachable threshold.

    Args:
        bonafide_scores: ``[N_b]`` scores of bona fide trials (higher = more bona fide).
        spoof_scores: ``[N_s]`` scores of spoofed trials.

    Returns:
        :class:`DetCurve` with ``K <= N_b + N_s + 1`` points.

    Raises:
        MetricsError: a class is empty, or a score is NaN / infinite.
    """
    bona = _as_scores(bonafide_scores, "bonafide_scores")
    spoof = _as_scores(spoof_scores, "spoof_scores")
    distinct, frr, far = _weighted_rates(bona, spoof, np.ones((1, bona.size)), np.ones((1, spoof.size)))
    thresholds = np.concatenate([[distinct[0] - 0.001], distinct])
    return DetCurve(frr=frr[0], far=far[0], thresholds=thresholds)


def _weighted_rates(bona: np.ndarray, spoof: np.ndarray, bona_counts: np.ndarray,
                    spoof_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FRR and FAR at every distinct score, for ``R`` weightings of the trials at once.

    Args:
        bona, spoof: ``[N_b]``, ``[N_s]`` scores.
        bona_counts, spoof_counts: ``[R, N_b]``, ``[R, N_s]`` multiplicity of each trial (all ones:
            the set itself; a bootstrap resample otherwise). A row may sum to any positive total (a
            resample of whole speakers draws a varying number of trials); rates are shares of it.

    Returns:
        ``(distinct [K], frr [R, K + 1], far [R, K + 1])``: the sorted distinct scores, and the rates
        with the threshold below every score first (FRR 0, FAR 1), then at each distinct score
        (a trial is rejected when ``score <= threshold``).
    """
    scores = np.concatenate([bona, spoof])
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    # Keep only the last position of each run of equal scores: a threshold rejects all of a run or none.
    last_of_run = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    counts = np.concatenate([bona_counts, spoof_counts], axis=1)[:, order].astype(np.float64)  # [R, N]
    is_bona = order < bona.size
    bona_rejected = np.cumsum(np.where(is_bona, counts, 0.0), axis=1)[:, last_of_run]
    spoof_rejected = np.cumsum(np.where(is_bona, 0.0, counts), axis=1)[:, last_of_run]
    rows = counts.shape[0]
    bona_total = np.asarray(bona_counts, dtype=np.float64).sum(axis=1, keepdims=True)  # [R, 1]
    spoof_total = np.asarray(spoof_counts, dtype=np.float64).sum(axis=1, keepdims=True)
    frr = np.concatenate([np.zeros((rows, 1)), bona_rejected / bona_total], axis=1)
    far = np.concatenate([np.ones((rows, 1)), (spoof_total - spoof_rejected) / spoof_total], axis=1)
    return sorted_scores[last_of_run], frr, far


def _eer_from_curve(curve: DetCurve) -> tuple[float, float]:
    # Official definition: the operating point where |FRR - FAR| is smallest (first one on ties),
    # EER = mean of the two rates there. No interpolation.
    index = int(np.argmin(np.abs(curve.frr - curve.far)))
    return float((curve.frr[index] + curve.far[index]) / 2), float(curve.thresholds[index])


def compute_eer(bonafide_scores, spoof_scores) -> tuple[float, float]:
    """Equal error rate and its threshold (ASVspoof definition).

    Args:
        bonafide_scores: ``[N_b]`` bona fide scores (higher = more bona fide).
        spoof_scores: ``[N_s]`` spoof scores.

    Returns:
        ``(eer, threshold)``: ``eer`` as a fraction in [0, 1]; a trial is accepted as bona fide
        when ``score > threshold``.

    Raises:
        MetricsError: a class is empty, or a score is NaN / infinite.
    """
    return _eer_from_curve(det_curve(bonafide_scores, spoof_scores))


def eer_confidence_interval(bonafide_scores, spoof_scores, level: float = 0.95, resamples: int = 1000,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the EER (stratified: each class resampled apart).

    Each resample draws ``N_b`` bona fide and ``N_s`` spoof trials with replacement and takes the EER
    exactly as :func:`compute_eer` does (same operating-point rule, no interpolation); the interval
    is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those EERs. Every resample is a
    vector of trial counts over one sorted order, so the cost is ``O(resamples x N)``: about 0.1 s
    for 1,000 resamples of 1,000 trials, 5-15 s for 1,000 of 100,000 on 2 CPU cores
    (:func:`default_resamples` scales the count down for large sets).

    Trials are treated as independent. Clips of one speaker or one source recording are not, so on
    small sets the interval is optimistic; it is a floor on the uncertainty, not a ceiling.

    Args:
        bonafide_scores, spoof_scores: as :func:`compute_eer`.
        level: coverage, in (0, 1).
        resamples: bootstrap resamples.
        seed: the resampling is deterministic for a given seed.

    Returns:
        ``(low, high)`` EER fractions.

    Raises:
        MetricsError: as :func:`compute_eer`, or a bad ``level`` / ``resamples``.
    """
    if not 0 < level < 1:
        raise MetricsError(f"level: must be in (0, 1), got {level}")
    if resamples < 2:
        raise MetricsError(f"resamples: need at least 2, got {resamples}")
    bona = _as_scores(bonafide_scores, "bonafide_scores")
    spoof = _as_scores(spoof_scores, "spoof_scores")
    rng = np.random.default_rng(seed)
    eers = np.empty(resamples)
    chunk = max(1, 4_000_000 // (bona.size + spoof.size))  # resamples per vectorised pass: bounded memory
    for first in range(0, resamples, chunk):
        rows = min(chunk, resamples - first)
        eers[first:first + rows] = resampled_eers(
            bona, spoof,
            rng.multinomial(bona.size, np.full(bona.size, 1 / bona.size), size=rows),
            rng.multinomial(spoof.size, np.full(spoof.size, 1 / spoof.size), size=rows),
        )
    low, high = np.quantile(eers, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def default_resamples(trials: int) -> int:
    """Bootstrap resamples for a set of ``trials``: 1,000 up to 20,000 trials, then fewer (at least
    100) so that the interval costs about as much as 1,000 resamples of 20,000 trials."""
    return 1000 if trials <= 20_000 else max(100, 20_000_000 // trials)


def resampled_eers(bona: np.ndarray, spoof: np.ndarray, bona_counts: np.ndarray, spoof_counts: np.ndarray) -> np.ndarray:
    """EERs ``[R]`` of ``R`` resamples given as trial multiplicities ``[R, N_b]`` and ``[R, N_s]``.

    :func:`compute_eer`'s rule, resample ``r`` holding trial ``i`` ``counts[r, i]`` times (every row
    needs a positive total in each class). One call scores many resamples of the same trials, so a
    paired bootstrap passes the same counts for two systems' scores of those trials.
    """
    _, frr, far = _weighted_rates(bona, spoof, bona_counts, spoof_counts)
    index = np.argmin(np.abs(frr - far), axis=1)  # first minimum, as _eer_from_curve
    pick = np.arange(frr.shape[0])
    return (frr[pick, index] + far[pick, index]) / 2


def asv_error_rates(asv_target, asv_nontarget, asv_spoof, threshold: float | None = None) -> dict[str, float]:
    """ASV error rates at ``threshold`` (default: the ASV's own EER threshold), as in ASVspoof 2019.

    The ASV accepts a trial when ``score >= threshold`` (the official convention for the ASV side).

    Args:
        asv_target: ``[N_t]`` ASV scores of target (genuine speaker, bona fide) trials.
        asv_nontarget: ``[N_n]`` ASV scores of zero-effort impostor trials.
        asv_spoof: ``[N_s]`` ASV scores of spoofed trials.
        threshold: ASV decision threshold; ``None`` uses the target/nontarget EER threshold.

    Returns:
        ``{"threshold", "Pfa_asv", "Pmiss_asv", "Pmiss_spoof_asv", "Pfa_spoof_asv"}``.
    """
    target = _as_scores(asv_target, "asv_target")
    nontarget = _as_scores(asv_nontarget, "asv_nontarget")
    spoof = _as_scores(asv_spoof, "asv_spoof")
    if threshold is None:
        _, threshold = compute_eer(target, nontarget)
    pmiss_spoof = float(np.mean(spoof < threshold))
    return {
        "threshold": float(threshold),
        "Pfa_asv": float(np.mean(nontarget >= threshold)),
        "Pmiss_asv": float(np.mean(target < threshold)),
        "Pmiss_spoof_asv": pmiss_spoof,
        "Pfa_spoof_asv": 1.0 - pmiss_spoof,
    }


def _check_cost_model(cost_model: Mapping[str, float]) -> None:
    needed = ("Pspoof", "Ptar", "Pnon", "Cmiss_asv", "Cfa_asv", "Cmiss_cm", "Cfa_cm")
    missing = [key for key in needed if key not in cost_model]
    if missing:
        raise MetricsError(f"cost_model: missing field(s) {', '.join(missing)}")
    priors = [cost_model[key] for key in ("Ptar", "Pnon", "Pspoof")]
    if min(priors) < 0 or abs(sum(priors) - 1) > 1e-10:
        raise MetricsError(f"cost_model: priors Ptar, Pnon, Pspoof must be >= 0 and sum to 1, got {priors}")
    costs = {key: cost_model[key] for key in ("Cmiss_asv", "Cfa_asv", "Cmiss_cm", "Cfa_cm")}
    if min(costs.values()) < 0:
        raise MetricsError(f"cost_model: costs must be >= 0, got {costs}")


def tdcf_curve(
    bonafide_scores,
    spoof_scores,
    pfa_asv: float,
    pmiss_asv: float,
    pmiss_spoof_asv: float,
    cost_model: Mapping[str, float] = LEGACY_COST_MODEL,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised legacy t-DCF of a CM in tandem with an ASV of given error rates, per CM threshold.

    ``t-DCF(t) = (C1 * Pmiss_cm(t) + C2 * Pfa_cm(t)) / min(C1, C2)`` with
    ``C1 = Ptar (Cmiss_cm - Cmiss_asv Pmiss_asv) - Pnon Cfa_asv Pfa_asv`` and
    ``C2 = Cfa_cm Pspoof (1 - Pmiss_spoof_asv)`` (ASVspoof 2019 evaluation plan).

    Returns:
        ``(tdcf [K], thresholds [K])`` over the :func:`det_curve` thresholds.

    Raises:
        MetricsError: invalid cost model or ASV rates giving a negative weight.
    """
    _check_cost_model(cost_model)
    c1 = cost_model["Ptar"] * (cost_model["Cmiss_cm"] - cost_model["Cmiss_asv"] * pmiss_asv) - (
        cost_model["Pnon"] * cost_model["Cfa_asv"] * pfa_asv
    )
    c2 = cost_model["Cfa_cm"] * cost_model["Pspoof"] * (1 - pmiss_spoof_asv)
    if c1 <= 0 or c2 <= 0:
        raise MetricsError(
            f"t-DCF weights must be positive, got C1={c1:.6g}, C2={c2:.6g} "
            f"(ASV rates Pfa={pfa_asv:.4g}, Pmiss={pmiss_asv:.4g}, Pmiss_spoof={pmiss_spoof_asv:.4g})"
        )
    curve = det_curve(bonafide_scores, spoof_scores)
    return (c1 * curve.frr + c2 * curve.far) / min(c1, c2), curve.thresholds


def min_tdcf_legacy(
    bonafide_scores,
    spoof_scores,
    asv_target,
    asv_nontarget,
    asv_spoof,
    cost_model: Mapping[str, float] = LEGACY_COST_MODEL,
) -> tuple[float, float]:
    """Minimum normalised ASVspoof 2019 ("legacy") t-DCF, ASV fixed at its EER threshold.

    Args:
        bonafide_scores, spoof_scores: ``[N_b]``, ``[N_s]`` CM scores.
        asv_target, asv_nontarget, asv_spoof: ASV scores of the three ASV trial types.
        cost_model: priors and costs (default :data:`LEGACY_COST_MODEL`).

    Returns:
        ``(min_tdcf, cm_threshold)``.
    """
    rates = asv_error_rates(asv_target, asv_nontarget, asv_spoof)
    values, thresholds = tdcf_curve(
        bonafide_scores, spoof_scores, rates["Pfa_asv"], rates["Pmiss_asv"], rates["Pmiss_spoof_asv"], cost_model
    )
    index = int(np.argmin(values))
    return float(values[index]), float(thresholds[index])


def min_tdcf_asvspoof5(bonafide_scores, spoof_scores) -> tuple[float, float]:
    """ASVspoof 5 min t-DCF: legacy t-DCF with the organisers' fixed ASV error rates.

    Returns:
        ``(min_tdcf, cm_threshold)``.
    """
    rates = ASVSPOOF5_ASV_RATES
    values, thresholds = tdcf_curve(
        bonafide_scores, spoof_scores, rates["Pfa_asv"], rates["Pmiss_asv"], 1 - rates["Pfa_spoof_asv"]
    )
    index = int(np.argmin(values))
    return float(values[index]), float(thresholds[index])


def min_dcf(bonafide_scores, spoof_scores, cost: DcfCost = ASVSPOOF5_DCF) -> tuple[float, float]:
    """ASVspoof 5 normalised minimum detection cost of a stand-alone CM.

    ``DCF(t) = (Cmiss (1 - Pspoof) FRR(t) + Cfa Pspoof FAR(t)) / min(Cmiss (1 - Pspoof), Cfa Pspoof)``.

    Returns:
        ``(min_dcf, threshold)``.
    """
    curve = det_curve(bonafide_scores, spoof_scores)
    value = (cost.c_miss * (1 - cost.p_spoof) * curve.frr + cost.c_fa * cost.p_spoof * curve.far) / cost.normaliser
    index = int(np.argmin(value))
    return float(value[index]), float(curve.thresholds[index])


def act_dcf(bonafide_scores, spoof_scores, cost: DcfCost = ASVSPOOF5_DCF) -> tuple[float, float]:
    """ASVspoof 5 normalised *actual* DCF: scores read as log-likelihood ratios, Bayes threshold.

    The threshold is ``-log(beta)``, ``beta = Cmiss (1 - Pspoof) / (Cfa Pspoof)``; a trial is accepted
    when ``score >= threshold`` (as in the official package). Only meaningful for calibrated scores.

    Returns:
        ``(act_dcf, threshold)``.
    """
    bona = _as_scores(bonafide_scores, "bonafide_scores")
    spoof = _as_scores(spoof_scores, "spoof_scores")
    threshold = -float(np.log(cost.c_miss * (1 - cost.p_spoof) / (cost.c_fa * cost.p_spoof)))
    miss = np.mean(bona < threshold)
    false_accept = np.mean(spoof >= threshold)
    value = cost.c_miss * (1 - cost.p_spoof) * miss + cost.c_fa * cost.p_spoof * false_accept
    return float(value / cost.normaliser), threshold


def cllr(bonafide_scores, spoof_scores) -> float:
    """Log-likelihood-ratio cost in bits (scores read as natural-log LLRs); 1.0 = uninformative."""
    bona = _as_scores(bonafide_scores, "bonafide_scores")
    spoof = _as_scores(spoof_scores, "spoof_scores")
    # logaddexp(0, -x) = log(1 + e^-x) without overflow for large |x|.
    return float((np.mean(np.logaddexp(0, -bona)) + np.mean(np.logaddexp(0, spoof))) / (2 * np.log(2)))


def per_attack_eer(scores, labels, attacks: Sequence[str]) -> dict[str, float]:
    """EER of all bona fide trials against the spoofs of each attack, as fractions.

    Args:
        scores: ``[N]`` CM scores.
        labels: ``[N]`` label ids (:data:`rawguard.conventions.BONAFIDE` / ``SPOOF``).
        attacks: ``[N]`` attack / system id per trial; only spoof trials' ids define attacks
            (bona fide rows may carry ``-`` or any placeholder).

    Returns:
        ``{attack_id: eer}`` sorted by attack id.

    Raises:
        MetricsError: mismatched lengths, no bona fide or no spoof trials, NaN scores.
    """
    from rawguard.conventions import BONAFIDE, SPOOF

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    attacks = np.asarray(attacks).reshape(-1)
    if not scores.size == labels.size == attacks.size:
        raise MetricsError(
            f"per_attack_eer: scores, labels and attacks differ in length ({scores.size}, {labels.size}, {attacks.size})"
        )
    bona = _as_scores(scores[labels == BONAFIDE], "bonafide_scores")
    is_spoof = labels == SPOOF
    if not is_spoof.any():
        raise MetricsError("per_attack_eer: no spoof trials")
    return {
        str(attack): compute_eer(bona, scores[is_spoof & (attacks == attack)])[0]
        for attack in sorted(set(attacks[is_spoof].tolist()))
    }


def summarize(
    scores,
    labels,
    attacks: Sequence[str] | None = None,
    asv_scores: Mapping[str, np.ndarray] | None = None,
    bootstrap: int = 0,
) -> dict:
    """Every metric of a scored set, as the JSON-ready dict written to ``metrics.json``.

    Args:
        scores: ``[N]`` CM scores (higher = more bona fide).
        labels: ``[N]`` label ids.
        attacks: ``[N]`` attack ids (spoof rows) for the per-attack EERs; ``None`` skips them.
        asv_scores: ``{"target", "nontarget", "spoof"}`` ASV score arrays; enables ``min_tdcf``.
        bootstrap: resamples for the EER's 95 % interval (0 = none; see :func:`default_resamples`).

    Returns:
        dict with ``n_trials``, ``n_bonafide``, ``n_spoof``, ``eer_percent``, ``eer_threshold``,
        with ``bootstrap`` ``eer_ci95_percent`` (``[low, high]``, :func:`eer_confidence_interval`) and
        ``eer_ci95_resamples``,
        ``min_dcf`` / ``act_dcf`` / ``cllr`` (ASVspoof 5 stand-alone CM metrics; the last two read
        scores as LLRs), ``min_tdcf_asvspoof5``, and with ASV scores ``min_tdcf_legacy`` (ASVspoof 2019),
        ``min_tdcf`` (the same value: rawguard's primary t-DCF) and ``asv`` (its EER and error
        rates); with attacks ``per_attack_eer_percent`` and ``per_attack_counts``.
    """
    from rawguard.conventions import BONAFIDE, SPOOF

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.size != labels.size:
        raise MetricsError(f"scores and labels differ in length ({scores.size} vs {labels.size})")
    bona = _as_scores(scores[labels == BONAFIDE], "bonafide_scores")
    spoof = _as_scores(scores[labels == SPOOF], "spoof_scores")
    eer, threshold = compute_eer(bona, spoof)
    result: dict = {
        "n_trials": int(scores.size),
        "n_bonafide": int(bona.size),
        "n_spoof": int(spoof.size),
        "eer_percent": 100 * eer,
        "eer_threshold": threshold,
        "min_dcf": min_dcf(bona, spoof)[0],
        "act_dcf": act_dcf(bona, spoof)[0],
        "cllr": cllr(bona, spoof),
        "min_tdcf_asvspoof5": min_tdcf_asvspoof5(bona, spoof)[0],
    }
    if bootstrap:
        result["eer_ci95_percent"] = [100 * bound for bound in eer_confidence_interval(bona, spoof, resamples=bootstrap)]
        result["eer_ci95_resamples"] = bootstrap
    if asv_scores is not None:
        missing = [key for key in ("target", "nontarget", "spoof") if key not in asv_scores]
        if missing:
            raise MetricsError(f"asv_scores: missing trial type(s) {', '.join(missing)}")
        asv_eer, _ = compute_eer(asv_scores["target"], asv_scores["nontarget"])
        rates = asv_error_rates(asv_scores["target"], asv_scores["nontarget"], asv_scores["spoof"])
        values, _ = tdcf_curve(bona, spoof, rates["Pfa_asv"], rates["Pmiss_asv"], rates["Pmiss_spoof_asv"])
        result["min_tdcf_legacy"] = result["min_tdcf"] = float(values.min())
        result["asv"] = {"eer_percent": 100 * asv_eer, **rates}
    if attacks is not None:
        attacks = np.asarray(attacks).reshape(-1)
        per_attack = per_attack_eer(scores, labels, attacks)
        result["per_attack_eer_percent"] = {name: 100 * value for name, value in per_attack.items()}
        result["per_attack_counts"] = {
            name: int(np.sum((labels == SPOOF) & (attacks == name))) for name in per_attack
        }
    return result
