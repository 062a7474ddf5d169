"""Speed perturbation: resample an example and play it back at the original rate.

Played ``f`` times faster, speech has its pitch and formants scaled by ``f`` and its tempo by
``1 / f``: for a detector, another talker. Spoofing artefacts that are local in time (frame-rate
glitches, phase noise, aliasing around harmonics) survive it; the point is that they then appear on
more voices than the corpus has, which is where the shared corpus's dev errors sit (unseen speakers
of seen systems, BENCHMARKS.md). Resampling is band-limited (the spectrum is cut or zero-padded,
as ``scipy.signal.resample`` does), so speeding up drops what would fold over Nyquist, and slowing
down leaves the top ``(1 - f)`` of the band empty.
"""

from __future__ import annotations

import torch

from rawguard.augment.config import SpeedConfig
from rawguard.augment.filters import uniform


def resample_fft(x: torch.Tensor, length: int) -> torch.Tensor:
    """Band-limited resampling of ``x`` ``[T]`` to ``length`` samples (``[length]``), level kept."""
    spectrum = torch.fft.rfft(x)
    bins = length // 2 + 1
    if bins <= spectrum.shape[0]:
        spectrum = spectrum[:bins]
    else:
        spectrum = torch.cat([spectrum, spectrum.new_zeros(bins - spectrum.shape[0])])
    return torch.fft.irfft(spectrum, n=length) * (length / x.shape[0])


def speed_perturbation(x: torch.Tensor, cfg: SpeedConfig, generator: torch.Generator) -> torch.Tensor:
    """``[B, T] -> [B, T]``: each row played ``f ~ U(min_factor, max_factor)`` times faster.

    The resampled row has ``round(T / f)`` samples; a longer one is cut to its first ``T``, a
    shorter one tiled (the policy the data pipeline uses for short clips). A row whose band-limited
    version overshoots full scale (a clipped input rings) is scaled back to a peak of 1.
    """
    batch, samples = x.shape
    factors = uniform((batch,), cfg.min_factor, cfg.max_factor, generator, torch.device("cpu")).tolist()
    out = torch.empty_like(x)
    for row, factor in enumerate(factors):
        y = resample_fft(x[row], max(2, round(samples / factor)))
        repeats = -(-samples // y.shape[0])
        out[row] = (y.repeat(repeats) if repeats > 1 else y)[:samples]
    return out / out.abs().amax(dim=1, keepdim=True).clamp(min=1.0)
