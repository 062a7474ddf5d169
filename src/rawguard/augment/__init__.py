"""Data augmentation for generalisation to unseen attacks and channels, batched in torch.

Speed perturbation, RawBoost's three noise families (Tak et al., ICASSP 2022), a lossy-codec
simulation, telephone band-limiting, G.711 mu-law / A-law companding and random gain. Each is a pure, seeded function
``f(x [B, T] float32, cfg, generator) -> [B, T] float32``; :class:`Augmenter` chains them with a
per-example probability ``p`` each. See ``docs/augmentation.md``.

Typical use inside a training step (after the int16 -> float conversion, on the training device)::

    augment = build_augmenter(config.augment)
    x = augment(x, generator)
"""

from rawguard.augment.channel import codec_simulation, companding, random_gain, telephone_band
from rawguard.augment.config import (
    AugmentConfig, AugmentConfigError, AugmentError, CodecConfig, CompandingConfig, GainConfig,
    NotchFilterConfig, RawBoostISDConfig, RawBoostLnLConfig, RawBoostSSIConfig, SpeedConfig, TelephoneConfig,
)
from rawguard.augment.pipeline import ORDER, Augmenter, batch_generator, build_augmenter
from rawguard.augment.rawboost import isd_additive_noise, lnl_convolutive_noise, ssi_additive_noise
from rawguard.augment.speed import speed_perturbation

__all__ = [
    "ORDER", "AugmentConfig", "AugmentConfigError", "AugmentError", "Augmenter", "CodecConfig",
    "CompandingConfig", "GainConfig", "NotchFilterConfig", "RawBoostISDConfig", "RawBoostLnLConfig",
    "RawBoostSSIConfig", "SpeedConfig", "TelephoneConfig", "batch_generator", "build_augmenter", "codec_simulation", "companding",
    "isd_additive_noise", "lnl_convolutive_noise", "random_gain", "speed_perturbation", "ssi_additive_noise",
    "telephone_band",
]
