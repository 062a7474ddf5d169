"""MixStyle on frame sequences: mix per-channel time statistics between the clips of a batch.

Zhou, Yang, Qiao and Xiang, "Domain generalization with MixStyle" (ICLR 2021). A clip's per-channel
mean and standard deviation over time are its "style" (for a filter bank: the long-term spectral
envelope, which is mostly speaker, language and channel); the normalised sequence is its content
(how the envelope moves frame to frame). During training each chosen clip keeps its content and
label but takes a random convex mix of its own style and another clip's, so a cue that lives only
in the long-term envelope stops separating the classes, while local frame-to-frame artefacts stay.
At evaluation the layer is the identity.
"""

from __future__ import annotations

import torch
from torch import nn


class MixStyle(nn.Module):
    """Mix per-channel time statistics of ``[B, C, N]`` features across the batch while training.

    Args:
        p: probability that a clip's statistics are mixed (0 = never: the layer does nothing).
        alpha: the mixing weight of a chosen clip is ``Beta(alpha, alpha)``; small alphas keep
            most mixes near one of the two clips (the paper's 0.1).
        eps: added to the variance before the square root.
    """

    def __init__(self, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"mixstyle: p must be in [0, 1], got {p}")
        if alpha <= 0:
            raise ValueError(f"mixstyle: alpha must be > 0, got {alpha}")
        self.p = p
        self.alpha = alpha
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, N]`` -> ``[B, C, N]``; unchanged in eval mode, for ``p = 0`` or a batch of one."""
        batch = x.shape[0]
        if not self.training or self.p == 0.0 or batch < 2:
            return x
        # The statistics are detached, as in the paper: the network is not asked to steer them.
        mean = x.mean(dim=2, keepdim=True).detach()  # [B, C, 1]
        std = (x.var(dim=2, keepdim=True, unbiased=False) + self.eps).sqrt().detach()  # [B, C, 1]
        content = (x - mean) / std  # [B, C, N]
        # Per clip: weight from Beta(alpha, alpha) when chosen (probability p), else 1 (its own
        # style). Drawn as tensors, not Python branches, so a compiled graph stays whole.
        concentration = torch.full((batch, 1, 1), self.alpha, device=x.device, dtype=torch.float32)
        weight = torch.distributions.Beta(concentration, concentration).sample()  # [B, 1, 1]
        chosen = torch.rand(batch, 1, 1, device=x.device) < self.p
        weight = torch.where(chosen, weight, torch.ones_like(weight)).to(x.dtype)
        partner = torch.randperm(batch, device=x.device)
        mixed_mean = weight * mean + (1 - weight) * mean[partner]
        mixed_std = weight * std + (1 - weight) * std[partner]
        return content * mixed_std + mixed_mean
