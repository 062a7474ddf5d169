"""Anti-aliased snake activation: the nonlinearity of BigVGAN-style vocoders (Lee et al., ICLR 2023).

Many of today's TTS systems end in a BigVGAN-style vocoder (in corpus v3, IndexTTS's BigVGAN2-type
decoder, S33), whose traces differ from HiFi-GAN's leaky ReLUs: a periodic
activation, ``snake(x) = x + sin^2(alpha x) / alpha`` with a learnt frequency ``alpha`` per channel
(Ziyin et al., NeurIPS 2020), applied at twice the sample rate between low-pass filters so the
harmonics it creates do not fold back as aliasing. :class:`AntiAliasedSnake` is that block, written
from the paper's description; :mod:`rawguard.copysynth.neural` uses it for ``activation="snake"``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

FILTER_TAPS = 13  # odd, so "same" padding is symmetric
KAISER_BETA = 8.0


def lowpass_kernel(cutoff: float, taps: int = FILTER_TAPS, beta: float = KAISER_BETA) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass, ``[taps]``, unit DC gain; ``cutoff`` in cycles per sample (< 0.5)."""
    n = np.arange(taps) - (taps - 1) / 2
    kernel = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(taps, beta)
    return torch.from_numpy(kernel / kernel.sum()).float()


class _Snake(torch.autograd.Function):
    """``x + sin^2(alpha x) / alpha`` with a hand-written backward: one cosine forward, one sine
    backward and only the inputs saved (autograd's own graph of sin and pow costs ~1.4x the time)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, alpha)
        return x + (1 - torch.cos(2 * alpha * x)) / (2 * alpha)  # sin^2(u) = (1 - cos 2u) / 2

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, alpha = ctx.saved_tensors
        angle = 2 * alpha * x
        sine = torch.sin(angle)
        grad_x = grad * (1 + sine)
        grad_alpha = grad * (x * sine / alpha - (1 - torch.cos(angle)) / (2 * alpha * alpha))
        return grad_x, grad_alpha.sum(dim=(0, 2), keepdim=True)


class AntiAliasedSnake(nn.Module):
    """``[B, C, N]`` -> ``[B, C, N]``: upsample x2, snake, low-pass and downsample x2.

    ``alpha`` is stored as its log (initialised at 0, so alpha = 1) to keep it positive. The x2
    upsampling is polyphase: the even and odd output samples are the input filtered by the
    low-pass's even and odd taps, which is zero insertion + filtering without the zeros' work.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(channels))
        # At the doubled rate, keep below the original Nyquist (0.25 cycles per upsampled sample).
        self.register_buffer("kernel", lowpass_kernel(0.25).view(1, 1, -1), persistent=False)

    def snake(self, x: torch.Tensor) -> torch.Tensor:
        return _Snake.apply(x, self.log_alpha.exp().view(1, -1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, n = x.shape
        pad = FILTER_TAPS // 2  # 6, even: output 2t sees x[t - 3 .. t + 3] through the kernel's even taps,
        # output 2t + 1 sees x[t - 2 .. t + 3] through its odd ones
        kernel = self.kernel.to(x.dtype).expand(channels, 1, -1)  # depthwise: [C, 1, taps]
        even_taps, odd_taps = 2 * kernel[..., 0::2], 2 * kernel[..., 1::2]  # gain 2 for the missing zeros
        even = F.conv1d(F.pad(x, (pad // 2, pad // 2)), even_taps, groups=channels)
        odd = F.conv1d(F.pad(x, (pad // 2 - 1, pad // 2)), odd_taps, groups=channels)
        up = torch.stack([even, odd], dim=-1).view(batch, channels, 2 * n)  # [B, C, 2N]
        return F.conv1d(self.snake(up), kernel, padding=pad, stride=2, groups=channels)  # [B, C, N]
