"""Everything a run trains with, built from its configuration in a fixed, seeded order.

:func:`build_parts` makes the model (wrapped for DDP under ``torchrun``), its weight average,
the optimizer, the gradient scaler, the batch source, the augmenter, the loss, the learning-rate
schedule, the (optionally compiled) forward and the SAM step, and returns them as one
:class:`Parts`. The order of construction is part of a run's numerics: the model's initial weights
come from the global torch generator right after :func:`seed_everything`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from rawguard.config import ConfigError, RunConfig, load_config
from rawguard.data.sampling import SamplingError
from rawguard.training import losses
from rawguard.training.compile import CompiledForward
from rawguard.training.distributed import DistContext
from rawguard.training.ema import ModelEMA
from rawguard.training.errors import TrainingError
from rawguard.training.precision import make_scaler, resolve_precision
from rawguard.training.rng import seed_everything
from rawguard.training.schedule import lr_at

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def as_config(config: RunConfig | dict | str | os.PathLike) -> RunConfig:
    """A :class:`RunConfig` from itself, its dict form or a YAML path."""
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, dict):
        return RunConfig.from_dict(config)
    return load_config(config)


def resolve_device(config: RunConfig) -> torch.device:
    """``train.device`` (``auto``: CUDA when available); a CUDA request without CUDA is a ConfigError."""
    name = config.train.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available")
    return device


def open_cache(cache: Any, role: str):
    """A :class:`~rawguard.data.cache.Cache` from itself or its directory."""
    from rawguard.data.cache import Cache

    if isinstance(cache, (str, os.PathLike)):
        return Cache.open(cache)
    if cache is None:
        raise TrainingError(f"{role} cache is required")
    return cache


def configure_torch(config: RunConfig, device: torch.device, world_size: int) -> str:
    """Threads, deterministic kernels, cuDNN autotuning; checks the batch split; returns the precision.

    Raises:
        ConfigError: a precision the device cannot run (training or dev scoring), or a batch that
            does not split evenly over ranks and micro-batches.
    """
    cfg_t = config.train
    if cfg_t.threads:
        torch.set_num_threads(cfg_t.threads)
    if cfg_t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every training batch has one shape: time cuDNN's algorithms once
    precision = resolve_precision(cfg_t.precision, device)
    resolve_precision(config.eval.precision, device, "eval.precision")  # fp16 dev scoring on CPU: fail before training
    if config.data.batch_size % (world_size * cfg_t.grad_accum):
        raise ConfigError(
            f"data.batch_size: {config.data.batch_size} must be divisible by world size x train.grad_accum "
            f"({world_size} x {cfg_t.grad_accum})"
        )
    return precision


def schedule_length(config: RunConfig, steps_per_epoch: int) -> int:
    """Steps of the learning-rate schedule: ``optim.decay_steps``, else the step or epoch budget."""
    if config.optim.decay_steps:
        return config.optim.decay_steps
    if config.train.max_steps:
        return config.train.max_steps
    if config.train.max_epochs:
        return config.train.max_epochs * steps_per_epoch
    return 0


def build_optimizer(model: nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    """``optim.name`` (Adam or AdamW) over all of ``model``'s parameters."""
    optim = config.optim
    cls = torch.optim.AdamW if optim.name == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps, weight_decay=optim.weight_decay)


def build_loss(config: RunConfig, class_weights: torch.Tensor | None) -> LossFn:
    """``(logits [B, 2], labels [B]) -> scalar loss``: cross-entropy, class-weighted and label-smoothed
    as the ``train`` section says."""
    smoothing = config.train.label_smoothing
    return lambda logits, labels: losses.cross_entropy(logits, labels, class_weights, smoothing)


def build_augmenter(config: RunConfig):
    """The ``augment`` section's augmenter, or None when the section is off."""
    if not getattr(config.augment, "enabled", False):
        return None
    from rawguard.augment import build_augmenter as build

    return build(config.augment)


def with_horizon(config: RunConfig, steps: int) -> RunConfig:
    """A copy of ``config`` with ``train.max_steps = steps``."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=int(steps)))


@dataclass
class Parts:
    """What a run trains with (built by :func:`build_parts`)."""

    config: RunConfig
    model: nn.Module
    """What is trained and called: the DDP wrapper under torchrun, else the model itself."""
    module: nn.Module
    """The plain model inside (what checkpoints store)."""
    model_config: dict[str, Any]
    ema: ModelEMA | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    batches: Any
    """:class:`rawguard.data.dataset.TrainBatches`, this rank's share of every global batch."""
    augmenter: Any
    generator: torch.Generator
    """The loop's own random stream (augmentation), seeded per rank."""
    loss_fn: LossFn
    forward: CompiledForward
    decay_steps: int
    device: torch.device
    precision: str
    micro_batch: int
    """Clips per forward/backward: the global batch over ranks and ``train.grad_accum``."""
    requested_steps: int = 0
    """``train.max_steps`` as configured; a fitted schedule (:meth:`set_horizon`) never goes beyond it."""

    def set_horizon(self, steps: int) -> None:
        """End the run at optimizer step ``steps`` (a fitted schedule, :mod:`rawguard.training.budget`):
        ``train.max_steps``, the cosine's length and ``eval.select_from``'s boundary follow."""
        self.config = with_horizon(self.config, steps)
        self.decay_steps = steps

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (warm-up, then cosine or constant)."""
        optim = self.config.optim
        return lr_at(step, optim.lr, optim.warmup_steps, self.decay_steps, optim.schedule, optim.min_lr_ratio)

    @property
    def scored(self) -> nn.Module:
        """The weights dev selection scores and ``best.pt`` ships: the average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.batches_per_epoch


def build_parts(config: RunConfig, train_set: Any, device: torch.device, ctx: DistContext, precision: str) -> Parts:
    """Build (seeded) everything :class:`Parts` holds, for this rank.

    Raises:
        ConfigError: a loss the model cannot train with, a sampling policy the train cache cannot
            serve, or a schedule without a length.
    """
    from rawguard.data.dataset import TrainBatches
    from rawguard.models import create_model

    cfg_t = config.train
    seed_everything(cfg_t.seed)
    module = create_model(config.model.name, **config.model.overrides).to(device)
    if ctx.rank:
        # Same initial weights everywhere (seeded above), but each rank its own dropout stream.
        seed_everything(cfg_t.seed + 7919 * ctx.rank)
    # The average is of the plain module (BatchNorm, not SyncBatchNorm; no DDP wrapper): same keys.
    ema = ModelEMA(module, cfg_t.ema_decay) if cfg_t.ema_decay else None
    model = module
    if ctx.enabled:
        if device.type == "cuda" and cfg_t.sync_batchnorm:
            model = module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        model = nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(model, config)
    scaler = make_scaler(precision, device)
    # TrainBatches' batch size is per rank; rank r gets slice r of the same global batch (and crops),
    # so W ranks x A micro-batches compute exactly the gradient one process with grad_accum=W*A would.
    try:
        batches = TrainBatches(
            train_set, config.data.window, config.data.batch_size // ctx.world_size, cfg_t.seed,
            sampling=config.data.sampling, rank=ctx.rank, world_size=ctx.world_size, prefetch=config.data.prefetch,
            pin_memory=device.type == "cuda",  # page-locked batches: the host-to-GPU copy runs asynchronously
        )
    except SamplingError as error:  # a policy this train cache cannot serve (e.g. a copy share without copies)
        raise ConfigError(f"data.sampling: {error}") from error
    augmenter = build_augmenter(config)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg_t.seed * 1000 + 17 + ctx.rank)
    class_weights = (
        torch.tensor(cfg_t.class_weights, dtype=torch.float32, device=device) if cfg_t.class_weights else None
    )
    decay_steps = schedule_length(config, batches.batches_per_epoch)
    parts = Parts(
        config=config, model=model, module=module, model_config=dataclasses.asdict(module.config), ema=ema,
        optimizer=optimizer, scaler=scaler, batches=batches, augmenter=augmenter, generator=generator,
        loss_fn=build_loss(config, class_weights),
        # After the DDP wrapper (its gradient hooks stay outside the graph), before the first step.
        forward=CompiledForward(model, cfg_t.compile, warn=lambda message: tqdm.write(message, file=sys.stderr)),
        decay_steps=decay_steps,
        device=device, precision=precision, micro_batch=config.data.batch_size // (ctx.world_size * cfg_t.grad_accum),
        requested_steps=cfg_t.max_steps,
    )
    parts.lr_at(0)  # fail now, not after the first checkpoint, if the schedule has no length
    return parts
