"""The seed network read literally, for cost measurements only (not a user-facing model).

``../shared/seed.md`` describes: Conv1d front-end -> BatchNorm -> 2 residual blocks (two Conv1d,
BatchNorm, ReLU, skip) -> single-layer bidirectional GRU (final hidden state) -> linear -> 2 logits.
It names no stride or pooling, so read literally every layer runs at the full sample rate and the
GRU steps through all 64,600 samples of a 4 s clip, one after another. The seed gives no widths
either: this uses rawnet-lite's (32 channels, 64 GRU units per direction), so that comparing the
two measures the cost of the missing down-sampling alone.

``[B, T]`` float32 -> ``[B, 2]`` logits (index 1 = bona fide), any ``T >= 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class SeedLiteralConfig:
    channels: int = 32
    kernel_size: int = 3
    gru_hidden: int = 64


class SeedBlock(nn.Module):
    """conv k3 -> BN -> ReLU -> conv k3 -> BN, + skip, ReLU. ``[B, C, T]`` -> ``[B, C, T]``."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size, padding=pad),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=pad),
            nn.BatchNorm1d(channels),
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + x)


class SeedLiteral(nn.Module):
    """The seed without down-sampling. ``[B, T]`` -> ``[B, 2]``; the GRU runs ``T`` steps."""

    def __init__(self, config: SeedLiteralConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SeedLiteralConfig()
        self.frontend = nn.Conv1d(1, config.channels, config.kernel_size, padding=config.kernel_size // 2)
        self.bn = nn.BatchNorm1d(config.channels)
        self.blocks = nn.Sequential(
            SeedBlock(config.channels, config.kernel_size), SeedBlock(config.channels, config.kernel_size)
        )
        self.gru = nn.GRU(config.channels, config.gru_hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * config.gru_hidden, 2)
        self.min_samples = 1

    def gru_steps(self, num_samples: int) -> int:
        """The GRU runs once per input sample."""
        return num_samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.bn(self.frontend(x.unsqueeze(1))))  # [B, C, T]
        _, hidden = self.gru(x.transpose(1, 2))  # [2, B, H]
        return self.fc(torch.cat([hidden[0], hidden[1]], dim=-1))  # [B, 2]
