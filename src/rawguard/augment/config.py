"""Augmentation configuration: one dataclass per augmentation, validated with errors naming the field.

:class:`AugmentConfig` is the ``augment`` section of the run configuration, so every knob is reachable
from the command line as ``--set augment.<name>.<field>=<value>`` (e.g. ``augment.rawboost_lnl.p=0.5``).
Every augmentation has ``p``, the probability that one example of the batch gets it; the others are
its documented parameters. Ranges are pairs of scalar fields (``min_*`` / ``max_*``) rather than lists
so that each end can be overridden on its own.

The per-algorithm parameter ranges follow RawBoost (Tak et al., ICASSP 2022). The section is off by
default; its default probabilities (the "light set" that ``augment.enabled=true`` switches on) are
sized to keep the set under 10% of a CPU training step, and their effect on unseen spoofing systems
is measured in ``BENCHMARKS.md`` (see ``docs/augmentation.md``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from rawguard.conventions import SAMPLE_RATE

NYQUIST: float = SAMPLE_RATE / 2


class AugmentError(ValueError):
    """Bad input to an augmentation (wrong tensor rank/dtype, bad generator)."""


class AugmentConfigError(AugmentError):
    """An augmentation parameter is out of range; the message names the field (``augment.x.y``)."""


def _bounded(default: float, low: float, high: float, integer: bool = False) -> Any:
    """A dataclass field whose value must lie in ``[low, high]`` (checked by ``_Section.validate``)."""
    return field(default=default, metadata={"bounds": (low, high), "integer": integer})


def _probability(default: float) -> Any:
    return _bounded(default, 0.0, 1.0)


class _Section:
    """Validation shared by every augmentation's parameters, driven by the field declarations.

    A field made with :func:`_bounded` must be a number (an ``int`` if declared so) within its bounds;
    a field with ``choices`` metadata must be one of them; every ``min_X`` must be ``<= max_X``.
    Subclasses add cross-field rules in :meth:`_check_extra`.
    """

    def validate(self, prefix: str) -> None:
        """Raise :class:`AugmentConfigError` naming ``prefix.field`` for the first bad parameter."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for f in dataclasses.fields(self):
            value, where = values[f.name], f"{prefix}.{f.name}"
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                raise AugmentConfigError(
                    f"{where}: must be one of {', '.join(f.metadata['choices'])}, got {value!r}")
            if "bounds" not in f.metadata:
                continue
            low, high = f.metadata["bounds"]
            # YAML and --set may hand us strings or booleans: reject them here, naming the field,
            # rather than failing later inside torch.
            if f.metadata["integer"]:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise AugmentConfigError(f"{where}: expected an integer, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise AugmentConfigError(f"{where}: expected a finite number, got {value!r}")
            if not low <= value <= high:
                raise AugmentConfigError(f"{where}: must be in [{low:g}, {high:g}], got {value!r}")
        for name, value in values.items():
            partner = "max_" + name[4:]
            if name.startswith("min_") and partner in values and value > values[partner]:
                raise AugmentConfigError(
                    f"{prefix}.{name}: must be <= {prefix}.{partner} ({values[partner]!r}), got {value!r}")
        self._check_extra(prefix)

    def _check_extra(self, prefix: str) -> None:
        """Cross-field rules beyond bounds and min <= max (none by default)."""


@dataclass
class NotchFilterConfig(_Section):
    """Random multi-band notch FIR (RawBoost ``genNotchCoeffs``): shared by LnL and SSI.

    Each filter is the cascade of ``n_bands`` Hamming-windowed band-stop FIRs, each with a centre
    frequency in [min_freq, max_freq] Hz, a stop-band width in [min_bandwidth, max_bandwidth] Hz and
    an odd number of taps in [min_taps, max_taps] (an even draw gets one more tap); the cascade is
    normalised to a peak gain of ``U(min_gain_db, max_gain_db)`` dB.
    """

    n_bands: int = _bounded(5, 1, 16, integer=True)
    min_freq: float = _bounded(20.0, 0.0, NYQUIST)
    max_freq: float = _bounded(8000.0, 0.0, NYQUIST)
    min_bandwidth: float = _bounded(100.0, 1.0, NYQUIST)
    max_bandwidth: float = _bounded(1000.0, 1.0, NYQUIST)
    min_taps: int = _bounded(10, 1, 255, integer=True)
    max_taps: int = _bounded(100, 1, 255, integer=True)
    min_gain_db: float = _bounded(0.0, -60.0, 20.0)
    max_gain_db: float = _bounded(0.0, -60.0, 20.0)


@dataclass
class RawBoostLnLConfig(NotchFilterConfig):
    """RawBoost (1): linear and non-linear convolutive noise.

    ``y = sum_{i=1..n_filters} h_i * x**i``: the (peak-normalised) signal and its powers (the
    non-linear part, as of a saturating microphone or loudspeaker) each pass through an independent
    random notch filter; the filters of the powers i >= 2 are attenuated by a further
    ``U(min_nonlinear_bias_db, max_nonlinear_bias_db)`` dB. The result keeps the input's peak level.
    """

    p: float = _probability(0.02)
    n_filters: int = _bounded(5, 1, 8, integer=True)
    min_nonlinear_bias_db: float = _bounded(5.0, 0.0, 60.0)
    max_nonlinear_bias_db: float = _bounded(20.0, 0.0, 60.0)


@dataclass
class RawBoostISDConfig(_Section):
    """RawBoost (2): impulsive signal-dependent additive noise.

    A fraction ``U(0, max_fraction)`` (drawn per example) of the samples, at random positions,
    become ``x[t] + g_sd * x[t] * u1 * u2``, ``u1, u2 ~ U(-1, 1)`` (clicks and crackle whose size
    follows the signal, as from a faulty connection or quantiser overload). Output is peak-limited
    to 1.
    """

    p: float = _probability(0.1)
    max_fraction: float = _bounded(0.10, 0.0, 1.0)
    g_sd: float = _bounded(2.0, 0.0, 100.0)


@dataclass
class RawBoostSSIConfig(NotchFilterConfig):
    """RawBoost (3): stationary signal-independent additive noise.

    White Gaussian noise coloured by a random notch filter, added at an SNR of
    ``U(min_snr_db, max_snr_db)`` dB relative to the whole example. Output is peak-limited to 1.
    """

    p: float = _probability(0.07)
    min_snr_db: float = _bounded(10.0, -20.0, 100.0)
    max_snr_db: float = _bounded(40.0, -20.0, 100.0)


@dataclass
class CodecConfig(_Section):
    """Lossy-codec simulation: STFT-domain band-limiting and coarse, spectrally shaped quantisation.

    Per example: a low-pass cut-off ``U(min_cutoff_hz, max_cutoff_hz)``; in each of ``n_bands``
    mel-spaced bands of each ``n_fft``-sample frame, the real and imaginary STFT coefficients are
    rounded with a step that gives a band SNR of ``U(min_snr_db, max_snr_db)`` dB, lowered linearly
    by up to ``U(0, max_tilt_db)`` dB towards the top band (codecs spend fewer bits up there).
    Small coefficients round to zero, which makes the "spectral holes" of low-bitrate MP3/AAC.
    """

    p: float = _probability(0.0)
    min_cutoff_hz: float = _bounded(4000.0, 500.0, NYQUIST)
    max_cutoff_hz: float = _bounded(8000.0, 500.0, NYQUIST)
    min_snr_db: float = _bounded(6.0, -10.0, 80.0)
    max_snr_db: float = _bounded(24.0, -10.0, 80.0)
    max_tilt_db: float = _bounded(12.0, 0.0, 60.0)
    n_bands: int = _bounded(20, 1, 2048, integer=True)
    n_fft: int = _bounded(512, 64, 4096, integer=True)

    def _check_extra(self, prefix: str) -> None:
        if self.n_fft % 2:
            raise AugmentConfigError(f"{prefix}.n_fft: must be even, got {self.n_fft!r}")
        if self.n_bands > self.n_fft // 2:
            raise AugmentConfigError(
                f"{prefix}.n_bands: must be <= n_fft / 2 = {self.n_fft // 2}, got {self.n_bands!r}")


@dataclass
class TelephoneConfig(_Section):
    """Telephone band-limiting: band-pass from ``U(min_low_hz, max_low_hz)`` to
    ``U(min_high_hz, max_high_hz)`` Hz with smooth (logistic, ``transition_hz`` wide) edges, the
    response of an analogue/G.712 narrow-band channel (nominally 300-3400 Hz)."""

    p: float = _probability(0.0)
    min_low_hz: float = _bounded(100.0, 0.0, NYQUIST)
    max_low_hz: float = _bounded(400.0, 0.0, NYQUIST)
    min_high_hz: float = _bounded(3000.0, 0.0, NYQUIST)
    max_high_hz: float = _bounded(3800.0, 0.0, NYQUIST)
    transition_hz: float = _bounded(80.0, 10.0, 2000.0)

    def _check_extra(self, prefix: str) -> None:
        if self.max_low_hz >= self.min_high_hz:
            raise AugmentConfigError(
                f"{prefix}.max_low_hz: must be < {prefix}.min_high_hz ({self.min_high_hz!r}), "
                f"got {self.max_low_hz!r}")


COMPANDING_LAWS = ("mu", "a", "random")


@dataclass
class CompandingConfig(_Section):
    """G.711-style companding: compress with mu-law (mu = 255) or A-law (A = 87.6), quantise to
    ``2**bits`` levels (``bits ~ U{min_bits..max_bits}``; G.711 uses 8), expand. ``law`` is ``mu``,
    ``a`` or ``random`` (each example picks one with equal probability)."""

    p: float = _probability(0.02)
    law: str = field(default="random", metadata={"choices": COMPANDING_LAWS})
    min_bits: int = _bounded(8, 2, 16, integer=True)
    max_bits: int = _bounded(8, 2, 16, integer=True)


@dataclass
class GainConfig(_Section):
    """Random gain ``U(min_db, max_db)`` dB; an example that would exceed full scale is scaled back
    to a peak of 1 (a limiter, not clipping, so no new distortion is created)."""

    p: float = _probability(0.2)
    min_db: float = _bounded(-6.0, -60.0, 60.0)
    max_db: float = _bounded(6.0, -60.0, 60.0)


@dataclass
class SpeedConfig(_Section):
    """Speed perturbation: each example is resampled by ``f ~ U(min_factor, max_factor)`` and played
    at the original rate, so pitch and formants move by ``f`` and the tempo by ``1 / f`` (a new
    speaker, as far as a detector can tell); band-limited, then cut or tiled back to the window."""

    p: float = _probability(0.0)
    min_factor: float = _bounded(0.9, 0.5, 2.0)
    max_factor: float = _bounded(1.1, 0.5, 2.0)


@dataclass
class AugmentConfig:
    """The ``augment`` section of the run configuration.

    Augmentations are applied in the order of the fields below (the order of
    :data:`rawguard.augment.pipeline.ORDER`): the speaker (speed), the RawBoost noises at the "source", then the channel
    (codec, telephone band, companding), then the gain. Each is drawn independently per example with
    its own ``p``, so series combinations (RawBoost's algorithms 4-7) arise naturally.
    ``enabled`` switches the whole section on or off without touching the probabilities. It is off
    by default: on the shared corpus no augmentation setting was shown to help (the light set below
    changed nothing measurable on unseen or seen systems, RawBoost at higher strengths made both
    worse) and the light set costs ~7 % of a CPU training step (BENCHMARKS.md, docs/augmentation.md).
    ``augment.enabled=true`` switches on the light set whose probabilities are the defaults here.
    """

    enabled: bool = False
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    rawboost_lnl: RawBoostLnLConfig = field(default_factory=RawBoostLnLConfig)
    rawboost_isd: RawBoostISDConfig = field(default_factory=RawBoostISDConfig)
    rawboost_ssi: RawBoostSSIConfig = field(default_factory=RawBoostSSIConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    telephone: TelephoneConfig = field(default_factory=TelephoneConfig)
    companding: CompandingConfig = field(default_factory=CompandingConfig)
    gain: GainConfig = field(default_factory=GainConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "augment") -> None:
        """Check every field; raise :class:`AugmentConfigError` naming the first bad one."""
        if not isinstance(self.enabled, bool):
            raise AugmentConfigError(f"{prefix}.enabled: expected true or false, got {self.enabled!r}")
        for name in self.names():
            sub = getattr(self, name)
            expected = type(self).__dataclass_fields__[name].default_factory
            if not isinstance(sub, expected):
                raise AugmentConfigError(
                    f"{prefix}.{name}: expected a {expected.__name__} section, got {sub!r}")
            sub.validate(f"{prefix}.{name}")

    @classmethod
    def names(cls) -> list[str]:
        """Names of the augmentations, in application order."""
        return [f.name for f in dataclasses.fields(cls) if f.name != "enabled"]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, prefix: str = "augment") -> AugmentConfig:
        """Build from a nested dict (a YAML section); unknown keys are errors naming the key."""
        data = dict(data or {})
        kwargs: dict[str, Any] = {}
        if "enabled" in data:
            kwargs["enabled"] = data.pop("enabled")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, value in data.items():
            if name not in fields:
                known = ", ".join(cls.names())
                raise AugmentConfigError(f"{prefix}.{name}: unknown augmentation (known: enabled, {known})")
            sub_cls = fields[name].default_factory
            if not isinstance(value, dict):
                raise AugmentConfigError(f"{prefix}.{name}: expected a mapping of parameters, got {value!r}")
            sub_fields = {f.name for f in dataclasses.fields(sub_cls)}
            for key in value:
                if key not in sub_fields:
                    raise AugmentConfigError(
                        f"{prefix}.{name}.{key}: unknown parameter (known: {', '.join(sorted(sub_fields))})")
            kwargs[name] = sub_cls(**value)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for YAML / checkpoints)."""
        return dataclasses.asdict(self)

    def active(self) -> list[str]:
        """Names of the augmentations that can fire (section enabled and ``p > 0``)."""
        if not self.enabled:
            return []
        return [name for name in self.names() if getattr(self, name).p > 0]

    @classmethod
    def off(cls) -> AugmentConfig:
        """Every augmentation at ``p = 0`` (the "without augmentation" recipe)."""
        cfg = cls()
        for name in cls.names():
            getattr(cfg, name).p = 0.0
        return cfg
