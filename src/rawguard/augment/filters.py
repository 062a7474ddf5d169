"""Batched random draws, random notch filters and FFT filtering, all in torch.

Every random number comes from the ``torch.Generator`` passed in, drawn on that generator's device
and then moved to the data's device, so a run is reproducible from the generator state alone.
Filtering is done with one FFT per example row instead of a per-example Python loop: a batch of
``[B, T]`` signals and ``[B, F]`` frequency responses is one ``rfft`` / multiply / ``irfft``.
"""

from __future__ import annotations

import math

import torch

from rawguard.augment.config import AugmentError, NotchFilterConfig
from rawguard.conventions import SAMPLE_RATE

PEAK_EPS = 1e-8
"""Below this peak amplitude an example is treated as silent (no rescaling, no division)."""


def check_batch(x: torch.Tensor, generator: torch.Generator) -> None:
    """Raise :class:`AugmentError` unless ``x`` is a float32 ``[B, T]`` tensor and ``generator`` a
    ``torch.Generator``."""
    if not isinstance(x, torch.Tensor):
        raise AugmentError(f"expected a float32 tensor [B, T], got {type(x).__name__}")
    if x.dim() != 2 or x.dtype != torch.float32:
        raise AugmentError(f"expected a float32 tensor [B, T], got {x.dtype} of shape {tuple(x.shape)}")
    if not isinstance(generator, torch.Generator):
        raise AugmentError(f"expected a torch.Generator, got {type(generator).__name__}")


def uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator,
            device: torch.device) -> torch.Tensor:
    """``U(low, high)`` float32 tensor of ``shape`` drawn from ``generator``, placed on ``device``."""
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return (low + (high - low) * u).to(device)


def randint(shape: tuple[int, ...], low: int, high: int, generator: torch.Generator,
            device: torch.device) -> torch.Tensor:
    """Integers uniform in ``[low, high]`` (both inclusive), int64, on ``device``."""
    r = torch.randint(low, high + 1, shape, generator=generator, device=generator.device)
    return r.to(device)


def normal(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard normal float32 tensor drawn from ``generator``, placed on ``device``."""
    n = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return n.to(device)


def peak(x: torch.Tensor) -> torch.Tensor:
    """Per-example peak ``max |x|``: ``[B, T] -> [B, 1]``."""
    # max and -min rather than abs().amax(): no [B, T] temporary (allocation dominates on CPU).
    return torch.maximum(x.amax(dim=-1, keepdim=True), -x.amin(dim=-1, keepdim=True))


def limit_peak(x: torch.Tensor, ceiling: float = 1.0) -> torch.Tensor:
    """Scale down only the examples whose peak exceeds ``ceiling`` (RawBoost's ``normWav(x, 0)``);
    ``[B, T] -> [B, T]``."""
    over = peak(x) > ceiling
    if not bool(over.any()):
        return x  # the usual case: skip a full pass over the batch
    return x * torch.where(over, ceiling / peak(x), torch.ones_like(over, dtype=x.dtype))


def match_peak(y: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Rescale each example of ``y`` to the peak of the same example of ``reference`` (``[B, T]``).
    A silent ``y`` stays silent instead of being divided by zero."""
    py = peak(y)
    scale = torch.where(py > PEAK_EPS, peak(reference) / py.clamp(min=PEAK_EPS), torch.zeros_like(py))
    return y * scale


def fft_size(length: int, kernel_radius: int) -> int:
    """Smallest power of two >= ``length + kernel_radius``: large enough that circular convolution
    with a zero-phase kernel of that radius equals linear convolution on the first ``length`` samples."""
    return 1 << max(1, math.ceil(math.log2(length + kernel_radius)))


def notch_responses(shape: tuple[int, ...], cfg: NotchFilterConfig, generator: torch.Generator,
                    device: torch.device, extra_gain_db: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, int]:
    """Random multi-band notch filters (RawBoost ``genNotchCoeffs``), as zero-phase kernels.

    Draws ``prod(shape)`` independent filters, each the cascade of ``cfg.n_bands`` Hamming-windowed
    band-stop FIRs (odd tap count in [min_taps, max_taps], DC gain 1), normalises each cascade to a
    peak magnitude of ``10**(G/20)`` with ``G ~ U(min_gain_db, max_gain_db)`` (+ ``extra_gain_db``,
    broadcast to ``shape``).

    Returns:
        ``(kernels, radius)``: ``kernels`` is ``[*shape, 2 * radius + 1]`` float32, the symmetric
        impulse responses centred on index ``radius``; ``radius`` bounds every cascade's half-length.
    """
    k = cfg.n_bands
    nyq = SAMPLE_RATE / 2
    fc = uniform((*shape, k), cfg.min_freq, cfg.max_freq, generator, device)
    bw = uniform((*shape, k), cfg.min_bandwidth, cfg.max_bandwidth, generator, device)
    taps = randint((*shape, k), cfg.min_taps, cfg.max_taps, generator, device)
    taps = taps + (taps % 2 == 0).long()  # odd lengths: a type-I linear-phase FIR has no half-sample delay
    half = (taps - 1) // 2  # [*shape, k]
    # Band edges as a fraction of Nyquist, kept strictly inside (0, 1) like scipy's firwin requires.
    w1 = ((fc - bw / 2) / nyq).clamp(1e-4, 1 - 2e-4)
    w2 = ((fc + bw / 2) / nyq).clamp(2e-4, 1 - 1e-4)
    w2 = torch.maximum(w2, w1 + 1e-4)
    max_half = (cfg.max_taps + (cfg.max_taps % 2 == 0)) // 2
    n = torch.arange(max_half + 1, device=device, dtype=torch.float32)  # one-sided: h is symmetric
    w1, w2, halff = w1[..., None], w2[..., None], half[..., None].float()
    # Ideal band-stop = delta - (low-pass at w2 - low-pass at w1); low-pass at w: w * sinc(w n).
    ideal = (n == 0).float() - (w2 * torch.sinc(w2 * n) - w1 * torch.sinc(w1 * n))
    window = 0.54 + 0.46 * torch.cos(math.pi * n / halff.clamp(min=1))
    window = torch.where(n <= halff, window, torch.zeros_like(window))
    h = ideal * window  # [*shape, k, max_half + 1]
    dc = h[..., :1] + 2 * h[..., 1:].sum(-1, keepdim=True)
    h = h / dc.clamp(min=1e-3)  # unit gain at DC, as firwin scales a band-stop
    # Cascade the bands by multiplying their zero-phase responses on a grid fine enough to hold
    # the whole cascade without time aliasing, then come back to the time domain.
    radius = k * max_half
    grid = fft_size(2 * radius + 1, 0)
    full = torch.zeros((*shape, k, grid), device=device, dtype=torch.float32)
    full[..., : max_half + 1] = h
    full[..., grid - max_half:] = h[..., 1:].flip(-1)  # negative-time taps wrap to the end
    response = torch.fft.rfft(full).real.prod(dim=-2)  # [*shape, grid // 2 + 1], real: zero phase
    gain_db = uniform(shape, cfg.min_gain_db, cfg.max_gain_db, generator, device)
    if extra_gain_db is not None:
        gain_db = gain_db + extra_gain_db
    peak_mag = response.abs().amax(-1).clamp(min=1e-8)
    response = response * (10 ** (gain_db / 20) / peak_mag)[..., None]
    circular = torch.fft.irfft(response, n=grid)
    kernels = torch.cat([circular[..., grid - radius:], circular[..., : radius + 1]], dim=-1)
    return kernels, radius


def kernel_spectrum(kernels: torch.Tensor, radius: int, n_fft: int) -> torch.Tensor:
    """Exact spectrum on an ``n_fft`` grid of centred zero-phase kernels ``[..., 2 * radius + 1]``
    -> complex ``[..., n_fft // 2 + 1]`` (real up to rounding: the kernels are symmetric)."""
    full = torch.zeros((*kernels.shape[:-1], n_fft), device=kernels.device, dtype=kernels.dtype)
    full[..., : radius + 1] = kernels[..., radius:]
    full[..., n_fft - radius:] = kernels[..., :radius]
    return torch.fft.rfft(full)


RESPONSE_GRID = 4096
"""FFT size on which :func:`kernel_response` samples a kernel before interpolating."""


def kernel_response(kernels: torch.Tensor, radius: int, n_fft: int) -> torch.Tensor:
    """Zero-phase (real) frequency response of centred kernels ``[..., 2 * radius + 1]`` on an
    ``n_fft`` grid -> float32 ``[..., n_fft // 2 + 1]``, about 16x cheaper than
    :func:`kernel_spectrum` for a 64k-point grid.

    The response is computed exactly on a :data:`RESPONSE_GRID`-point grid (a 0.25% step of the band)
    and linearly interpolated to the fine grid. A kernel of a few hundred taps has a response that
    is smooth on that scale: the interpolation error is below 1% of the peak gain for RawBoost's
    filters (``tests/test_augment.py`` checks it), and what it filters with is still a smooth
    zero-phase random filter. That is all an augmentation needs, and it saves one full-length FFT
    per filter, the largest cost of the LnL and SSI noises.
    """
    grid = max(RESPONSE_GRID, fft_size(2 * radius + 1, 0))
    if grid >= n_fft:
        return kernel_spectrum(kernels, radius, n_fft).real
    coarse = kernel_spectrum(kernels, radius, grid).real
    flat = coarse.reshape(-1, 1, coarse.shape[-1])
    fine = torch.nn.functional.interpolate(flat, size=n_fft // 2 + 1, mode="linear", align_corners=True)
    return fine.reshape(*coarse.shape[:-1], n_fft // 2 + 1)


def band_mask(freqs_hz: torch.Tensor, low_hz: torch.Tensor, high_hz: torch.Tensor,
              transition_hz: float) -> torch.Tensor:
    """Smooth band-pass magnitude: logistic edges at ``low_hz`` and ``high_hz`` (``[B, 1]``) over
    ``freqs_hz`` (``[F]``) -> ``[B, F]``. Use ``low_hz = -inf`` for a low-pass."""
    scale = transition_hz / 8  # the logistic goes from 2% to 98% over about `transition_hz`
    rise = torch.sigmoid((freqs_hz - low_hz) / scale)
    fall = torch.sigmoid((high_hz - freqs_hz) / scale)
    return rise * fall


def apply_response(x: torch.Tensor, response: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Filter ``x`` ``[B, T]`` by a zero-phase frequency response ``[B, n_fft // 2 + 1]`` (real or
    complex) computed on an ``n_fft`` grid; ``n_fft`` must leave room for the filter's tails
    (see :func:`fft_size`). Returns ``[B, T]``."""
    # Zero-padded here: torch's rfft is markedly slower when asked to pad (n=...) itself.
    padded = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
    return torch.fft.irfft(torch.fft.rfft(padded) * response, n=n_fft)[..., : x.shape[-1]]
