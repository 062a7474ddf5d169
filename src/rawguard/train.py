"""The training loop: precision, schedule, dev selection, checkpoints, exact resume, DDP.

Read top to bottom, :func:`train` does this:

1. resolve the device, precision and (under ``torchrun``) the process group;
2. build the model, optimizer, gradient scaler, batch source and augmenter, all seeded;
3. if ``RUN/last.pt`` exists, restore *everything* from it (weights, optimizer, scaler, sampler
   position, every RNG, early-stopping state, the running loss window) and cut ``metrics.jsonl``
   back to that step, so the continuation is bit-for-bit the run that was interrupted;
4. loop over optimizer steps: warm-up/cosine learning rate, autocast forward, (scaled) backward
   over ``train.grad_accum`` micro-batches, gradient clipping, step, and (``train.ema_decay``)
   an update of the weights' moving average;
5. every ``eval.every`` steps score the dev cache, keep ``best.pt`` by dev EER (with the EER
   threshold and a logistic calibration in its ``selection``), count patience; with an EMA it is
   the averaged weights that are scored, selected and written as ``model``;
6. write ``last.pt`` every ``train.checkpoint_every`` steps, at every dev evaluation, on
   SIGTERM/SIGINT and at the end; plot the curves; print one summary line.

Only rank 0 writes files. Dev evaluation and checkpointing run inside :func:`preserved_rng`, so
they never change the random stream that training sees: a run evaluated every 10 steps and one
evaluated every 1000 steps see the same batches, crops, dropout masks and augmentations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rawguard.checkpoint import load_checkpoint, save_checkpoint
from rawguard.config import ConfigError, RunConfig, load_config
from rawguard.conventions import BONAFIDE, SPOOF
from rawguard.models.layers import CosineHead
from rawguard.progress import progress_bar
from rawguard.training import losses
from rawguard.training.adversarial import SpeakerAdversary, speaker_targets
from rawguard.training.compile import CompiledForward
from rawguard.training.embedding_tasks import EmbeddingClassifier, SystemClassifier, system_targets
from rawguard.training.distributed import DistContext, any_rank, broadcast_object, init_distributed, shutdown_distributed
from rawguard.training.ema import ModelEMA
from rawguard.training.log import MetricsLog, truncate_metrics
from rawguard.training.mixup import MixedBatch, mix_batch
from rawguard.training.precision import autocast, make_scaler, resolve_precision
from rawguard.training.rng import capture_rng, preserved_rng, restore_rng, seed_everything
from rawguard.training.sam import SharpnessAwareStep, frozen_batchnorm_statistics
from rawguard.training.schedule import lr_at

CONFIG_FILE = "config.yaml"
LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"
CURVES = "training_curves.png"


class TrainingError(RuntimeError):
    """Training cannot start or continue (diverged loss, unusable dev set, incompatible resume)."""


class RunExistsError(FileExistsError):
    """``out_dir`` already holds a run and ``resume=False`` was asked for."""


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


class _StopSignals:
    """Turn SIGTERM/SIGINT into a flag checked once per step (the step in flight completes)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user really wants out now
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _resolve_device(config: RunConfig) -> torch.device:
    name = config.train.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available")
    return device


def _open_cache(cache: Any, role: str):
    from rawguard.data.cache import Cache

    if isinstance(cache, (str, os.PathLike)):
        return Cache.open(cache)
    if cache is None:
        raise TrainingError(f"{role} cache is required")
    return cache


def _as_config(config: RunConfig | dict | str | os.PathLike) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, dict):
        return RunConfig.from_dict(config)
    return load_config(config)


def _schedule_length(config: RunConfig, steps_per_epoch: int) -> int:
    if config.optim.decay_steps:
        return config.optim.decay_steps
    if config.train.max_steps:
        return config.train.max_steps
    if config.train.max_epochs:
        return config.train.max_epochs * steps_per_epoch
    return 0


def _check_dev_cache(dev) -> None:
    labels = np.asarray(dev.labels)
    if not np.any(labels == BONAFIDE) or not np.any(labels == SPOOF):
        raise TrainingError(
            f"dev cache needs both bona fide and spoof clips to compute an EER "
            f"(it has {int(np.sum(labels == BONAFIDE))} bona fide, {int(np.sum(labels == SPOOF))} spoof)"
        )


MONITOR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
RESERVED_MONITOR_NAMES = {"dev", "best_dev"}  # their "<name>_eer" would overwrite the dev log's own fields


def _open_monitor_sets(monitor: Mapping[str, Any]) -> dict[str, Any]:
    """Open and check the ``monitor`` caches: names usable as log fields, both classes present."""
    opened = {}
    for name, cache in monitor.items():
        if not MONITOR_NAME.fullmatch(name) or name in RESERVED_MONITOR_NAMES:
            raise TrainingError(
                f"monitor set {name!r}: the name must start with a letter and hold only letters, digits, _ "
                f"and - (logged as <name>_eer), and not be {' or '.join(sorted(RESERVED_MONITOR_NAMES))}"
            )
        opened[name] = _open_cache(cache, f"monitor set {name!r}")
        try:
            _check_dev_cache(opened[name])
        except TrainingError as error:
            raise TrainingError(f"monitor set {name!r}: {error}") from error
    return opened


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def evaluate_dev(model: nn.Module, dev, config: RunConfig, device: torch.device) -> dict[str, Any]:
    """Dev EER, its threshold and a logistic calibration for the current weights (``eval.precision``).

    Returns:
        ``{"dev_eer", "threshold", "calibration": {"scale", "bias"}, "window", "hop"}`` (the
        checkpoint's ``selection`` dict, see docs/architecture.md).
    """
    from rawguard.calibration import fit_logistic

    scores, labels, eer, threshold = _score_and_eer(model, dev, config, device)
    calibration = fit_logistic(scores, labels)
    return {
        "dev_eer": float(eer),
        "threshold": float(threshold),
        "calibration": {"scale": float(calibration["scale"]), "bias": float(calibration["bias"])},
        "window": config.eval.window,
        "hop": config.eval.hop,
    }


def _score_and_eer(model: nn.Module, cache, config: RunConfig, device: torch.device
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


def _build_optimizer(model: nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    optim = config.optim
    cls = torch.optim.AdamW if optim.name == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps, weight_decay=optim.weight_decay)


@dataclasses.dataclass
class _SideTask:
    """An auxiliary classifier on the embedding (``rawguard.training.embedding_tasks``) and its targets."""

    option: str  # the config key that switched it on
    classifier: EmbeddingClassifier
    targets: np.ndarray  # int64 [N], one per train clip
    state_key: str  # its entry in last.pt
    log_key: str  # its loss in metrics.jsonl


def _build_side_task(config: RunConfig, model: nn.Module, train_set: Any, ctx: DistContext,
                     device: torch.device) -> _SideTask | None:
    """The classifier that ``train.speaker_adversarial`` or ``train.system_auxiliary`` asks for."""
    cfg_t = config.train
    options = [key for key, value in (("train.speaker_adversarial", cfg_t.speaker_adversarial),
                                      ("train.system_auxiliary", cfg_t.system_auxiliary)) if value]
    if not options:
        return None
    if len(options) > 1:
        raise ConfigError(f"{' and '.join(options)}: one auxiliary classifier at a time")
    key = options[0]
    if ctx.enabled:
        raise ConfigError(f"{key}: single-process training only (its classifier sits outside DDP)")
    speakers = getattr(train_set, "speakers", None)
    if key == "train.speaker_adversarial" and speakers is None:
        raise ConfigError(f"{key}: the train data has no speaker column")
    try:
        if key == "train.speaker_adversarial":
            targets, names = speaker_targets(speakers, train_set.labels)
            classifier = SpeakerAdversary(model, len(names), cfg_t.speaker_adversarial)
            return _SideTask(key, classifier.to(device), targets, "speaker_adversary", "speaker_loss")
        targets, names = system_targets(train_set.systems)
        classifier = SystemClassifier(model, len(names), cfg_t.system_auxiliary)
        return _SideTask(key, classifier.to(device), targets, "system_classifier", "system_loss")
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from error


def _build_loss(config: RunConfig, model: nn.Module, class_weights: torch.Tensor | None):
    """``(logits [B, 2], labels [B]) -> scalar loss`` for ``train.loss``."""
    if config.train.loss == "cross_entropy":
        smoothing = config.train.label_smoothing
        return lambda logits, labels: losses.cross_entropy(logits, labels, class_weights, smoothing)
    head = getattr(model, "fc", None)
    if not isinstance(head, CosineHead):
        raise ConfigError(f"train.loss: oc_softmax needs a cosine output layer; {config.model.name} has none "
                          "(rawnet-lite: model.head=cosine)")
    margin_bonafide, margin_spoof = config.train.oc_margins
    return lambda logits, labels: losses.oc_softmax_loss(logits, labels, head.scale, margin_bonafide, margin_spoof,
                                                         class_weights)


def _build_augmenter(config: RunConfig):
    """The augmentation engineer's augmenter, or None when the section is off or absent."""
    if not getattr(config.augment, "enabled", False):
        return None
    from rawguard.augment import build_augmenter

    return build_augmenter(config.augment)


def _data_fingerprint(cache: Any) -> str | None:
    """The prepared cache's content fingerprint (``meta.json``), or None for other datasets."""
    meta = getattr(cache, "meta", None)
    return meta.get("fingerprint") if isinstance(meta, dict) else None


def _check_resume(saved: dict[str, Any], config: RunConfig, path: Path, world_size: int,
                  train_fingerprint: str | None) -> None:
    saved_fingerprint = saved.get("train_data_fingerprint")
    if saved_fingerprint and train_fingerprint and saved_fingerprint != train_fingerprint:
        # Continuing on other data would silently mix two experiments in one run folder.
        raise TrainingError(
            f"{path}: cannot resume: the train cache holds other data than when this run started "
            f"(fingerprint {train_fingerprint[:12]} vs {saved_fingerprint[:12]}); use another --out directory"
        )
    old = saved.get("config", {})
    new = config.to_dict()
    defaults = RunConfig().to_dict()  # a key the checkpoint predates counts as its default then
    if old.get("model") != new["model"]:
        raise TrainingError(
            f"{path}: cannot resume: the checkpoint's model {old.get('model')} differs from the "
            f"configured {new['model']} (use another --out directory for a different model)"
        )
    changed = [
        f"{section}.{key}"
        for section in new
        if section != "model" and isinstance(new[section], dict)
        for key in sorted(set(new[section]) | set(old.get(section, {})))
        if new[section].get(key) != old.get(section, {}).get(key, defaults.get(section, {}).get(key))
    ]
    if changed:
        tqdm.write(f"resume: configuration changed since the checkpoint: {', '.join(changed)}", file=sys.stderr)
    if saved.get("world_size", 1) != world_size:
        tqdm.write(
            f"resume: world size changed ({saved.get('world_size', 1)} -> {world_size}); training continues, "
            "but not bit-for-bit", file=sys.stderr
        )


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
    config = _as_config(config)
    out_dir = Path(out_dir)
    device = _resolve_device(config)
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


def _train(
    config: RunConfig,
    train_cache: Any,
    dev_cache: Any,
    out_dir: Path,
    resume: bool,
    progress: bool,
    device: torch.device,
    ctx: DistContext,
    monitor: Mapping[str, Any],
) -> TrainResult:
    from rawguard.data.dataset import TrainBatches, to_float
    from rawguard.models import create_model

    cfg_t = config.train
    if cfg_t.threads:
        torch.set_num_threads(cfg_t.threads)
    if cfg_t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every training batch has one shape: time cuDNN's algorithms once
    precision = resolve_precision(cfg_t.precision, device)
    resolve_precision(config.eval.precision, device)  # fp16 dev scoring on CPU: fail before training
    shards = ctx.world_size * cfg_t.grad_accum
    if config.data.batch_size % shards:
        raise ConfigError(
            f"data.batch_size: {config.data.batch_size} must be divisible by world size x train.grad_accum "
            f"({ctx.world_size} x {cfg_t.grad_accum})"
        )
    train_set = _open_cache(train_cache, "train")
    dev_set = _open_cache(dev_cache, "dev")
    _check_dev_cache(dev_set)
    monitor_sets = _open_monitor_sets(monitor)

    last_path, best_path = out_dir / LAST, out_dir / BEST
    if last_path.exists() and not resume:
        raise RunExistsError(f"{out_dir}: already holds a run ({LAST}); resume it or choose another --out directory")

    # -- model, optimizer, data: everything seeded ----------------------------------------------
    seed_everything(cfg_t.seed)
    model = create_model(config.model.name, **config.model.overrides).to(device)
    if ctx.rank:
        # Same initial weights everywhere (seeded above), but each rank its own dropout stream.
        seed_everything(cfg_t.seed + 7919 * ctx.rank)
    model_config = dataclasses.asdict(model.config)
    # The average is of the plain module (BatchNorm, not SyncBatchNorm; no DDP wrapper): same keys.
    ema = ModelEMA(model, cfg_t.ema_decay) if cfg_t.ema_decay else None
    if ctx.enabled:
        if device.type == "cuda" and cfg_t.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = _build_optimizer(model, config)
    scaler = make_scaler(precision, device)
    side_task = _build_side_task(config, _unwrap(model), train_set, ctx, device)
    if side_task is not None:  # same schedule, same state file
        optimizer.add_param_group({"params": list(side_task.classifier.parameters())})
    # TrainBatches' batch size is per rank; rank r gets slice r of the same global batch (and crops),
    # so W ranks x A micro-batches compute exactly the gradient one process with grad_accum=W*A would.
    batches = TrainBatches(
        train_set, config.data.window, config.data.batch_size // ctx.world_size, cfg_t.seed,
        balanced=config.data.balanced, rank=ctx.rank, world_size=ctx.world_size, prefetch=config.data.prefetch,
        copy_share=config.data.copy_share, speaker_matched=config.data.speaker_matched,
        system_balance=config.data.system_balance, speaker_balance=config.data.speaker_balance,
        spoof_speaker_balance=config.data.spoof_speaker_balance,
        pin_memory=device.type == "cuda",  # page-locked batches: the host-to-GPU copy runs asynchronously
        targets=None if side_task is None else side_task.targets,
    )
    steps_per_epoch = batches.batches_per_epoch
    augmenter = _build_augmenter(config)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg_t.seed * 1000 + 17 + ctx.rank)
    class_weights = (
        torch.tensor(cfg_t.class_weights, dtype=torch.float32, device=device) if cfg_t.class_weights else None
    )
    loss_fn = _build_loss(config, _unwrap(model), class_weights)
    decay_steps = _schedule_length(config, steps_per_epoch)
    lr_for = lambda s: lr_at(  # noqa: E731 - the schedule, as a function of the step only
        s, config.optim.lr, config.optim.warmup_steps, decay_steps, config.optim.schedule, config.optim.min_lr_ratio
    )
    lr_for(0)  # fail now, not after the first checkpoint, if the schedule has no length

    # -- state: fresh, or everything from last.pt ---------------------------------------------------
    step, epoch, batch_in_epoch = 0, 0, 0
    early = {"best_dev_eer": None, "best_step": None, "bad_evals": 0, "last_eval_step": -1}
    window = {"loss_sum": 0.0, "steps": 0, "clips": 0}
    elapsed_before = 0.0
    selection: dict[str, Any] | None = None  # of the current weights, when evaluated at this step
    last_dev_eer: float | None = None
    if last_path.exists():
        saved = load_checkpoint(last_path)
        _check_resume(saved, config, last_path, ctx.world_size, _data_fingerprint(train_set))
        # With an EMA, "model" holds the average and "raw_model" the weights being trained.
        _unwrap(model).load_state_dict(saved.get("raw_model", saved["model"]))
        if ema is not None and "ema" in saved:
            ema.load(saved["model"], saved["ema"]["updates"])
        elif ema is not None:  # EMA switched on for a run that had none: average from here on
            ema.load(_unwrap(model).state_dict(), 0)
        if side_task is not None:
            if side_task.state_key not in saved:
                raise ConfigError(f"{side_task.option}: {last_path} was trained without it; "
                                  "start a new run (or set it to 0 to resume)")
            side_task.classifier.load_state_dict(saved[side_task.state_key])
        optimizer.load_state_dict(saved["optimizer"])
        if scaler.is_enabled() and saved["scaler"]:  # empty when the run was not fp16 before
            scaler.load_state_dict(saved["scaler"])
        step, epoch = int(saved["step"]), int(saved["sampler"]["epoch"])
        batch_in_epoch = int(saved["sampler"]["batch"])
        early = dict(saved["early_stopping"])
        window = dict(saved["log_window"])
        elapsed_before = float(saved.get("elapsed_s", 0.0))
        selection = saved.get("selection_last")
        last_dev_eer = selection["dev_eer"] if selection else None
        rng_ranks = saved.get("rng_ranks")
        if rng_ranks is not None and len(rng_ranks) == ctx.world_size:
            restore_rng(rng_ranks[ctx.rank], generator)
        elif ctx.rank == 0:
            restore_rng(saved["rng"], generator)
        if ctx.is_main:
            tqdm.write(f"resuming {out_dir} from step {step} (epoch {epoch}, batch {batch_in_epoch})", file=sys.stderr)
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / CONFIG_FILE).write_text(config.to_yaml())
        truncate_metrics(out_dir / METRICS, step)  # drop what the killed run wrote after its checkpoint
    log = MetricsLog(out_dir / METRICS, enabled=ctx.is_main)

    def checkpoint_state() -> dict[str, Any]:
        rng = capture_rng(generator)
        rng_ranks = fingerprints = None
        if ctx.enabled:
            # Every rank's RNG (exact multi-process resume) and a weight fingerprint per rank: DDP
            # keeps replicas identical, and a checkpoint records that it did.
            gathered: list[Any] = [None] * ctx.world_size
            torch.distributed.all_gather_object(gathered, (rng, _fingerprint(_unwrap(model))))
            rng_ranks = [g[0] for g in gathered]
            fingerprints = [g[1] for g in gathered]
            if ctx.is_main and any(f != fingerprints[0] for f in fingerprints):
                tqdm.write(f"warning: DDP replicas diverged at step {step}: {fingerprints}", file=sys.stderr)
        state = {
            "model_name": config.model.name,
            "model_config": model_config,
            # "model" is what evaluate/score/export load: the average when there is one.
            "model": (ema.module if ema is not None else _unwrap(model)).state_dict(),
            "config": config.to_dict(),
            "step": step,
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "scheduler": {"name": f"warmup-{config.optim.schedule}", "step": step, "decay_steps": decay_steps},
            "scaler": scaler.state_dict(),
            "sampler": {"epoch": epoch, "batch": batch_in_epoch},
            "rng": rng,
            "early_stopping": dict(early),
            "log_window": dict(window),
            "elapsed_s": elapsed_before + (time.monotonic() - session_start),
            "world_size": ctx.world_size,
            "precision": precision,
            "train_data_fingerprint": _data_fingerprint(train_set),
        }
        if side_task is not None:
            state[side_task.state_key] = side_task.classifier.state_dict()
        if ema is not None:
            state["raw_model"] = _unwrap(model).state_dict()
            state["ema"] = {"decay": ema.decay, "updates": ema.updates}
        if rng_ranks is not None:
            state["rng_ranks"] = rng_ranks
            state["rank_fingerprints"] = fingerprints
        if selection is not None and early["last_eval_step"] == step:
            state["selection_last"] = selection
        return state

    last_saved = [time.monotonic()]

    def save_last() -> None:
        last_saved[0] = time.monotonic()
        with preserved_rng(generator):
            state = checkpoint_state()  # collective under DDP: every rank builds it
            if ctx.is_main:
                if "selection_last" in state:
                    state["selection"] = state["selection_last"]  # these weights' own threshold/calibration
                save_checkpoint(state, last_path)

    def run_dev_eval() -> bool:
        """Evaluate on rank 0, share the outcome; returns True when patience is exhausted."""
        nonlocal selection, last_dev_eer
        started = time.monotonic()
        result, monitored = None, {}
        if ctx.is_main:
            scored = ema.module if ema is not None else model
            with preserved_rng(generator):
                result = evaluate_dev(scored, dev_set, config, device)
                monitored = {f"{name}_eer": float(_score_and_eer(scored, cache, config, device)[2])
                             for name, cache in monitor_sets.items()}
        result = broadcast_object(result, ctx)
        selection, last_dev_eer = result, result["dev_eer"]
        early["last_eval_step"] = step
        improved = early["best_dev_eer"] is None or result["dev_eer"] < early["best_dev_eer"]
        if improved:
            early.update(best_dev_eer=result["dev_eer"], best_step=step, bad_evals=0)
        else:
            early["bad_evals"] += 1
        log.write({
            "type": "dev", "step": step, "epoch": epoch, "dev_eer": result["dev_eer"],
            "threshold": result["threshold"], "best_dev_eer": early["best_dev_eer"], **monitored,
            "eval_s": round(time.monotonic() - started, 3), "ema": ema is not None,
        })
        if improved:
            with preserved_rng(generator):
                state = checkpoint_state()
                if ctx.is_main:
                    state["selection"] = {**result, "step": step}
                    save_checkpoint(state, best_path)
        save_last()
        return bool(config.eval.patience) and early["bad_evals"] >= config.eval.patience

    # -- the loop ----------------------------------------------------------------------------------------
    session_start = time.monotonic()
    total_steps = cfg_t.max_steps or (cfg_t.max_epochs * steps_per_epoch) or None
    if cfg_t.max_steps and cfg_t.max_epochs:
        total_steps = min(cfg_t.max_steps, cfg_t.max_epochs * steps_per_epoch)
    bar = progress_bar(
        total=total_steps, initial=step, unit="step", dynamic_ncols=True, desc="train",
        disable=not (progress and ctx.is_main),
    )
    micro = config.data.batch_size // shards
    window_start = time.monotonic()
    clips_total_session, compute_s = 0, 0.0
    tick = time.monotonic()
    stop_reason = ""

    def out_of_budget() -> str:
        if cfg_t.max_steps and step >= cfg_t.max_steps:
            return "max_steps"
        if cfg_t.max_epochs and epoch >= cfg_t.max_epochs:
            return "max_epochs"
        if cfg_t.max_minutes:
            minutes = (elapsed_before + time.monotonic() - session_start) / 60
            if any_rank([minutes >= cfg_t.max_minutes], ctx)[0]:  # ranks' clocks differ: stop together
                return "max_minutes"
        return ""

    def accumulate_gradients(chunks: list) -> tuple[float, float]:
        """Forward and (scaled) backward over the micro-batches; returns the mean loss and side loss."""
        loss_value = side_loss_value = 0.0
        for i, (xc, yc, tc) in enumerate(chunks):
            # Gradients are all-reduced once, on the last micro-batch.
            sync = not ctx.enabled or i == len(chunks) - 1
            with model.no_sync() if not sync else contextlib.nullcontext():
                with autocast(precision, device):
                    logits = forward(xc.x if isinstance(xc, MixedBatch) else xc)
                loss = xc.loss(loss_fn, logits) if isinstance(xc, MixedBatch) else loss_fn(logits, yc)
                total = loss
                if side_task is not None:
                    side_loss = side_task.classifier.loss(tc)
                    total = loss + side_loss
                    side_loss_value += side_loss.item() / len(chunks)
                scaler.scale(total / len(chunks)).backward()
            loss_value += loss.item() / len(chunks)
        return loss_value, side_loss_value

    # After the DDP wrapper (its gradient hooks stay outside the graph), before the first step.
    forward = CompiledForward(model, cfg_t.compile, warn=lambda message: tqdm.write(message, file=sys.stderr))
    sam, sam_first_step = None, math.ceil(config.optim.sam_from * decay_steps)
    if config.optim.sam_rho > 0:  # the side task's classifier (a param group of the optimizer) included
        trained = [p for group in optimizer.param_groups for p in group["params"]]
        sam = SharpnessAwareStep(trained, config.optim.sam_rho, config.optim.sam_adaptive)
    model.train()
    with _StopSignals() as signals:
        if batch_in_epoch >= steps_per_epoch:
            epoch, batch_in_epoch = epoch + 1, 0
        stop_reason = out_of_budget()
        while not stop_reason:
            for x, y, *extra in batches.epoch(epoch, start_batch=batch_in_epoch):
                lr = lr_for(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                # int16 crosses to the GPU (half the bytes, asynchronously from pinned memory) and
                # becomes float there.
                x = to_float(x.to(device, non_blocking=True))
                y = y.to(device, non_blocking=True)
                side_targets = extra[0].to(device, non_blocking=True) if extra else None  # side task's
                if augmenter is not None:
                    x = augmenter(x, generator)
                optimizer.zero_grad(set_to_none=True)
                side_chunks = side_targets.split(micro) if side_targets is not None else [None] * len(y.split(micro))
                chunks = list(zip(x.split(micro), y.split(micro), side_chunks))
                if cfg_t.mixup:  # mixed once per step: a SAM step's second pass sees the same mixtures
                    chunks = [(mix_batch(xc, yc, cfg_t.mixup, (cfg_t.seed, step, ctx.rank, i)), yc, tc)
                              for i, (xc, yc, tc) in enumerate(chunks)]
                loss_value, side_loss_value = accumulate_gradients(chunks)
                if sam is not None and step >= sam_first_step and sam.ascend():
                    # The update uses the gradient at the worst nearby weights (training/sam.py).
                    optimizer.zero_grad(set_to_none=True)
                    with frozen_batchnorm_statistics(model):
                        accumulate_gradients(chunks)
                    sam.descend()
                if not math.isfinite(loss_value) and precision != "fp16":
                    raise TrainingError(
                        f"non-finite training loss ({loss_value}) at step {step + 1} (epoch {epoch}); "
                        f"lower optim.lr (now {config.optim.lr:g}) or set optim.grad_clip"
                    )
                if config.optim.grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update(_unwrap(model))
                step += 1
                batch_in_epoch += 1
                clips = x.shape[0] * ctx.world_size
                window["loss_sum"] += loss_value
                if side_task is not None:
                    window["side_loss_sum"] = window.get("side_loss_sum", 0.0) + side_loss_value
                window["steps"] += 1
                window["clips"] += clips
                clips_total_session += clips
                now = time.monotonic()
                compute_s += now - tick  # data wait + step: the end-to-end cost of a batch
                tick = now
                bar.update(1)

                if step % cfg_t.log_every == 0:
                    mean_loss = window["loss_sum"] / window["steps"]
                    if ctx.enabled:  # the curve is the mean over ranks, as single-process would see it
                        t = torch.tensor([mean_loss], dtype=torch.float64)
                        torch.distributed.all_reduce(t)
                        mean_loss = t.item() / ctx.world_size
                    seconds = time.monotonic() - window_start
                    rate = window["clips"] / seconds if seconds > 0 else 0.0
                    record = {
                        "type": "train", "step": step, "epoch": epoch, "loss": mean_loss, "lr": lr,
                        "clips_per_s": round(rate, 2),
                        "elapsed_s": round(elapsed_before + time.monotonic() - session_start, 2),
                    }
                    if side_task is not None:  # e.g. the adversary's loss: near log(speakers) = speaker hidden
                        record[side_task.log_key] = window.get("side_loss_sum", 0.0) / window["steps"]
                    log.write(record)
                    bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", clips_s=f"{rate:.1f}")
                    window = {"loss_sum": 0.0, "steps": 0, "clips": 0}
                    window_start = time.monotonic()

                paused = time.monotonic()  # evaluation and checkpoint time do not count in clips/s
                # One collective for both: every rank must take the same checkpoint/stop decisions.
                signalled, save_due = any_rank(
                    [signals.received is not None,
                     bool(cfg_t.checkpoint_minutes) and paused - last_saved[0] >= 60 * cfg_t.checkpoint_minutes],
                    ctx,
                )
                save_due = save_due or bool(cfg_t.checkpoint_every) and step % cfg_t.checkpoint_every == 0
                evaluated = bool(config.eval.every) and step % config.eval.every == 0
                if evaluated and run_dev_eval():
                    stop_reason = "early_stopping"
                if save_due and not evaluated:
                    save_last()  # (an evaluation has just written it)
                window_start += time.monotonic() - paused
                tick += time.monotonic() - paused
                if not stop_reason:
                    stop_reason = out_of_budget()
                if not stop_reason and signalled:
                    stop_reason = f"signal:{signals.received or 'SIGTERM'}"
                if stop_reason:
                    break
            else:
                epoch, batch_in_epoch = epoch + 1, 0
                if not stop_reason:
                    stop_reason = out_of_budget()

        # -- wrap up: a final dev evaluation of the last weights, last.pt, curves ---------------------
        if stop_reason.startswith("signal:"):
            save_last()
        else:
            if early["last_eval_step"] != step and step > 0:
                run_dev_eval()
            elif early["last_eval_step"] != step:
                save_last()
    bar.close()
    elapsed = elapsed_before + time.monotonic() - session_start
    clips_per_s = clips_total_session / compute_s if compute_s > 0 else 0.0
    result = TrainResult(
        out_dir=out_dir, step=step, epoch=epoch, stop_reason=stop_reason,
        best_dev_eer=early["best_dev_eer"], best_step=early["best_step"], last_dev_eer=last_dev_eer,
        elapsed_s=elapsed, clips_per_s=clips_per_s,
    )
    if ctx.is_main:
        _plot_curves(out_dir)
        print(_summary(result), flush=True)
    return result


def _fingerprint(model: nn.Module) -> list[float]:
    """Cheap, exact-match summary of the parameters: float64 sum and sum of squares."""
    with torch.no_grad():
        flat = torch.cat([p.detach().double().flatten().cpu() for p in model.parameters()])
    return [flat.sum().item(), flat.square().sum().item()]


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
