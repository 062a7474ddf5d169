"""Channel augmentations, batched in torch: lossy codec, telephone band, G.711 companding, gain.

Each is a pure function ``f(x [B, T] float32, cfg, generator) -> [B, T] float32`` drawing its
per-example parameters from ``generator`` only.

The codec simulation (:func:`codec_simulation`) needs no external program. It approximates what a
transform codec at a low bit rate does to a waveform: a low-pass cut-off, quantisation noise whose
spectrum follows the signal's (constant SNR per band, a few bits per coefficient), coarser in the
high bands, "spectral holes" where small coefficients are rounded to zero, and pre-echo (the noise
is spread over a whole ``n_fft`` frame, 32 ms by default). It does **not** model a psycho-acoustic
masking threshold, MDCT time-domain aliasing, block switching, the bit reservoir, joint stereo,
spectral band replication, Opus's LPC (SILK) mode or codec delay; and it is not bit-exact to any
codec. Its purpose is to make a detector insensitive to that family of artefacts, not to emulate MP3.
"""

from __future__ import annotations

import math

import torch

from rawguard.augment.config import CodecConfig, CompandingConfig, GainConfig, TelephoneConfig
from rawguard.augment.filters import (
    apply_response, band_mask, fft_size, limit_peak, peak, randint, uniform,
)
from rawguard.conventions import SAMPLE_RATE

MU = 255.0
"""mu-law constant of G.711 (North America, Japan)."""
A = 87.6
"""A-law constant of G.711 (Europe and most of the world)."""


def _mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _band_index(n_fft: int, n_bands: int, device: torch.device) -> torch.Tensor:
    """Band of each STFT bin: ``n_bands`` bands equally spaced on the mel scale -> int64 ``[F]``."""
    freqs = torch.linspace(0, SAMPLE_RATE / 2, n_fft // 2 + 1, device=device)
    mel = _mel(freqs)
    return (mel / mel[-1] * n_bands).long().clamp(max=n_bands - 1)


def codec_simulation(x: torch.Tensor, cfg: CodecConfig, generator: torch.Generator) -> torch.Tensor:
    """Lossy-codec simulation in the STFT domain (``[B, T] -> [B, T]``).

    Per example: cut-off ``fc ~ U(min_cutoff_hz, max_cutoff_hz)``; band SNR ``s ~ U(min_snr_db,
    max_snr_db)`` minus a tilt ``U(0, max_tilt_db) * band / (n_bands - 1)``. In each band ``k`` of each
    frame the real and imaginary parts are rounded to a step ``sqrt(6 * P_k) * 10**(-snr_k / 20)``,
    ``P_k`` the band's mean power, which gives about that SNR (uniform rounding noise has power
    ``step**2 / 12`` per part). Bins above ``fc`` are zeroed. Output is peak-limited to 1.
    """
    b, t = x.shape
    n_fft = cfg.n_fft
    hop = n_fft // 2
    window = torch.hann_window(n_fft, device=x.device)
    # Zero (not reflect) padding at the ends: works for clips shorter than half a frame too.
    spec = torch.stft(x, n_fft, hop_length=hop, window=window, pad_mode="constant",
                      return_complex=True)  # [B, F, frames]
    bands = _band_index(n_fft, cfg.n_bands, x.device)
    onehot = torch.nn.functional.one_hot(bands, cfg.n_bands).float()  # [F, K]
    power = spec.real ** 2 + spec.imag ** 2
    band_power = torch.einsum("bft,fk->bkt", power, onehot) / onehot.sum(0)[None, :, None]

    snr = uniform((b, 1), cfg.min_snr_db, cfg.max_snr_db, generator, x.device)
    tilt = uniform((b, 1), 0.0, cfg.max_tilt_db, generator, x.device)
    position = torch.arange(cfg.n_bands, device=x.device) / max(cfg.n_bands - 1, 1)
    band_snr = snr - tilt * position  # [B, K]
    step = torch.sqrt(6.0 * band_power) * 10 ** (-band_snr[:, :, None] / 20)  # [B, K, frames]
    step = step[:, bands, :]  # [B, F, frames]
    # Silent frames have a zero step: leave them as they are instead of dividing by zero.
    safe = step.clamp(min=1e-12)
    quantised = torch.complex(torch.round(spec.real / safe), torch.round(spec.imag / safe)) * safe
    spec = torch.where(step > 1e-12, quantised, spec)

    cutoff = uniform((b, 1), cfg.min_cutoff_hz, cfg.max_cutoff_hz, generator, x.device)
    freqs = torch.linspace(0, SAMPLE_RATE / 2, n_fft // 2 + 1, device=x.device)
    spec = spec * (freqs[None, :] <= cutoff).float()[:, :, None]
    y = torch.istft(spec, n_fft, hop_length=hop, window=window, length=t)
    return limit_peak(y)


def telephone_band(x: torch.Tensor, cfg: TelephoneConfig, generator: torch.Generator) -> torch.Tensor:
    """Telephone channel band-pass (``[B, T] -> [B, T]``): logistic edges at
    ``U(min_low_hz, max_low_hz)`` and ``U(min_high_hz, max_high_hz)`` Hz, zero phase, via one FFT.
    Output is peak-limited to 1."""
    b, t = x.shape
    low = uniform((b, 1), cfg.min_low_hz, cfg.max_low_hz, generator, x.device)
    high = uniform((b, 1), cfg.min_high_hz, cfg.max_high_hz, generator, x.device)
    # A smooth edge `transition_hz` wide rings for about SAMPLE_RATE / transition_hz samples; pad by
    # a few times that so the circular FFT convolution's wrap-around decays before it reaches x.
    n_fft = fft_size(t, int(4 * SAMPLE_RATE / cfg.transition_hz))
    freqs = torch.linspace(0, SAMPLE_RATE / 2, n_fft // 2 + 1, device=x.device)
    response = band_mask(freqs, low, high, cfg.transition_hz)
    return limit_peak(apply_response(x, response, n_fft))


def _mu_compress(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(MU * x.abs()) / math.log1p(MU)


def _mu_expand(y: torch.Tensor) -> torch.Tensor:
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(MU)) / MU


def _a_compress(x: torch.Tensor) -> torch.Tensor:
    ax = A * x.abs()
    denom = 1.0 + math.log(A)
    small = ax / denom
    large = (1.0 + torch.log(ax.clamp(min=1.0))) / denom  # clamp: log() of the unused branch
    return torch.sign(x) * torch.where(ax < 1.0, small, large)


def _a_expand(y: torch.Tensor) -> torch.Tensor:
    denom = 1.0 + math.log(A)
    v = y.abs() * denom
    small = v / A
    large = torch.exp(v - 1.0) / A
    return torch.sign(y) * torch.where(v < 1.0, small, large)


def companding(x: torch.Tensor, cfg: CompandingConfig, generator: torch.Generator) -> torch.Tensor:
    """G.711-style companding round trip (``[B, T] -> [B, T]``): clip to [-1, 1], compress with
    mu-law or A-law (per ``cfg.law``; ``random`` picks per example), quantise the compressed value to
    ``2**bits`` levels with ``bits ~ U{min_bits..max_bits}`` per example, expand."""
    b, _ = x.shape
    x = x.clamp(-1.0, 1.0)
    if cfg.law == "random":
        use_mu = uniform((b, 1), 0.0, 1.0, generator, x.device) < 0.5
    else:
        use_mu = torch.full((b, 1), cfg.law == "mu", device=x.device)
    bits = randint((b, 1), cfg.min_bits, cfg.max_bits, generator, x.device)
    # Mid-tread rounding (a level at zero) so digital silence stays silent.
    half_levels = 2.0 ** (bits.float() - 1)
    out = torch.empty_like(x)
    # Each law only on its own rows: the log/exp passes are the cost of this augmentation.
    for rows, compress, expand in ((use_mu[:, 0], _mu_compress, _mu_expand),
                                   (~use_mu[:, 0], _a_compress, _a_expand)):
        if rows.any():
            levels = half_levels[rows]
            out[rows] = expand(torch.round(compress(x[rows]) * levels) / levels)
    return out


def random_gain(x: torch.Tensor, cfg: GainConfig, generator: torch.Generator) -> torch.Tensor:
    """Gain of ``U(min_db, max_db)`` dB per example, then peak-limited to 1 (``[B, T] -> [B, T]``)."""
    gain_db = uniform((x.shape[0], 1), cfg.min_db, cfg.max_db, generator, x.device)
    gain = 10 ** (gain_db / 20)
    # Gain and limiter in one pass: the peak after the gain is gain * peak(x).
    ceiling = 1.0 / peak(x).clamp(min=1e-12)
    return x * torch.minimum(gain, ceiling)
