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

from functools import lru_cache

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


def _is_13_smooth(n: int) -> bool:
    for prime in (2, 3, 5, 7, 11, 13):
        while n % prime == 0:
            n //= prime
    return n == 1


@lru_cache(maxsize=4096)
def fast_length(n: int) -> int:
    """The length closest to ``n`` whose prime factors are all <= 13 (ties: the longer one).

    An inverse FFT of a length with a large prime factor is slower (14,998 = 2 x 7,499: 0.61 ms,
    against ~0.18 ms for 13-smooth lengths near it, one CPU thread); between 14,000 and 18,500 such
    lengths are at most 0.88 % apart, so the speed factor moves by at most ~0.45 %.
    """
    for distance in range(n):
        for candidate in (n + distance, n - distance):
            if candidate >= 1 and _is_13_smooth(candidate):
                return candidate
    return 1


def speed_perturbation(x: torch.Tensor, cfg: SpeedConfig, generator: torch.Generator) -> torch.Tensor:
    """``[B, T] -> [B, T]``: each row played ``f ~ U(min_factor, max_factor)`` times faster.

    The resampled row has ``round(T / f)`` samples (moved to the nearest :func:`fast_length`, which
    changes ``f`` by <= ~0.45 % for 1 s windows); a longer one is cut to its first ``T``, a
    shorter one tiled (the policy the data pipeline uses for short clips). A row whose band-limited
    version overshoots full scale (a clipped input rings) is scaled back to a peak of 1.
    """
    batch, samples = x.shape
    factors = uniform((batch,), cfg.min_factor, cfg.max_factor, generator, torch.device("cpu")).tolist()
    out = torch.empty_like(x)
    for row, factor in enumerate(factors):
        y = resample_fft(x[row], fast_length(max(2, round(samples / factor))))
        repeats = -(-samples // y.shape[0])
        out[row] = (y.repeat(repeats) if repeats > 1 else y)[:samples]
    return out / out.abs().amax(dim=1, keepdim=True).clamp(min=1.0)
