"""Dev selection: score the dev cache, keep ``best.pt`` by dev EER, count patience, watch monitor sets.

Scoring runs on rank 0 inside :func:`preserved_rng`, so it never changes the random stream training
sees: a run evaluated every 10 steps and one evaluated every 1000 steps see the same batches,
crops, dropout masks and augmentations. With a weight average (``train.ema_decay``) it is the
average that is scored, selected and shipped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from rawguard.config import RunConfig
from rawguard.conventions import BONAFIDE, SPOOF
from rawguard.training.build import Parts, open_cache
from rawguard.training.distributed import DistContext, broadcast_object
from rawguard.training.errors import TrainingError
from rawguard.training.log import MetricsLog
from rawguard.training.rng import preserved_rng
from rawguard.training.state import Checkpointer, RunState

MONITOR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
RESERVED_MONITOR_NAMES = {"dev", "best_dev"}  # their "<name>_eer" would overwrite the dev log's own fields


def can_select(step: int, config: RunConfig) -> bool:
    """Whether the weights of ``step`` may become ``best.pt`` (from ``eval.select_from`` on)."""
    return step >= config.eval.select_from * config.train.max_steps


def evaluation_due(step: int, config: RunConfig) -> bool:
    """Whether the loop scores dev after optimizer step ``step``: every ``eval.every`` steps, or every
    ``eval.early_every`` before ``eval.select_from`` (the end of a run is evaluated regardless)."""
    every = config.eval.every
    if config.eval.early_every and not can_select(step, config):
        every = config.eval.early_every
    return bool(every) and step % every == 0


def check_dev_cache(dev) -> None:
    """A cache to compute an EER on needs both classes (TrainingError otherwise)."""
    labels = np.asarray(dev.labels)
    if not np.any(labels == BONAFIDE) or not np.any(labels == SPOOF):
        raise TrainingError(
            f"dev cache needs both bona fide and spoof clips to compute an EER "
            f"(it has {int(np.sum(labels == BONAFIDE))} bona fide, {int(np.sum(labels == SPOOF))} spoof)"
        )


def open_monitor_sets(monitor: Mapping[str, Any]) -> dict[str, Any]:
    """Open and check the ``monitor`` caches: names usable as log fields, both classes present."""
    opened = {}
    for name, cache in monitor.items():
        if not MONITOR_NAME.fullmatch(name) or name in RESERVED_MONITOR_NAMES:
            raise TrainingError(
                f"monitor set {name!r}: the name must start with a letter and hold only letters, digits, _ "
                f"and - (logged as <name>_eer), and not be {' or '.join(sorted(RESERVED_MONITOR_NAMES))}"
            )
        opened[name] = open_cache(cache, f"monitor set {name!r}")
        try:
            check_dev_cache(opened[name])
        except TrainingError as error:
            raise TrainingError(f"monitor set {name!r}: {error}") from error
    return opened


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def score_and_eer(model: nn.Module, cache, config: RunConfig, device: torch.device
                  ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Clip scores ``[N]`` of ``cache`` (``eval`` windows and precision), its labels ``[N]``, EER and threshold."""
    from rawguard.metrics import compute_eer
    from rawguard.scoring import score_cache

    scores = score_cache(
        _unwrap(model), cache, config.eval.window, config.eval.hop, config.eval.batch_size, device, config.eval.precision
    )
    labels = np.asarray(cache.labels)
    eer, threshold = compute_eer(scores[labels == BONAFIDE], scores[labels == SPOOF])
    return scores, labels, eer, threshold


def evaluate_dev(model: nn.Module, dev, config: RunConfig, device: torch.device) -> dict[str, Any]:
    """Dev EER, its threshold and a logistic calibration for the current weights (``eval.precision``).

    Returns:
        ``{"dev_eer", "threshold", "calibration": {"scale", "bias"}, "window", "hop"}`` (the
        checkpoint's ``selection`` dict, see docs/architecture.md).
    """
    from rawguard.calibration import fit_logistic

    scores, labels, eer, threshold = score_and_eer(model, dev, config, device)
    calibration = fit_logistic(scores, labels)
    return {
        "dev_eer": float(eer),
        "threshold": float(threshold),
        "calibration": {"scale": float(calibration["scale"]), "bias": float(calibration["bias"])},
        "window": config.eval.window,
        "hop": config.eval.hop,
    }


class DevSelection:
    """One dev evaluation per call: score, log, ``best.pt`` when better, ``last.pt`` always.

    Args:
        dev_set: the cache ``best.pt`` is selected on.
        monitor_sets: ``{name: cache}`` scored too and logged as ``<name>_eer``; they never select.
        checkpoints: writes ``best.pt`` and ``last.pt``.
        log: the run's ``metrics.jsonl``.
    """

    def __init__(self, parts: Parts, ctx: DistContext, device: torch.device, dev_set: Any,
                 monitor_sets: Mapping[str, Any], checkpoints: Checkpointer, log: MetricsLog):
        self.parts, self.ctx, self.device = parts, ctx, device
        self.dev_set, self.monitor_sets = dev_set, dict(monitor_sets)
        self.checkpoints, self.log = checkpoints, log

    def __call__(self, run: RunState, final: bool = False) -> bool:
        """Evaluate the weights of ``run.step``; True when patience (``eval.patience``) is exhausted.
        ``final``: the run's last evaluation, which selects if none could before (``eval.select_from``)."""
        config, parts = self.parts.config, self.parts
        started = time.monotonic()
        result, monitored = self._score_on_main()
        run.selection = result
        eligible = can_select(run.step, config)
        improved = run.early.record(run.step, result["dev_eer"], eligible or (final and run.early.best_step is None))
        self.log.write({
            "type": "dev", "step": run.step, "epoch": run.epoch, "dev_eer": result["dev_eer"],
            "threshold": result["threshold"], "best_dev_eer": run.early.best_dev_eer, **monitored,
            "eval_s": round(time.monotonic() - started, 3), "ema": parts.ema is not None,
        })
        if improved:
            self.checkpoints.save_best(run, result)
        self.checkpoints.save_last(run)
        return bool(config.eval.patience) and run.early.bad_evals >= config.eval.patience

    def _score_on_main(self) -> tuple[dict[str, Any], dict[str, float]]:
        """The dev selection dict (shared with every rank) and, on rank 0, the monitor sets' EERs."""
        result, monitored = None, {}
        if self.ctx.is_main:
            scored = self.parts.scored
            config = self.parts.config
            with preserved_rng(self.parts.generator):
                result = evaluate_dev(scored, self.dev_set, config, self.device)
                monitored = {f"{name}_eer": float(score_and_eer(scored, cache, config, self.device)[2])
                             for name, cache in self.monitor_sets.items()}
        return broadcast_object(result, self.ctx), monitored
