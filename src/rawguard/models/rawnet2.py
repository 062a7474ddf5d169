"""``rawnet2``: the ASVspoof 2021 RawNet2 baseline (Tak et al., ICASSP 2021), reimplemented.

Kept for side-by-side comparison with ``rawnet-lite``; it is ~17.6 M parameters and runs its
1025-tap sinc filters at the full sample rate, so it costs ~50x more per clip.

Data flow for a ``[B, T]`` waveform (sizes for T = 64,600):

====================================  ==========================  =============
stage                                 output                      T = 64,600
====================================  ==========================  =============
fixed mel sinc conv, 20 x 1025 taps   ``[B, 20, T - 1024]``       63,576
``|x|``, max-pool 3, BN, SELU         ``[B, 20, N0]``             21,192
res block 20->20 (first) + FMS        ``[B, 20, N0 / 3]``          7,064
res block 20->20 + FMS                ``[B, 20, N0 / 9]``          2,354
res block 20->128 + FMS               ``[B, 128, N0 / 27]``          784
3 x res block 128->128 + FMS          ``[B, 128, N0 / 729]``          29
BN, SELU, GRU(128 -> 1024, 3 layers)  last step ``[B, 1024]``
FC 1024 -> 1024, FC 1024 -> 2         ``[B, 2]`` logits
====================================  ==========================  =============

Residual block: BN -> LeakyReLU(0.3) (not in the first block) -> conv k3 -> BN -> LeakyReLU ->
conv k3, plus identity or 1x1-conv skip, then max-pool 3. FMS = filter-wise feature-map scaling.
With the default config the model has exactly 17,621,410 trainable parameters (the sinc filters
are fixed buffers) and accepts ``T >= 3,211`` samples.

Differences from the official code (``eurecom-asp/rawnet2-antispoofing``), both switchable with
``reference_quirks=True`` to reproduce it exactly:

- its residual block computes ``BN -> LeakyReLU`` and then feeds the *block input* to the first
  conv, so the pre-activation is unused; here it is applied, as the paper describes;
- its sinc layer fills only 19 of the 20 filters (the last stays zero, the top band unused); here
  the 20 mel bands tile 0-8 kHz.

The output is raw logits (the baseline returns log-softmax; the score ``logit[1] - logit[0]`` is
the same either way).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rawguard.conventions import SAMPLE_RATE
from rawguard.models import register_model
from rawguard.models.layers import FeatureMapScaling, check_waveform, min_input_length, output_length
from rawguard.models.sinc import FixedSincConv, odd_kernel_size


@dataclass
class RawNet2Config:
    """Hyper-parameters of :class:`RawNet2`; the defaults are the ASVspoof 2021 baseline's."""

    sinc_filters: int = 20
    sinc_kernel: int = 1024  # made odd (1025 taps)
    sample_rate: int = SAMPLE_RATE
    block_channels: tuple[int, ...] = (20, 20, 128, 128, 128, 128)  # output channels of the 6 blocks
    pool: int = 3  # max-pool after the front-end and after every block
    negative_slope: float = 0.3
    gru_hidden: int = 1024
    gru_layers: int = 3
    fc_hidden: int = 1024
    reference_quirks: bool = False  # reproduce the official code's two deviations (module docstring)

    def __post_init__(self) -> None:
        for key in ("sinc_filters", "sinc_kernel", "sample_rate", "pool", "gru_hidden", "gru_layers", "fc_hidden"):
            if getattr(self, key) < 1:
                raise ValueError(f"rawnet2 config: {key} must be >= 1, got {getattr(self, key)}")
        if not self.block_channels or min(self.block_channels) < 1:
            raise ValueError(f"rawnet2 config: block_channels must be non-empty and positive, got {self.block_channels}")


class RawNet2Block(nn.Module):
    """Pre-activation residual block with max-pool. ``[B, C_in, N]`` -> ``[B, C_out, N // pool]``."""

    def __init__(self, c_in: int, c_out: int, first: bool, negative_slope: float, pool: int, quirk: bool) -> None:
        super().__init__()
        self.first = first
        self.quirk = quirk
        self.bn1 = None if first else nn.BatchNorm1d(c_in)
        self.act = nn.LeakyReLU(negative_slope)
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size=3, padding=1)
        self.skip = nn.Conv1d(c_in, c_out, kernel_size=1) if c_in != c_out else None
        self.pool = nn.MaxPool1d(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.bn1 is not None:
            out = self.act(self.bn1(x))
            if self.quirk:
                # The official code discards this (its conv1 reads x), but still updates bn1's stats.
                out = x
        out = self.conv2(self.act(self.bn2(self.conv1(out))))
        identity = x if self.skip is None else self.skip(x)
        return self.pool(out + identity)


@register_model("rawnet2", RawNet2Config)
class RawNet2(nn.Module):
    """ASVspoof 2021 RawNet2 baseline. ``[B, T]`` float32 -> ``[B, 2]`` logits (index 1 = bona fide)."""

    def __init__(self, config: RawNet2Config | None = None) -> None:
        super().__init__()
        self.config = config = config or RawNet2Config()
        self.sinc = FixedSincConv(
            config.sinc_filters, config.sinc_kernel, config.sample_rate, drop_top_band=config.reference_quirks
        )
        self.pool = nn.MaxPool1d(config.pool)
        self.first_bn = nn.BatchNorm1d(config.sinc_filters)
        self.selu = nn.SELU()
        blocks, scalings = [], []
        c_in = config.sinc_filters
        for index, c_out in enumerate(config.block_channels):
            blocks.append(
                RawNet2Block(c_in, c_out, index == 0, config.negative_slope, config.pool, config.reference_quirks)
            )
            scalings.append(FeatureMapScaling(c_out))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.fms = nn.ModuleList(scalings)
        self.bn_before_gru = nn.BatchNorm1d(c_in)
        self.gru = nn.GRU(c_in, config.gru_hidden, num_layers=config.gru_layers, batch_first=True)
        self.fc1 = nn.Linear(config.gru_hidden, config.fc_hidden)
        self.fc2 = nn.Linear(config.fc_hidden, 2)
        self._pools = [config.pool] * (1 + len(config.block_channels))
        self.min_samples = min_input_length(odd_kernel_size(config.sinc_kernel), 1, self._pools)

    def gru_steps(self, num_samples: int) -> int:
        """Number of GRU time steps for an input of ``num_samples`` (29 for 64,600)."""
        return output_length(num_samples, self.sinc.kernel_size, 1, self._pools)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` float waveform in [-1, 1], ``T >= min_samples`` -> ``[B, 2]`` logits."""
        check_waveform(x, self.min_samples, "rawnet2")
        x = self.sinc(x.unsqueeze(1))  # [B, 20, T - 1024]
        x = self.selu(self.first_bn(self.pool(x.abs())))  # [B, 20, N0]
        for block, fms in zip(self.blocks, self.fms):
            x = fms(block(x))  # [B, C, N / 3]
        x = self.selu(self.bn_before_gru(x)).transpose(1, 2)  # [B, N, 128]
        x, _ = self.gru(x)  # [B, N, H]
        return self.fc2(self.fc1(x[:, -1]))  # [B, 2]
