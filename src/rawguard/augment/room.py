"""Acoustic-scene augmentations, batched in torch: room reverberation and background noise.

They aim at bona fide speech recorded away from a close microphone (broadcast studios, phones in
rooms, noisy streets), which a detector trained on clean read speech rejects. Applied to every
example whatever its class, they make the room and the noise floor useless as a cue: a spoof in a
reverberant room is still a spoof.

Each is a pure function ``f(x [B, T] float32, cfg, generator) -> [B, T] float32`` drawing its
per-example parameters from ``generator`` only.
"""

from __future__ import annotations

import math

import torch

from rawguard.augment.config import NoiseConfig, ReverbConfig
from rawguard.augment.filters import fft_size, match_peak, normal, uniform
from rawguard.conventions import SAMPLE_RATE

DECAY_60_DB = math.log(1000.0)
"""Amplitude decays by 60 dB (a factor 1000) over one RT60: ``exp(-DECAY_60_DB * t / rt60)``."""


def room_impulse_responses(b: int, cfg: ReverbConfig, generator: torch.Generator,
                           device: torch.device) -> torch.Tensor:
    """Synthetic room impulse responses ``[B, L]`` (``L = max_rt60_s`` seconds of samples).

    Statistical late-reverberation model: a unit direct path at ``t = 0``, then Gaussian noise
    under an exponential envelope that falls 60 dB in ``rt60 ~ U(min_rt60_s, max_rt60_s)``,
    starting after a pre-delay of 2-10 ms (the first reflections), scaled so that the direct path
    carries ``drr ~ U(min_drr_db, max_drr_db)`` dB more energy than the tail.
    """
    length = max(2, int(cfg.max_rt60_s * SAMPLE_RATE))
    t = torch.arange(length, device=device, dtype=torch.float32)[None, :] / SAMPLE_RATE  # [1, L]
    rt60 = uniform((b, 1), cfg.min_rt60_s, cfg.max_rt60_s, generator, device)
    drr_db = uniform((b, 1), cfg.min_drr_db, cfg.max_drr_db, generator, device)
    predelay = uniform((b, 1), 0.002, 0.010, generator, device)
    envelope = torch.exp(-DECAY_60_DB * (t - predelay).clamp(min=0) / rt60) * (t >= predelay)
    tail = normal((b, length), generator, device) * envelope
    tail_energy = tail.square().sum(dim=1, keepdim=True).clamp(min=1e-12)
    tail = tail * torch.sqrt(10 ** (-drr_db / 10) / tail_energy)  # direct energy is 1
    tail[:, 0] = 1.0
    return tail


def reverberation(x: torch.Tensor, cfg: ReverbConfig, generator: torch.Generator) -> torch.Tensor:
    """Convolve each example with its own :func:`room_impulse_responses` (``[B, T] -> [B, T]``).

    Linear (not circular) convolution through one FFT, cut to the input's length, so the signal
    keeps its timing (the direct path is at lag 0); the output keeps the input's peak level.
    """
    b, t = x.shape
    rir = room_impulse_responses(b, cfg, generator, x.device)
    n_fft = fft_size(t, rir.shape[1])
    y = torch.fft.irfft(torch.fft.rfft(x, n_fft) * torch.fft.rfft(rir, n_fft), n_fft)[:, :t]
    return match_peak(y, x)


def coloured_noise(b: int, t: int, exponent: torch.Tensor, generator: torch.Generator,
                   device: torch.device) -> torch.Tensor:
    """Gaussian noise ``[B, T]`` with power spectrum ``~ 1 / f ** exponent`` (``exponent`` ``[B, 1]``:
    0 white, 1 pink, 2 brown), unit variance per row."""
    spectrum = torch.fft.rfft(normal((b, t), generator, device), dim=1)
    freqs = torch.fft.rfftfreq(t, d=1.0 / SAMPLE_RATE).to(device)[None, :]
    # Below 20 Hz the 1/f slope is held flat: no DC drift, which a recording chain would block.
    spectrum = spectrum * freqs.clamp(min=20.0).pow(-exponent / 2)
    noise = torch.fft.irfft(spectrum, t, dim=1)
    noise = noise - noise.mean(dim=1, keepdim=True)
    # RMS, not std(): defined for a one-sample example too (which then gets no noise).
    return noise / noise.square().mean(dim=1, keepdim=True).sqrt().clamp(min=1e-12)


def background_noise(x: torch.Tensor, cfg: NoiseConfig, generator: torch.Generator) -> torch.Tensor:
    """Add stationary coloured noise at ``snr ~ U(min_snr_db, max_snr_db)`` dB (``[B, T] -> [B, T]``).

    The SNR is relative to the example's mean power over its louder half of 20 ms frames, so a clip
    with long pauses gets the noise its speech would, not more. The spectral exponent is
    ``U(min_exponent, max_exponent)`` (0 white ... 2 brown: hiss, fans, traffic rumble). The sum is
    rescaled only if it would exceed full scale.
    """
    b, t = x.shape
    exponent = uniform((b, 1), cfg.min_exponent, cfg.max_exponent, generator, x.device)
    snr_db = uniform((b, 1), cfg.min_snr_db, cfg.max_snr_db, generator, x.device)
    noise = coloured_noise(b, t, exponent, generator, x.device)
    frame = SAMPLE_RATE // 50
    frames = x[:, : (t // frame) * frame].reshape(b, -1, frame).square().mean(dim=2) if t >= frame \
        else x.square().mean(dim=1, keepdim=True)
    loud = frames.sort(dim=1, descending=True).values[:, : max(1, frames.shape[1] // 2)]
    speech_power = loud.mean(dim=1, keepdim=True)
    y = x + noise * torch.sqrt(speech_power * 10 ** (-snr_db / 10))
    over = y.abs().amax(dim=1, keepdim=True).clamp(min=1.0)
    return y / over
