"""Several trained detectors scored as one: the mean of their calibrated log-odds.

Each checkpoint carries a logistic calibration fitted on dev, ``log-odds = scale * score + bias``.
Calibrated log-odds of detectors selected on the same dev set are on one scale (log-likelihood
ratios plus the same dev prior), so their mean is a fusion that needs no further fitting; the
models' raw scores are not (one model's score of 3 can mean what another's 30 does).

:class:`EnsembleModel` is an ``nn.Module`` whose two logits are ``[0, mean log-odds]``, so the
ensemble's score ``logit[1] - logit[0]`` *is* the mean log-odds and everything built on a model
(:class:`~rawguard.detector.Detector`, windowed scoring, archives, the server, ONNX export) works
on it unchanged. The ensemble's threshold is the mean of the members' dev EER thresholds mapped to
log-odds; for weights fitted on dev instead of equal ones, score each model and use
``rawguard fuse``.

An ensemble can also live in one file (:func:`save_ensemble`, ``rawguard ensemble``): a checkpoint
whose ``ensemble_members`` are the members' own checkpoints (model, config and dev selection; no
optimiser state). Every command that takes ``--checkpoint`` loads it as the ensemble, so a set of
models ships, scores and serves as one path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from rawguard.checkpoint import load_checkpoint, save_checkpoint
from rawguard.detector import Detector, DetectorError

__all__ = ["ENSEMBLE_MEMBERS", "EnsembleModel", "ensemble_detector", "ensemble_from_bundle", "save_ensemble"]

ENSEMBLE_MEMBERS = "ensemble_members"
"""The key an ensemble file holds its members' checkpoints under (in place of ``model``)."""
MEMBER_KEYS = ("model_name", "model_config", "model", "config", "selection", "step")
"""What an ensemble file keeps of each member's checkpoint: enough to score, nothing to resume."""


class EnsembleModel(nn.Module):
    """Mean calibrated log-odds of several models, as two logits.

    Args:
        members: models mapping float32 ``[B, T]`` to ``[B, 2]`` logits.
        scales, biases: each member's dev calibration (``log-odds = scale * score + bias``).
    """

    def __init__(self, members: Sequence[nn.Module], scales: Sequence[float], biases: Sequence[float]) -> None:
        super().__init__()
        if not members or not len(members) == len(scales) == len(biases):
            raise DetectorError(f"an ensemble needs one scale and bias per member, got {len(members)} members, "
                                f"{len(scales)} scales, {len(biases)} biases")
        self.members = nn.ModuleList(members)
        self.register_buffer("scales", torch.tensor(list(scales), dtype=torch.float32))
        self.register_buffer("biases", torch.tensor(list(biases), dtype=torch.float32))
        self.min_samples = max(getattr(member, "min_samples", 1) for member in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` float32 waveforms -> ``[B, 2]`` logits ``[0, mean calibrated log-odds]``."""
        scores = torch.stack([logits[:, 1] - logits[:, 0] for logits in (m(x).float() for m in self.members)], dim=1)
        log_odds = (scores * self.scales + self.biases).mean(dim=1)  # [B]
        return torch.stack([torch.zeros_like(log_odds), log_odds], dim=1)


def ensemble_detector(
    paths: Sequence[str | os.PathLike],
    device: str = "cpu",
    window: int | None | str = "checkpoint",
    hop: int | None = None,
    batch_size: int = 64,
) -> Detector:
    """A :class:`~rawguard.detector.Detector` over several checkpoints (equal-weight log-odds fusion).

    Args:
        paths: two or more checkpoints, each with a dev selection (threshold and calibration).
        device, window, hop, batch_size: as :meth:`Detector.from_checkpoint`; with the default
            ``window="checkpoint"`` every member must have been selected with the same window and hop.

    Raises:
        DetectorError: naming the checkpoint that has no dev calibration or another window policy.
    """
    members = [Detector.from_checkpoint(path, device="cpu", window=window, hop=hop, batch_size=batch_size) for path in paths]
    return _ensemble(members, [str(path) for path in paths], device, batch_size)


def save_ensemble(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write the ensemble of ``paths`` to one checkpoint file ``out`` (atomically).

    The members are checked as :func:`ensemble_detector` checks them (calibrated, one window
    policy), so a file this writes always loads. Each member keeps :data:`MEMBER_KEYS`.

    Raises:
        DetectorError: fewer than two members, an uncalibrated member, different window policies,
            or a member that is itself an ensemble file, naming it.
    """
    states = []
    for path in paths:
        state = load_checkpoint(path)
        if ENSEMBLE_MEMBERS in state:
            raise DetectorError(f"{path}: already an ensemble file; give its members' checkpoints instead")
        states.append({key: state[key] for key in MEMBER_KEYS if key in state})
    ensemble_detector(paths)  # refuses what could not be scored as one, naming the checkpoint
    return save_checkpoint({ENSEMBLE_MEMBERS: states, "ensemble_sources": [str(path) for path in paths]}, out)


def ensemble_from_bundle(state: dict, path: str | os.PathLike, device: str = "cpu", **policy) -> Detector:
    """The detector of an ensemble file already loaded (:func:`save_ensemble`); ``path`` names it.
    ``policy``: ``window``, ``hop``, ``batch_size`` as :meth:`Detector.from_checkpoint` takes them."""
    states = state[ENSEMBLE_MEMBERS]
    if not isinstance(states, list) or not all(isinstance(member, dict) for member in states):
        raise DetectorError(f"{path}: {ENSEMBLE_MEMBERS!r} is not a list of member checkpoints")
    sources = state.get("ensemble_sources") or []
    names = [f"{path} [member {i}: {sources[i] if i < len(sources) else '?'}]" for i in range(len(states))]
    members = [Detector.from_state(member, name, device="cpu", **policy) for member, name in zip(states, names)]
    return _ensemble(members, names, device, policy.get("batch_size", 64))


def _ensemble(members: Sequence[Detector], names: Sequence[str], device: str, batch_size: int) -> Detector:
    """One detector over ``members`` (named ``names`` in errors and notes)."""
    if len(members) < 2:
        raise DetectorError(f"an ensemble needs two or more checkpoints, got {len(members)}")
    first = members[0]
    for name, member in zip(names, members):
        if not member.calibrated:
            raise DetectorError(f"{name}: no dev calibration, so its scores cannot be put on the ensemble's scale")
        if (member.window, member.hop) != (first.window, first.hop):
            raise DetectorError(f"{name}: scored with window {member.window} and hop {member.hop}, but {names[0]} with "
                                f"{first.window} and {first.hop}; pass window= (and hop=) to score all alike")
    scales = [member.calibration["scale"] for member in members]
    biases = [member.calibration["bias"] for member in members]
    threshold = sum(s * m.threshold + b for s, b, m in zip(scales, biases, members)) / len(members)
    model = EnsembleModel([member.model for member in members], scales, biases)
    model_names = sorted({member.model_name or "model" for member in members})
    return Detector(
        model,
        threshold=float(threshold),
        calibration={"scale": 1.0, "bias": 0.0},  # the score already is log-odds
        window=first.window,
        hop=first.hop,
        device=device,
        batch_size=batch_size,
        notes=[f"equal-weight ensemble of {len(members)} checkpoints: {', '.join(names)}"],
        model_name=f"ensemble[{len(members)}]:{'+'.join(model_names)}",
    )
