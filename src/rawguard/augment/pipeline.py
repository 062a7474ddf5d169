"""The augmenter the trainer calls on each batch: ``Augmenter(x [B, T], generator) -> [B, T]``."""

from __future__ import annotations

from typing import Callable

import torch

from rawguard.augment.channel import codec_simulation, companding, random_gain, telephone_band
from rawguard.augment.config import AugmentConfig, AugmentConfigError
from rawguard.augment.filters import check_batch, uniform
from rawguard.augment.rawboost import isd_additive_noise, lnl_convolutive_noise, ssi_additive_noise
from rawguard.augment.speed import speed_perturbation

AugmentFn = Callable[[torch.Tensor, object, torch.Generator], torch.Tensor]

ORDER: tuple[tuple[str, AugmentFn], ...] = (
    ("speed", speed_perturbation),
    ("rawboost_lnl", lnl_convolutive_noise),
    ("rawboost_isd", isd_additive_noise),
    ("rawboost_ssi", ssi_additive_noise),
    ("codec", codec_simulation),
    ("telephone", telephone_band),
    ("companding", companding),
    ("gain", random_gain),
)
"""Application order: the talker (speed), source-side noises (as RawBoost's series algorithms), then the channel
(a codec or a phone line), then the playback / recording level."""


class Augmenter:
    """Applies the configured augmentations to a batch, each to a random subset of the examples.

    ``augmenter(x, generator)``: ``x`` float32 ``[B, T]`` on any device -> a new float32 ``[B, T]``
    tensor on the same device (``x`` is not modified). For each augmentation in :data:`ORDER` with
    ``p > 0``, every example is selected with probability ``p`` and only the selected rows are
    processed (so the cost scales with ``p``). All random choices are drawn from ``generator`` (on
    the generator's own device, then moved), so saving and restoring the generator's state
    reproduces the batch exactly; a generator on the data's device avoids host-device copies.
    """

    def __init__(self, cfg: AugmentConfig):
        if not isinstance(cfg, AugmentConfig):
            raise AugmentConfigError(f"augment: expected an AugmentConfig, got {type(cfg).__name__}")
        cfg.validate()
        self.cfg = cfg
        self.steps = [(name, fn, getattr(cfg, name)) for name, fn in ORDER if name in cfg.active()]

    @property
    def active(self) -> list[str]:
        """Names of the augmentations that can fire, in application order."""
        return [name for name, _, _ in self.steps]

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}(p={sub.p:g})" for name, _, sub in self.steps)
        return f"Augmenter({parts or 'off'})"

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_batch(x, generator)
        out = x.clone()
        for _, fn, sub in self.steps:
            chosen = uniform((x.shape[0],), 0.0, 1.0, generator, x.device) < sub.p
            rows = chosen.nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            out[rows] = fn(out[rows], sub, generator)
        return out


def batch_generator(seed: int, epoch: int, batch: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator determined by ``(seed, epoch, batch)`` alone, for augmenting in data workers.

    The training step uses one running generator whose state the trainer checkpoints. Workers that
    augment batches ahead of the step cannot share that state; seeding each batch's generator from
    its coordinates instead makes the augmentation of batch ``(epoch, batch)`` the same whichever
    worker makes it and whenever, so resume stays exact without saving any generator state.
    """
    # SeedSequence mixes the three numbers into independent, well-spread streams (seed + batch
    # would make (seed=1, batch=0) and (seed=0, batch=1) identical).
    import numpy as np

    state = np.random.SeedSequence([seed, epoch, batch, 0x5A6]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(state[0]) << 32 | int(state[1]))
    return generator


def build_augmenter(cfg: AugmentConfig) -> Augmenter:
    """Validate ``cfg`` and return the :class:`Augmenter` it describes (a no-op one if all off)."""
    return Augmenter(cfg)
