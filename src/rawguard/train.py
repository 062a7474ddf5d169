"""The training loop: step, maybe log, maybe evaluate, maybe checkpoint. Resumable, exact, DDP-aware.

Read top to bottom, :func:`train` does this:

1. resolve the device, precision and (under ``torchrun``) the process group;
2. build the model, optimizer, gradient scaler, batch source and augmenter, all seeded
   (:mod:`rawguard.training.build`);
3. if ``RUN/last.pt`` exists, restore *everything* from it (weights, optimizer, scaler, sampler
   position, every RNG, early-stopping state, the running loss window) and cut ``metrics.jsonl``
   back to that step, so the continuation is bit-for-bit the run that was interrupted
   (:mod:`rawguard.training.state`);
4. loop over optimizer steps (:func:`_optimizer_step`): warm-up/cosine learning rate, autocast
   forward, (scaled) backward over ``train.grad_accum`` micro-batches, optionally a SAM step,
   gradient clipping, step, and (``train.ema_decay``) an update of the weights' moving average;
5. every ``train.log_every`` steps write the mean loss to ``metrics.jsonl``;
6. every ``eval.every`` steps (``eval.early_every`` before ``eval.select_from``) score the dev
   cache, keep ``best.pt`` by dev EER (with the EER threshold and a logistic calibration in its
   ``selection``), count patience (:mod:`rawguard.training.selection`);
7. with ``train.fit_schedule``, at the first dev evaluation and at each before ``eval.select_from``,
   fit ``train.max_steps`` to end within ``train.max_minutes`` at the measured speed
   (:mod:`rawguard.training.budget`);
8. write ``last.pt`` every ``train.checkpoint_every`` steps (or ``train.checkpoint_minutes``), at
   every dev evaluation, on SIGTERM/SIGINT and at the end; plot the curves; print one summary line.

Only rank 0 writes files. Dev evaluation and checkpointing never change the random stream that
training sees.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from rawguard.atomic import write_text_atomic
from rawguard.config import RunConfig
from rawguard.progress import progress_bar
from rawguard.training.budget import Speed, SpeedMeter, fit_horizon, projected_seconds
from rawguard.training.build import Parts, as_config, build_parts, configure_torch, open_cache, resolve_device
from rawguard.training.distributed import (
    DistContext, any_rank, broadcast_object, init_distributed, shutdown_distributed,
)
from rawguard.training.errors import RunExistsError, TrainingError
from rawguard.training.log import MetricsLog, truncate_metrics
from rawguard.training.precision import autocast
from rawguard.training.selection import (
    DevSelection, can_select, check_dev_cache, evaluate_dev, evaluation_due, open_monitor_sets,
)
from rawguard.training.signals import StopSignals
from rawguard.training.state import Checkpointer, RunState, Throughput, data_fingerprint, restore_run

__all__ = ["BEST", "CONFIG_FILE", "CURVES", "LAST", "METRICS", "RunExistsError", "TrainResult", "TrainingError",
           "evaluate_dev", "train"]

CONFIG_FILE = "config.yaml"
LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"
CURVES = "training_curves.png"


@dataclass
class TrainResult:
    """What a finished (or interrupted) run produced."""

    out_dir: Path
    step: int
    epoch: int
    stop_reason: str
    """``max_steps``, ``max_epochs``, ``max_minutes``, ``early_stopping`` or ``signal:SIGTERM`` / ``signal:SIGINT``."""
    best_dev_eer: float | None
    best_step: int | None
    last_dev_eer: float | None
    elapsed_s: float
    clips_per_s: float

    @property
    def interrupted(self) -> bool:
        return self.stop_reason.startswith("signal:")

    @property
    def exit_code(self) -> int:
        """0 when finished; 128 + signal number when stopped by a signal (the shell convention)."""
        if not self.interrupted:
            return 0
        return 128 + int(getattr(signal, self.stop_reason.split(":", 1)[1]))


def train(
    config: RunConfig | dict | str | os.PathLike,
    train_cache: Any,
    dev_cache: Any,
    out_dir: str | os.PathLike,
    resume: bool = True,
    progress: bool = True,
    monitor: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train a detector; resumable, exact, DDP-aware.

    Args:
        config: a :class:`RunConfig` (or its dict form, or a YAML path).
        train_cache, dev_cache: :class:`rawguard.data.cache.Cache` objects or cache directories.
            ``best.pt`` is selected on ``dev_cache`` only: never pass an evaluation set here.
        out_dir: the run directory (``config.yaml``, ``last.pt``, ``best.pt``, ``metrics.jsonl``,
            ``training_curves.png``).
        resume: continue from ``out_dir/last.pt`` if it exists (False: refuse to touch an existing run).
        progress: show a tqdm bar (rank 0 only).
        monitor: ``{name: cache or directory}``: more labelled sets scored at every dev evaluation
            and logged as ``<name>_eer`` next to ``dev_eer`` (e.g. held-out spoofing systems, or
            another corpus), to watch how training goes on data it does not select on. They
            never choose ``best.pt`` or stop training.

    Returns:
        A :class:`TrainResult`; ``stop_reason`` says why the loop ended.

    Raises:
        ConfigError: invalid configuration for this device/world size (names the key).
        RunExistsError: ``resume=False`` and ``out_dir/last.pt`` exists.
        TrainingError: non-finite loss, a dev cache without both classes, or a resume with another model.
        rawguard.checkpoint.CheckpointError: ``last.pt`` is corrupt (names the file).
    """
    config = as_config(config)
    out_dir = Path(out_dir)
    device = resolve_device(config)
    ctx = init_distributed(device.type, config.train.dist_backend)
    finished = False
    try:
        if ctx.enabled and device.type == "cuda":
            device = torch.device("cuda", ctx.gpu)
        result = _train(config, train_cache, dev_cache, out_dir, resume, progress, device, ctx, monitor or {})
        finished = True
        return result
    finally:
        shutdown_distributed(ctx, finished)


def _train(config: RunConfig, train_cache: Any, dev_cache: Any, out_dir: Path, resume: bool, progress: bool,
           device: torch.device, ctx: DistContext, monitor: Mapping[str, Any]) -> TrainResult:
    """Set up (or resume) the run, loop, wrap up."""
    precision = configure_torch(config, device, ctx.world_size)
    train_set = open_cache(train_cache, "train")
    dev_set = open_cache(dev_cache, "dev")
    check_dev_cache(dev_set)
    monitor_sets = open_monitor_sets(monitor)
    if (out_dir / LAST).exists() and not resume:
        raise RunExistsError(f"{out_dir}: already holds a run ({LAST}); resume it or choose another --out directory")

    parts = build_parts(config, train_set, device, ctx, precision)
    fingerprint = data_fingerprint(train_set)
    run = RunState()
    if (out_dir / LAST).exists():
        run = restore_run(out_dir / LAST, parts, ctx, fingerprint)
        if ctx.is_main:
            tqdm.write(f"resuming {out_dir} from step {run.step} (epoch {run.epoch}, batch {run.batch_in_epoch})",
                       file=sys.stderr)
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / CONFIG_FILE, config.to_yaml())
        truncate_metrics(out_dir / METRICS, run.step)  # drop what the killed run wrote after its checkpoint
    log = MetricsLog(out_dir / METRICS, enabled=ctx.is_main)
    checkpoints = Checkpointer(parts, ctx, out_dir, fingerprint, LAST, BEST)
    evaluate = DevSelection(parts, ctx, device, dev_set, monitor_sets, checkpoints, log)

    bar = progress_bar(total=_total_steps(parts.config, parts.steps_per_epoch), initial=run.step, unit="step",
                       dynamic_ncols=True, desc="train", disable=not (progress and ctx.is_main))
    run.started = time.monotonic()
    meter = Throughput()
    parts.model.train()
    with StopSignals() as signals:
        stop_reason = _loop(parts, run, ctx, evaluate, checkpoints, log, signals, meter, bar)
        # Wrap up: a final dev evaluation of the last weights (unless just done), and last.pt.
        if stop_reason.startswith("signal:"):
            checkpoints.save_last(run)
        elif run.early.last_eval_step != run.step and run.step > 0:
            evaluate(run, final=True)
        elif run.early.best_step is None and run.selection is not None:
            # Stopped before eval.select_from with its last weights just evaluated: they are best.pt.
            run.early.record(run.step, run.selection["dev_eer"])
            checkpoints.save_best(run, run.selection)
        elif run.early.last_eval_step != run.step:
            checkpoints.save_last(run)
    bar.close()
    result = TrainResult(
        out_dir=out_dir, step=run.step, epoch=run.epoch, stop_reason=stop_reason,
        best_dev_eer=run.early.best_dev_eer, best_step=run.early.best_step, last_dev_eer=run.last_dev_eer,
        elapsed_s=run.elapsed(), clips_per_s=meter.clips_per_s,
    )
    if ctx.is_main:
        _plot_curves(out_dir)
        print(_summary(result), flush=True)
    return result


def _loop(parts: Parts, run: RunState, ctx: DistContext, evaluate: DevSelection, checkpoints: Checkpointer,
          log: MetricsLog, signals: StopSignals, meter: Throughput, bar) -> str:
    """Train until a budget, patience or a signal stops the run; returns the stop reason."""
    config = parts.config  # re-read after a fitted schedule's plan: its max_steps is the plan's
    cfg_t = config.train
    speed = SpeedMeter(config, run.step) if cfg_t.fit_schedule and cfg_t.max_minutes else None
    if run.batch_in_epoch >= parts.steps_per_epoch:
        run.next_epoch()
    stop_reason = _out_of_budget(run, config, ctx)
    while not stop_reason:
        for x, y in parts.batches.epoch(run.epoch, start_batch=run.batch_in_epoch):
            lr = parts.lr_at(run.step)
            for group in parts.optimizer.param_groups:
                group["lr"] = lr
            loss = _optimizer_step(parts, x, y, run, ctx)
            clips = x.shape[0] * ctx.world_size
            run.advance(loss, clips)
            meter.step_done(clips)
            if speed is not None:
                speed.step_done(run.step, run.elapsed())
            bar.update(1)

            if run.step % cfg_t.log_every == 0:
                _log_train(run, lr, ctx, log, meter, bar)
            with meter.paused():  # evaluation and checkpoint time do not count in clips/s
                # One collective for both: every rank must take the same checkpoint/stop decisions.
                signalled, save_due = any_rank(
                    [signals.received is not None,
                     bool(cfg_t.checkpoint_minutes)
                     and time.monotonic() - checkpoints.last_saved >= 60 * cfg_t.checkpoint_minutes],
                    ctx,
                )
                save_due = save_due or bool(cfg_t.checkpoint_every) and run.step % cfg_t.checkpoint_every == 0
                evaluated = evaluation_due(run.step, config)
                eval_started = time.monotonic()
                if evaluated and evaluate(run):
                    stop_reason = "early_stopping"
                if evaluated and speed is not None:
                    speed.evaluation_done(time.monotonic() - eval_started)
                    # At the first evaluation, then at each before select_from's boundary; fixed from there.
                    if (run.planned_steps is None or not can_select(run.step, config)) and speed.speed():
                        _plan_schedule(parts, run, ctx, log, bar, speed.speed())
                        checkpoints.save_last(run)  # the plan goes into last.pt before another step
                        config, cfg_t = parts.config, parts.config.train
                if save_due and not evaluated:
                    checkpoints.save_last(run)  # (an evaluation has just written it)
            if not stop_reason:
                stop_reason = _out_of_budget(run, config, ctx)
            if not stop_reason and signalled:
                stop_reason = f"signal:{signals.received or 'SIGTERM'}"
            if stop_reason:
                break
        else:
            run.next_epoch()
            if not stop_reason:
                stop_reason = _out_of_budget(run, config, ctx)
    return stop_reason


def _plan_schedule(parts: Parts, run: RunState, ctx: DistContext, log: MetricsLog, bar, speed: Speed) -> None:
    """Fit ``train.max_steps`` (at most the configured steps) into ``train.max_minutes`` at ``speed``
    (rank 0 decides for all)."""
    config, elapsed, requested = parts.config, run.elapsed(), parts.requested_steps
    steps = broadcast_object(fit_horizon(config, requested, run.step, elapsed, speed) if ctx.is_main else None, ctx)
    needed, planned = (projected_seconds(config, run.step, elapsed, speed, n) / 60 for n in (requested, steps))
    before, run.planned_steps = config.train.max_steps, steps
    parts.set_horizon(steps)
    log.write({
        "type": "plan", "step": run.step, "max_steps": steps, "requested_steps": requested,
        "step_s": round(speed.step_s, 5), "eval_s": round(speed.eval_s, 3),
        "projected_minutes": round(planned, 2), "max_minutes": config.train.max_minutes,
    })
    if steps != before and ctx.is_main:
        bar.total = steps
        bar.refresh()
        tqdm.write(
            f"train.fit_schedule: {requested} steps would take {needed:.1f} min at {1000 * speed.step_s:.0f} ms a "
            f"step and {speed.eval_s:.1f} s an evaluation; the schedule now ends at step {steps}, in ~{planned:.1f} "
            f"of train.max_minutes={config.train.max_minutes:g}", file=sys.stderr,
        )


def _optimizer_step(parts: Parts, x: torch.Tensor, y: torch.Tensor, run: RunState, ctx: DistContext) -> float:
    """One optimizer step on this rank's batch ``x`` int16 ``[B, window]``, ``y`` int64 ``[B]``;
    returns the mean loss over its micro-batches."""
    from rawguard.data.dataset import to_float

    config = parts.config
    # int16 crosses to the GPU (half the bytes, asynchronously from pinned memory) and becomes float there.
    x = to_float(x.to(parts.device, non_blocking=True))
    y = y.to(parts.device, non_blocking=True)
    if parts.augmenter is not None:
        x = parts.augmenter(x, parts.generator)
    parts.optimizer.zero_grad(set_to_none=True)
    chunks = list(zip(x.split(parts.micro_batch), y.split(parts.micro_batch)))
    loss = _accumulate_gradients(parts, chunks, ctx)
    if not math.isfinite(loss) and parts.precision != "fp16":
        raise TrainingError(
            f"non-finite training loss ({loss}) at step {run.step + 1} (epoch {run.epoch}); "
            f"lower optim.lr (now {config.optim.lr:g}) or set optim.grad_clip"
        )
    if config.optim.grad_clip:
        parts.scaler.unscale_(parts.optimizer)
        nn.utils.clip_grad_norm_(parts.model.parameters(), config.optim.grad_clip)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    if parts.ema is not None:
        parts.ema.update(parts.module)
    return loss


def _accumulate_gradients(parts: Parts, chunks: list[tuple[torch.Tensor, torch.Tensor]], ctx: DistContext) -> float:
    """Forward and (scaled) backward over the micro-batches; returns their mean loss."""
    loss_value = 0.0
    for i, (x, y) in enumerate(chunks):
        # Gradients are all-reduced once, on the last micro-batch.
        sync = not ctx.enabled or i == len(chunks) - 1
        with parts.model.no_sync() if not sync else contextlib.nullcontext():
            with autocast(parts.precision, parts.device):
                logits = parts.forward(x)
            loss = parts.loss_fn(logits, y)
            parts.scaler.scale(loss / len(chunks)).backward()
        loss_value += loss.item() / len(chunks)
    return loss_value


def _log_train(run: RunState, lr: float, ctx: DistContext, log: MetricsLog, meter: Throughput, bar) -> None:
    """Write the mean loss since the last line (over all ranks) to metrics.jsonl; start a new window."""
    window = run.log_window
    mean_loss = window["loss_sum"] / window["steps"]
    if ctx.enabled:  # the curve is the mean over ranks, as single-process would see it
        t = torch.tensor([mean_loss], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        mean_loss = t.item() / ctx.world_size
    rate = meter.window_rate(window["clips"])
    log.write({
        "type": "train", "step": run.step, "epoch": run.epoch, "loss": mean_loss, "lr": lr,
        "clips_per_s": round(rate, 2), "elapsed_s": round(run.elapsed(), 2),
    })
    bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", clips_s=f"{rate:.1f}")
    run.log_window = {"loss_sum": 0.0, "steps": 0, "clips": 0}


def _out_of_budget(run: RunState, config: RunConfig, ctx: DistContext) -> str:
    """The budget the run has used up (``max_steps``, ``max_epochs``, ``max_minutes``), or ``""``."""
    cfg_t = config.train
    if cfg_t.max_steps and run.step >= cfg_t.max_steps:
        return "max_steps"
    if cfg_t.max_epochs and run.epoch >= cfg_t.max_epochs:
        return "max_epochs"
    if cfg_t.max_minutes:
        minutes = run.elapsed() / 60
        if any_rank([minutes >= cfg_t.max_minutes], ctx)[0]:  # ranks' clocks differ: stop together
            return "max_minutes"
    return ""


def _total_steps(config: RunConfig, steps_per_epoch: int) -> int | None:
    """The progress bar's length: the step or epoch budget, whichever ends first (None: unknown)."""
    cfg_t = config.train
    total = cfg_t.max_steps or (cfg_t.max_epochs * steps_per_epoch) or None
    if cfg_t.max_steps and cfg_t.max_epochs:
        total = min(cfg_t.max_steps, cfg_t.max_epochs * steps_per_epoch)
    return total


def _plot_curves(out_dir: Path) -> None:
    try:
        from rawguard.report import plot_training_curves
    except ImportError as error:
        tqdm.write(f"warning: {CURVES} not written ({error})", file=sys.stderr)
        return
    plot_training_curves(out_dir / METRICS, out_dir / CURVES)


def _summary(result: TrainResult) -> str:
    best = (
        f"best dev EER {100 * result.best_dev_eer:.2f}% at step {result.best_step}"
        if result.best_dev_eer is not None else "no dev evaluation"
    )
    how = "interrupted" if result.interrupted else "done"
    return (
        f"{how} ({result.stop_reason}): step {result.step}, epoch {result.epoch}, {best}, "
        f"{result.clips_per_s:.1f} clips/s, {result.elapsed_s / 60:.1f} min -> {result.out_dir}"
    )
