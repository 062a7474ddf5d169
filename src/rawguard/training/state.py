"""A run's state between steps, and its round trip through ``last.pt`` / ``best.pt``.

:class:`RunState` is what changes as training goes (step, epoch, position in the epoch, early
stopping, the loss window of the next log line, time). :class:`Checkpointer` writes it, with the
weights, optimizer, scaler and every RNG, so that :func:`restore_run` continues a killed run
bit-for-bit. :class:`Throughput` times the steps (evaluation and checkpoints excluded).
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from rawguard.checkpoint import load_checkpoint, save_checkpoint
from rawguard.config import ConfigError, RunConfig
from rawguard.training.build import Parts
from rawguard.training.distributed import DistContext
from rawguard.training.errors import TrainingError
from rawguard.training.rng import capture_rng, preserved_rng, restore_rng


@dataclass
class EarlyStopping:
    """Dev selection's memory: the best dev EER so far, where, and evaluations since it improved."""

    best_dev_eer: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    last_eval_step: int = -1

    def record(self, step: int, dev_eer: float, eligible: bool = True) -> bool:
        """Note a dev evaluation at ``step``; True when it is the best so far. An evaluation that is
        not ``eligible`` (before ``eval.select_from``) is only noted."""
        self.last_eval_step = step
        if not eligible:
            return False
        improved = self.best_dev_eer is None or dev_eer < self.best_dev_eer
        if improved:
            self.best_dev_eer, self.best_step, self.bad_evals = dev_eer, step, 0
        else:
            self.bad_evals += 1
        return improved

    def to_dict(self) -> dict[str, Any]:
        return {"best_dev_eer": self.best_dev_eer, "best_step": self.best_step,
                "bad_evals": self.bad_evals, "last_eval_step": self.last_eval_step}


def _empty_log_window() -> dict[str, Any]:
    return {"loss_sum": 0.0, "steps": 0, "clips": 0}


@dataclass
class RunState:
    """Where a run is; everything here goes into ``last.pt``."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    """Batches of ``epoch`` already trained on (the sampler resumes there)."""
    early: EarlyStopping = field(default_factory=EarlyStopping)
    log_window: dict[str, Any] = field(default_factory=_empty_log_window)
    """Loss sum, steps and clips since the last ``metrics.jsonl`` train line."""
    elapsed_before: float = 0.0
    """Seconds trained before this process resumed the run (0 for a fresh run)."""
    selection: dict[str, Any] | None = None
    """Dev selection of the current weights, when they were evaluated at this step."""
    planned_steps: int | None = None
    """The step the run ends at, once ``train.fit_schedule`` has planned it (None: not yet, or off)."""
    started: float = field(default_factory=time.monotonic)

    @property
    def last_dev_eer(self) -> float | None:
        return self.selection["dev_eer"] if self.selection else None

    def elapsed(self) -> float:
        """Seconds of training of the whole run, every resumed stretch included."""
        return self.elapsed_before + time.monotonic() - self.started

    def advance(self, loss: float, clips: int) -> None:
        """Count one finished optimizer step on ``clips`` clips (all ranks) with mean loss ``loss``."""
        self.step += 1
        self.batch_in_epoch += 1
        self.log_window["loss_sum"] += loss
        self.log_window["steps"] += 1
        self.log_window["clips"] += clips

    def next_epoch(self) -> None:
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0


class Throughput:
    """Clips per second: of the run so far (end to end per batch) and of the current log window.

    Time spent in :meth:`paused` (dev evaluation, checkpoints) counts in neither.
    """

    def __init__(self) -> None:
        self.window_start = self.tick = time.monotonic()
        self.clips, self.compute_s = 0, 0.0

    def step_done(self, clips: int) -> None:
        now = time.monotonic()
        self.compute_s += now - self.tick  # data wait + step: the end-to-end cost of a batch
        self.tick = now
        self.clips += clips

    def window_rate(self, clips: int) -> float:
        """Clips/s of ``clips`` since the window started; starts the next window."""
        seconds = time.monotonic() - self.window_start
        self.window_start = time.monotonic()
        return clips / seconds if seconds > 0 else 0.0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.window_start += time.monotonic() - started
            self.tick += time.monotonic() - started

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.compute_s if self.compute_s > 0 else 0.0


def data_fingerprint(cache: Any) -> str | None:
    """The prepared cache's content fingerprint (``meta.json``), or None for other datasets."""
    meta = getattr(cache, "meta", None)
    return meta.get("fingerprint") if isinstance(meta, dict) else None


def weights_fingerprint(model: nn.Module) -> list[float]:
    """Cheap, exact-match summary of the parameters: float64 sum and sum of squares."""
    with torch.no_grad():
        flat = torch.cat([p.detach().double().flatten().cpu() for p in model.parameters()])
    return [flat.sum().item(), flat.square().sum().item()]


class Checkpointer:
    """Writes ``last.pt`` and ``best.pt`` (rank 0 only; building the state is collective under DDP).

    Checkpoints are built inside :func:`preserved_rng`, so writing one never changes the random
    stream training sees.
    """

    def __init__(self, parts: Parts, ctx: DistContext, out_dir: Path, train_fingerprint: str | None,
                 last_name: str, best_name: str):
        self.parts, self.ctx = parts, ctx
        self.last_path, self.best_path = out_dir / last_name, out_dir / best_name
        self.train_fingerprint = train_fingerprint
        self.last_saved = time.monotonic()

    def state(self, run: RunState) -> dict[str, Any]:
        """The checkpoint dict of the run now (see docs/architecture.md for its keys)."""
        parts, ctx, config = self.parts, self.ctx, self.parts.config
        rng = capture_rng(parts.generator)
        state = {
            "model_name": config.model.name,
            "model_config": parts.model_config,
            # "model" is what evaluate/score/export load: the average when there is one.
            "model": (parts.ema.module if parts.ema is not None else parts.module).state_dict(),
            "config": config.to_dict(),
            "step": run.step,
            "epoch": run.epoch,
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": {"name": f"warmup-{config.optim.schedule}", "step": run.step, "decay_steps": parts.decay_steps},
            "scaler": parts.scaler.state_dict(),
            "sampler": {"epoch": run.epoch, "batch": run.batch_in_epoch},
            "rng": rng,
            "early_stopping": run.early.to_dict(),
            "log_window": dict(run.log_window),
            "elapsed_s": run.elapsed(),
            "world_size": ctx.world_size,
            "precision": parts.precision,
            "train_data_fingerprint": self.train_fingerprint,
            "planned_steps": run.planned_steps,
        }
        if ctx.enabled:
            state.update(self._gather_ranks(rng, run.step))
        if parts.ema is not None:
            state["raw_model"] = parts.module.state_dict()
            state["ema"] = {"decay": parts.ema.decay, "updates": parts.ema.updates}
        if run.selection is not None and run.early.last_eval_step == run.step:
            state["selection_last"] = run.selection
        return state

    def _gather_ranks(self, rng: dict[str, Any], step: int) -> dict[str, Any]:
        """Every rank's RNG (exact multi-process resume) and weight fingerprint: DDP keeps replicas
        identical, and a checkpoint records that it did."""
        gathered: list[Any] = [None] * self.ctx.world_size
        torch.distributed.all_gather_object(gathered, (rng, weights_fingerprint(self.parts.module)))
        fingerprints = [g[1] for g in gathered]
        if self.ctx.is_main and any(f != fingerprints[0] for f in fingerprints):
            tqdm.write(f"warning: DDP replicas diverged at step {step}: {fingerprints}", file=sys.stderr)
        return {"rng_ranks": [g[0] for g in gathered], "rank_fingerprints": fingerprints}

    def save_last(self, run: RunState) -> None:
        self.last_saved = time.monotonic()
        with preserved_rng(self.parts.generator):
            state = self.state(run)  # collective under DDP: every rank builds it
            if self.ctx.is_main:
                if "selection_last" in state:
                    state["selection"] = state["selection_last"]  # these weights' own threshold/calibration
                save_checkpoint(state, self.last_path)

    def save_best(self, run: RunState, selection: dict[str, Any]) -> None:
        with preserved_rng(self.parts.generator):
            state = self.state(run)
            if self.ctx.is_main:
                state["selection"] = {**selection, "step": run.step}
                save_checkpoint(state, self.best_path)


def check_resume(saved: dict[str, Any], config: RunConfig, path: Path, world_size: int,
                 train_fingerprint: str | None) -> None:
    """Refuse a resume on other data or another model; warn about other changes.

    Raises:
        TrainingError: other train data, another model, or a saved config that today's code
            cannot run (it used an option since removed).
    """
    saved_fingerprint = saved.get("train_data_fingerprint")
    if saved_fingerprint and train_fingerprint and saved_fingerprint != train_fingerprint:
        # Continuing on other data would silently mix two experiments in one run folder.
        raise TrainingError(
            f"{path}: cannot resume: the train cache holds other data than when this run started "
            f"(fingerprint {train_fingerprint[:12]} vs {saved_fingerprint[:12]}); use another --out directory"
        )
    try:  # through today's config: moved keys at their place, a key the checkpoint predates at its default
        old = RunConfig.from_dict(saved.get("config", {}), source=str(path)).to_dict()
    except ConfigError as error:
        raise TrainingError(f"{path}: cannot resume: {error}") from error
    new = config.to_dict()
    if old["model"] != new["model"]:
        raise TrainingError(
            f"{path}: cannot resume: the checkpoint's model {old['model']} differs from the "
            f"configured {new['model']} (use another --out directory for a different model)"
        )
    changed = [f"{section}.{key}" for section in new if section != "model"
               for key in sorted(set(new[section]) | set(old[section]))
               if new[section].get(key) != old[section].get(key)]
    if changed:
        tqdm.write(f"resume: configuration changed since the checkpoint: {', '.join(changed)}", file=sys.stderr)
    if saved.get("world_size", 1) != world_size:
        tqdm.write(
            f"resume: world size changed ({saved.get('world_size', 1)} -> {world_size}); training continues, "
            "but not bit-for-bit", file=sys.stderr
        )


def restore_run(path: Path, parts: Parts, ctx: DistContext, train_fingerprint: str | None) -> RunState:
    """Load ``last.pt`` into ``parts`` (weights, average, optimizer, scaler, this rank's RNG) and
    return the run's state at that checkpoint.

    Raises:
        TrainingError: see :func:`check_resume`.
        rawguard.checkpoint.CheckpointError: the file is corrupt (names it).
    """
    saved = load_checkpoint(path)
    planned = saved.get("planned_steps")
    if planned and parts.config.train.fit_schedule:
        parts.set_horizon(planned)  # the fitted schedule goes on with the horizon it had
    check_resume(saved, parts.config, path, ctx.world_size, train_fingerprint)
    # With an EMA, "model" holds the average and "raw_model" the weights being trained.
    parts.module.load_state_dict(saved.get("raw_model", saved["model"]))
    if parts.ema is not None and "ema" in saved:
        parts.ema.load(saved["model"], saved["ema"]["updates"])
    elif parts.ema is not None:  # EMA switched on for a run that had none: average from here on
        parts.ema.load(parts.module.state_dict(), 0)
    parts.optimizer.load_state_dict(saved["optimizer"])
    if parts.scaler.is_enabled() and saved["scaler"]:  # empty when the run was not fp16 before
        parts.scaler.load_state_dict(saved["scaler"])
    rng_ranks = saved.get("rng_ranks")
    if rng_ranks is not None and len(rng_ranks) == ctx.world_size:
        restore_rng(rng_ranks[ctx.rank], parts.generator)
    elif ctx.rank == 0:
        restore_rng(saved["rng"], parts.generator)
    return RunState(
        step=int(saved["step"]), epoch=int(saved["sampler"]["epoch"]), batch_in_epoch=int(saved["sampler"]["batch"]),
        early=EarlyStopping(**saved["early_stopping"]), log_window=dict(saved["log_window"]),
        elapsed_before=float(saved.get("elapsed_s", 0.0)), selection=saved.get("selection_last"),
        planned_steps=int(planned) if planned and parts.config.train.fit_schedule else None,
    )
