"""RawBoost noises (Tak et al., "RawBoost: A Raw Data Boosting and Augmentation Method applied to
Automatic Speaker Verification Anti-Spoofing", ICASSP 2022), batched in torch.

Three families, each a pure function ``f(x [B, T] float32, cfg, generator) -> [B, T] float32`` that
draws its per-example parameters from ``generator`` only:

- :func:`lnl_convolutive_noise`: linear and non-linear convolutive noise (channel / transducer);
- :func:`isd_additive_noise`: impulsive signal-dependent additive noise (clicks, overload);
- :func:`ssi_additive_noise`: stationary signal-independent additive noise (coloured background).

Differences from the reference algorithm, on purpose: filters are applied as zero-phase (centred)
FIRs via FFT rather than causal ``lfilter``, so the waveform is not delayed by up to ~250 samples;
the LnL output is rescaled to the *input's* peak rather than to full scale, so the augmentation does
not also act as a loudness change (the gain augmentation does that, separately); the ISD positions
are jittered-stratified (each sample is hit with the drawn probability, never twice) rather than an
exact count of distinct uniform positions.
"""

from __future__ import annotations

import math

import torch

from rawguard.augment.config import RawBoostISDConfig, RawBoostLnLConfig, RawBoostSSIConfig
from rawguard.augment.filters import (
    PEAK_EPS, fft_size, kernel_response, limit_peak, match_peak, normal, notch_responses, uniform,
)


def lnl_convolutive_noise(x: torch.Tensor, cfg: RawBoostLnLConfig,
                          generator: torch.Generator) -> torch.Tensor:
    """Linear and non-linear convolutive noise: ``y = sum_{i=1..N} h_i * x**i`` (``[B, T]``).

    Each example draws ``N = cfg.n_filters`` random notch filters ``h_i`` (see
    :func:`~rawguard.augment.filters.notch_responses`); those of the powers ``i >= 2`` get an extra
    ``-U(min_nonlinear_bias_db, max_nonlinear_bias_db)`` dB. The output has its mean removed and
    the input's peak.
    """
    b, t = x.shape
    n = cfg.n_filters
    bias = -uniform((b, n), cfg.min_nonlinear_bias_db, cfg.max_nonlinear_bias_db, generator, x.device)
    bias[:, 0] = 0.0  # the linear term is not attenuated
    kernels, radius = notch_responses((b, n), cfg, generator, x.device, extra_gain_db=bias)
    n_fft = fft_size(t, radius)
    # Powers are taken of the peak-normalised signal so that the non-linear terms' size depends on
    # the waveform's shape, not on its recording level (x**5 of a -30 dBFS clip would vanish).
    scale = x.abs().amax(-1, keepdim=True).clamp(min=PEAK_EPS)
    xn = x / scale
    # One power at a time into one zero-padded buffer, accumulating sum_i H_i X_i in place: on CPU
    # the cost of this function is dominated by allocating (page-faulting) large temporaries, so
    # a [B, N, n_fft] stack of powers and spectra would cost more than the FFTs themselves.
    # (Zero-padding by hand also avoids torch's slower rfft(n=...) path; powers by repeated
    # multiplication because float pow() is several times slower.)
    power = torch.zeros((b, n_fft), dtype=x.dtype, device=x.device)
    power[:, :t] = xn
    total = None
    for i in range(n):
        if i:
            power[:, :t].mul_(xn)
        spectrum = torch.view_as_real(torch.fft.rfft(power))  # [B, F, 2]
        response = kernel_response(kernels[:, i], radius, n_fft)[..., None]  # [B, F, 1], real
        total = spectrum.mul_(response) if total is None else total.addcmul_(spectrum, response)
    y = torch.fft.irfft(torch.view_as_complex(total), n=n_fft)[:, :t]
    y = y - y.mean(-1, keepdim=True)
    return match_peak(y, x)


def isd_additive_noise(x: torch.Tensor, cfg: RawBoostISDConfig,
                       generator: torch.Generator) -> torch.Tensor:
    """Impulsive signal-dependent noise: a fraction ``f ~ U(0, max_fraction)`` (per example) of the
    samples become ``x + g_sd * x * u1 * u2``, ``u1, u2 ~ U(-1, 1)``; then the example is
    peak-limited to 1. ``[B, T] -> [B, T]``.

    Positions are jittered-stratified: ``T`` is cut into ``ceil(max_fraction * T)`` equal strata,
    each gets one uniformly placed candidate, and each candidate is hit with probability
    ``f / max_fraction``. Overall every sample is hit with probability ``f`` (as with uniformly
    random positions), but only ``max_fraction * T`` numbers are drawn instead of one per sample,
    no position can be hit twice, and no sort is needed: random numbers and sorting were this
    augmentation's main cost.
    """
    b, t = x.shape
    most = max(1, math.ceil(cfg.max_fraction * t))
    width = max(1, t // most)
    base = torch.arange(most, device=x.device) * t // most  # stratum starts; strata >= width apart
    offset = (uniform((b, most), 0.0, 1.0, generator, x.device) * width).long().clamp(max=width - 1)
    positions = (base + offset).clamp(max=t - 1)
    fraction = uniform((b, 1), 0.0, cfg.max_fraction, generator, x.device)
    hit = uniform((b, most), 0.0, 1.0, generator, x.device) * cfg.max_fraction < fraction
    u = uniform((2, b, most), -1.0, 1.0, generator, x.device)
    factor = cfg.g_sd * u[0] * u[1] * hit
    y = x.clone().scatter_add_(1, positions, x.gather(1, positions) * factor)
    return limit_peak(y)


def ssi_additive_noise(x: torch.Tensor, cfg: RawBoostSSIConfig,
                       generator: torch.Generator) -> torch.Tensor:
    """Stationary signal-independent noise: white Gaussian noise through a random notch filter,
    added at an SNR of ``U(min_snr_db, max_snr_db)`` dB (energy over the whole example); then the
    example is peak-limited to 1. A silent example stays silent (its SNR reference is zero).
    ``[B, T] -> [B, T]``."""
    b, t = x.shape
    kernels, radius = notch_responses((b,), cfg, generator, x.device)
    n_fft = fft_size(t, radius)
    # White Gaussian noise has i.i.d. complex Gaussian Fourier coefficients, so the filtered noise
    # is drawn directly in the frequency domain: one inverse FFT instead of forward + inverse.
    white = normal((b, n_fft // 2 + 1, 2), generator, x.device)
    spectrum = torch.view_as_complex(white) * kernel_response(kernels, radius, n_fft)
    coloured = torch.fft.irfft(spectrum, n=n_fft)[:, :t]
    snr_db = uniform((b, 1), cfg.min_snr_db, cfg.max_snr_db, generator, x.device)
    signal_norm = x.norm(dim=-1, keepdim=True)
    noise_norm = coloured.norm(dim=-1, keepdim=True).clamp(min=PEAK_EPS)
    scale = (signal_norm / noise_norm) * 10 ** (-snr_db / 20)  # [B, 1]
    return limit_peak(torch.addcmul(x, coloured, scale))  # x + scale * coloured, one pass
