"""Sinc band-pass filters (SincNet / RawNet2 front-end), fixed or learnable.

A sinc filter is the difference of two ideal low-pass filters, windowed to a finite kernel:
``h[n] = 2 f_hi/sr * sinc(2 f_hi n / sr) - 2 f_lo/sr * sinc(2 f_lo n / sr)``, times a Hamming window.
Band edges are mel-spaced (narrow bands at low frequencies, as in RawNet2) or linear (equal widths,
so the 4-8 kHz region gets as many bands as the rest).

Everything here is plain torch ops, so it runs under autocast and exports to ONNX.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rawguard.conventions import SAMPLE_RATE


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_band_edges(num_filters: int, sample_rate: int = SAMPLE_RATE, n_fft: int = 512) -> torch.Tensor:
    """``num_filters + 1`` mel-spaced band edges in Hz, from 0 to Nyquist, float64 ``[F + 1]``.

    As in the RawNet2 baseline, the mel range is that of an ``n_fft``-point frequency grid (whose
    end points are 0 Hz and Nyquist), divided into equal mel steps.
    """
    grid_hz = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    grid_mel = hz_to_mel(grid_hz)
    edges_mel = torch.linspace(float(grid_mel.min()), float(grid_mel.max()), num_filters + 1, dtype=torch.float64)
    return mel_to_hz(edges_mel)


BAND_SCALES = ("mel", "linear")


def band_edges(num_filters: int, scale: str = "mel", sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``num_filters + 1`` band edges in Hz from 0 to Nyquist, float64 ``[F + 1]``, increasing.

    Args:
        num_filters: ``F``.
        scale: ``"mel"`` (:func:`mel_band_edges`) or ``"linear"`` (equal widths). Inverse-mel bands
            (narrow at the top) were measured and removed: BENCHMARKS.md, "What did not help".
        sample_rate: Hz.
    """
    if scale == "mel":
        return mel_band_edges(num_filters, sample_rate)
    if scale == "linear":
        return torch.linspace(0.0, sample_rate / 2, num_filters + 1, dtype=torch.float64)
    raise ValueError(f"band scale must be one of {', '.join(BAND_SCALES)}, got {scale!r}")


def odd_kernel_size(kernel_size: int) -> int:
    """Sinc kernels must be symmetric around a centre tap: an even size is made odd by adding one."""
    return kernel_size + 1 if kernel_size % 2 == 0 else kernel_size


def sinc_bandpass(low_hz: torch.Tensor, high_hz: torch.Tensor, kernel_size: int, sample_rate: int) -> torch.Tensor:
    """Hamming-windowed band-pass kernels.

    Args:
        low_hz: ``[F]`` lower band edges (Hz), >= 0.
        high_hz: ``[F]`` upper band edges (Hz), <= sample_rate / 2.
        kernel_size: odd number of taps ``K``.
        sample_rate: Hz.

    Returns:
        ``[F, K]`` kernels in the dtype of ``low_hz``.
    """
    if kernel_size % 2 == 0:
        raise ValueError(f"sinc kernel_size must be odd, got {kernel_size}")
    half = (kernel_size - 1) // 2
    n = torch.arange(-half, half + 1, dtype=low_hz.dtype, device=low_hz.device)  # [K]
    window = torch.hamming_window(kernel_size, periodic=False, dtype=low_hz.dtype, device=low_hz.device)

    def lowpass(cut_hz: torch.Tensor) -> torch.Tensor:  # [F] -> [F, K]
        norm = 2.0 * cut_hz[:, None] / sample_rate
        return norm * torch.sinc(norm * n[None, :])

    return (lowpass(high_hz) - lowpass(low_hz)) * window[None, :]


class _SincConv(nn.Module):
    """Conv1d with one input channel whose ``[F, 1, K]`` kernels come from :meth:`kernels`."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size = odd_kernel_size(kernel_size)
        self.stride = stride

    def kernels(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` -> ``[B, F, (T - K) // stride + 1]``."""
        return F.conv1d(x, self.kernels().to(x.dtype), stride=self.stride)


class FixedSincConv(_SincConv):
    """RawNet2's sinc front-end: ``F`` fixed band-pass filters (no trainable parameters).

    Input ``[B, 1, T]``, output ``[B, F, T - K + 1]`` (no padding, stride 1 by default).

    Args:
        num_filters: ``F``.
        kernel_size: taps; an even value is made odd (1024 -> 1025), as in the baseline.
        sample_rate: Hz.
        stride: hop between output frames.
        drop_top_band: reproduce the official baseline code exactly, which builds ``F`` edges
            (not ``F + 1``) and fills only ``F - 1`` filters, leaving the last one all zeros and the
            top band unused. Off by default: then the ``F`` bands tile 0 Hz to Nyquist.
        scale: how the bands are spaced (:func:`band_edges`); RawNet2's baseline is ``"mel"``.
    """

    def __init__(
        self,
        num_filters: int,
        kernel_size: int,
        sample_rate: int = SAMPLE_RATE,
        stride: int = 1,
        drop_top_band: bool = False,
        scale: str = "mel",
    ) -> None:
        super().__init__(kernel_size, stride)
        edges = band_edges(num_filters, scale, sample_rate)
        if drop_top_band:
            edges = edges[:num_filters]  # F edges -> F - 1 bands
        filters = sinc_bandpass(edges[:-1], edges[1:], self.kernel_size, sample_rate)
        if drop_top_band:
            filters = torch.cat([filters, filters.new_zeros(1, self.kernel_size)])
        # A buffer, not a parameter: fixed filters are not trained (and not counted as trainable).
        # Not persistent: they are a pure function of the config, so checkpoints need not carry them.
        self.register_buffer("filters", filters.float().unsqueeze(1), persistent=False)  # [F, 1, K]

    def kernels(self) -> torch.Tensor:
        """The fixed filters ``[F, 1, K]``."""
        return self.filters


class LearnableSincConv(_SincConv):
    """SincNet-style front-end: ``F`` band-pass filters whose two edges are learned (2 F parameters).

    Edges start spaced by ``scale`` (:func:`band_edges`, mel by default); during training they move,
    constrained to 0 <= low < high <= Nyquist with at least ``min_band_hz`` of bandwidth.
    Input ``[B, 1, T]``, output ``[B, F, (T - K) // stride + 1]``.
    """

    def __init__(
        self,
        num_filters: int,
        kernel_size: int,
        sample_rate: int = SAMPLE_RATE,
        stride: int = 1,
        min_low_hz: float = 0.0,
        min_band_hz: float = 50.0,
        scale: str = "mel",
    ) -> None:
        super().__init__(kernel_size, stride)
        self.sample_rate = sample_rate
        self.min_low_hz = min_low_hz
        self.min_band_hz = min_band_hz
        edges = band_edges(num_filters, scale, sample_rate)
        self.low_hz = nn.Parameter(edges[:-1].float())  # [F]
        self.band_hz = nn.Parameter((edges[1:] - edges[:-1]).float())  # [F]

    def kernels(self) -> torch.Tensor:
        """Current filters ``[F, 1, K]`` (float32)."""
        nyquist = self.sample_rate / 2
        low = self.min_low_hz + self.low_hz.abs()
        high = torch.clamp(low + self.min_band_hz + self.band_hz.abs(), max=nyquist)
        low = torch.clamp(low, max=nyquist - self.min_band_hz)
        # Normalise each filter's peak gain to ~1 so wide and narrow bands start on one scale.
        filters = sinc_bandpass(low, high, self.kernel_size, self.sample_rate)
        return (filters / (2.0 * (high - low)[:, None] / self.sample_rate)).unsqueeze(1)


__all__ = [
    "BAND_SCALES",
    "FixedSincConv",
    "LearnableSincConv",
    "band_edges",
    "hz_to_mel",
    "mel_band_edges",
    "mel_to_hz",
    "odd_kernel_size",
    "sinc_bandpass",
]
