"""Steady tones added to a recording: mains hum or a tonal bed (a held chord, a music bed's sustained notes).

Broadcast and field recordings carry sounds that keep their frequency for seconds: the 50 / 60 Hz hum
of mains power and its harmonics, sustained notes under a talk show. A long-term spectrum sees them as
sharp peaks, as it sees a vocoder's fixed-frequency traces; added to **both** classes, they stop being
evidence of either. ``f(x [B, T] float32, cfg, generator) -> [B, T] float32``, parameters drawn from
``generator`` only.
"""

from __future__ import annotations

import math

import torch

from rawguard.augment.config import TonesConfig
from rawguard.augment.filters import PEAK_EPS, limit_peak, randint, uniform
from rawguard.conventions import SAMPLE_RATE

MAINS_HZ: tuple[float, float] = (50.0, 60.0)
"""Mains frequencies (Europe, Asia, Africa, Australia; the Americas and parts of Asia)."""


def _partial_frequencies(b: int, cfg: TonesConfig, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Frequencies of every example's partials, ``[B, n_partials]`` Hz.

    A hum example's partials are the harmonics 1..n of 50 or 60 Hz (drifting up to 0.5 %, as a grid
    does); a bed example's are log-uniform in ``[min_freq, max_freq]``.
    """
    n = cfg.n_partials
    hum = uniform((b, 1), 0.0, 1.0, generator, device) < cfg.hum_share
    mains = torch.tensor(MAINS_HZ, device=device)[randint((b,), 0, 1, generator, device)].unsqueeze(1)
    drift = 1 + uniform((b, 1), -0.005, 0.005, generator, device)
    harmonics = mains * drift * torch.arange(1, n + 1, device=device, dtype=torch.float32)  # [B, n]
    log_low, log_high = math.log(cfg.min_freq), math.log(cfg.max_freq)
    bed = torch.exp(uniform((b, n), log_low, log_high, generator, device))  # [B, n]
    return torch.where(hum, harmonics, bed)


def steady_tones(x: torch.Tensor, cfg: TonesConfig, generator: torch.Generator) -> torch.Tensor:
    """Add hum or a tonal bed at an SNR of ``U(min_snr_db, max_snr_db)`` dB, then peak-limit to 1.

    Each partial has a random phase and a level within ``level_spread_db`` of the loudest, and the
    whole sum a slow swell (``U(0, max_swell)`` depth at 0.1-1 Hz). Partials above the Nyquist frequency
    are silent. A silent example stays silent (its SNR reference is zero). ``[B, T] -> [B, T]``.
    """
    b, t = x.shape
    device = x.device
    freqs = _partial_frequencies(b, cfg, generator, device)  # [B, n]
    phases = uniform(freqs.shape, 0.0, 2 * math.pi, generator, device)
    levels = 10 ** (-uniform(freqs.shape, 0.0, cfg.level_spread_db, generator, device) / 20)
    levels = levels * (freqs < SAMPLE_RATE / 2)
    time = torch.arange(t, device=device, dtype=torch.float32) / SAMPLE_RATE  # [T]
    tones = torch.zeros_like(x)
    for k in range(cfg.n_partials):  # one [B, T] at a time: [B, n, T] would be n times the batch
        angle = 2 * math.pi * freqs[:, k : k + 1] * time + phases[:, k : k + 1]  # [B, T]
        tones.addcmul_(torch.sin(angle), levels[:, k : k + 1])
    swell_hz = uniform((b, 1), 0.1, 1.0, generator, device)
    swell_phase = uniform((b, 1), 0.0, 2 * math.pi, generator, device)
    depth = uniform((b, 1), 0.0, cfg.max_swell, generator, device)
    tones = tones * (1 - depth * (0.5 + 0.5 * torch.sin(2 * math.pi * swell_hz * time + swell_phase)))
    snr_db = uniform((b, 1), cfg.min_snr_db, cfg.max_snr_db, generator, device)
    scale = x.norm(dim=-1, keepdim=True) / tones.norm(dim=-1, keepdim=True).clamp(min=PEAK_EPS)
    return limit_peak(torch.addcmul(x, tones, scale * 10 ** (-snr_db / 20)))
