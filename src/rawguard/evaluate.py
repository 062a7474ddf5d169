"""Evaluation of a trained detector on a prepared set: scores, metrics, plots and a report.

:func:`evaluate` scores every utterance of a cache with :func:`rawguard.scoring.score_cache` (the
windowed scorer the :class:`~rawguard.detector.Detector` uses too): each utterance is cut into
windows at :func:`rawguard.windows.window_starts` (window and hop from the checkpoint's dev
selection) and its score is the mean over its windows of ``logit[1] - logit[0]``, so a file scores
the same from a cache or from disk. Scores are written in the official CM format
(:func:`rawguard.scorefiles.write_cm_scores`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rawguard.atomic import write_text_atomic
from rawguard.conventions import BONAFIDE, SPOOF
from rawguard.scorefiles import read_asv_scores, write_cm_scores

__all__ = ["evaluate"]


def evaluate(
    checkpoint: str | os.PathLike | Sequence[str | os.PathLike],
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    asv_scores: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    precision: str = "fp32",
    window: int | None | str = "checkpoint",
    hop: int | None = None,
    progress: bool = True,
) -> dict:
    """Score a prepared cache with a checkpoint and write scores, metrics, plots and a report.

    Args:
        checkpoint: trained rawguard checkpoint, or several: scored as one equal-weight ensemble of
            their calibrated log-odds (:meth:`rawguard.detector.Detector.from_checkpoints`).
        data: prepared cache folder (``rawguard prepare``).
        out_dir: output folder: ``scores.txt`` (official CM format), ``metrics.json``, ``report.md``,
            ``det.png``, ``score_hist.png``, ``per_attack_eer.png``, and ``reliability.png`` when the
            checkpoint is calibrated.
        asv_scores: ASVspoof ASV score file; adds the ASVspoof 2019 ``min_tdcf``.
        batch_size: windows per forward pass.
        device, precision: where and how to run the model (see :func:`rawguard.scoring.score_cache`).
        window, hop: scoring window/hop in samples; default the checkpoint's dev-selection policy;
            ``window=None`` scores each utterance at full length.
        progress: tqdm bar while scoring.

    Returns:
        The metrics dict written to ``metrics.json`` (see :func:`rawguard.metrics.summarize`), plus
        ``calibration`` (ECE/Brier on this set), ``at_threshold`` (error rates at the checkpoint's dev
        threshold) and ``scoring`` (window, hop, checkpoint, data).

    Raises:
        CheckpointError, DetectorError, ScoringError, CacheError, ScoreFileError, MetricsError (e.g. a
        set with one class: ``scores.txt`` is still written before the error).
    """
    import torch

    from rawguard.data.cache import Cache
    from rawguard.detector import Detector
    from rawguard.metrics import default_resamples, summarize
    from rawguard.report import write_report
    from rawguard.scoring import score_cache

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    asv = read_asv_scores(asv_scores) if asv_scores else None  # fail early, before scoring
    checkpoints = [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else list(checkpoint)
    detector = Detector.from_checkpoints(checkpoints, device=device, window=window, hop=hop, batch_size=batch_size)
    named = ", ".join(f"`{path}`" for path in checkpoints)
    cache = Cache.open(data)
    scores = score_cache(
        detector.model, cache, detector.window, detector.hop, batch_size, torch.device(device), precision, progress=progress
    ).astype(np.float64)
    labels = np.asarray(cache.labels)
    attacks = np.asarray(cache.systems)
    write_cm_scores(out_dir / "scores.txt", cache.ids, attacks, labels, scores)

    metrics = summarize(scores, labels, attacks, asv_scores=asv, bootstrap=default_resamples(scores.size))
    metrics["at_threshold"] = _rates_at_threshold(scores, labels, detector.threshold)
    plots = _plot(scores, labels, metrics, detector, out_dir)  # adds metrics["calibration"] when calibrated
    policy = "full length" if detector.window is None else (
        f"mean over windows of {detector.window} samples, hop {detector.hop} (short clips tiled)"
    )
    metrics["scoring"] = {"checkpoint": ", ".join(map(str, checkpoints)), "data": str(data), "window": detector.window,
                          "hop": detector.hop, "policy": policy, "calibrated": detector.calibrated}
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    notes = [
        _described(checkpoints, detector) + named
        + ("" if detector.calibrated else " (no dev selection: threshold 0, uncalibrated)"),
        f"data: `{data}` ({len(cache)} utterances)",
        f"utterance score: {policy}",
        f"at the dev threshold {detector.threshold:.4g}: miss rate {metrics['at_threshold']['frr_percent']:.2f} %, "
        f"false acceptance {metrics['at_threshold']['far_percent']:.2f} %",
    ]
    write_report(metrics, out_dir / "report.md", plots, title="rawguard evaluation", notes=notes)
    return metrics


def _described(checkpoints: list, detector) -> str:
    """How the report names what was scored: one checkpoint, an ensemble file, or several checkpoints."""
    if len(checkpoints) > 1:
        return "ensemble (mean calibrated log-odds) of "
    members = len(getattr(detector.model, "members", ()))
    return f"ensemble file of {members} models (mean calibrated log-odds): " if members else "checkpoint: "


def _rates_at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Miss and false-acceptance rates (percent) of the decision ``score > threshold`` = bona fide."""
    bona, spoof = scores[labels == BONAFIDE], scores[labels == SPOOF]
    return {
        "threshold": threshold,
        "frr_percent": 100 * float(np.mean(bona <= threshold)),
        "far_percent": 100 * float(np.mean(spoof > threshold)),
    }


def _plot(scores: np.ndarray, labels: np.ndarray, metrics: dict, detector, out_dir: Path) -> dict[str, str]:
    """Write the evaluation plots; ``{title: file name}`` for the report.

    With a calibrated detector also the reliability diagram, and its ECE/Brier go to
    ``metrics["calibration"]``.
    """
    from rawguard.calibration import apply_calibration, reliability
    from rawguard.report import plot_det, plot_per_attack, plot_reliability, plot_score_hist

    bona, spoof = scores[labels == BONAFIDE], scores[labels == SPOOF]
    plots = {
        "DET curve": plot_det({"rawguard": (bona, spoof)}, out_dir / "det.png").name,
        "Score distributions": plot_score_hist(scores, labels, out_dir / "score_hist.png", threshold=detector.threshold).name,
        "EER per attack": plot_per_attack(metrics["per_attack_eer_percent"], out_dir / "per_attack_eer.png", metrics["eer_percent"]).name,
    }
    if detector.calibrated:
        calibration = reliability(apply_calibration(scores, detector.calibration), labels)
        metrics["calibration"] = {**detector.calibration, **calibration}
        plots["Calibration reliability"] = plot_reliability(calibration, out_dir / "reliability.png").name
    return plots

