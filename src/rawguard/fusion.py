"""Score-level fusion of several detectors: a logistic regression fitted on dev, applied to any set.

Detectors trained differently (other seeds, architectures, crops, copy-synthesis families) make
partly independent errors on systems none of them saw, so a weighted sum of their scores often
ranks trials better than the best single one. The weights come from a logistic regression on the
*dev* scores of every system (the standard linear fusion of speaker and spoofing detection), and
the fused score is a calibrated log-likelihood ratio::

    llr = sum_d w_d * s_d + b - log(n_bonafide / n_spoof)     # dev's class ratio removed

so ``llr > 0`` means the trial is more likely bona fide than spoof whatever the class proportions
of the set being scored, and the official EER threshold logic applies unchanged (higher = more
bona fide). Fitting on dev and reporting on another set is the only honest use; the dev EER of the
fusion is an in-sample figure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rawguard.atomic import write_text_atomic
from rawguard.calibration import fit_logistic_regression
from rawguard.conventions import BONAFIDE
from rawguard.metrics import MetricsError, compute_eer
from rawguard.scorefiles import ScoreTable, read_cm_scores, write_cm_scores

__all__ = ["FusionError", "Fusion", "fit_fusion", "align_score_tables", "fuse_score_files"]


class FusionError(MetricsError):
    """Score files that cannot be fused (names the file and the trial at fault)."""


@dataclass(frozen=True)
class Fusion:
    """A fitted linear fusion: ``llr = scores @ weights + bias``.

    Attributes:
        weights: one weight per system, on its raw scores.
        bias: offset, with dev's prior log-odds already removed (so the output is an LLR).
        dev_prior_log_odds: ``log(n_bonafide / n_spoof)`` of the dev trials it was fitted on.
    """

    weights: tuple[float, ...]
    bias: float
    dev_prior_log_odds: float

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """``[N, D]`` scores of D systems -> ``[N]`` fused log-likelihood ratios."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != len(self.weights):
            raise FusionError(f"expected scores of shape [N, {len(self.weights)}], got {list(scores.shape)}")
        return scores @ np.asarray(self.weights) + self.bias

    def to_dict(self) -> dict:
        return {**asdict(self), "weights": list(self.weights)}


def fit_fusion(scores: np.ndarray, labels: np.ndarray, ridge: float = 0.01) -> Fusion:
    """Fit the fusion weights on dev.

    Args:
        scores: ``[N, D]`` dev scores of D systems (higher = more bona fide), finite.
        labels: ``[N]`` label ids (:data:`~rawguard.conventions.BONAFIDE` / ``SPOOF``).
        ridge: slope penalty on standardised scores; keeps a perfectly separated dev finite.

    Raises:
        FusionError: shapes disagree, a non-finite score, or one class is absent.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise FusionError(f"expected scores [N, D] and labels [N], got {list(scores.shape)} and {list(labels.shape)}")
    if not np.isfinite(scores).all():
        raise FusionError("dev scores hold NaN or infinite values")
    is_bona = labels == BONAFIDE
    n_bona, n_spoof = int(is_bona.sum()), int((~is_bona).sum())
    if n_bona == 0 or n_spoof == 0:
        raise FusionError(f"fusion needs both classes on dev, got {n_bona} bona fide and {n_spoof} spoof trials")
    # Standardise each system so one ridge strength suits every score scale; map back afterwards.
    centre = scores.mean(axis=0)
    spread = scores.std(axis=0)
    spread[spread == 0] = 1.0
    design = np.concatenate([(scores - centre) / spread, np.ones((len(scores), 1))], axis=1)  # [N, D + 1]
    penalty = np.append(np.full(scores.shape[1], ridge), 0.0)  # the bias is not penalised
    params = fit_logistic_regression(design, is_bona.astype(np.float64), penalty)
    weights = params[:-1] / spread
    prior_log_odds = float(np.log(n_bona / n_spoof))
    bias = float(params[-1] - weights @ centre) - prior_log_odds
    return Fusion(weights=tuple(float(w) for w in weights), bias=bias, dev_prior_log_odds=prior_log_odds)


def align_score_tables(tables: Sequence[ScoreTable], paths: Sequence[str | os.PathLike]) -> tuple[ScoreTable, np.ndarray]:
    """Line up the trials of several score files of one set by utterance id.

    Args:
        tables: score tables of the same trials from D systems (any order of lines).
        paths: their files, for error messages.

    Returns:
        ``(trials, scores)``: the first table (ids, attacks, labels in its order) and ``[N, D]`` scores.

    Raises:
        FusionError: naming the file and utterance when a trial is missing, extra, or labelled differently.
    """
    first = tables[0]
    columns = [first.scores]
    for table, path in zip(tables[1:], paths[1:]):
        position = {utt: i for i, utt in enumerate(table.utt_ids.tolist())}
        missing = [utt for utt in first.utt_ids.tolist() if utt not in position]
        if missing:
            raise FusionError(f"{path}: no score for utterance {missing[0]!r} of {paths[0]} ({len(missing)} missing)")
        if len(position) != len(first.utt_ids):
            extra = sorted(set(position) - set(first.utt_ids.tolist()))
            raise FusionError(f"{path}: utterance {extra[0]!r} is not in {paths[0]} ({len(extra)} extra)")
        order = np.array([position[utt] for utt in first.utt_ids.tolist()])
        disagree = np.flatnonzero(table.labels[order] != first.labels)
        if disagree.size:
            utt = str(first.utt_ids[disagree[0]])
            raise FusionError(f"{path}: utterance {utt!r} is labelled differently than in {paths[0]}")
        columns.append(table.scores[order])
    return first, np.stack(columns, axis=1)


def _eer_percent(scores: np.ndarray, labels: np.ndarray) -> float | None:
    is_bona = labels == BONAFIDE
    if not is_bona.any() or is_bona.all():
        return None
    return 100.0 * compute_eer(scores[is_bona], scores[~is_bona])[0]


def _read_set(paths: Sequence[str | os.PathLike], protocol: str | os.PathLike | None) -> tuple[ScoreTable, np.ndarray]:
    return align_score_tables([read_cm_scores(path, protocol=protocol) for path in paths], paths)


def fuse_score_files(
    scores: Sequence[str | os.PathLike],
    dev: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    protocol: str | os.PathLike | None = None,
    dev_protocol: str | os.PathLike | None = None,
    ridge: float = 0.01,
) -> dict:
    """Fit a fusion on dev score files and write the fused scores of another set.

    Args:
        scores: D score files of the set to fuse (official ``UTT ATTACK KEY SCORE``, or
            ``UTT SCORE`` with ``protocol``), one per system.
        dev: the same D systems' dev score files, in the same order (labels needed).
        out: fused score file (official CM format); ``OUT.fusion.json`` beside it records the
            weights, the inputs and the EER of every system and of the fusion.
        protocol: protocol for two-column ``scores`` files.
        dev_protocol: protocol for two-column ``dev`` files.
        ridge: see :func:`fit_fusion`.

    Returns:
        The summary written to ``OUT.fusion.json``.

    Raises:
        FusionError: unequal counts of files, misaligned trials; ScoreFileError for unreadable files.
    """
    if len(scores) != len(dev) or not scores:
        raise FusionError(f"give one dev score file per system: {len(scores)} score file(s), {len(dev)} dev file(s)")
    dev_trials, dev_matrix = _read_set(dev, dev_protocol)
    fusion = fit_fusion(dev_matrix, dev_trials.labels, ridge=ridge)
    trials, matrix = _read_set(scores, protocol)
    fused = fusion.apply(matrix)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_cm_scores(out, trials.utt_ids, trials.attacks, trials.labels, fused)
    summary = {
        "fusion": fusion.to_dict(),
        "systems": [
            {"scores": str(path), "dev": str(dev_path),
             "dev_eer": _eer_percent(dev_matrix[:, d], dev_trials.labels),
             "eer": _eer_percent(matrix[:, d], trials.labels)}
            for d, (path, dev_path) in enumerate(zip(scores, dev))
        ],
        "fused": {"scores": str(out), "dev_eer_in_sample": _eer_percent(fusion.apply(dev_matrix), dev_trials.labels),
                  "eer": _eer_percent(fused, trials.labels), "trials": int(len(fused))},
    }
    write_text_atomic(out.with_name(out.name + ".fusion.json"), json.dumps(summary, indent=2) + "\n")
    return summary
