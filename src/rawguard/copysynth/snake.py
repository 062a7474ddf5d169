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


class AntiAliasedSnake(nn.Module):
    """``[B, C, N]`` -> ``[B, C, N]``: upsample x2, snake, low-pass and downsample x2.

    ``alpha`` is stored as its log (initialised at 0, so alpha = 1) to keep it positive.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(channels))
        # At the doubled rate, keep below the original Nyquist (0.25 cycles per upsampled sample).
        self.register_buffer("kernel", lowpass_kernel(0.25).view(1, 1, -1), persistent=False)

    def snake(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.log_alpha.exp().view(1, -1, 1)
        return x + torch.sin(alpha * x).pow(2) / alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, pad = x.shape[1], FILTER_TAPS // 2
        kernel = self.kernel.to(x.dtype).expand(channels, 1, -1)  # depthwise: [C, 1, taps]
        up = torch.zeros(*x.shape[:2], 2 * x.shape[2], dtype=x.dtype, device=x.device)
        up[..., ::2] = x  # zero insertion; the filter's gain of 2 restores the level
        up = F.conv1d(up, 2 * kernel, padding=pad, groups=channels)  # [B, C, 2N]
        return F.conv1d(self.snake(up), kernel, padding=pad, stride=2, groups=channels)  # [B, C, N]
